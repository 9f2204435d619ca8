package main

// Completions of flag values: the fixed ones, and the generations of a
// root mounted already for rollback --to and --generation.

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/nixrescue/nixrescue/runtime/commands"
)

// fixedValues are the values of the flags that take one of a few.
var fixedValues = map[string][]string{
	"until":    {"stage-1\tthe initrd's stage 1 started", "root\tthe root filesystem mounted", "stage-2\tthe system's stage 2 started", "multi-user\tmulti-user.target reached (the default)"},
	"backend":  {"auto\tcontainerd when its socket answers, else embedded", "embedded\trunc's libcontainer, in nixrescue", "containerd\tthe host's containerd"},
	"firmware": {"auto\tas the bootloader needs", "bios\tSeaBIOS", "efi\tOVMF"},
	"accel":    {"auto\tKVM when it works here, else TCG", "kvm", "tcg\tsoftware emulation"},
	"dev":      {"curated\tthe target's disk only", "host\tthis host's /dev"},
	"network":  {"host", "none"},
	"efi":      {"auto", "on", "off"},
	"sandbox":  {"auto\ton when it can work here", "on", "off"},
}

// registerCompletions gives cmd's flags their values' completions.
func registerCompletions(cmd *cobra.Command) {
	for name, values := range fixedValues {
		if cmd.Flags().Lookup(name) != nil {
			_ = cmd.RegisterFlagCompletionFunc(name, cobra.FixedCompletions(values, cobra.ShellCompDirectiveNoFileComp))
		}
	}
	for _, name := range []string{"to", "generation"} {
		if cmd.Flags().Lookup(name) != nil {
			_ = cmd.RegisterFlagCompletionFunc(name, completeGenerations)
		}
	}
	for _, c := range cmd.Commands() {
		registerCompletions(c)
	}
}

// completeGenerations offers the generations of the root a directory
// target (or --root, /mnt by default) holds, their dates and versions as
// descriptions. A disk or an image would have to be opened, as root, to
// be read: a completion does not.
func completeGenerations(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
	dir := cmd.Flags().Lookup("root").Value.String()
	if len(args) > 0 {
		dir = args[0]
	}
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	gens, err := commands.RootGenerations(dir)
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var out []string
	for _, g := range gens {
		out = append(out, fmt.Sprintf("%d\t%s NixOS %s", g.Number, g.Date.Format("2006-01-02"), g.NixOSVersion))
	}
	return out, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveKeepOrder
}

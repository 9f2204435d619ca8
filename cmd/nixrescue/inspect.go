package main

import (
	"github.com/spf13/cobra"

	"github.com/nixrescue/nixrescue/runtime/commands"
)

func newInspectCommand() *cobra.Command {
	var f targetFlags
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "inspect [TARGET] [--json]",
		Short: "Show what is on a target: partitions, the NixOS root, the mount plan, generations",
		Long: `Inspect opens TARGET as a session would (attach, find the NixOS root, mount it
as its fstab says) and reports the disk, its partitions and filesystems, which
is the root, the mount plan (and what cannot be mounted), the system
generations, the current system, the bootloader the configuration uses, whether
this host booted by EFI, and warnings. It runs nothing in the target and
leaves nothing behind. --json prints the report as JSON (see the README).`,
		Args: targetArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var o commands.Options
			if err := f.apply(cmd, &o, firstArg(args)); err != nil {
				return err
			}
			r, err := commands.Inspect(cmd.Context(), o)
			if err != nil {
				return err
			}
			return printReport(asJSON, r, writeInspect)
		},
	}
	f.register(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	return cmd
}

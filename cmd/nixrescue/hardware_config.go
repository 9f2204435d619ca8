package main

import (
	"github.com/spf13/cobra"

	"github.com/nixrescue/nixrescue/runtime/commands"
	"github.com/nixrescue/nixrescue/runtime/hint"
)

func newHardwareConfigCommand() *cobra.Command {
	var f containerFlags
	var write, asJSON bool
	cmd := &cobra.Command{
		Use:   "hardware-config [TARGET] [--write] [--json]",
		Short: "Regenerate hardware-configuration.nix for this machine and show the diff",
		Long: `Hardware-config runs nixos-generate-config --show-hardware-config in the recovery
container, with the target's filesystems mounted where they belong and /sys and
/dev visible, so that the output describes this machine, and shows a unified
diff against the target's /etc/nixos/hardware-configuration.nix. --write
replaces that file (a temporary file renamed over it; the old one is kept beside
it with a timestamped suffix). Without --write nothing is written.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			o, err := f.optionsWithoutCommand(cmd, args)
			if err != nil {
				return err
			}
			r, code, err := commands.HardwareConfig(cmd.Context(), commands.HardwareOptions{Options: o.Options, Write: write})
			if r != nil {
				r.ExitStatus = code
				if err != nil {
					r.Error, r.Fix, r.ExitStatus = err.Error(), hint.FixOf(err), exitCodeOf(err)
				}
				if perr := printReport(asJSON, r, writeHardware); perr != nil && err == nil {
					err = perr
				}
				if !asJSON && err == nil {
					o.Log.Info(hardwareSummary(r))
				}
			}
			return exitResult(code, err)
		},
	}
	f.register(cmd, kindContainer)
	cmd.Flags().BoolVar(&write, "write", false, "replace the target's hardware-configuration.nix (the old one is kept)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	return cmd
}

package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/nixrescue/nixrescue/runtime/session"
)

func newHardwareConfigCommand() *cobra.Command {
	var f containerFlags
	var write, asJSON bool
	cmd := &cobra.Command{
		Use:   "hardware-config TARGET [--write] [--json]",
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
			return exitResult(session.HardwareConfig(cmd.Context(), session.HardwareOptions{Options: o, Write: write}, func(r *session.HardwareReport) error {
				if err := printReport(asJSON, r); err != nil || asJSON {
					return err
				}
				fmt.Fprintln(os.Stderr, "nixrescue: "+r.Summary())
				return nil
			}))
		},
	}
	f.register(cmd)
	cmd.Flags().BoolVar(&write, "write", false, "replace the target's hardware-configuration.nix (the old one is kept)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	return cmd
}

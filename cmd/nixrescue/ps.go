package main

import (
	"github.com/spf13/cobra"

	"github.com/nixrescue/nixrescue/runtime/commands"
)

func newPSCommand() *cobra.Command {
	var asJSON bool
	var stateDir string
	cmd := &cobra.Command{
		Use:   "ps [--json]",
		Short: "List the nixrescue sessions running on this host",
		Long: `Ps lists the sessions running on this host, oldest first: each one's id, its
target and what that is on (the disk and its serial number, or the image), the
backend, nixrescue's PID, who started it (the user, and who called sudo), its
command line, since when, and what it is doing (attaching, mounting, running,
booting, tearing down). An image read through qemu-storage-daemon shows its
export: nbd and the kernel's device (/dev/nbdN), or fuse.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := commands.PS(stateDir, grant)
			if err != nil {
				return err
			}
			return printReport(asJSON, r, writePS)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the sessions as JSON")
	cmd.Flags().StringVar(&stateDir, "state-dir", commands.DefaultStateDir, "where session state is kept on the host")
	_ = cmd.Flags().MarkHidden("state-dir")
	return cmd
}

package main

import (
	"github.com/spf13/cobra"

	"github.com/nixrescue/nixrescue/runtime/commands"
)

func newCleanupCommand() *cobra.Command {
	var all, asJSON bool
	var stateDir string
	var b backendFlags
	cmd := &cobra.Command{
		Use:   "cleanup [--all] [--json]",
		Short: "Undo what killed nixrescue sessions left behind",
		Long: `Cleanup finds the sessions whose nixrescue was killed and undoes what they
left: containers and their processes, cgroups, loop devices and partitions,
mount points made in targets, state under /run/nixrescue. Sessions still
running are left alone. --all also removes nixrescue cgroups no session names.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := commands.Cleanup(cmd.Context(), commands.CleanupOptions{StateDir: stateDir, All: all, Backend: b.backend, Address: b.address, Namespace: b.namespace, Policy: grant})
			if err != nil && r.Empty() {
				return err
			}
			if perr := printReport(asJSON, r, writeCleanup); err == nil {
				err = perr
			}
			return err
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "also remove nixrescue cgroups that no session names")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print what was done as JSON")
	cmd.Flags().StringVar(&stateDir, "state-dir", commands.DefaultStateDir, "where session state is kept on the host")
	_ = cmd.Flags().MarkHidden("state-dir")
	b.register(cmd)
	return cmd
}

package main

import (
	"os"

	"github.com/spf13/cobra"

	"github.com/nixrescue/nixrescue/runtime/commands"
)

func newSpecCommand() *cobra.Command {
	var f containerFlags
	var bundle string
	cmd := &cobra.Command{
		Use:   "spec [TARGET] [flags] [--bundle DIR] [-- CMD [ARG...]]",
		Short: "Print the OCI runtime spec of the recovery container, or write a bundle",
		Long: `Spec prints the OCI runtime spec (config.json) nixrescue would use for the
target, without starting anything. With --bundle DIR (for a root mounted at
--root DIR) it writes a bundle (config.json, the resolv.conf and /dev/disk links
it binds) that any OCI runtime can run, e.g. runc run --bundle DIR NAME. With
-- CMD the bundle runs CMD; without it, its first process only holds the
container open for 'runc exec'.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			o, err := f.options(cmd, args)
			if err != nil {
				return err
			}
			b, err := commands.Spec(cmd.Context(), commands.SpecOptions{Options: o.Options, Args: o.Args, Bundle: bundle})
			if err == nil && b != nil {
				_, err = os.Stdout.Write(b)
			}
			return err
		},
	}
	f.register(cmd, kindSession)
	cmd.Flags().StringVar(&bundle, "bundle", "", "write a bundle into `DIR` instead of printing the spec")
	return cmd
}

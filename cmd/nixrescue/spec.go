package main

import (
	"os"

	"github.com/spf13/cobra"

	"github.com/nixrescue/nixrescue/runtime/session"
)

func newSpecCommand() *cobra.Command {
	var f containerFlags
	var bundle string
	cmd := &cobra.Command{
		Use:   "spec [flags] [-- CMD [ARG...]]",
		Short: "Print the OCI runtime spec of the recovery container, or write a bundle",
		Long: `Spec prints the OCI runtime spec (config.json) nixrescue would use for the
mounted NixOS root, without starting anything. With --bundle DIR it writes a
bundle (config.json and the resolv.conf it binds) that any OCI runtime can run,
for example: runc run -b DIR NAME. With -- CMD the bundle runs CMD; without it,
its first process only holds the container open for 'runc exec'.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			o, err := f.options(args)
			if err != nil {
				return err
			}
			return session.WriteSpec(session.SpecOptions{Options: o, Bundle: bundle}, os.Stdout)
		},
	}
	f.register(cmd)
	cmd.Flags().StringVar(&bundle, "bundle", "", "write a bundle into `DIR` instead of printing the spec")
	cmd.Flags().SetInterspersed(false)
	return cmd
}

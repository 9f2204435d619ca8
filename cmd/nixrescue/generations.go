package main

import (
	"github.com/spf13/cobra"

	"github.com/nixrescue/nixrescue/runtime/commands"
)

func newGenerationsCommand() *cobra.Command {
	var f targetFlags
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "generations [TARGET] [--json]",
		Short: "List the system generations, the current one and the bootloader's default",
		Long: `Generations opens TARGET read-only and lists its system generations: number,
date, NixOS version and kernel (as the store paths name them), which is the
current one (*), and which the bootloader boots by default (read from the boot
partition: GRUB's grub.cfg or systemd-boot's loader.conf).`,
		Args: targetArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var o commands.Options
			if err := f.apply(cmd, &o, firstArg(args)); err != nil {
				return err
			}
			r, err := commands.Generations(cmd.Context(), o)
			if err != nil {
				return err
			}
			return printReport(asJSON, r, writeGenerations)
		},
	}
	f.register(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the list as JSON")
	return cmd
}

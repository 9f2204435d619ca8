package main

import (
	"os"

	"github.com/spf13/cobra"

	"github.com/nixrescue/nixrescue/runtime/commands"
)

func newEnterCommand() *cobra.Command {
	var f containerFlags
	var command string
	var silent bool
	cmd := &cobra.Command{
		Use:   "enter [TARGET] [flags] [-- ARGS...]",
		Short: "Open a shell in the recovery container (a drop-in for nixos-enter)",
		Long: `Enter opens TARGET (or the root mounted at --root, default /mnt), activates its
system inside a recovery container and opens its shell (the system's bash, or
/bin/sh when it has none) on a pty. It takes nixos-enter's options: --root,
--system, -c/--command, --silent, and -- ARGS to run a command instead.`,
		Example: `  nixrescue enter /dev/sdb
  nixrescue enter --root /mnt -c 'nixos-rebuild boot'
  nixrescue enter disk.img -- passwd root`,
		RunE: func(cmd *cobra.Command, args []string) error {
			o, err := f.options(cmd, args)
			if err != nil {
				return err
			}
			o.ShellCommand = command
			o.Quiet = o.Quiet || silent
			o.Login = len(o.Args) == 0 && command == ""
			o.Terminal = true
			o.Container.Term = os.Getenv("TERM")
			_, code, err := commands.Run(cmd.Context(), o)
			return exitResult(code, err)
		},
	}
	f.register(cmd, kindContainer)
	cmd.Flags().StringVarP(&command, "command", "c", "", "run `STRING` with the target's shell instead of an interactive shell")
	cmd.Flags().BoolVar(&silent, "silent", false, "same as --quiet (nixos-enter's name)")
	return cmd
}

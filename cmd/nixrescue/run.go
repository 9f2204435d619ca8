package main

import (
	"context"
	"errors"

	"github.com/spf13/cobra"

	"github.com/nixrescue/nixrescue/runtime/session"
)

func newRunCommand() *cobra.Command {
	var f containerFlags
	cmd := &cobra.Command{
		Use:   "run [flags] -- CMD [ARG...]",
		Short: "Run a command in the recovery container of a mounted NixOS root",
		Long: `Run activates the target's system inside a recovery container (unless
--no-activate), then runs CMD there, and exits with CMD's exit status.
nixrescue's own failures exit 125; 126 means CMD could not be run, 127 that it
does not exist in the target.`,
		Example: `  nixrescue run --root /mnt -- nixos-rebuild boot
  nixrescue run --root /mnt --generation 41 --quiet -- cat /etc/os-release`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return errors.New("run needs a command: nixrescue run --root DIR -- CMD [ARG...]")
			}
			o, err := f.options(args)
			if err != nil {
				return err
			}
			return runSession(cmd.Context(), o)
		},
	}
	f.register(cmd)
	cmd.Flags().SetInterspersed(false)
	return cmd
}

// runSession runs a session and turns its outcome into an exit status.
func runSession(ctx context.Context, o session.Options) error {
	if ctx == nil {
		ctx = context.Background()
	}
	code, err := session.Run(ctx, o)
	if err != nil {
		return err
	}
	if code != 0 {
		return exitStatus(code)
	}
	return nil
}

package main

import (
	"errors"
	"os"

	"github.com/spf13/cobra"

	"github.com/nixrescue/nixrescue/runtime/commands"
)

func newRunCommand() *cobra.Command {
	var f containerFlags
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "run [TARGET] [flags] -- CMD [ARG...]",
		Short: "Run a command in the recovery container of a NixOS target",
		Long: `Run opens TARGET (a disk, a partition, a disk image, or a directory where the
NixOS root is mounted; --root DIR when no TARGET is given), mounts it as its own
fstab says, activates its system inside a recovery container (unless
--no-activate), runs CMD there, tears everything down, and exits with CMD's
exit status. nixrescue's own failures exit 125; 126 means CMD could not be run,
127 that it does not exist in the target.`,
		Example: `  nixrescue run /dev/sdb -- nixos-rebuild boot
  nixrescue run disk.img --read-only -- cat /etc/os-release
  nixrescue run --root /mnt --generation 41 --quiet -- ls /boot`,
		RunE: func(cmd *cobra.Command, args []string) error {
			o, err := f.options(cmd, args)
			if err != nil {
				return err
			}
			if len(o.Args) == 0 {
				return errors.New("run needs a command: nixrescue run TARGET -- CMD [ARG...]")
			}
			if asJSON {
				// stdout is the report's; the command's output goes to stderr.
				o.Stdout = os.Stderr
			}
			rep, code, err := commands.Run(cmd.Context(), o)
			return endSession(asJSON, o.Log, rep, code, err, nil)
		},
	}
	f.register(cmd, kindContainer)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a report (backend, generations, per-phase durations) as JSON on stdout once done; the command's output goes to stderr")
	return cmd
}

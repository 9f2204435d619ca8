package main

import (
	"encoding/json"
	"os"

	"github.com/spf13/cobra"

	"github.com/nixrescue/nixrescue/runtime/session"
)

func newGenerationsCommand() *cobra.Command {
	var f targetFlags
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "generations TARGET [--json]",
		Short: "List the system generations, the current one and the bootloader's default",
		Long: `Generations opens TARGET read-only and lists its system generations: number,
date, NixOS version and kernel (as the store paths name them), which is the
current one (*), and which the bootloader boots by default (read from the boot
partition: GRUB's grub.cfg or systemd-boot's loader.conf).`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var o session.Options
			if err := f.apply(cmd, &o, firstArg(args)); err != nil {
				return err
			}
			return exitResult(session.Generations(cmd.Context(), o, func(r *session.GenerationsReport) error {
				if asJSON {
					return writeJSON(r)
				}
				return r.WriteText(os.Stdout)
			}))
		},
	}
	f.register(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the list as JSON")
	return cmd
}

func newRollbackCommand() *cobra.Command {
	var f containerFlags
	var to int
	cmd := &cobra.Command{
		Use:   "rollback TARGET [--to N]",
		Short: "Make an older generation the one that boots",
		Long: `Rollback points the system profile at generation N (default: the one before
the current), as nix-env --switch-generation does, then runs that generation's
switch-to-configuration boot in the recovery container, so that the
bootloader's default follows. A generation whose system is gone from the store,
or a profile that is not a NixOS system profile, is refused; if
switch-to-configuration fails, the profile is pointed back where it was.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			o, err := f.options(cmd, args)
			if err != nil {
				return err
			}
			if len(o.Args) > 0 {
				return errUsage("rollback takes no command")
			}
			if to < 0 {
				return errUsage("--to N: generations are numbered from 1")
			}
			return exitResult(session.Rollback(cmd.Context(), session.RollbackOptions{Options: o, To: to}))
		},
	}
	f.register(cmd)
	cmd.Flags().IntVar(&to, "to", 0, "roll back to generation `N` (default: the one before the current)")
	return cmd
}

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
			o, err := f.options(cmd, args)
			if err != nil {
				return err
			}
			if len(o.Args) > 0 {
				return errUsage("hardware-config takes no command")
			}
			return exitResult(session.HardwareConfig(cmd.Context(), session.HardwareOptions{Options: o, Write: write}, func(r *session.HardwareReport) error {
				if asJSON {
					return writeJSON(r)
				}
				switch {
				case !r.Changed:
					os.Stderr.WriteString("nixrescue: no change: " + r.Path + " already describes this machine; nothing written\n")
				case r.Written:
					os.Stdout.WriteString(r.Diff)
					os.Stderr.WriteString("nixrescue: wrote " + r.Path + "; the old one is " + r.Backup + "\n")
				default:
					os.Stdout.WriteString(r.Diff)
					os.Stderr.WriteString("nixrescue: nothing written; pass --write to replace " + r.Path + "\n")
				}
				return nil
			}))
		},
	}
	f.register(cmd)
	cmd.Flags().BoolVar(&write, "write", false, "replace the target's hardware-configuration.nix (the old one is kept)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	return cmd
}

func firstArg(args []string) string {
	if len(args) > 0 {
		return args[0]
	}
	return ""
}

func writeJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

type usageError string

func (e usageError) Error() string { return string(e) }

func errUsage(s string) error { return usageError(s) }

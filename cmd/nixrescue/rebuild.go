package main

import (
	"os"

	"github.com/spf13/cobra"

	"github.com/nixrescue/nixrescue/runtime/commands"
)

func newRebuildCommand() *cobra.Command {
	var f containerFlags
	var noInstall, asJSON, bootTest, dryRun bool
	var b bootTestFlags
	var sandbox, flake string
	cmd := &cobra.Command{
		Use:   "rebuild [TARGET] [flags] [-- EXTRA nixos-rebuild ARGS]",
		Short: "Run nixos-rebuild boot --install-bootloader in the recovery container",
		Long: `Rebuild opens TARGET, activates its system in a recovery container and runs
nixos-rebuild boot --install-bootloader there (with NIXOS_INSTALL_BOOTLOADER=1),
its output streamed, and exits with its status: what makes a NixOS machine boot
again after its configuration was fixed.

The disk names the configuration gives the boot disk (boot.loader.grub.device,
as the target machine saw it, e.g. /dev/sda) are made to lead to the target's
own disk inside the container, whatever this host calls it; a name that cannot
be mapped stops the rebuild before anything runs (--disk-alias adds a name).

Nix's build sandbox stays on when it can work in the container (--sandbox
auto, the default, finds out); otherwise the build runs with sandbox = false for
this session only (NIX_CONFIG), and says so. /etc/nix/nix.conf is never edited.

When the target's configuration is a flake (/etc/nixos/flake.nix), the rebuild
builds it as nixos-rebuild would, nixosConfigurations.HOSTNAME with the
target's hostname, says so and passes --flake REF#NAME explicitly; --flake
builds another. Flakes' experimental features are turned on for this session
only when the target's nix.conf does not turn them on.`,
		Example: `  nixrescue rebuild /dev/sdb
  nixrescue rebuild disk.img --json
  nixrescue rebuild /dev/sdb --flake /etc/nixos#laptop
  nixrescue rebuild /dev/sdb --disk-alias /dev/sda -- --option substituters ''`,
		RunE: func(cmd *cobra.Command, args []string) error {
			o, err := f.options(cmd, args)
			if err != nil {
				return err
			}
			ro := commands.RebuildOptions{RunOptions: o, NoInstallBootloader: noInstall, Extra: o.Args, Flake: flake}
			if bootTest {
				bo, err := b.options(o.Options, 0)
				if err != nil {
					return err
				}
				ro.BootTest = &bo
			}
			ro.Args = nil
			ro.Sandbox = commands.SandboxMode(sandbox)
			if dryRun {
				r, err := commands.RebuildPlan(cmd.Context(), ro)
				if err != nil {
					return err
				}
				return printReport(asJSON, r, writeDryRun)
			}
			if asJSON {
				// stdout is the report's; the rebuild's output goes to stderr.
				ro.Stdout = os.Stderr
			}
			rep, code, err := commands.Rebuild(cmd.Context(), ro)
			if !asJSON && rep != nil && rep.BootTest != nil {
				if perr := writeBootTest(os.Stdout, rep.BootTest); err == nil {
					err = perr
				}
			}
			return endSession(asJSON, o.Log, rep, code, err, rebuildSummary)
		},
	}
	f.register(cmd, kindContainer)
	cmd.Flags().BoolVar(&noInstall, "no-install-bootloader", false, "run nixos-rebuild boot without --install-bootloader")
	cmd.Flags().StringVar(&flake, "flake", "", "build this flake (REF or REF#NAME, paths as the target sees them) instead of the target's own /etc/nixos/flake.nix or configuration.nix")
	cmd.Flags().StringVar(&sandbox, "sandbox", "auto", "Nix's build sandbox: auto (on when it can work here), on or off")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a report as JSON on stdout once done (the rebuild's output goes to stderr)")
	cmd.Flags().BoolVar(&bootTest, "boot-test", false, "once the rebuild succeeded, boot the target in a throwaway VM (as nixrescue boot-test; its flags below); the exit status is then the boot test's")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "say what the rebuild would do (the mount plan, what it builds, the generation that would boot, the bootloader and where it goes), having run nothing and written nothing")
	b.register(cmd, "boot-memory")
	return cmd
}

package main

import (
	"os"

	"github.com/spf13/cobra"

	"github.com/nixrescue/nixrescue/runtime/commands"
)

func newRollbackCommand() *cobra.Command {
	var f containerFlags
	var to int
	var asJSON, dryRun bool
	cmd := &cobra.Command{
		Use:   "rollback [TARGET] [--to N]",
		Short: "Make an older generation the one that boots",
		Long: `Rollback points the system profile at generation N (default: the one before
the current), as nix-env --switch-generation does, then runs that generation's
switch-to-configuration boot in the recovery container, so that the
bootloader's default follows. A generation whose system is gone from the store,
or a profile that is not a NixOS system profile, is refused; if
switch-to-configuration fails, the profile is pointed back where it was.
--generation N is --to N (as nixrescue doctor --boot-test proposes it).`,
		RunE: func(cmd *cobra.Command, args []string) error {
			o, err := f.optionsWithoutCommand(cmd, args)
			if err != nil {
				return err
			}
			if asJSON {
				// stdout is the report's; switch-to-configuration's output
				// goes to stderr.
				o.Stdout = os.Stderr
			}
			ro := commands.RollbackOptions{Options: o.Options, To: to}
			if dryRun {
				r, err := commands.RollbackPlan(cmd.Context(), ro)
				if err != nil {
					return err
				}
				return printReport(asJSON, r, writeDryRun)
			}
			rep, code, err := commands.Rollback(cmd.Context(), ro)
			return endSession(asJSON, o.Log, rep, code, err, rollbackSummary)
		},
	}
	f.register(cmd, kindContainer)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a report (generations before and after, the bootloader) as JSON on stdout once done; switch-to-configuration's output goes to stderr")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "say what the rollback would do (the mount plan, the generation that would boot, the bootloader), having run nothing and written nothing")
	cmd.Flags().IntVar(&to, "to", 0, "roll back to generation `N` (default: the one before the current)")
	return cmd
}

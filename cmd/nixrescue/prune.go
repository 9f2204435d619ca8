package main

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/nixrescue/nixrescue/runtime/commands"
	"github.com/nixrescue/nixrescue/runtime/doctor"
)

func newPruneCommand() *cobra.Command {
	var f containerFlags
	var keep int
	var asJSON, dryRun bool
	cmd := &cobra.Command{
		Use:   "prune [TARGET] [--keep N] [--dry-run] [--json]",
		Short: "Free /boot: delete old generations, and the kernels and initrds no kept entry names",
		Long: `Prune frees /boot (or the ESP) the way that works when it is full, where a
rebuild cannot: it deletes the system generations older than the newest N
(never the current one nor the bootloader's default), runs the current
system's switch-to-configuration boot in the recovery container (its own
installer rewrites the boot menu; nothing is built), then removes the kernels
and initrds that no kept entry names. When /boot has no room even for the
installer's writes, those files are moved onto the root filesystem first and
removed after. If the installer fails, the generations and the files are put
back. A file a kept entry names is never removed. The deleted generations'
systems stay in the store until garbage collection
(nixrescue run TARGET -- nix-collect-garbage).`,
		Example: `  nixrescue prune /dev/sda --keep 2 --dry-run
  nixrescue prune vm.qcow2 --keep 3 --json`,
		RunE: func(cmd *cobra.Command, args []string) error {
			o, err := f.optionsWithoutCommand(cmd, args)
			if err != nil {
				return err
			}
			if asJSON {
				o.Stdout = os.Stderr
			}
			r, code, err := commands.Prune(cmd.Context(), commands.PruneOptions{Options: o.Options, Keep: keep, DryRun: dryRun})
			if r != nil && err == nil {
				if perr := printReport(asJSON, r, writePrune); perr != nil {
					return perr
				}
			}
			return exitResult(code, err)
		},
	}
	f.register(cmd, kindContainer)
	cmd.Flags().IntVar(&keep, "keep", commands.DefaultKeep, "keep the newest `N` generations (and the current one, and the bootloader's default)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "say what would be deleted and freed, having changed nothing")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON on stdout; switch-to-configuration's output goes to stderr")
	return cmd
}

// writePrune says for people what prune did or would do.
func writePrune(w io.Writer, r *commands.PruneReport) error {
	verb, freed := "deleted", "freed"
	if r.DryRun {
		verb, freed = "would delete", "would free"
	}
	del := "no generation"
	if len(r.Plan.Delete) > 0 {
		del = "generations " + ints(r.Plan.Delete)
	}
	fmt.Fprintf(w, "%s %s; kept %s\n", verb, del, ints(r.Plan.Kept))
	files := r.Removed
	if r.DryRun {
		files = r.Plan.Unreferenced
	}
	for _, f := range files {
		fmt.Fprintf(w, "  %s %s\n", map[bool]string{true: "would remove", false: "removed"}[r.DryRun], f)
	}
	if r.MovedAside {
		fmt.Fprintln(w, "(/boot had no room for the installer: those files were moved onto the root filesystem first)")
	}
	n := r.Freed
	if n < 0 {
		n = 0
	}
	fmt.Fprintf(w, "%s %s on /boot: %s free now\n", freed, doctor.MiB(uint64(n)), doctor.MiB(r.BootFreeAfter))
	return nil
}

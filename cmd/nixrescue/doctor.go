package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/nixrescue/nixrescue/runtime/commands"
	"github.com/nixrescue/nixrescue/runtime/doctor"
	"github.com/nixrescue/nixrescue/runtime/hint"
)

func newDoctorCommand() *cobra.Command {
	var f targetFlags
	var b bootTestFlags
	var asJSON, bootTest bool
	cmd := &cobra.Command{
		Use:   "doctor [TARGET] [--json] [--boot-test]",
		Short: "Say why the target does not boot, and the commands that fix it",
		Long: `Doctor opens TARGET read-only, as inspect does, and checks what leaves a NixOS
machine unbootable or unrepairable: fstab entries (and LUKS devices) that name
a filesystem that is gone, filesystems flagged with errors, a current system
that is not whole, the bootloader (GRUB's boot code on the disk, the loader on
the ESP, its menu), menu entries naming kernels or initrds that are not on
/boot, the room on /boot for the next rebuild's kernel and initrd, on a host
booted by EFI the firmware's boot entry for this disk's ESP, the free space of
/ and /nix, and a configuration to rebuild from. It runs nothing in the target
and writes nothing. Each finding has an id, a severity (fatal, warning,
info), the evidence read, and the command lines that fix it.

--boot-test also boots the default generation in a throwaway VM (as
nixrescue boot-test; its flags below) and, when it fails, the older ones,
newest first, until one boots: that one is the rollback to make.

Exit status: 0 when nothing is fatal, 1 when something is, 125 when doctor
could not look.`,
		Example: `  nixrescue doctor /dev/sda
  nixrescue doctor vm.qcow2 --boot-test --json`,
		Args: targetArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var o commands.Options
			if err := f.apply(cmd, &o, firstArg(args)); err != nil {
				return err
			}
			do := commands.DoctorOptions{Options: o, BootTest: bootTest}
			if bootTest {
				bo, err := b.options(o, 0)
				if err != nil {
					return err
				}
				do.Boot = bo
			}
			r, err := commands.Doctor(cmd.Context(), do)
			if err != nil {
				return err
			}
			// The fixes are to paste: worded with this front end's flags,
			// in JSON too.
			for i := range r.Findings {
				fd := &r.Findings[i]
				fd.Summary = hint.Render(fd.Summary)
				for j := range fd.Fix {
					fd.Fix[j] = hint.Render(fd.Fix[j])
				}
			}
			if err := printReport(asJSON, r, writeDoctor); err != nil {
				return err
			}
			if r.Fatal {
				return exitStatus(1)
			}
			return nil
		},
	}
	f.register(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the findings as JSON")
	cmd.Flags().BoolVar(&bootTest, "boot-test", false, "boot the default generation too, and the older ones when it fails, in a throwaway VM")
	b.register(cmd, "boot-memory")
	return cmd
}

// writeDoctor says for people what doctor found, gravest first, each
// finding's evidence and fix under it.
func writeDoctor(w io.Writer, r *commands.DoctorReport) error {
	for _, b := range r.Boots {
		state := "did not boot: stopped at " + string(b.Reached)
		if b.Passed {
			state = "boots (" + string(b.Reached) + ")"
		}
		fmt.Fprintf(w, "boot test: generation %d %s\n", b.Generation, state)
	}
	if len(r.Findings) == 0 {
		fmt.Fprintf(w, "nothing found: %s\n", strings.Join(r.Checks, ", "))
		return nil
	}
	for _, fd := range r.Findings {
		fmt.Fprintf(w, "%s [%s] %s\n", strings.ToUpper(string(fd.Severity)), fd.ID, fd.Summary)
		for _, e := range fd.Evidence {
			fmt.Fprintf(w, "    %s\n", e)
		}
		for i, c := range fd.Fix {
			lead := "  fix: "
			if i > 0 {
				lead = "  then: "
			}
			fmt.Fprintf(w, "%s%s\n", lead, c)
		}
	}
	fatal, warnings := 0, 0
	for _, fd := range r.Findings {
		switch fd.Severity {
		case doctor.Fatal:
			fatal++
		case doctor.Warning:
			warnings++
		}
	}
	fmt.Fprintf(w, "%d fatal, %d warnings (checked: %s)\n", fatal, warnings, strings.Join(r.Checks, ", "))
	return nil
}

package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	units "github.com/docker/go-units"
	"github.com/spf13/cobra"

	"github.com/nixrescue/nixrescue/runtime/commands"
	"github.com/nixrescue/nixrescue/runtime/hint"
)

// bootTestFlags are boot-test's own, and rebuild --boot-test's.
type bootTestFlags struct {
	firmware, until, console, memory, accel string
	timeout                                 time.Duration
}

// register adds the flags; memory is the name of the VM memory's flag
// (rebuild has --memory for its container).
func (b *bootTestFlags) register(cmd *cobra.Command, memory string) {
	fl := cmd.Flags()
	fl.StringVar(&b.firmware, "firmware", "auto", "the VM's firmware: auto (as the bootloader needs: SeaBIOS for GRUB on BIOS, OVMF or AAVMF for systemd-boot and GRUB on EFI, U-Boot for extlinux), efi, bios (x86_64) or u-boot (aarch64)")
	fl.DurationVar(&b.timeout, "timeout", commands.DefaultBootTimeout, "give up after this long")
	fl.StringVar(&b.until, "until", string(commands.MultiUser), "the milestone that passes the test: stage-1, root, stage-2 or multi-user")
	fl.StringVar(&b.console, "console", "", "keep the serial console in `FILE`")
	fl.StringVar(&b.accel, "accel", "auto", "qemu's accelerator: auto (KVM when it works here, found by trying; else software emulation), kvm or tcg")
	fl.StringVar(&b.memory, memory, "1G", "the VM's memory (`SIZE`)")
}

// options makes boot-test's options from its flags and the target's.
func (b *bootTestFlags) options(o commands.Options, generation int) (commands.BootTestOptions, error) {
	mem, err := units.RAMInBytes(b.memory)
	if err != nil {
		return commands.BootTestOptions{}, hint.Errorf("{BootMemory %s}: give a size such as 1G or 512M", b.memory)
	}
	return commands.BootTestOptions{Options: o, Generation: generation, Firmware: b.firmware, Timeout: b.timeout,
		Until: commands.Milestone(b.until), ConsoleFile: b.console, MemoryMiB: int(mem >> 20), Accel: b.accel}, nil
}

func newBootTestCommand() *cobra.Command {
	var f targetFlags
	var b bootTestFlags
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "boot-test [TARGET] [flags]",
		Short: "Boot the target in a throwaway VM and say how far it got",
		Long: `Boot-test boots TARGET (a disk or an image) in qemu, through its own firmware
and bootloader, on a snapshot: the target is never written. The machine is of
the system's architecture: x86_64 (qemu-system-x86, SeaBIOS or OVMF) or
aarch64 (qemu-system-arm's virt board, AAVMF or U-Boot). In the snapshot
only, the bootloader's entry (the default, or --generation N's) gets the
architecture's serial console (console=ttyS0, ttyAMA0) and GRUB a serial
terminal, so that everything speaks on the serial console, where nixrescue reads the milestones of a NixOS boot: firmware,
bootloader, kernel, stage-1, root (mounted), stage-2, multi-user. It stops at
--until (then powers the VM off), at a failure that ends the boot (stage 1's
error, a panic, emergency mode), or at the timeout, and reports the entry and
generation booted, the milestone reached and when, the failure's console lines
and the units that failed. KVM is used when it works, else software emulation.

Exit status: 0 when --until was reached, 1 when not, 125 when the test could
not run.`,
		Example: `  nixrescue boot-test /dev/sdb
  nixrescue boot-test vm.qcow2 --generation 41 --console boot.log --json`,
		Args: targetArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var o commands.Options
			if err := f.apply(cmd, &o, firstArg(args)); err != nil {
				return err
			}
			bo, err := b.options(o, f.gen)
			if err != nil {
				return err
			}
			r, code, err := commands.BootTest(cmd.Context(), bo)
			if err != nil {
				return err
			}
			if err := printReport(asJSON, r, writeBootTest); err != nil {
				return err
			}
			return exitResult(code, nil)
		},
	}
	f.register(cmd)
	b.register(cmd, "memory")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	return cmd
}

// writeBootTest writes a boot test's report for people.
func writeBootTest(w io.Writer, r *commands.BootTestReport) error {
	verdict := "passed"
	if !r.Passed {
		verdict = "FAILED"
	}
	fmt.Fprintf(w, "boot test %s: reached %s (wanted %s) in %.1f s\n", verdict, dash(string(r.Reached)), r.Until, r.DurationMS/1000)
	fmt.Fprintf(w, "firmware: %s (%s); disk on %s (%s)\n", r.Firmware, r.Accel, r.Interface, r.InterfaceWhy)
	if r.Booted != nil {
		fmt.Fprintf(w, "bootloader: %s, entry %q: generation %d (%s)\n", r.Bootloader.Kind, r.Entry, r.Booted.Generation, r.Booted.System)
	}
	var ms []string
	for _, m := range r.Milestones {
		ms = append(ms, fmt.Sprintf("%s %.1f s", m.Name, m.MS/1000))
	}
	fmt.Fprintf(w, "milestones: %s\n", strings.Join(ms, ", "))
	for _, u := range r.FailedUnits {
		fmt.Fprintf(w, "failed unit: %s\n", u)
	}
	for _, l := range r.Failure {
		fmt.Fprintf(w, "console: %s\n", l)
	}
	if r.Console != "" {
		fmt.Fprintf(w, "the console is in %s\n", r.Console)
	}
	return nil
}

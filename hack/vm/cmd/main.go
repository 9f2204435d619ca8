// Command vm boots the rescue host in a VM and runs a script there, or
// boots a machine's disks, and prints what it printed:
//
//	go run ./hack/vm/cmd -nixrescue BIN [-ovmf] [-vars FILE] -disk IMG[:virtio|nvme|ahci]… rescue SCRIPT
//	go run ./hack/vm/cmd [-ovmf] [-vars FILE] -disk IMG… boot
//	go run ./hack/vm/cmd -arch arm64 [-uboot] … (qemu's virt board, AAVMF or U-Boot; an arm64 BIN)
//
// The exit status is the script's (rescue), or 1 when the machine timed
// out or qemu failed.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nixrescue/nixrescue/hack/debs"
	"github.com/nixrescue/nixrescue/hack/vm"
)

type disks []vm.Disk

func (d *disks) String() string { return fmt.Sprint(*d) }
func (d *disks) Set(v string) error {
	path, iface, _ := strings.Cut(v, ":")
	*d = append(*d, vm.Disk{Path: path, Interface: iface})
	return nil
}

func main() {
	var m vm.Machine
	var ds disks
	ovmf := flag.Bool("ovmf", false, "boot by UEFI (OVMF) instead of BIOS (SeaBIOS)")
	flag.StringVar(&m.Vars, "vars", "", "OVMF's variable store, kept (made from Debian's template when missing)")
	flag.Var(&ds, "disk", "a disk image, raw, with :virtio (default), :nvme or :ahci (repeat)")
	flag.DurationVar(&m.Timeout, "timeout", 5*time.Minute, "end the machine after this long")
	nixrescue := flag.String("nixrescue", "", "the static nixrescue for the rescue host (rescue)")
	arch := flag.String("arch", "amd64", "the machine's architecture: amd64, or arm64 (qemu's virt board, AAVMF unless -uboot)")
	uboot := flag.Bool("uboot", false, "arm64: boot by U-Boot instead of UEFI (AAVMF)")
	flag.Parse()
	m.Disks = ds
	switch {
	case *arch == "arm64":
		m.Arch, m.Firmware = debs.Arm64, vm.AAVMF
		if *uboot {
			m.Firmware = vm.UBoot
		}
	case *arch != "amd64":
		fmt.Fprintf(os.Stderr, "vm: -arch %s: use amd64 or arm64\n", *arch)
		os.Exit(2)
	case *ovmf:
		m.Firmware = vm.OVMF
	}
	ctx := context.Background()
	var r vm.Result
	var err error
	switch {
	case flag.NArg() == 2 && flag.Arg(0) == "rescue":
		r, err = rescue(ctx, m, *nixrescue, flag.Arg(1))
	case flag.NArg() == 1 && flag.Arg(0) == "boot":
		r, err = m.Boot(ctx)
	default:
		fmt.Fprintln(os.Stderr, "usage: vm [-ovmf] [-vars FILE] -disk IMG… {rescue SCRIPT | boot} (-nixrescue BIN for rescue)")
		os.Exit(2)
	}
	fmt.Print(r.Output)
	if err != nil {
		fmt.Fprintln(os.Stderr, "vm:", err)
		os.Exit(1)
	}
	if r.TimedOut {
		fmt.Fprintf(os.Stderr, "vm: no end after %s; the console said:\n%s\n", m.Timeout, r.Console)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "vm: %.1f s\n", r.Elapsed.Seconds())
	if r.ExitStatus > 0 {
		os.Exit(r.ExitStatus)
	}
}

func rescue(ctx context.Context, m vm.Machine, nixrescue, script string) (vm.Result, error) {
	if nixrescue == "" {
		return vm.Result{}, fmt.Errorf("rescue needs -nixrescue BIN (hack/lib.sh's build_static makes one)")
	}
	s, err := os.ReadFile(script)
	if err != nil {
		return vm.Result{}, err
	}
	a := m.Arch
	if a.Name == "" {
		a = debs.Native
	}
	k, err := vm.DebianKernelFor(a)
	if err != nil {
		return vm.Result{}, err
	}
	dir, err := os.MkdirTemp("", "nixrescue-vm-cmd-")
	if err != nil {
		return vm.Result{}, err
	}
	defer os.RemoveAll(dir)
	ir := filepath.Join(dir, "initramfs.cpio.gz")
	if err := vm.BuildInitramfs(k, vm.InitramfsOptions{Nixrescue: nixrescue}, ir); err != nil {
		return vm.Result{}, err
	}
	r, err := m.Rescue(ctx, k, ir, string(s))
	if r.ExitStatus < 0 && err == nil && !r.TimedOut {
		fmt.Fprintf(os.Stderr, "vm: the script reported no exit status; the console said:\n%s\n", r.Console)
	}
	return r, err
}

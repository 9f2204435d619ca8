// Package vm runs nixrescue's second rescue host, a VM, and boots repaired
// disks. This machine's kernel has no vfat, device-mapper or nbd and did
// not boot by EFI; a distribution kernel under qemu has all of them. The
// rescue host is Debian's own kernel (hack/install-deps downloads it) with
// an initramfs this package builds (BuildInitramfs): nixrescue's / is then
// an initramfs, its disks are virtio (or NVMe, or AHCI) disks whose
// partitions the kernel scanned, cgroup2 is the only cgroup hierarchy,
// and under OVMF the host booted by EFI, with efivarfs.
//
// Machine.Rescue boots the rescue host and runs a script in it;
// Machine.Boot boots the machine's disks through its firmware, the proof
// that a repaired disk boots. Both are software-emulated (TCG): KVM
// hangs a kernel on this project's CI machines. The command (go run
// ./hack/vm/cmd) does both by hand.
package vm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"time"

	"github.com/nixrescue/nixrescue/hack/debs"
	"github.com/nixrescue/nixrescue/runtime/boottest"
)

// Firmware is the machine's: SeaBIOS (BIOS) or OVMF (UEFI) on x86_64,
// AAVMF (UEFI) or U-Boot on aarch64.
type Firmware string

const (
	SeaBIOS Firmware = "seabios"
	OVMF    Firmware = "ovmf"
	AAVMF   Firmware = "aavmf"
	UBoot   Firmware = "u-boot"
)

// Disk is a disk image attached to the machine.
type Disk struct {
	Path string
	// Format is qemu's name of its format; default raw.
	Format string
	// Interface is virtio (the default), nvme or ahci.
	Interface string
}

// Machine is a VM's hardware.
type Machine struct {
	// Arch is its architecture: this host's (a PC), or arm64 (qemu's
	// virt board, a Cortex-A57).
	Arch     debs.Arch
	Firmware Firmware // default SeaBIOS (AAVMF on arm64)
	// Vars is OVMF's variable store (NVRAM): a file the machine reads and
	// writes, made from Debian's template when it does not exist, so that
	// a second machine can boot through the entries a first one made.
	// Empty: a fresh copy, thrown away after.
	Vars      string
	Disks     []Disk
	MemoryMiB int           // default 1024
	Timeout   time.Duration // default 5 minutes
}

// Result is what a machine printed.
type Result struct {
	// Output is the rescue script's output (its own serial port); for
	// Boot, the console.
	Output string
	// Console is the first serial port: firmware, bootloader, kernel.
	Console string
	// ExitStatus is the rescue script's, -1 when it reported none.
	ExitStatus int
	TimedOut   bool
	Elapsed    time.Duration
}

// Rescue boots the rescue host (kernel k, initramfs) on the machine and
// runs script there with sh; the machine powers off after it.
func (m Machine) Rescue(ctx context.Context, k *Kernel, initramfs, script string) (Result, error) {
	work, err := os.MkdirTemp("", "nixrescue-vm-")
	if err != nil {
		return Result{}, err
	}
	defer os.RemoveAll(work)
	initrd, err := withScript(work, initramfs, script)
	if err != nil {
		return Result{}, err
	}
	args := []string{"-kernel", k.Image, "-initrd", initrd,
		"-append", fmt.Sprintf("console=%s panic=-1 quiet loglevel=3 nixrescue.disks=%d", m.platform().Console, len(m.Disks))}
	return m.run(ctx, work, args, true)
}

// Boot boots the machine from its disks through its firmware, until it
// powers off, halts or times out.
func (m Machine) Boot(ctx context.Context) (Result, error) {
	work, err := os.MkdirTemp("", "nixrescue-vm-")
	if err != nil {
		return Result{}, err
	}
	defer os.RemoveAll(work)
	return m.run(ctx, work, nil, false)
}

// exitRE is the line /init writes after the script.
var exitRE = regexp.MustCompile(`(?m)^NIXRESCUE-VM-EXIT=(\d+)\s*$`)

// ansiRE matches terminal escape sequences firmware and GRUB send.
var ansiRE = regexp.MustCompile(`\x1b\[[0-9;?=]*[A-Za-z]|\x1b[()][A-Z0-9]|\r`)

func (m Machine) run(ctx context.Context, work string, extra []string, rescue bool) (Result, error) {
	name := m.platform().Qemu
	qemu, err := exec.LookPath(name)
	if err != nil {
		return Result{}, fmt.Errorf("%s is not installed: run hack/install-deps", name)
	}
	args, err := m.args(work)
	if err != nil {
		return Result{}, err
	}
	console, output := filepath.Join(work, "console"), filepath.Join(work, "output")
	args = append(args, "-serial", "file:"+console)
	switch {
	case rescue && m.arm():
		// The virt board has one UART: the script speaks on a virtio
		// console (hvc0), which the rescue host's init knows.
		args = append(args, "-device", "virtio-serial-pci", "-chardev", "file,id=output,path="+output, "-device", "virtconsole,chardev=output")
	case rescue:
		args = append(args, "-serial", "file:"+output)
	}
	args = append(args, extra...)
	timeout := m.Timeout
	if timeout == 0 {
		timeout = 5 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, qemu, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	err = cmd.Run()
	r := Result{Elapsed: time.Since(start), ExitStatus: -1}
	c, _ := os.ReadFile(console)
	r.Console = ansiRE.ReplaceAllString(string(c), "")
	r.Output = r.Console
	if rescue {
		o, _ := os.ReadFile(output)
		r.Output = ansiRE.ReplaceAllString(string(o), "")
		if mm := exitRE.FindAllStringSubmatch(r.Output, -1); mm != nil {
			r.ExitStatus, _ = strconv.Atoi(mm[len(mm)-1][1])
		}
	}
	if ctx.Err() != nil {
		r.TimedOut = true
		return r, nil
	}
	if err != nil {
		return r, fmt.Errorf("qemu: %v: %s", err, bytes.TrimSpace(stderr.Bytes()))
	}
	return r, nil
}

// args are qemu's for the machine's hardware: i440fx, one CPU, no
// network, no display, no reboot (a reboot or a panic ends qemu).
func (m Machine) args(work string) ([]string, error) {
	mem := m.MemoryMiB
	if mem == 0 {
		mem = 1024
	}
	pf := m.platform()
	args := []string{"-machine", pf.Machine, "-m", strconv.Itoa(mem), "-smp", "1", "-display", "none",
		"-monitor", "none", "-nic", "none", "-no-reboot", "-nodefaults"}
	if pf.CPU != "" {
		args = append(args, "-cpu", pf.CPU)
	}
	fw, err := m.firmwareArgs(work)
	if err != nil {
		return nil, err
	}
	args = append(args, fw...)
	ahci := false
	for i, d := range m.Disks {
		id := fmt.Sprintf("disk%d", i)
		format := d.Format
		if format == "" {
			format = "raw"
		}
		drive := fmt.Sprintf("if=none,id=%s,format=%s,file=%s", id, format, d.Path)
		switch d.Interface {
		case "", "virtio":
			args = append(args, "-drive", drive, "-device", "virtio-blk-pci,drive="+id)
		case "nvme":
			args = append(args, "-drive", drive, "-device", fmt.Sprintf("nvme,drive=%s,serial=nixrescue%d", id, i))
		case "ahci":
			if !ahci {
				args = append(args, "-device", "ahci,id=ahci")
				ahci = true
			}
			args = append(args, "-drive", drive, "-device", fmt.Sprintf("ide-hd,drive=%s,bus=ahci.%d", id, i))
		default:
			return nil, fmt.Errorf("disk interface %q: use virtio, nvme or ahci", d.Interface)
		}
	}
	return args, nil
}

// arm tells whether m is an aarch64 machine.
func (m Machine) arm() bool { return m.Arch.Qemu != "" }

// platform is what boot-test knows of m's architecture (qemu, machine
// type, CPU, console, firmware files): one table for both.
func (m Machine) platform() boottest.Platform {
	pf, _ := boottest.PlatformOf(m.Arch.Nix)
	return pf
}

// firmwareArgs are qemu's for m's firmware: UEFI's code and a variable
// store (m.Vars, or a fresh one in work), U-Boot's image, or none
// (SeaBIOS, qemu's own).
func (m Machine) firmwareArgs(work string) ([]string, error) {
	fw := m.Firmware
	if fw == "" {
		fw = map[bool]Firmware{false: SeaBIOS, true: AAVMF}[m.arm()]
	}
	pf := m.platform()
	switch {
	case fw == SeaBIOS && !m.arm():
		return nil, nil
	case fw == UBoot && m.arm():
		return []string{"-bios", pf.BootROM}, nil
	case fw == OVMF && !m.arm(), fw == AAVMF && m.arm():
	default:
		return nil, fmt.Errorf("firmware %q on %s: use seabios or ovmf on amd64, aavmf or u-boot on arm64", fw, m.Arch.Name)
	}
	vars := m.Vars
	if vars == "" {
		vars = filepath.Join(work, "vars.fd")
	}
	if _, err := os.Stat(vars); errors.Is(err, os.ErrNotExist) {
		if err := copyTo(pf.FirmwareVars, vars, 0o644); err != nil {
			return nil, fmt.Errorf("UEFI firmware (install ovmf, qemu-efi-aarch64: hack/install-deps): %w", err)
		}
	}
	return []string{"-drive", "if=pflash,format=raw,readonly=on,file=" + pf.FirmwareCode, "-drive", "if=pflash,format=raw,file=" + vars}, nil
}

// withScript makes the rescue host's initramfs with script as /script:
// the initramfs, then a second archive (the kernel unpacks one after the
// other).
func withScript(work, initramfs, script string) (string, error) {
	dir := filepath.Join(work, "script")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "script"), []byte(script), 0o755); err != nil {
		return "", err
	}
	extra := filepath.Join(work, "script.cpio.gz")
	if err := WriteCpio(dir, extra); err != nil {
		return "", err
	}
	out := filepath.Join(work, "initrd")
	cmd := exec.Command("sh", "-c", `cat "$1" "$2" > "$3"`, "sh", initramfs, extra, out)
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("initrd: %v: %s", err, b)
	}
	return out, nil
}

package boottest

import (
	"slices"
	"strings"
)

// Platform is how boot-test makes a machine of one CPU architecture: the
// qemu that emulates it, its machine type, its serial console and its
// UEFI firmware. An architecture boot-test boots is one entry of
// Platforms.
type Platform struct {
	// Arch is the architecture, as a NixOS system's name has it.
	Arch string
	// Qemu is the qemu-system program; QemuPackage Debian's package of it.
	Qemu, QemuPackage string
	// Machine is qemu's machine type; CPU the processor emulated without
	// KVM ("" qemu's default for the machine).
	Machine, CPU string
	// BIOS says its default firmware is a BIOS (SeaBIOS) that boots a
	// disk's boot sector.
	BIOS bool
	// Firmware names the firmware that boots it without UEFI: bios, or
	// u-boot (which reads extlinux.conf); BootROM is that firmware's
	// image when qemu has none built in (given with -bios), BootROMPackage
	// Debian's package of it.
	Firmware, BootROM, BootROMPackage string
	// Console is the serial console's device, as the kernel names it;
	// GRUBSerial the GRUB commands that put GRUB's menu there.
	Console    string
	GRUBSerial []string
	// FirmwareCode and FirmwareVars are the UEFI firmware and its
	// variables' template; FirmwarePackage Debian's package of them.
	FirmwareCode, FirmwareVars, FirmwarePackage string
	// EFIArch is UEFI's short name of the architecture, in its loaders'
	// file names (x64: BOOTX64.EFI, systemd-bootx64.efi).
	EFIArch string
}

// EFIFallback is the ESP's removable-media path the firmware boots when
// no NVRAM entry names a loader.
func (p Platform) EFIFallback() string { return "/EFI/BOOT/BOOT" + strings.ToUpper(p.EFIArch) + ".EFI" }

// Platforms are the architectures boot-test boots.
var Platforms = []Platform{
	{Arch: "x86_64", Qemu: "qemu-system-x86_64", QemuPackage: "qemu-system-x86", Machine: "pc", BIOS: true,
		Console: "ttyS0", GRUBSerial: []string{"serial --unit=0 --speed=115200", "terminal_input --append serial", "terminal_output --append serial"},
		Firmware: "bios", FirmwareCode: "/usr/share/OVMF/OVMF_CODE_4M.fd", FirmwareVars: "/usr/share/OVMF/OVMF_VARS_4M.fd", FirmwarePackage: "ovmf", EFIArch: "x64"},
	// qemu's virt board: its serial port is a PL011 (ttyAMA0); UEFI is
	// EDK2's ArmVirtQemu (Debian's AAVMF), else U-Boot built for it
	// (distro boot: extlinux.conf on the disk). Without KVM, a Cortex-A57:
	// qemu's default CPU on virt is a 32-bit one.
	{Arch: "aarch64", Qemu: "qemu-system-aarch64", QemuPackage: "qemu-system-arm", Machine: "virt", CPU: "cortex-a57",
		Console: "ttyAMA0", GRUBSerial: []string{"serial", "terminal_input --append serial", "terminal_output --append serial"},
		Firmware: "u-boot", BootROM: "/usr/lib/u-boot/qemu_arm64/u-boot.bin", BootROMPackage: "u-boot-qemu",
		FirmwareCode: "/usr/share/AAVMF/AAVMF_CODE.fd", FirmwareVars: "/usr/share/AAVMF/AAVMF_VARS.fd", FirmwarePackage: "qemu-efi-aarch64", EFIArch: "aa64"},
}

// Firmwares lists the firmware names boot-test knows, for a message.
func Firmwares() []string {
	names := []string{"efi"}
	for _, p := range Platforms {
		if !slices.Contains(names, p.Firmware) {
			names = append(names, p.Firmware)
		}
	}
	return names
}

// Serial is how a machine's boot is put on its serial console: what the
// kernel gets on its command line (the kernel, stage 1 and stage 2 speak
// there), and what GRUB runs first.
type Serial struct {
	Param string
	GRUB  []string
}

// Serial is p's serial console.
func (p Platform) Serial() Serial { return Serial{Param: "console=" + p.Console, GRUB: p.GRUBSerial} }

// EFIFallbackOf is the firmware's fallback path for a system of arch,
// without its leading slash, as messages name it: the platform's, or
// UEFI's pattern for an architecture boot-test does not boot.
func EFIFallbackOf(arch string) string {
	if p, ok := PlatformOf(arch); ok && p.EFIArch != "" {
		return strings.TrimPrefix(p.EFIFallback(), "/")
	}
	return "EFI/BOOT/BOOT<ARCH>.EFI"
}

// PlatformOf is the platform of arch; "" is x86_64. ok is false for an
// architecture boot-test does not boot.
func PlatformOf(arch string) (Platform, bool) {
	if arch == "" {
		arch = "x86_64"
	}
	i := slices.IndexFunc(Platforms, func(p Platform) bool { return p.Arch == arch })
	if i < 0 {
		return Platform{}, false
	}
	return Platforms[i], true
}

// Arches lists the architectures boot-test boots, for a message.
func Arches() string {
	var a []string
	for _, p := range Platforms {
		a = append(a, p.Arch)
	}
	return strings.Join(a, ", ")
}

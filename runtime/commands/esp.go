package commands

import (
	"fmt"
	"strings"

	"github.com/nixrescue/nixrescue/runtime/engine"
	"github.com/nixrescue/nixrescue/runtime/hint"
	"github.com/nixrescue/nixrescue/runtime/host"
	"github.com/nixrescue/nixrescue/runtime/nixos"
	"github.com/nixrescue/nixrescue/runtime/rootfs"
	"github.com/nixrescue/nixrescue/runtime/target"
)

// missingESP says, when the system's bootloader installs into an EFI
// system partition (systemd-boot, GRUB with efiSupport) and nothing is
// mounted where the configuration puts it, that the ESP is not mounted and
// which partition looks like one ("" when it is mounted, or none is
// needed). bootctl, and systemd-boot-builder.py before it, refuse an ESP
// that is not a mount point; GRUB would write into the root's directory.
func missingESP(s *engine.Session, system string) string {
	b := nixos.DetectBootloader(s.Root(), system)
	if b.ESP == "" {
		return ""
	}
	if where, err := rootfs.Join(s.Root(), b.ESP); err == nil {
		if engine.MountedAt(where) {
			return ""
		}
	}
	parts := s.Layout().Partitions
	if len(parts) == 0 {
		_, parts, _ = target.MountedDisk(s.Root())
	}
	what := fmt.Sprintf("the configuration installs %s into its EFI system partition at %s, but nothing is mounted there (the fstab has no %s)", b.Kind, b.ESP, b.ESP)
	flag := func(spec string) string {
		if b.ESP == "/boot" {
			return "{Boot " + spec + "}"
		}
		return "{Mount " + spec + ":" + b.ESP + "}"
	}
	cands := target.ESPCandidates(parts)
	if len(cands) == 0 {
		return hint.Render(what + ": no partition of the disk looks like an ESP (of its type, or vfat); mount the ESP with " + flag("DEVICE"))
	}
	var names []string
	for _, p := range cands {
		kind := p.Type
		if p.PartType == "esp" || p.PartType == "0xef" {
			kind = strings.TrimPrefix(kind+", ", ", ") + "EFI system partition"
		}
		names = append(names, fmt.Sprintf("partition %d (%s, %s)", p.Number, p.Device, kind))
	}
	spec := cands[0].Device
	if cands[0].UUID != "" {
		spec = "UUID=" + cands[0].UUID
	}
	return hint.Render(fmt.Sprintf("%s: %s looks like it; mount it for the session with %s, and give it a fileSystems.%q in hardware-configuration.nix",
		what, strings.Join(names, " or "), flag(spec), b.ESP))
}

// noNVRAMEntry says, after systemd-boot was installed from a host that
// did not boot by EFI, that no boot entry could be made and that the
// firmware's fallback path will boot the disk ("" otherwise).
func noNVRAMEntry(step *BootloaderStep) string {
	if step == nil || step.Kind != nixos.SystemdBoot || step.Action != "installed" || host.EFIBooted("/sys") {
		return ""
	}
	return "this host did not boot by EFI, so bootctl made no NVRAM boot entry: the machine's firmware will boot the disk through the fallback path EFI/BOOT/BOOTX64.EFI that bootctl installed (run nixrescue rebuild again from a host booted by EFI for an entry of its own)"
}

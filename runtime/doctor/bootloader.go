package doctor

import (
	"bytes"
	"fmt"
	"path"
	"strings"

	"github.com/nixrescue/nixrescue/runtime/nixos"
	"github.com/nixrescue/nixrescue/runtime/rootfs"
	"github.com/nixrescue/nixrescue/runtime/target"
)

// checkBootloader reports a bootloader that is not where the
// configuration installs it: GRUB's boot code gone from the disk's first
// sector (another OS wrote its own), the ESP not mounted or without the
// loader's file (reformatted), or no menu.
func checkBootloader(f *Facts) []Finding {
	b := f.Bootloader
	if !b.Kind.Known() {
		if f.System == "" {
			return nil
		}
		return []Finding{finding("bootloader-unknown", Warning, "nixrescue does not know the bootloader this system installs: it checks none",
			[]string{f.System + "/bin/switch-to-configuration runs no installer of GRUB or systemd-boot"})}
	}
	var out []Finding
	if b.Kind == nixos.GRUBBIOS {
		out = append(out, checkBootCode(f)...)
	}
	if b.Kind.EFI() {
		esp, ok := espMounted(f)
		if !ok {
			return append(out, esp...)
		}
		if fd := checkEFILoader(f); fd != nil {
			out = append(out, *fd)
		}
	}
	l, _ := nixos.LoaderOf(b.Kind)
	menu := l.Menu
	if b.Kind == nixos.SystemdBoot {
		menu = path.Join(b.ESPMount(), "loader/loader.conf")
	}
	if _, unread := f.Unread(menu); !unread && !nixos.Exists(f.Root, menu) {
		out = append(out, finding("boot-menu-missing", Fatal, fmt.Sprintf("%s's menu, %s, is not there: the bootloader has nothing to boot", b.Kind, menu),
			[]string{menu + " does not exist"}, f.Rebuild()))
	}
	return out
}

// espMounted says whether the ESP the configuration installs into is
// mounted in the root; if not, why, as findings.
func espMounted(f *Facts) ([]Finding, bool) {
	esp := f.Bootloader.ESPMount()
	for _, e := range f.Plan {
		if path.Clean(e.Mountpoint) != esp {
			continue
		}
		if e.Action == target.ActionMount {
			return nil, true
		}
		if !e.Unresolved {
			// The fstab check says the rest; this host cannot read it.
			return []Finding{finding("esp-unread", Info, fmt.Sprintf("the ESP on %s was not read: %s", esp, e.Reason), []string{e.Spec + ": " + e.Reason})}, false
		}
		return nil, false
	}
	ev := []string{fmt.Sprintf("the configuration installs %s into the EFI system partition at %s", f.Bootloader.Kind, esp), "the fstab mounts nothing on " + esp}
	cands := target.ESPCandidates(f.Partitions)
	fix := []string{f.Command("enter") + fmt.Sprintf("    # add fileSystems.%q for the ESP to /etc/nixos/hardware-configuration.nix", esp)}
	if len(cands) > 0 {
		spec := specOf(cands[0])
		ev = append(ev, fmt.Sprintf("partition %d (%s) looks like the ESP", cands[0].Number, describePartition(cands[0])))
		fix = []string{f.Command("hardware-config", "{Mount "+spec+":"+esp+"}", "{Write}"), f.Command("rebuild", "{Mount "+spec+":"+esp+"}")}
	}
	return []Finding{finding("esp-not-mounted", Fatal, fmt.Sprintf("the fstab mounts no ESP on %s, where the configuration installs %s", esp, f.Bootloader.Kind), ev, fix...)}, false
}

// checkEFILoader reports an ESP without the bootloader's file, at its own
// path (EFI/*/systemd-bootx64.efi, EFI/*/grubx64.efi) or the firmware's
// fallback path (EFI/BOOT/BOOTX64.EFI).
func checkEFILoader(f *Facts) *Finding {
	esp := f.Bootloader.ESPMount()
	l, _ := nixos.LoaderOf(f.Bootloader.Kind)
	arch := orDefault(f.EFIArch, "x64")
	name := l.EFIBinaryFor(arch)
	fallback := "EFI/BOOT/BOOT" + strings.ToUpper(arch) + ".EFI"
	if nixos.Exists(f.Root, path.Join(esp, fallback)) {
		return nil
	}
	dirs, _ := rootfs.ReadDir(f.Root, path.Join(esp, "EFI"))
	for _, d := range dirs {
		if nixos.Exists(f.Root, path.Join(esp, "EFI", d.Name(), name)) {
			return nil
		}
	}
	fd := finding("bootloader-missing", Fatal, fmt.Sprintf("%s is not on the ESP (%s): the firmware finds nothing to start", f.Bootloader.Kind, esp),
		[]string{fmt.Sprintf("neither %s nor EFI/*/%s is on the ESP", fallback, name)}, f.Command("rebuild"))
	return &fd
}

// checkBootCode reports a disk GRUB for BIOS is configured on whose
// first sector holds no GRUB boot code.
func checkBootCode(f *Facts) []Finding {
	if f.BootSector == nil || f.Disk == "" {
		return nil
	}
	var out []Finding
	for _, dev := range f.Bootloader.Devices {
		if hostDevice(f, dev) != f.Disk {
			continue
		}
		b, err := f.BootSector(f.Disk)
		if err != nil {
			out = append(out, finding("bootcode-unread", Warning, "the disk's boot sector could not be read", []string{err.Error()}))
			continue
		}
		if bytes.Contains(b, []byte("GRUB")) {
			continue
		}
		what := "zeros"
		if len(b) >= 440 && !bytes.Equal(b[:440], make([]byte, 440)) {
			what = "another bootloader's code"
		}
		ev := []string{fmt.Sprintf("boot.loader.grub.devices names %s, which is this disk", dev), "its first sector holds " + what + ", not GRUB's boot.img"}
		if f.NoGRUBInstall != "" {
			ev = append(ev, "this host cannot install it: "+f.NoGRUBInstall)
		}
		out = append(out, finding("bootcode-missing", Fatal, fmt.Sprintf("GRUB's boot code is not on %s, where the configuration installs it: the BIOS finds nothing to start", dev),
			ev, f.Command("rebuild")))
	}
	return out
}

// hostDevice is this host's device for a disk name of the target's
// configuration ("" when nixrescue cannot map it).
func hostDevice(f *Facts, name string) string {
	for _, a := range f.Aliases {
		if a.Name == name {
			return a.Device
		}
	}
	return ""
}

// checkEntries reports menu entries that name kernels or initrds that
// are not on /boot (the bootloader stops there), and entries of
// generations that are gone.
func checkEntries(f *Facts) []Finding {
	if !f.EntriesRead {
		return nil
	}
	var out []Finding
	have := map[int]bool{}
	for _, g := range f.Generations {
		have[g.Number] = true
	}
	for _, e := range f.Entries {
		var gone []string
		for _, p := range e.Files {
			if !nixos.Exists(f.Root, p) {
				gone = append(gone, p)
			}
		}
		if len(gone) > 0 {
			sev, which := Warning, "entry"
			if e.Default {
				sev, which = Fatal, "default entry"
			}
			ev := []string{fmt.Sprintf("the %s %q loads %s", which, e.Title, strings.Join(e.Files, " and "))}
			for _, g := range gone {
				ev = append(ev, g+" is not there")
			}
			out = append(out, finding("boot-files-missing", sev, fmt.Sprintf("the boot menu's %s %q names files that are not on /boot", which, e.Title), ev, f.Rebuild()))
		}
		if e.Generation > 0 && !have[e.Generation] {
			out = append(out, finding("boot-entry-stale", Warning, fmt.Sprintf("the boot menu's entry %q boots generation %d, which is gone", e.Title, e.Generation),
				[]string{fmt.Sprintf("the system profile has no generation %d", e.Generation)}, f.Rebuild()))
		}
	}
	return out
}

package nixos

import (
	"path"
	"strconv"
	"strings"

	"github.com/nixrescue/nixrescue/runtime/rootfs"
)

// extlinux: NixOS's boot.loader.generic-extlinux-compatible, the menu
// U-Boot reads on most ARM boards (Raspberry Pi and other SD images).
// Its installer is extlinux-conf-builder.sh
// (nixos/modules/system/boot/loader/generic-extlinux-compatible), run as
// "BUILDER -g N -t T -c SYSTEM": it writes /boot/extlinux/extlinux.conf,
// "DEFAULT nixos-default" and an entry per generation (LABEL
// nixos-N-default, and nixos-N-NAME for its specialisations; nixos-N
// before nixpkgs listed specialisations), and copies the kernels, initrds
// and device trees they name into /boot/nixos.

// Extlinux is the kind of generic-extlinux-compatible.
const Extlinux Kind = "extlinux"

// ExtlinuxConf is the menu extlinux-conf-builder.sh writes.
const ExtlinuxConf = "/boot/extlinux/extlinux.conf"

func init() {
	Loaders = append(Loaders, Loader{Kind: Extlinux, Arches: []string{"aarch64", "armv7l", "riscv64"}, Menu: ExtlinuxConf,
		ReadDefault: extlinuxDefault, Entries: extlinuxEntries, FileDirs: func(Bootloader) []string { return []string{"/boot/nixos"} }})
	Installers = append(Installers, Installer{
		Is:   func(ref string) bool { return strings.HasSuffix(ref, "extlinux-conf-builder.sh") },
		Read: func(_, ref string) Bootloader { return Bootloader{Kind: Extlinux, Installer: ref} },
	})
}

// ExtlinuxMenu is an extlinux.conf as U-Boot reads it: its default
// label and its entries in order.
type ExtlinuxMenu struct {
	Default string
	Entries []ExtlinuxEntry
}

// ExtlinuxEntry is one LABEL of an extlinux.conf.
type ExtlinuxEntry struct {
	Label, MenuLabel string
	// Kernel, Initrd and FDT are the paths as written (relative to the
	// menu's directory, or absolute on its filesystem).
	Kernel, Initrd, FDT string
	Append              string
}

// ParseExtlinux reads an extlinux.conf: keywords are U-Boot's
// (case-insensitive: DEFAULT, LABEL, MENU LABEL, LINUX or KERNEL, INITRD,
// APPEND, FDT or FDTDIR).
func ParseExtlinux(conf string) ExtlinuxMenu {
	var m ExtlinuxMenu
	var cur *ExtlinuxEntry
	for _, line := range strings.Split(conf, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		key, rest := strings.ToUpper(f[0]), strings.TrimSpace(strings.TrimSpace(line)[len(f[0]):])
		switch {
		case key == "DEFAULT":
			m.Default = rest
		case key == "LABEL":
			m.Entries = append(m.Entries, ExtlinuxEntry{Label: rest})
			cur = &m.Entries[len(m.Entries)-1]
		case cur == nil:
		case key == "MENU" && len(f) > 1 && strings.EqualFold(f[1], "LABEL"):
			cur.MenuLabel = strings.TrimSpace(rest[len(f[1]):])
		case key == "LINUX" || key == "KERNEL":
			cur.Kernel = rest
		case key == "INITRD":
			cur.Initrd = rest
		case key == "FDT" || key == "FDTDIR":
			cur.FDT = rest
		case key == "APPEND":
			cur.Append = rest
		}
	}
	return m
}

// DefaultEntry is the entry DEFAULT names (nil when none does).
func (m ExtlinuxMenu) DefaultEntry() *ExtlinuxEntry {
	for i := range m.Entries {
		if m.Entries[i].Label == m.Default {
			return &m.Entries[i]
		}
	}
	return nil
}

// Generation is the generation e boots: N of its label nixos-N-… (or
// nixos-N), else the system its init= names (nixos-default).
func (e ExtlinuxEntry) Generation(gens []Generation) int {
	if n, _, ok := generationLabel(e.Label); ok {
		return n
	}
	return entryGeneration("", e.Append, gens)
}

// generationLabel reads a generation's label: nixos-N-default (or
// nixos-N), special false; nixos-N-NAME, a specialisation.
func generationLabel(label string) (n int, special, ok bool) {
	num, rest, _ := strings.Cut(strings.TrimPrefix(label, "nixos-"), "-")
	n, err := strconv.Atoi(num)
	if err != nil || !strings.HasPrefix(label, "nixos-") {
		return 0, false, false
	}
	return n, rest != "" && rest != "default", true
}

// LabelOf is the label of generation n's own entry (not a
// specialisation's): nixos-N-default, or nixos-N in an older menu; ""
// when the menu has none.
func (m ExtlinuxMenu) LabelOf(n int) string {
	for _, e := range m.Entries {
		if g, special, ok := generationLabel(e.Label); ok && g == n && !special {
			return e.Label
		}
	}
	return ""
}

// extlinuxFilePath is where a path of the menu is in the root: the
// store's as it is, one relative to the menu's directory under it, other
// absolute ones on /boot's filesystem.
func extlinuxFilePath(p string) string {
	switch {
	case strings.HasPrefix(p, "/nix/store/"), strings.HasPrefix(p, "/boot/"):
		return path.Clean(p)
	case strings.HasPrefix(p, "/"):
		return path.Join("/boot", p)
	}
	return path.Join(path.Dir(ExtlinuxConf), p)
}

func readExtlinux(root string) (ExtlinuxMenu, bool) {
	b, err := rootfs.ReadFile(root, ExtlinuxConf, maxScript)
	if err != nil {
		return ExtlinuxMenu{}, false
	}
	return ParseExtlinux(string(b)), true
}

func extlinuxDefault(root string, gens []Generation) (BootDefault, bool) {
	m, ok := readExtlinux(root)
	if !ok {
		return BootDefault{}, false
	}
	d := BootDefault{Source: ExtlinuxConf, Entry: m.Default}
	if e := m.DefaultEntry(); e != nil {
		d.Generation = e.Generation(gens)
	}
	return d, true
}

func extlinuxEntries(root string, _ Bootloader, gens []Generation) ([]BootEntry, bool) {
	m, ok := readExtlinux(root)
	if !ok {
		return nil, false
	}
	var out []BootEntry
	for _, e := range m.Entries {
		be := BootEntry{Title: e.Label, Default: e.Label == m.Default, Generation: e.Generation(gens), Files: []string{}}
		for _, p := range []string{e.Kernel, e.Initrd} {
			if p != "" {
				be.Files = append(be.Files, extlinuxFilePath(p))
			}
		}
		out = append(out, be)
	}
	return out, true
}

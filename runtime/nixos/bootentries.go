package nixos

import (
	"bufio"
	"io"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/nixrescue/nixrescue/runtime/grubcfg"
	"github.com/nixrescue/nixrescue/runtime/internal/lazyre"
	"github.com/nixrescue/nixrescue/runtime/rootfs"
)

// BootEntry is one entry of a bootloader's menu, as its installer wrote
// it: what doctor checks against /boot and what prune keeps.
type BootEntry struct {
	// Title is the menu's title (GRUB) or the entry's file name
	// (systemd-boot).
	Title string `json:"title"`
	// Generation is the system generation it boots, 0 when it names
	// none nixrescue can tell.
	Generation int  `json:"generation,omitempty"`
	Default    bool `json:"default,omitempty"`
	// Files are the kernels and initrds it loads, as paths inside the
	// target's root (/boot/EFI/nixos/…-bzImage.efi, /nix/store/…).
	Files []string `json:"files"`
}

// BootFileDirs are the directories of /boot (inside the root) where
// NixOS's installers copy kernels and initrds, per kind: what prune may
// remove from (never a file a kept entry names).
func BootFileDirs(b Bootloader) []string {
	if l, ok := LoaderOf(b.Kind); ok && l.FileDirs != nil {
		return l.FileDirs(b)
	}
	return nil
}

func sdbootFileDirs(b Bootloader) []string { return []string{path.Join(b.ESPMount(), "EFI/nixos")} }

func grubFileDirs(Bootloader) []string { return []string{"/boot/kernels"} }

// ESPMount is where b's ESP is mounted in the root (DefaultESP when
// the configuration says nothing).
func (b Bootloader) ESPMount() string {
	if b.ESP == "" {
		return DefaultESP
	}
	return b.ESP
}

// BootFiles lists the regular files of b's kernel directories
// (BootFileDirs), as paths in root.
func BootFiles(root string, b Bootloader) []string {
	var out []string
	for _, dir := range BootFileDirs(b) {
		list, _ := rootfs.ReadDir(root, dir)
		for _, e := range list {
			if e.Type().IsRegular() {
				out = append(out, path.Join(dir, e.Name()))
			}
		}
	}
	return out
}

// ReadBootEntries reads the menu of the bootloader b installs, from the
// root's /boot: its entries, the default marked; ok is false when that
// menu is not there. gens maps store paths to generation numbers.
func ReadBootEntries(root string, b Bootloader, gens []Generation) (entries []BootEntry, ok bool) {
	if l, ok := LoaderOf(b.Kind); ok && l.Entries != nil {
		return l.Entries(root, b, gens)
	}
	return nil, false
}

var grubFileRE = lazyre.New(`^\s*(?:linux|linux16|linuxefi|initrd|initrd16|initrdefi)\s+(\S+)`)

// grubEntries reads install-grub.pl's grub.cfg: each menu entry's linux
// and initrd lines, whose paths are on /boot's filesystem (($drive1)/…,
// or /kernels/… when /boot is a filesystem of its own) or the root's.
func grubEntries(root string, _ Bootloader, gens []Generation) ([]BootEntry, bool) {
	b, err := rootfs.ReadFile(root, GrubConfig, maxScript)
	if err != nil {
		return nil, false
	}
	c := grubcfg.Parse(string(b))
	def := c.DefaultEntry()
	var out []BootEntry
	for _, e := range c.Entries {
		be := BootEntry{Title: e.Title, Default: def != nil && def.From == e.From, Files: []string{}}
		body := c.Body(e)
		for _, line := range body {
			if m := grubFileRE().FindStringSubmatch(line); m != nil {
				be.Files = append(be.Files, grubFilePath(root, m[1]))
			}
		}
		be.Generation = entryGeneration(e.Title, strings.Join(body, "\n"), gens)
		out = append(out, be)
	}
	return out, true
}

// grubFilePath is where a path of grub.cfg is in the root: a device
// prefix ((hd0,1), ($drive1)) dropped, then the store's and /boot's
// paths as they are, others on /boot's own filesystem.
func grubFilePath(root, p string) string {
	if i := strings.Index(p, ")"); strings.HasPrefix(p, "(") && i > 0 {
		p = p[i+1:]
	}
	p = "/" + strings.TrimLeft(p, "/")
	if strings.HasPrefix(p, "/nix/store/") || strings.HasPrefix(p, "/boot/") {
		return p
	}
	return "/boot" + p
}

// entryGeneration is the generation an entry boots: the number in its
// title (NixOS - Configuration 12), else the system its init= names.
func entryGeneration(title, body string, gens []Generation) int {
	if m := configNumberRE().FindStringSubmatch(title); m != nil {
		n, _ := strconv.Atoi(m[1])
		return n
	}
	if m := initRE().FindStringSubmatch(body); m != nil {
		for _, g := range gens {
			if g.StorePath == m[1] {
				return g.Number
			}
		}
	}
	return 0
}

var sdbootFileRE = lazyre.New(`^\s*(linux|initrd|efi)\s+(\S+)`)

// sdbootEntries reads systemd-boot's loader entries (Boot Loader
// Specification type 1) on b's ESP: each file's linux, initrd and efi
// lines (paths on the ESP), the default named by loader.conf.
func sdbootEntries(root string, b Bootloader, _ []Generation) ([]BootEntry, bool) {
	esp := b.ESPMount()
	dir := path.Join(esp, "loader/entries")
	list, err := rootfs.ReadDir(root, dir)
	if err != nil {
		return nil, false
	}
	def := sdbootDefaultEntry(root, esp)
	var out []BootEntry
	for _, e := range list {
		if !strings.HasSuffix(e.Name(), ".conf") || !e.Type().IsRegular() {
			continue
		}
		be := BootEntry{Title: e.Name(), Default: e.Name() == def, Files: []string{}}
		if m := sdbootEntryRE().FindStringSubmatch(e.Name()); m != nil {
			be.Generation, _ = strconv.Atoi(m[1])
		}
		f, err := rootfs.Open(root, path.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(io.LimitReader(f, maxScript))
		for sc.Scan() {
			if m := sdbootFileRE().FindStringSubmatch(sc.Text()); m != nil {
				be.Files = append(be.Files, path.Join(esp, m[2]))
			}
		}
		f.Close()
		out = append(out, be)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Generation > out[j].Generation })
	return out, true
}

// sdbootDefaultEntry is the entry file loader.conf on the ESP names
// ("" when none).
func sdbootDefaultEntry(root, esp string) string {
	b, err := rootfs.ReadFile(root, path.Join(esp, "loader/loader.conf"), maxScript)
	if err != nil {
		return ""
	}
	if def := LoaderConfDefault(string(b)); def != "" {
		return path.Base(def)
	}
	return ""
}

// LoaderConfDefault is the entry a loader.conf names by default (its
// last default line; "" when none).
func LoaderConfDefault(conf string) string {
	def := ""
	for _, l := range strings.Split(conf, "\n") {
		if f := strings.Fields(l); len(f) == 2 && f[0] == "default" {
			def = f[1]
		}
	}
	return def
}

package nixos

import (
	"strconv"
	"strings"

	"github.com/nixrescue/nixrescue/runtime/grubcfg"
	"github.com/nixrescue/nixrescue/runtime/internal/lazyre"
	"github.com/nixrescue/nixrescue/runtime/rootfs"
)

// BootDefault is what the boot partition says the bootloader boots by
// default.
type BootDefault struct {
	// Generation is the generation booted by default, 0 when unknown.
	Generation int `json:"generation,omitempty"`
	// Source is the file it was read from (grub.cfg or loader.conf).
	Source string `json:"source,omitempty"`
	// Entry is the default entry's title or file name.
	Entry string `json:"entry,omitempty"`
}

var (
	configNumberRE = lazyre.New(`Configuration ([0-9]+)`)
	initRE         = lazyre.New(`init=(/nix/store/[0-9a-z]{32}-[^/\s]+)/init`)
	sdbootEntryRE  = lazyre.New(`nixos-generation-([0-9]+)(?:-specialisation-[^.]*)?\.conf$`)
)

// ReadBootDefault reads the default boot entry from the first menu of
// the known bootloaders (Loaders) that root's /boot holds: GRUB's
// grub.cfg (set default, the menu entries in order) or systemd-boot's
// loader/loader.conf (default ENTRY). gens maps store paths to generation
// numbers, for entries that name a system but no number (install-grub.pl's
// first entry, "NixOS").
func ReadBootDefault(root string, gens []Generation) BootDefault {
	for _, l := range Loaders {
		if d, ok := l.ReadDefault(root, gens); ok {
			return d
		}
	}
	return BootDefault{}
}

func grubDefault(root string, gens []Generation) (BootDefault, bool) {
	b, err := rootfs.ReadFile(root, GrubConfig, maxScript)
	if err != nil {
		return BootDefault{}, false
	}
	d := BootDefault{Source: GrubConfig}
	c := grubcfg.Parse(string(b))
	if e := c.DefaultEntry(); e != nil {
		d.Entry = e.Title
		d.Generation = entryGeneration(e.Title, strings.Join(c.Body(*e), "\n"), gens)
	}
	return d, true
}

func sdbootDefault(root string, _ []Generation) (BootDefault, bool) {
	if _, err := rootfs.Lstat(root, LoaderConf); err != nil {
		return BootDefault{}, false
	}
	d := BootDefault{Source: LoaderConf, Entry: sdbootDefaultEntry(root, DefaultESP)}
	if m := sdbootEntryRE().FindStringSubmatch(d.Entry); m != nil {
		d.Generation, _ = strconv.Atoi(m[1])
	}
	return d, true
}

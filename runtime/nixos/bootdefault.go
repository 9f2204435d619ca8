package nixos

import (
	"bufio"
	"io"
	"path"
	"strconv"
	"strings"

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
	grubDefaultRE   = lazyre.New(`^\s*set\s+default="?([^"\s]*)"?`)
	grubMenuentryRE = lazyre.New(`^\s*menuentry\s+(?:'([^']*)'|"([^"]*)")`)
	configNumberRE  = lazyre.New(`Configuration ([0-9]+)`)
	initRE          = lazyre.New(`init=(/nix/store/[0-9a-z]{32}-[^/\s]+)/init`)
	sdbootEntryRE   = lazyre.New(`nixos-generation-([0-9]+)(?:-specialisation-[^.]*)?\.conf$`)
)

// ReadBootDefault reads the default boot entry from root's /boot:
// GRUB's grub.cfg (set default, the menu entries in order) or
// systemd-boot's loader/loader.conf (default ENTRY). gens maps store paths
// to generation numbers, for entries that name a system but no number
// (install-grub.pl's first entry, "NixOS").
func ReadBootDefault(root string, gens []Generation) BootDefault {
	if d, ok := grubDefault(root, gens); ok {
		return d
	}
	if d, ok := sdbootDefault(root); ok {
		return d
	}
	return BootDefault{}
}

func grubDefault(root string, gens []Generation) (BootDefault, bool) {
	f, err := rootfs.Open(root, "/boot/grub/grub.cfg")
	if err != nil {
		return BootDefault{}, false
	}
	defer f.Close()
	d := BootDefault{Source: "/boot/grub/grub.cfg"}
	def := "0"
	var titles, bodies []string
	sc := bufio.NewScanner(io.LimitReader(f, maxScript))
	for sc.Scan() {
		line := sc.Text()
		if m := grubDefaultRE().FindStringSubmatch(line); m != nil && m[1] != "" {
			def = m[1]
		}
		if m := grubMenuentryRE().FindStringSubmatch(line); m != nil {
			titles = append(titles, m[1]+m[2])
			bodies = append(bodies, "")
			continue
		}
		if len(bodies) > 0 {
			bodies[len(bodies)-1] += line + "\n"
		}
	}
	i, err := strconv.Atoi(def)
	if err != nil {
		i = -1
		for j, t := range titles {
			if t == def {
				i = j
			}
		}
	}
	if i < 0 || i >= len(titles) {
		return d, true
	}
	d.Entry = titles[i]
	if m := configNumberRE().FindStringSubmatch(titles[i]); m != nil {
		d.Generation, _ = strconv.Atoi(m[1])
		return d, true
	}
	if m := initRE().FindStringSubmatch(bodies[i]); m != nil {
		for _, g := range gens {
			if g.StorePath == m[1] {
				d.Generation = g.Number
			}
		}
	}
	return d, true
}

func sdbootDefault(root string) (BootDefault, bool) {
	f, err := rootfs.Open(root, "/boot/loader/loader.conf")
	if err != nil {
		return BootDefault{}, false
	}
	defer f.Close()
	d := BootDefault{Source: "/boot/loader/loader.conf"}
	sc := bufio.NewScanner(io.LimitReader(f, maxScript))
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 2 && fields[0] == "default" {
			d.Entry = path.Base(fields[1])
			if m := sdbootEntryRE().FindStringSubmatch(d.Entry); m != nil {
				d.Generation, _ = strconv.Atoi(m[1])
			}
		}
	}
	return d, true
}

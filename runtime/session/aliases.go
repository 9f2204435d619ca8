package session

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	rspec "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/nixrescue/nixrescue/runtime/mount"
	"github.com/nixrescue/nixrescue/runtime/nixos"
	"github.com/nixrescue/nixrescue/runtime/target"
)

// DiskAlias is a name by which the target's configuration knows its disk
// (the name the target machine saw: boot.loader.grub.device = "/dev/sda",
// or a /dev/disk/by-id name). Inside the container it leads to the target's
// whole disk, whatever this host calls it, and never to a disk of this
// host: the container's /dev is curated.
type DiskAlias struct {
	Name string `json:"name"`
	// Device is this host's name for the target's disk.
	Device string `json:"device"`
	// Source is where the name comes from: grub-config.xml (the current
	// system's), configuration.nix, fstab, or --disk-alias.
	Source string `json:"source"`
}

// diskAliases finds the names the target gives its disk. Problems are
// names that cannot be mapped: a rebuild refuses them, other commands warn.
func diskAliases(root string, system string, fstab []target.FstabEntry, explicit []string, disk string) ([]DiskAlias, []string) {
	var aliases []DiskAlias
	var problems []string
	seen := map[string]bool{disk: true}
	add := func(name, source string) {
		name = path.Clean(name)
		if seen[name] {
			return
		}
		seen[name] = true
		aliases = append(aliases, DiskAlias{Name: name, Device: disk, Source: source})
	}
	for _, name := range explicit {
		if !nixos.IsWholeDiskName(name) {
			problems = append(problems, fmt.Sprintf("--disk-alias %s is not the name of a whole disk (like /dev/sda, /dev/nvme0n1 or /dev/disk/by-id/NAME)", name))
			continue
		}
		add(name, "--disk-alias")
	}
	// GRUB's devices: the current system's and those the configuration
	// will give the next one.
	var grub []DiskAlias
	if system != "" {
		for _, d := range nixos.DetectBootloader(root, system).Devices {
			grub = append(grub, DiskAlias{Name: d, Source: "grub-config.xml"})
		}
	}
	for _, d := range nixos.ConfiguredGrubDevices(root) {
		grub = append(grub, DiskAlias{Name: d, Source: "configuration.nix"})
	}
	var distinct []string
	for _, g := range grub {
		switch {
		case g.Name == "nodev" || g.Name == "":
		case nixos.IsPartitionName(g.Name):
			problems = append(problems, fmt.Sprintf("boot.loader.grub.device %s (%s) is a partition: GRUB for BIOS installs to a whole disk", g.Name, g.Source))
		case !nixos.IsWholeDiskName(g.Name):
			problems = append(problems, fmt.Sprintf("boot.loader.grub.device %s (%s) is not a disk name nixrescue can map: pass --disk-alias NAME", g.Name, g.Source))
		default:
			if !slices.Contains(distinct, path.Clean(g.Name)) {
				distinct = append(distinct, path.Clean(g.Name))
			}
		}
	}
	unexplicit := slices.DeleteFunc(slices.Clone(distinct), func(n string) bool { return slices.Contains(explicit, n) })
	if len(distinct) > 1 && len(unexplicit) > 0 {
		problems = append(problems, fmt.Sprintf("the configuration installs GRUB on %s, but the target is one disk (%s): pass --disk-alias NAME for each that is this disk, or change boot.loader.grub.devices",
			strings.Join(distinct, " and "), disk))
	} else {
		for _, g := range grub {
			if nixos.IsWholeDiskName(g.Name) {
				add(g.Name, g.Source)
			}
		}
	}
	// The fstab's /dev/sdXN names, when they all name one disk: it was
	// the target machine's name for this one.
	var fstabDisks []string
	for _, e := range fstab {
		if d := nixos.DiskOfPartitionName(e.Spec); d != "" && !slices.Contains(fstabDisks, d) {
			fstabDisks = append(fstabDisks, d)
		}
	}
	if len(fstabDisks) == 1 {
		add(fstabDisks[0], "fstab")
	}
	return aliases, problems
}

// checkedDiskAliases is diskAliases with its problems handled: a strict
// session (rebuild) refuses the first, others pass each to warn. A nil
// fstab is read from the root.
func checkedDiskAliases(root, system string, fstab []target.FstabEntry, explicit []string, disk string, strict bool, warn func(string)) ([]DiskAlias, error) {
	if fstab == nil {
		fstab, _, _ = target.ReadSystemFstab(root)
	}
	aliases, problems := diskAliases(root, system, fstab, explicit, disk)
	for _, p := range problems {
		if strict {
			return nil, fmt.Errorf("refused before anything ran: %s", p)
		}
		warn(p)
	}
	return aliases, nil
}

// aliasDevices makes the alias names exist in the curated /dev: device
// nodes for /dev/X names (and their partitions), links in the /dev/disk
// directory links for /dev/disk/by-… names.
func aliasDevices(aliases []DiskAlias, disk string, parts []target.Partition, links string) ([]rspec.LinuxDevice, error) {
	base, err := devicesFor(disk, parts)
	if err != nil {
		return nil, err
	}
	byPath := map[string]rspec.LinuxDevice{}
	for _, d := range base {
		byPath[d.Path] = d
	}
	var out []rspec.LinuxDevice
	for _, a := range aliases {
		if rest, ok := strings.CutPrefix(a.Name, "/dev/disk/"); ok {
			if err := aliasLinks(links, rest, disk, parts); err != nil {
				return nil, err
			}
			continue
		}
		d := byPath[disk]
		d.Path = a.Name
		out = append(out, d)
		for _, p := range parts {
			if p.Device == "" || p.Device == disk || p.Number == 0 {
				continue
			}
			pd := byPath[p.Device]
			pd.Path = mount.PartitionPath(a.Name, p.Number)
			out = append(out, pd)
		}
	}
	return out, nil
}

// aliasLinks makes /dev/disk/KIND/NAME (and NAME-partN) in the links
// directory lead to the target's disk and partitions.
func aliasLinks(links, rel, disk string, parts []target.Partition) error {
	dir := filepath.Join(links, filepath.Dir(rel))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("curate /dev/disk: %w", err)
	}
	name := filepath.Base(rel)
	mk := func(n, dev string) error {
		err := os.Symlink("../../"+filepath.Base(dev), filepath.Join(dir, n))
		if err != nil && !os.IsExist(err) {
			return fmt.Errorf("curate /dev/disk: %w", err)
		}
		return nil
	}
	if err := mk(name, disk); err != nil {
		return err
	}
	for _, p := range parts {
		if p.Device != "" && p.Device != disk && p.Number > 0 {
			if err := mk(fmt.Sprintf("%s-part%d", name, p.Number), p.Device); err != nil {
				return err
			}
		}
	}
	return nil
}

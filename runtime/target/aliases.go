package target

import (
	"fmt"
	"path"
	"slices"
	"strings"
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

// AliasNames are the names the target gives its disk, by where they come
// from.
type AliasNames struct {
	// Explicit are the user's (the DiskAlias option).
	Explicit []string
	// Current are the current system's GRUB devices (its grub-config.xml);
	// Configured those /etc/nixos gives the next one.
	Current, Configured []string
	// Fstab is the target's: its /dev/sdXN names, when they all name one
	// disk, were the target machine's name for this one.
	Fstab []FstabEntry
	// NotDisk says the device that was to be the disk is none
	// (CheckWholeDisk): then no name leads to it, and each GRUB device is
	// a problem.
	NotDisk *NotWholeDiskError
}

// Alias sources (stable values of the JSON reports).
const (
	AliasExplicit   = "--disk-alias"
	AliasCurrent    = "grub-config.xml"
	AliasConfigured = "configuration.nix"
	AliasFstab      = "fstab"
)

// DiskAliases maps the names the target gives its disk to disk. Problems
// are names that cannot be mapped (a partition for GRUB's device, a name
// nixrescue cannot tell, more disks than the target has): a rebuild
// refuses them, other commands warn.
func DiskAliases(n AliasNames, disk string) ([]DiskAlias, []string) {
	if n.NotDisk != nil {
		return nil, notDiskProblems(n)
	}
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
	for _, name := range n.Explicit {
		if !IsWholeDiskName(name) {
			problems = append(problems, fmt.Sprintf("{DiskAlias %s} is not the name of a whole disk (like /dev/sda, /dev/nvme0n1 or /dev/disk/by-id/NAME)", name))
			continue
		}
		add(name, AliasExplicit)
	}
	var grub []DiskAlias
	for _, d := range n.Current {
		grub = append(grub, DiskAlias{Name: d, Source: AliasCurrent})
	}
	for _, d := range n.Configured {
		grub = append(grub, DiskAlias{Name: d, Source: AliasConfigured})
	}
	var distinct []string
	for _, g := range grub {
		switch {
		case g.Name == "nodev" || g.Name == "":
		case IsPartitionName(g.Name):
			problems = append(problems, fmt.Sprintf("boot.loader.grub.device %s (%s) is a partition: GRUB for BIOS installs to a whole disk", g.Name, g.Source))
		case !IsWholeDiskName(g.Name):
			problems = append(problems, fmt.Sprintf("boot.loader.grub.device %s (%s) is not a disk name nixrescue can map: pass {DiskAlias NAME}", g.Name, g.Source))
		default:
			if !slices.Contains(distinct, path.Clean(g.Name)) {
				distinct = append(distinct, path.Clean(g.Name))
			}
		}
	}
	unexplicit := slices.DeleteFunc(slices.Clone(distinct), func(d string) bool { return slices.Contains(n.Explicit, d) })
	if len(distinct) > 1 && len(unexplicit) > 0 {
		problems = append(problems, fmt.Sprintf("the configuration installs GRUB on %s, but the target is one disk (%s): pass {DiskAlias NAME} for each that is this disk, or change boot.loader.grub.devices",
			strings.Join(distinct, " and "), disk))
	} else {
		for _, g := range grub {
			if IsWholeDiskName(g.Name) {
				add(g.Name, g.Source)
			}
		}
	}
	var fstabDisks []string
	for _, e := range n.Fstab {
		if d := DiskOfPartitionName(e.Spec); d != "" && !slices.Contains(fstabDisks, d) {
			fstabDisks = append(fstabDisks, d)
		}
	}
	if len(fstabDisks) == 1 {
		add(fstabDisks[0], AliasFstab)
	}
	return aliases, problems
}

// notDiskProblems are the problems of names n gives a device that is no
// disk: every GRUB device (and --disk-alias) would put boot code on it.
func notDiskProblems(n AliasNames) []string {
	var names []string
	for _, d := range slices.Concat(n.Explicit, n.Current, n.Configured) {
		if d != "nodev" && d != "" && !slices.Contains(names, path.Clean(d)) {
			names = append(names, path.Clean(d))
		}
	}
	if len(names) == 0 {
		return nil
	}
	e := n.NotDisk
	return []string{fmt.Sprintf("the configuration installs GRUB on %s, which here would be %s, %s, not a whole disk: its boot code would be written over a filesystem; %s",
		strings.Join(names, " and "), e.Device, e.Is, e.Fix())}
}

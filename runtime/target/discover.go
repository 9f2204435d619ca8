package target

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/nixrescue/nixrescue/runtime/mount"
	"github.com/nixrescue/nixrescue/runtime/nixos"
	"github.com/nixrescue/nixrescue/runtime/rootfs"
)

// mountableTypes are the filesystems a NixOS root, /nix or /boot may be on.
var mountableTypes = []string{"ext4", "ext3", "ext2", "btrfs", "xfs", "f2fs", "vfat", "jfs", "bcachefs", "zfs"}

// Mountable tells whether nixrescue mounts filesystems of this type.
func Mountable(fsType string) bool { return slices.Contains(mountableTypes, fsType) }

// probeOptions mount a filesystem read-only without writing anything to
// it: no journal replay, no log recovery.
func probeOptions(fsType string) []string {
	o := append([]string{"ro"}, NoReplayOptions(fsType)...)
	if fsType == "btrfs" {
		o = append(o, "subvolid=5")
	}
	return o
}

// NoReplayOptions are the options that keep a read-only mount of a
// filesystem of type fsType from replaying its journal or log: without
// them, a read-only mount of a filesystem that was not shut down cleanly
// writes the replay to it when its device is writable, and is refused
// (EROFS) when it is not.
func NoReplayOptions(fsType string) []string {
	switch fsType {
	case "ext4", "ext3":
		return []string{"noload"}
	case "xfs":
		return []string{"norecovery"}
	case "btrfs":
		return []string{"rescue=nologreplay"}
	}
	return nil
}

// Found is a filesystem (or btrfs subvolume) that holds a NixOS root or a
// separate /nix.
type Found struct {
	Partition Partition `json:"partition"`
	// Subvol is the btrfs subvolume, "" for the filesystem's top.
	Subvol string `json:"subvolume,omitempty"`
	// Ephemeral says the root is a tmpfs the machine makes afresh at each
	// boot (impermanence: its fstab mounts tmpfs on /): its system is on
	// the /nix filesystem, and Partition is that one's.
	Ephemeral bool `json:"ephemeral,omitempty"`
}

// Describe names it for messages.
func (f Found) Describe() string {
	if f.Ephemeral {
		return "tmpfs, made afresh at each boot; the system on " + f.Partition.Source()
	}
	s := f.Partition.Source()
	if f.Subvol != "" {
		s += " subvolume " + f.Subvol
	}
	return s
}

// isNixFS tells whether dir is a filesystem mounted on /nix.
func isNixFS(dir string) bool {
	return existsIn(dir, strings.TrimPrefix(nixos.SystemProfile, "/nix")) || (existsIn(dir, "store") && existsIn(dir, "var/nix"))
}

// existsIn tells whether p exists under dir, the links on the way
// resolved inside dir (a filesystem whose etc is a link to /etc says
// nothing about the host's /etc); p itself is not followed.
func existsIn(dir, p string) bool {
	_, err := rootfs.Lstat(dir, p)
	return err == nil
}

// Discovery is what Discover found.
type Discovery struct {
	// Roots are the NixOS roots; Nixes the separate /nix filesystems.
	Roots, Nixes []Found
	// Failed are the filesystems that could not be mounted to look at
	// them, and the kernel's answer: said when no root turns up.
	Failed []ProbeFailure
}

// ProbeFailure is a filesystem discovery could not look at.
type ProbeFailure struct {
	Partition Partition
	Err       error
}

// Discover mounts each mountable partition read-only at probeDir (which
// must exist, in a private mount namespace) and returns the NixOS roots and
// separate /nix filesystems on them, btrfs subvolumes included.
func Discover(parts []Partition, probeDir string) (Discovery, error) {
	var d Discovery
	for _, p := range parts {
		if !Mountable(p.Type) || p.Source() == "" {
			continue
		}
		top, done, err := probeMount(p, probeDir)
		if err != nil {
			// A filesystem the kernel cannot mount is not the root; say
			// why if no root turns up.
			d.Failed = append(d.Failed, ProbeFailure{Partition: p, Err: err})
			continue
		}
		look := func(sub string) bool {
			dir := filepath.Join(top, sub)
			if nixos.IsRoot(dir) {
				d.Roots = append(d.Roots, Found{Partition: p, Subvol: sub})
				return true
			} else if isNixFS(dir) {
				d.Nixes = append(d.Nixes, Found{Partition: p, Subvol: sub})
			}
			return false
		}
		subRoot := false
		if p.Type == "btrfs" {
			for _, sub := range subvolumes(top) {
				subRoot = look(sub) || subRoot
			}
		}
		// A btrfs top level that holds a root subvolume is not a root of
		// its own, whatever it looks like.
		if !subRoot {
			look("")
		}
		if err := done(); err != nil {
			return d, err
		}
	}
	return d, nil
}

// probeMount mounts p read-only for a look that writes nothing
// (probeOptions), detached where the kernel can (mount.Detached: no other
// mount namespace can keep a copy of it, and with it a superblock without
// journal replay that a later mount of the device would take up), at
// probeDir otherwise. It returns the mount's top directory and what ends
// the mount.
func probeMount(p Partition, probeDir string) (top string, done func() error, err error) {
	options := probeOptions(p.Type)
	f, err := mount.Detached(p.Source(), p.Type, options)
	if err == nil {
		return fmt.Sprintf("/proc/self/fd/%d", f.Fd()), f.Close, nil
	}
	if !errors.Is(err, mount.ErrNoDetached) {
		return "", nil, err
	}
	flags, data := mount.Flags(options)
	if err := unix.Mount(p.Source(), probeDir, p.Type, flags|unix.MS_RDONLY, data); err != nil {
		return "", nil, &mount.MountError{Device: p.Source(), Type: p.Type, Err: err}
	}
	return probeDir, func() error { return mount.Unmount(probeDir) }, nil
}

// subvolumes lists the btrfs subvolumes directly under dir, and one level
// further for layouts that keep them in a directory: a subvolume's root
// directory has inode 256.
func subvolumes(dir string) []string {
	var subs []string
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		if isSubvolume(filepath.Join(dir, e.Name())) {
			subs = append(subs, e.Name())
			continue
		}
		inner, err := os.ReadDir(filepath.Join(dir, e.Name()))
		if err != nil || len(inner) > 64 {
			continue
		}
		for _, i := range inner {
			if i.IsDir() && isSubvolume(filepath.Join(dir, e.Name(), i.Name())) {
				subs = append(subs, e.Name()+"/"+i.Name())
			}
		}
	}
	return subs
}

func isSubvolume(p string) bool {
	st, err := os.Lstat(p)
	if err != nil || !st.IsDir() {
		return false
	}
	return st.Sys().(*syscall.Stat_t).Ino == 256
}

// FirstOptions are the options of the first, read-only mount of a
// filesystem discovery found, before the target's fstab can be read: its
// subvolume. The plan gives it the fstab's options after (MakePlan).
func FirstOptions(f Found) []string {
	o, _ := foundOptions(f, nil, false)
	return o
}

// describeParts summarises partitions for an error message.
func describeParts(parts []Partition) string {
	s := ""
	for i, p := range parts {
		if i > 0 {
			s += ", "
		}
		name := p.Device
		if name == "" {
			name = fmt.Sprintf("partition %d", p.Number)
		}
		switch {
		case p.Type != "":
			s += fmt.Sprintf("%s %s", name, p.Type)
		case p.PartType == "bios_grub":
			s += name + " (BIOS boot)"
		case p.Extended:
			s += name + " (extended: holds the logical partitions)"
		default:
			s += name + " (no filesystem recognised: empty, or its superblock is damaged)"
		}
		if p.Label != "" {
			s += fmt.Sprintf(" %q", p.Label)
		}
	}
	return s
}

// NoRootError says no NixOS root was found on a target.
type NoRootError struct {
	Target string
	Parts  []Partition
	// Failed are the filesystems that could not be looked at.
	Failed []ProbeFailure
}

func (e *NoRootError) Error() string {
	if len(e.Parts) == 0 {
		return fmt.Sprintf("%s: no filesystem found: it is empty, truncated or damaged", e.Target)
	}
	for _, p := range e.Parts {
		if p.Type == "zfs_member" && len(e.Failed) == 0 {
			pool := cmp.Or(p.Label, "POOL")
			return fmt.Sprintf("%s: %s holds a member of the ZFS pool %q, and none of its datasets that could be mounted holds a NixOS root: name the root's dataset with --root-part, or import the pool by hand (zpool import -N -R /mnt %s, then mount its datasets as its fstab says) and pass /mnt", e.Target, p.Device, pool, pool)
		}
		if what := Unsupported(p.Type); what != "" {
			return fmt.Sprintf("%s: %s holds %s, which nixrescue does not open yet: open it yourself and pass the device of the opened root", e.Target, p.Device, what)
		}
	}
	if len(e.Failed) > 0 {
		var s []string
		for _, f := range e.Failed {
			why := f.Err.Error()
			var me *mount.MountError
			if errors.As(f.Err, &me) {
				why = me.Reason()
			}
			s = append(s, fmt.Sprintf("%s (%s): %s", f.Partition.Source(), f.Partition.Type, why))
		}
		return fmt.Sprintf("%s: no NixOS root found, and the kernel would not mount %s to look: a damaged filesystem, or a feature or module this kernel lacks (dmesg says which); check it with its fsck, or repair it from a system that can mount it",
			e.Target, strings.Join(s, "; "))
	}
	return fmt.Sprintf("%s: no NixOS root found (no %s or %s) on %s", e.Target, nixos.NixOSMarker, nixos.SystemProfile, describeParts(e.Parts))
}

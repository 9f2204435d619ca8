// Package target turns what the user names (a whole disk, a partition, a
// raw disk image, a bare filesystem image, or a directory where a root is
// already mounted) into devices, partitions and filesystems, finds the
// NixOS root among them, and reads the target's own fstab.
//
// Partition tables are read in user space (github.com/diskfs/go-diskfs's
// partition package, GPT and MBR), because many kernels, containers and
// rescue systems scan none; filesystems are identified by util-linux's
// blkid, which every rescue system has. Nothing here writes to a device.
package target

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/nixrescue/nixrescue/runtime/hint"
	"github.com/nixrescue/nixrescue/runtime/mount"
	"golang.org/x/sys/unix"
)

// Kind is what a target is.
type Kind string

const (
	KindDirectory Kind = "directory" // a mounted root
	KindDisk      Kind = "disk"      // a whole block device
	KindPartition Kind = "partition" // a partition of a block device
	KindImage     Kind = "image"     // a raw disk image or a bare filesystem image
)

// Target is a resolved TARGET argument.
type Target struct {
	// Arg is what the user gave.
	Arg string `json:"arg"`
	// Path is its absolute path, links resolved.
	Path string `json:"path"`
	Kind Kind   `json:"kind"`
	// Disk is the whole-disk device of a disk or partition target.
	Disk string `json:"disk,omitempty"`
	// Partition is the partition number of a partition target.
	Partition int `json:"partition,omitempty"`
}

// Resolve says what arg is.
func Resolve(arg string) (Target, error) {
	t := Target{Arg: arg}
	abs, err := filepath.Abs(arg)
	if err != nil {
		return t, &hint.Error{Subject: arg, Err: err}
	}
	real, err := filepath.EvalSymlinks(abs)
	if errors.Is(err, os.ErrNotExist) {
		return t, &hint.Error{Subject: arg, Err: errors.New("no such file, device or directory"),
			Fix: "name a disk (/dev/sdb), a partition (/dev/sdb2), a disk image file, or a directory where the NixOS root is mounted"}
	} else if err != nil {
		return t, &hint.Error{Subject: arg, Err: err}
	}
	t.Path = real
	st, err := os.Stat(real)
	if err != nil {
		return t, &hint.Error{Subject: arg, Err: err}
	}
	switch {
	case st.IsDir():
		t.Kind = KindDirectory
	case st.Mode().IsRegular():
		t.Kind = KindImage
	case st.Mode()&os.ModeDevice != 0 && st.Mode()&os.ModeCharDevice == 0:
		rdev := st.Sys().(*syscall.Stat_t).Rdev
		disk, part, err := wholeDisk(unix.Major(uint64(rdev)), unix.Minor(uint64(rdev)))
		if err != nil {
			return t, &hint.Error{Subject: arg, Err: err}
		}
		if part > 0 {
			t.Kind, t.Disk, t.Partition = KindPartition, disk, part
		} else {
			t.Kind, t.Disk = KindDisk, real
		}
	default:
		return t, &hint.Error{Subject: arg, Err: fmt.Errorf("is %s, not a disk, a partition, an image or a directory", fileKind(st.Mode())),
			Fix: "name a disk (/dev/sdb), a partition (/dev/sdb2), a disk image file, or a directory where the NixOS root is mounted"}
	}
	return t, nil
}

// DiskBehind finds the whole disk whose filesystem is mounted at dir: the
// disk a directory target's root is on. The mount's device number leads
// to it through sysfs (/sys/dev/block/MAJ:MIN: rescue systems with mdev or
// no udev have no /dev/block links); a filesystem that reports a device
// number of its own (btrfs) is known by the mount's source. The error says
// why there is none: dir is no mount point, its filesystem is on no block
// device, or the device has no node in /dev.
func DiskBehind(dir string) (string, error) {
	m, err := mount.At(dir)
	if err != nil {
		return "", err
	}
	if m == nil {
		return "", fmt.Errorf("%s is not a mount point", dir)
	}
	maj, min := uint32(m.Major), uint32(m.Minor)
	if maj == 0 {
		if maj, min, err = DeviceNumber(m.Source); err != nil {
			return "", fmt.Errorf("%s is a %s filesystem on %s, not on a disk", dir, m.FSType, m.Source)
		}
	}
	disk, _, err := wholeDisk(maj, min)
	if err != nil {
		return "", err
	}
	if dmaj, dmin, err := DeviceNumber(disk); err != nil {
		return "", fmt.Errorf("the disk of %s (%s, %d:%d in sysfs) has no node here: %w", dir, disk, maj, min, err)
	} else if wmaj, wmin, _ := sysfsDevNumber(strings.TrimPrefix(disk, "/dev/")); dmaj != wmaj || dmin != wmin {
		return "", fmt.Errorf("the disk of %s is %d:%d, but %s is %d:%d here", dir, wmaj, wmin, disk, dmaj, dmin)
	}
	return disk, nil
}

// wholeDisk is the /dev path of the whole disk of block device
// major:minor and its partition number (0 for a whole disk).
func wholeDisk(major, minor uint32) (string, int, error) {
	name, part, err := blockName(major, minor)
	if err != nil {
		return "", 0, err
	}
	return "/dev/" + name, part, nil
}

// fileKind names the kind of file of mode, for messages.
func fileKind(mode os.FileMode) string {
	switch {
	case mode&os.ModeCharDevice != 0:
		return "a character device"
	case mode&os.ModeNamedPipe != 0:
		return "a FIFO"
	case mode&os.ModeSocket != 0:
		return "a socket"
	}
	return "a special file"
}

// DeviceNumber is the major:minor of a block device node.
func DeviceNumber(path string) (uint32, uint32, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, 0, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return 0, 0, fmt.Errorf("%s is not a block device", path)
	}
	return unix.Major(st.Rdev), unix.Minor(st.Rdev), nil
}

// MountedDisk finds the disk whose filesystem is mounted at dir
// (DiskBehind), with its partitions and their filesystems; the
// error says why there is none (a root that is only a directory of the
// host's own filesystem brings no disk in).
func MountedDisk(dir string) (string, []Partition, error) {
	disk, err := DiskBehind(dir)
	if m, _ := mount.At(dir); err != nil && m != nil && m.FSType == "tmpfs" {
		// An ephemeral root (impermanence): the machine's disk is the one
		// its system is on, then its /boot's.
		for _, sub := range []string{"nix", "boot"} {
			if d, serr := DiskBehind(filepath.Join(dir, sub)); serr == nil {
				disk, err = d, nil
				break
			}
		}
	}
	if err != nil {
		return "", nil, err
	}
	parts, _ := KernelPartitions(disk)
	// A device blkid failed on only goes without its filesystem.
	probes, _ := ProbeDevices(context.Background(), Probed(parts))
	for i := range parts {
		parts[i].FS = probes[parts[i].Device].FS
	}
	return disk, parts, nil
}

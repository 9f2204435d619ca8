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
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

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

// TargetError is a TARGET that cannot be used, with what to do instead.
type TargetError struct {
	Target string
	Err    error
	Fix    string
}

func (e *TargetError) Error() string {
	msg := fmt.Sprintf("%s: %v", e.Target, e.Err)
	if e.Fix != "" {
		msg += ": " + e.Fix
	}
	return msg
}

func (e *TargetError) Unwrap() error { return e.Err }

// Resolve says what arg is.
func Resolve(arg string) (Target, error) {
	t := Target{Arg: arg}
	abs, err := filepath.Abs(arg)
	if err != nil {
		return t, &TargetError{Target: arg, Err: err}
	}
	real, err := filepath.EvalSymlinks(abs)
	if errors.Is(err, os.ErrNotExist) {
		return t, &TargetError{Target: arg, Err: errors.New("no such file, device or directory"),
			Fix: "name a disk (/dev/sdb), a partition (/dev/sdb2), a disk image file, or a directory where the NixOS root is mounted"}
	} else if err != nil {
		return t, &TargetError{Target: arg, Err: err}
	}
	t.Path = real
	st, err := os.Stat(real)
	if err != nil {
		return t, &TargetError{Target: arg, Err: err}
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
			return t, &TargetError{Target: arg, Err: err}
		}
		if part > 0 {
			t.Kind, t.Disk, t.Partition = KindPartition, disk, part
		} else {
			t.Kind, t.Disk = KindDisk, real
		}
	default:
		return t, &TargetError{Target: arg, Err: fmt.Errorf("is a %s", st.Mode().Type()),
			Fix: "name a disk, a partition, a disk image file or a directory"}
	}
	return t, nil
}

// wholeDisk finds, through sysfs, the whole disk of block device
// major:minor and its partition number (0 for a whole disk).
func wholeDisk(major, minor uint32) (string, int, error) {
	sys := fmt.Sprintf("/sys/dev/block/%d:%d", major, minor)
	real, err := filepath.EvalSymlinks(sys)
	if err != nil {
		return "", 0, fmt.Errorf("find block device %d:%d in sysfs: %w", major, minor, err)
	}
	b, err := os.ReadFile(filepath.Join(real, "partition"))
	if err != nil {
		return "/dev/" + filepath.Base(real), 0, nil
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return "", 0, fmt.Errorf("read partition number of %d:%d: %w", major, minor, err)
	}
	return "/dev/" + filepath.Base(filepath.Dir(real)), n, nil
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

package target

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/nixrescue/nixrescue/runtime/hint"
	"github.com/nixrescue/nixrescue/runtime/mount"
	"golang.org/x/sys/unix"
)

// Key names the data behind a target, whatever it is called: an image
// file by its device and inode (a hard link and a symbolic link to it are
// the same image), a disk by its device number, a loop device by the
// file behind it too (a second loop device on an image is the same
// image). Two targets that share a key share data: two sessions on them
// would be two writers on one filesystem.
type Key string

func fileKey(dev, ino uint64) Key { return Key(fmt.Sprintf("file-%d-%d", dev, ino)) }
func diskKey(major, minor uint32) Key {
	return Key(fmt.Sprintf("disk-%d-%d", major, minor))
}

// Keys are the keys of t's data: for an image, its file; for a disk or a
// partition, the whole disk, and the file behind it when it is a loop
// device. A directory has none: nixrescue mounts nothing of it.
func Keys(t Target) ([]Key, error) {
	switch t.Kind {
	case KindImage:
		var st unix.Stat_t
		if err := unix.Stat(t.Path, &st); err != nil {
			return nil, &hint.Error{Subject: t.Arg, Err: err}
		}
		return []Key{fileKey(st.Dev, st.Ino)}, nil
	case KindDisk, KindPartition:
		maj, min, err := DeviceNumber(t.Disk)
		if err != nil {
			return nil, &hint.Error{Subject: t.Arg, Err: err}
		}
		return DeviceKeys(maj, min), nil
	}
	return nil, nil
}

// DeviceKeys are the keys of block device major:minor: its whole disk's
// and, for a loop device (or a partition of one), the file behind it.
// A device sysfs does not know gives its own number only.
func DeviceKeys(major, minor uint32) []Key {
	name, _, err := blockName(major, minor)
	if err != nil {
		return []Key{diskKey(major, minor)}
	}
	keys := []Key{}
	if dmaj, dmin, err := sysfsDevNumber(name); err == nil {
		keys = append(keys, diskKey(dmaj, dmin))
	} else {
		keys = append(keys, diskKey(major, minor))
	}
	if dev, ino, ok := loopBacking(name); ok {
		keys = append(keys, fileKey(dev, ino))
	}
	// A device-mapper map (a session's partition of an image, a LUKS
	// volume) or an md array holds the data of what it is made of.
	for _, low := range lowestDevices(name) {
		if low == name {
			continue
		}
		if lmaj, lmin, err := sysfsDevNumberOf(filepath.Join("/sys/class/block", low, "dev")); err == nil {
			for _, k := range DeviceKeys(lmaj, lmin) {
				if !slices.Contains(keys, k) {
					keys = append(keys, k)
				}
			}
		}
	}
	return keys
}

// Shares tells whether two key lists share data.
func Shares(a, b []Key) bool {
	return slices.ContainsFunc(a, func(k Key) bool { return slices.Contains(b, k) })
}

// blockName is the kernel's name of the whole disk of block device
// major:minor (sda, loop0, nvme0n1), and its partition number (0 for the
// disk itself), read from /sys/dev/block: rescue systems with mdev or no
// udev have no /dev/block links, but every kernel has sysfs.
func blockName(major, minor uint32) (string, int, error) {
	sys := fmt.Sprintf("/sys/dev/block/%d:%d", major, minor)
	real, err := filepath.EvalSymlinks(sys)
	if err != nil {
		return "", 0, fmt.Errorf("find block device %d:%d in sysfs: %w", major, minor, err)
	}
	n, err := readInt(filepath.Join(real, "partition"))
	if err != nil {
		return filepath.Base(real), 0, nil
	}
	return filepath.Base(filepath.Dir(real)), int(n), nil
}

// sysfsDevNumber reads the major:minor of block device name (a whole
// disk) from sysfs.
func sysfsDevNumber(name string) (uint32, uint32, error) {
	return sysfsDevNumberOf(filepath.Join("/sys/block", name, "dev"))
}

// sysfsDevNumberOf reads a major:minor from sysfs file p (a device's
// dev).
func sysfsDevNumberOf(p string) (uint32, uint32, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return 0, 0, err
	}
	var maj, min uint32
	if _, err := fmt.Sscanf(strings.TrimSpace(string(b)), "%d:%d", &maj, &min); err != nil {
		return 0, 0, err
	}
	return maj, min, nil
}

// loopBacking is the device and inode of the file behind loop device
// name, from the kernel (LOOP_GET_STATUS64): the file's path in sysfs may
// name it in another mount namespace, or after it was renamed.
func loopBacking(name string) (dev, ino uint64, ok bool) {
	if !strings.HasPrefix(name, "loop") {
		return 0, 0, false
	}
	if f, err := os.Open("/dev/" + name); err == nil {
		info, err := unix.IoctlLoopGetStatus64(int(f.Fd()))
		f.Close()
		if err != nil {
			return 0, 0, false // not attached
		}
		return info.Device, info.Inode, true
	}
	// No node for it here: the path sysfs gives, when it leads to it.
	b, err := os.ReadFile(filepath.Join("/sys/block", name, "loop/backing_file"))
	if err != nil {
		return 0, 0, false
	}
	var st unix.Stat_t
	if unix.Stat(strings.TrimSuffix(strings.TrimSpace(string(b)), " (deleted)"), &st) != nil {
		return 0, 0, false
	}
	return st.Dev, st.Ino, true
}

// MountedReadWrite lists the read-write mounts, in every mount namespace
// of this host (mount.Everywhere), of the block devices whose data is
// the data keys name (DeviceKeys): the same filesystem under any device
// name, mounted where nothing in this process's mount table shows it.
func MountedReadWrite(keys []Key) ([]mount.NamespaceMount, error) {
	mounts, err := mount.Everywhere(func(m *mount.Info) bool {
		return (m.Major != 0 || strings.HasPrefix(m.Source, "/dev/")) && mount.ReadWrite(m)
	})
	if err != nil {
		return nil, fmt.Errorf("read the mount tables: %w", err)
	}
	known := map[[2]uint32][]Key{}
	var out []mount.NamespaceMount
	for _, m := range mounts {
		dev, ok := mountDevice(m.Info)
		if !ok {
			continue
		}
		k, ok := known[dev]
		if !ok {
			k = DeviceKeys(dev[0], dev[1])
			known[dev] = k
		}
		if Shares(k, keys) {
			out = append(out, m)
		}
	}
	return out, nil
}

// mountDevice is the block device a mount is of.
func mountDevice(m *mount.Info) ([2]uint32, bool) {
	if m.Major != 0 {
		return [2]uint32{uint32(m.Major), uint32(m.Minor)}, true
	}
	// btrfs reports a device number of its own: its source names the
	// block device.
	maj, min, err := DeviceNumber(m.Source)
	if err != nil {
		return [2]uint32{}, false
	}
	return [2]uint32{maj, min}, true
}

// HostRoot is the mount of this host's own root filesystem, as its init
// sees it or as this process does, when its data is among keys: a target
// that holds it is the running system itself, which no session may open,
// forced or not. nil when it is not.
func HostRoot(keys []Key) *mount.Info {
	for _, table := range []string{"/proc/1/mountinfo", "/proc/self/mountinfo"} {
		m, err := mount.RootOf(table)
		if err != nil || m == nil {
			continue
		}
		if dev, ok := mountDevice(m); ok && Shares(DeviceKeys(dev[0], dev[1]), keys) {
			return m
		}
	}
	return nil
}

// ErrHostRoot says a target holds this host's own root filesystem.
var ErrHostRoot = errors.New("holds this host's own root filesystem")

// HostRootError is the refusal of target arg, whose data is this host's
// root filesystem, mounted from source: no flag lets a session open it.
func HostRootError(arg, source string) error {
	return &hint.Error{Subject: arg, Err: fmt.Errorf("%w (%s, mounted on /)", ErrHostRoot, source),
		Fix: "nixrescue repairs another machine's disk: attach that disk or its image to this host, or boot the broken machine from a rescue system and run nixrescue there"}
}

package mount

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// flagOptions are the fstab options that are mount flags rather than
// filesystem data: set (true) or cleared (false).
var flagOptions = map[string]struct {
	flag uintptr
	set  bool
}{
	"ro": {unix.MS_RDONLY, true}, "rw": {unix.MS_RDONLY, false},
	"nosuid": {unix.MS_NOSUID, true}, "suid": {unix.MS_NOSUID, false},
	"nodev": {unix.MS_NODEV, true}, "dev": {unix.MS_NODEV, false},
	"noexec": {unix.MS_NOEXEC, true}, "exec": {unix.MS_NOEXEC, false},
	"sync": {unix.MS_SYNCHRONOUS, true}, "async": {unix.MS_SYNCHRONOUS, false},
	"dirsync": {unix.MS_DIRSYNC, true},
	"noatime": {unix.MS_NOATIME, true}, "atime": {unix.MS_NOATIME, false},
	"nodiratime": {unix.MS_NODIRATIME, true}, "diratime": {unix.MS_NODIRATIME, false},
	"relatime": {unix.MS_RELATIME, true}, "norelatime": {unix.MS_RELATIME, false},
	"strictatime": {unix.MS_STRICTATIME, true},
	"lazytime":    {unix.MS_LAZYTIME, true}, "nolazytime": {unix.MS_LAZYTIME, false},
	"silent": {unix.MS_SILENT, true}, "loud": {unix.MS_SILENT, false},
}

// userspaceOptions mean something to mount(8), systemd or the boot, not
// to the kernel; they are dropped.
var userspaceOptions = []string{"defaults", "auto", "noauto", "user", "nouser", "users", "owner", "group", "nofail", "_netdev"}

// Flags splits fstab options into mount flags and the data string the
// filesystem gets.
func Flags(options []string) (uintptr, string) {
	var flags uintptr
	var data []string
	for _, o := range options {
		if f, ok := flagOptions[o]; ok {
			if f.set {
				flags |= f.flag
			} else {
				flags &^= f.flag
			}
			continue
		}
		if o == "" || slices.Contains(userspaceOptions, o) || strings.HasPrefix(o, "x-") ||
			strings.HasPrefix(o, "X-") || strings.HasPrefix(o, "comment=") {
			continue
		}
		data = append(data, o)
	}
	return flags, strings.Join(data, ",")
}

// Mounter mounts filesystems and remembers them, to unmount them in
// reverse order.
type Mounter struct {
	// ReadOnly mounts everything read-only.
	ReadOnly bool
	mounted  []string
}

// Mount mounts device (of type fstype, with fstab options) at target, a
// host path that must be a directory.
func (m *Mounter) Mount(device, target, fstype string, options []string) error {
	flags, data := Flags(options)
	if m.ReadOnly {
		flags |= unix.MS_RDONLY
	}
	if err := unix.Mount(device, target, fstype, flags, data); err != nil {
		return fmt.Errorf("mount %s (%s) on %s: %w", device, fstype, target, err)
	}
	m.mounted = append(m.mounted, target)
	return nil
}

// MountReadOnly mounts like Mount, but read-only whatever the options
// say: for looking before writing (RemountWritable follows).
func (m *Mounter) MountReadOnly(device, target, fstype string, options []string) error {
	flags, data := Flags(options)
	if err := unix.Mount(device, target, fstype, flags|unix.MS_RDONLY, data); err != nil {
		return fmt.Errorf("mount %s (%s) on %s: %w", device, fstype, target, err)
	}
	m.mounted = append(m.mounted, target)
	return nil
}

// RemountWritable makes every mount of this Mounter writable (unless it
// is ReadOnly), keeping the other flags the options gave.
func (m *Mounter) RemountWritable(options map[string][]string) error {
	if m.ReadOnly {
		return nil
	}
	for _, t := range m.mounted {
		flags, _ := Flags(options[t])
		if err := unix.Mount("", t, "", unix.MS_REMOUNT|(flags&^unix.MS_RDONLY), ""); err != nil {
			return fmt.Errorf("remount %s read-write: %w", t, err)
		}
	}
	return nil
}

// UnmountLast unmounts the most recent mount.
func (m *Mounter) UnmountLast() error {
	if len(m.mounted) == 0 {
		return nil
	}
	t := m.mounted[len(m.mounted)-1]
	m.mounted = m.mounted[:len(m.mounted)-1]
	return Unmount(t)
}

// UnmountAll unmounts everything in reverse order and returns the first
// error; it carries on after errors so that as much as possible is undone.
func (m *Mounter) UnmountAll() error {
	var first error
	for len(m.mounted) > 0 {
		if err := m.UnmountLast(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// Unmount unmounts target, retrying briefly while it is busy (a process
// that just exited may still hold it), then detaching it lazily.
func Unmount(target string) error {
	deadline := time.Now().Add(2 * time.Second)
	for {
		err := unix.Unmount(target, 0)
		if err == nil || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
			return nil
		}
		if !errors.Is(err, unix.EBUSY) || time.Now().After(deadline) {
			if err2 := unix.Unmount(target, unix.MNT_DETACH); err2 == nil {
				return nil
			}
			return fmt.Errorf("unmount %s: %w", target, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// MakePrivateTree makes every mount of this mount namespace a slave of
// the host's: host mounts still reach us, nothing of ours goes back.
func MakePrivateTree() error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_SLAVE, ""); err != nil {
		return fmt.Errorf("make the session's mount namespace private: %w", err)
	}
	return nil
}

package mount

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/moby/sys/mountinfo"
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
	if err := m.mount(device, target, fstype, flags, data, true); err != nil {
		return fmt.Errorf("mount %s (%s) on %s: %w", device, fstype, target, err)
	}
	m.mounted = append(m.mounted, target)
	return nil
}

// mount is mount(2). A read-only mount of a filesystem that is mounted
// read-write elsewhere (a target opened with --force) fails with EBUSY:
// then, unless everything must be read-only, it is mounted as asked, since
// mounting it read-only first protects nothing.
func (m *Mounter) mount(device, target, fstype string, flags uintptr, data string, forcedReadOnly bool) error {
	if forcedReadOnly {
		err := unix.Mount(device, target, fstype, flags|unix.MS_RDONLY, data)
		if !errors.Is(err, unix.EBUSY) || m.ReadOnly {
			return err
		}
	}
	return unix.Mount(device, target, fstype, flags, data)
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

// MountOn mounts like Mount (read-only when readOnly) on dir, an open
// directory: a handle resolved inside a target (see rootfs.OpenDir), so
// that no link the target holds can turn the mount towards a host path
// between the lookup and the mount. The mount is made through
// /proc/self/fd, as runc does.
func (m *Mounter) MountOn(device string, dir *os.File, fstype string, options []string, readOnly bool) error {
	flags, data := Flags(options)
	if m.ReadOnly {
		flags |= unix.MS_RDONLY
	}
	proc := fmt.Sprintf("/proc/self/fd/%d", dir.Fd())
	where, err := os.Readlink(proc)
	if err != nil {
		return fmt.Errorf("mount %s: find the mount point: %w", device, err)
	}
	if err := m.mount(device, proc, fstype, flags, data, readOnly && flags&unix.MS_RDONLY == 0); err != nil {
		return fmt.Errorf("mount %s (%s) on %s: %w", device, fstype, where, err)
	}
	m.mounted = append(m.mounted, where)
	return nil
}

// Mounted lists this Mounter's mounts, in the order they were made.
func (m *Mounter) Mounted() []string { return slices.Clone(m.mounted) }

// Forget drops the Mounter's record (UnmountUnder undid the mounts).
func (m *Mounter) Forget() { m.mounted = nil }

// UnmountUnder unmounts dir and everything mounted under it, deepest
// first. The paths come from the kernel's mount table at the time, not
// from what was recorded when mounting: a target whose programs renamed
// directories or made links cannot redirect an unmount to a host path.
func UnmountUnder(dir string) error {
	mounts, err := mountinfo.GetMounts(mountinfo.PrefixFilter(dir))
	if err != nil {
		return fmt.Errorf("read the mount table: %w", err)
	}
	sort.Slice(mounts, func(i, j int) bool { return len(mounts[i].Mountpoint) > len(mounts[j].Mountpoint) })
	var first error
	for _, m := range mounts {
		if err := Unmount(m.Mountpoint); err != nil && first == nil {
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
		err := unix.Unmount(target, unix.UMOUNT_NOFOLLOW)
		if err == nil || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
			return nil
		}
		if !errors.Is(err, unix.EBUSY) || time.Now().After(deadline) {
			if err2 := unix.Unmount(target, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW); err2 == nil {
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

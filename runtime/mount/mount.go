package mount

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
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

// BootOnly says why an fstab option means nothing to the kernel's mount
// of a filesystem for a repair, or "" when the mount takes it: it tells
// mount(8), systemd or a desktop tool what to do at boot. Flags drops these.
func BootOnly(option string) string {
	switch {
	case option == "defaults" || option == "":
		return "no option: the kernel's defaults"
	case option == "auto" || option == "noauto":
		return "whether the boot mounts it"
	case option == "nofail":
		return "for the boot: a missing device does not stop it"
	case option == "_netdev":
		return "for the boot: wait for the network"
	case option == "zfsutil":
		return "mount.zfs's: a dataset whose mountpoint is not legacy may be mounted (the kernel needs no word of it)"
	case strings.HasPrefix(option, "x-systemd.") || option == "x-initrd.mount":
		return "systemd's, for the boot"
	case option == "user" || option == "nouser" || option == "users" || option == "owner" || option == "group":
		return "mount(8)'s: which users may mount it"
	case strings.HasPrefix(option, "x-") || strings.HasPrefix(option, "X-") || strings.HasPrefix(option, "comment="):
		return "for other programs than the kernel"
	}
	return ""
}

// Flags splits fstab options into mount flags and the data string the
// filesystem gets; options for the boot (BootOnly) are left out.
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
		if BootOnly(o) != "" {
			continue
		}
		data = append(data, o)
	}
	return flags, strings.Join(data, ",")
}

// Mounter mounts a target's filesystems read-only, for looking before
// writing, and remembers them, to make them writable once all is known to
// be good.
type Mounter struct {
	// ReadOnly keeps everything read-only.
	ReadOnly bool
	// Name gives the name a device is mounted by, which mount tables
	// show as the mount's source (mountNamed); nil, or the device
	// itself, mounts it by its path here.
	Name   func(device string) string
	mounts []made
}

// made is one mount: what was mounted where (and by which name), the
// flags and data its options ask for, and whether it is mounted as they
// ask yet.
type made struct {
	device, name, fstype, data string
	where                      string
	flags                      uintptr
	final                      bool
}

// name is the name device is mounted by.
func (m *Mounter) name(device string) string {
	if m.Name == nil {
		return device
	}
	if n := m.Name(device); n != "" {
		return n
	}
	return device
}

// MountReadOnly mounts device (of type fstype, with fstab options) on dir,
// read-only whatever the options say.
// dir is an open directory: a handle resolved inside a target (see
// rootfs.OpenDir), so that no link the target holds can turn the mount
// towards a host path between the lookup and the mount; the mount is made
// through /proc/self/fd, as runc does. A filesystem already mounted
// read-write (by an earlier entry of the same fstab, or on the host, with
// --force) refuses a new read-only mount with EBUSY: it is then mounted
// read-write and that one mount made read-only (a bind remount), which
// leaves the filesystem's other mounts as they are.
func (m *Mounter) MountReadOnly(device string, dir *os.File, fstype string, options []string) error {
	flags, data := Flags(options)
	proc := fmt.Sprintf("/proc/self/fd/%d", dir.Fd())
	where, err := os.Readlink(proc)
	if err != nil {
		return fmt.Errorf("mount %s: find the mount point: %w", device, err)
	}
	name := m.name(device)
	err = ErrNoDetached
	if name != device {
		err = mountNamed(device, name, int(dir.Fd()), fstype, flags|unix.MS_RDONLY, data)
	}
	if errors.Is(err, ErrNoDetached) {
		name = device
		err = unix.Mount(device, proc, fstype, flags|unix.MS_RDONLY, data)
	}
	if errors.Is(err, unix.EBUSY) {
		name = device
		if err = unix.Mount(device, proc, fstype, flags&^unix.MS_RDONLY, data); err == nil {
			if err = unix.Mount("", where, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY|flags, ""); err != nil {
				_ = unix.Unmount(where, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW)
			}
		}
	}
	if err != nil {
		return fmt.Errorf("mount %s (%s) on %s: %w", device, fstype, where, err)
	}
	m.mounts = append(m.mounts, made{device: device, name: name, fstype: fstype, data: data, where: where, flags: flags,
		final: m.ReadOnly || flags&unix.MS_RDONLY != 0})
	return nil
}

// SetOptions gives the mount at where (as MountReadOnly was given it) the
// options it is to end with: the fstab's for the root and /nix, read
// once they are mounted. MakeWritable mounts it with them; a ReadOnly
// Mounter keeps what it mounted.
func (m *Mounter) SetOptions(where string, options []string) error {
	for i := len(m.mounts) - 1; i >= 0; i-- {
		mt := &m.mounts[i]
		if mt.where != filepath.Clean(where) {
			continue
		}
		mt.flags, mt.data = Flags(options)
		if !m.ReadOnly && mt.flags&unix.MS_RDONLY == 0 {
			mt.final = false
		}
		return nil
	}
	return fmt.Errorf("set the options of %s: nothing mounted there", where)
}

// MakeWritable mounts every mount of this Mounter as its options ask:
// read-write unless they say ro (and unless the Mounter is ReadOnly).
// It unmounts the read-only mounts, deepest first, and mounts them again,
// rather than remounting them read-write in place: on ext4 a remount to
// read-write and the unmount after it cost much more than a fresh
// read-write mount and its unmount, and a session pays that for each
// filesystem.
// Mounts made after the first that changes are mounted again too, since
// they may lie on it. It runs before any program of the target has: the
// recorded mount points are the paths the kernel gave for the handles
// MountReadOnly was given, links resolved, and each is opened again
// without following any link.
func (m *Mounter) MakeWritable() error {
	first := slices.IndexFunc(m.mounts, func(mt made) bool { return !mt.final })
	if first < 0 {
		return nil
	}
	for i := len(m.mounts) - 1; i >= first; i-- {
		if err := unmountNow(m.mounts[i].where); err != nil {
			return fmt.Errorf("make %s writable: %w", m.mounts[i].where, err)
		}
	}
	for i := first; i < len(m.mounts); i++ {
		mt := &m.mounts[i]
		err := mountAtPath(mt, mt.flags)
		if errors.Is(err, unix.EBUSY) {
			err = remountWritable(mt)
		}
		if err != nil {
			return fmt.Errorf("mount %s (%s) on %s read-write: %w", mt.device, mt.fstype, mt.where, err)
		}
		mt.final = true
	}
	return nil
}

// remountWritable mounts mt read-only again and remounts it read-write in
// place: for a filesystem still mounted read-only in another mount
// namespace, a copy of this one's made while it was (a container starting
// on the host, a service with a private /tmp, another session's
// namespace). Its superblock then outlives the unmount here, and the
// kernel refuses a read-write mount of the device ("would change RO
// state", EBUSY); a read-only mount takes that superblock up again, and a
// remount changes it, as MakeWritable did before it mounted afresh.
//
// The superblock taken up again may be a probe's, mounted without journal
// replay (target.Discover's noload, norecovery, nologreplay) and kept by
// such a copy since: made writable, the filesystem would be written with
// no journal. Then it is unmounted and refused.
func remountWritable(mt *made) error {
	if err := mountAtPath(mt, mt.flags|unix.MS_RDONLY); err != nil {
		return err
	}
	if opt := withoutJournal(mt.where); opt != "" && noReplay(strings.Split(mt.data, ",")) == "" {
		_ = unix.Unmount(mt.where, unix.UMOUNT_NOFOLLOW)
		return fmt.Errorf("the filesystem is still mounted in another mount namespace as nixrescue first looked at it, without its journal (%s), and would be written without one: end what holds it (a container or service started meanwhile) and run nixrescue again", opt)
	}
	return remountAtPath(mt.where, unix.MS_REMOUNT|mt.flags)
}

// withoutJournal names the option by which the filesystem mounted at dir
// skips its journal or log, or "" when it does not.
func withoutJournal(dir string) string {
	m, err := At(dir)
	if err != nil || m == nil {
		return ""
	}
	return noReplay(strings.Split(m.Options+","+m.VFSOptions, ","))
}

// noReplay names the first of options that skips a journal's or log's
// replay, or "". ext4 takes noload and shows it as norecovery (seen
// here); btrfs's is rescue=nologreplay, nologreplay on older kernels.
func noReplay(options []string) string {
	for _, o := range options {
		switch o {
		case "noload", "norecovery", "nologreplay", "rescue=nologreplay":
			return o
		}
	}
	return ""
}

// unmountNow unmounts target, waiting out a brief user, and never detaches
// it lazily: a filesystem still mounted read-only somewhere refuses a
// read-write mount.
func unmountNow(target string) error {
	if err := whileBusy(func() error { return unix.Unmount(target, unix.UMOUNT_NOFOLLOW) }); err != nil {
		return fmt.Errorf("unmount %s: %w", target, err)
	}
	return nil
}

// whileBusy runs op again while it fails with EBUSY, for up to 2 s, and
// returns its last error: a process that has just exited, or a mount
// namespace being made elsewhere that copied ours, holds a mount or a
// partition for a moment.
func whileBusy(op func() error) error {
	deadline := time.Now().Add(2 * time.Second)
	for {
		err := op()
		if !errors.Is(err, unix.EBUSY) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// mountAtPath mounts mt's device, by its name, with flags, on its
// directory, opened without following any link (openMountPoint).
func mountAtPath(mt *made, flags uintptr) error {
	fd, err := openMountPoint(mt.where)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if mt.name != mt.device {
		return mountNamed(mt.device, mt.name, fd, mt.fstype, flags, mt.data)
	}
	return unix.Mount(mt.device, fmt.Sprintf("/proc/self/fd/%d", fd), mt.fstype, flags, mt.data)
}

// remountAtPath remounts the mount at where with flags.
func remountAtPath(where string, flags uintptr) error {
	fd, err := openMountPoint(where)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.Mount("", fmt.Sprintf("/proc/self/fd/%d", fd), "", flags, "")
}

// openMountPoint opens the directory at the absolute path where without
// following any link, for a mount through /proc/self/fd, as runc does.
func openMountPoint(where string) (int, error) {
	fd, err := unix.Openat2(unix.AT_FDCWD, where, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return -1, fmt.Errorf("open the mount point: %w", err)
	}
	return fd, nil
}

// UnmountUnder unmounts dir and everything mounted under it, deepest
// first. The paths come from the kernel's mount table at the time, not
// from what was recorded when mounting: a target whose programs renamed
// directories or made links cannot redirect an unmount to a host path.
func UnmountUnder(dir string) error {
	mounts, err := Under(dir)
	if err != nil {
		return err
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

// Unmount unmounts target, waiting out a brief user (a process that just
// exited may still hold it), then detaching it lazily.
func Unmount(target string) error {
	err := whileBusy(func() error { return unix.Unmount(target, unix.UMOUNT_NOFOLLOW) })
	if err == nil || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
		return nil
	}
	if unix.Unmount(target, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW) == nil {
		return nil
	}
	return fmt.Errorf("unmount %s: %w", target, err)
}

// MakePrivateTree makes every mount of this mount namespace a slave of
// the host's: host mounts still reach us, nothing of ours goes back.
func MakePrivateTree() error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_SLAVE, ""); err != nil {
		return fmt.Errorf("make the session's mount namespace private: %w", err)
	}
	return nil
}

// MountError is a mount the kernel refused, with what the filesystem
// said about it where it says it to the mount (the new mount API's
// context log; ext4 says it to the kernel log only).
type MountError struct {
	Device, Type string
	Err          error
	Said         []string
}

func (e *MountError) Error() string {
	return fmt.Sprintf("mount %s (%s): %s", e.Device, e.Type, e.Reason())
}

// Reason is the kernel's answer, without the device.
func (e *MountError) Reason() string {
	if len(e.Said) == 0 {
		return e.Err.Error()
	}
	return e.Err.Error() + " (" + strings.Join(e.Said, "; ") + ")"
}

func (e *MountError) Unwrap() error { return e.Err }

// Detached mounts device (of type fstype, with options) read-only without
// attaching it anywhere (fsopen, fsmount): a mount no mount table lists,
// reached only through the returned directory, which is its root; closing
// it ends the mount. Nothing made meanwhile can copy it: a mount namespace
// made while an attached mount exists (a container or service starting on
// the host) keeps a copy of it, and with it the superblock, mounted as it
// was. ErrNoDetached when the kernel has no new mount API (before 5.2). A
// refusal is a *MountError.
func Detached(device, fstype string, options []string) (*os.File, error) {
	_, data := Flags(options)
	fs, err := configure(fstype, device, 0, data, true)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fs)
	m, err := unix.Fsmount(fs, unix.FSMOUNT_CLOEXEC, unix.MOUNT_ATTR_RDONLY|unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV|unix.MOUNT_ATTR_NOEXEC)
	if err != nil {
		return nil, &MountError{Device: device, Type: fstype, Err: err, Said: contextLog(fs)}
	}
	return os.NewFile(uintptr(m), device), nil
}

// contextLog reads the messages a filesystem left in its mount context
// ("e …" errors, "w …" warnings), without their kind.
func contextLog(fs int) []string {
	var out []string
	buf := make([]byte, 4096)
	for range 16 {
		n, err := unix.Read(fs, buf)
		if err != nil || n <= 0 {
			break
		}
		msg := string(buf[:n])
		if len(msg) > 2 && msg[1] == ' ' {
			msg = msg[2:]
		}
		out = append(out, strings.TrimSpace(msg))
	}
	return out
}

// ErrNoDetached says the kernel cannot make detached mounts.
var ErrNoDetached = errors.New("no detached mounts on this kernel")

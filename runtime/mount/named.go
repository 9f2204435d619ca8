package mount

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// A mount's source, as /proc/*/mountinfo shows it, is the name it was
// mounted by, kept as given: the kernel only looks the device up by it.
// Programs inside the container read it to find a filesystem's device:
// nixos-generate-config writes it into the configuration (a /dev/loopN
// source becomes the loop device's backing file on this host, with
// options = [ "loop" ]), grub-probe canonicalizes it. A target's
// filesystems are therefore mounted by the names the target itself knows
// them by (/dev/disk/by-uuid/UUID), which lead to the same device inside
// the container, not by this host's names for them.

// mountNamed mounts device (of type fstype, with mount(2)'s flags and
// data) on the directory dirfd (an O_PATH handle) with name as its
// source. The device is looked up by name in a mount namespace made for
// the lookup alone, on a thread of its own, where a tmpfs over /dev holds
// a node at name for device's number; the mount is made there detached
// (fsmount) and attached at dirfd from here (move_mount). Nothing of it is
// seen outside that thread, which ends with it. ErrNoDetached when the
// kernel has no new mount API.
func mountNamed(device, name string, dirfd int, fstype string, flags uintptr, data string) error {
	var st unix.Stat_t
	if err := unix.Stat(device, &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return fmt.Errorf("%s is not a block device", device)
	}
	if !strings.HasPrefix(name, "/dev/") || strings.Contains(name, "/../") {
		return fmt.Errorf("mount name %q is not under /dev", name)
	}
	type made struct {
		fd  int
		err error
	}
	done := make(chan made, 1)
	go func() {
		// Never unlocked: the thread, whose mount namespace and root are
		// its own now, ends with this goroutine.
		runtime.LockOSThread()
		fd, err := mountByName(name, uint64(st.Rdev), fstype, flags, data)
		done <- made{fd, err}
	}()
	m := <-done
	if m.err != nil {
		return m.err
	}
	defer unix.Close(m.fd)
	return unix.MoveMount(m.fd, "", dirfd, "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH)
}

// mountByName runs on a locked thread: it gives the thread a mount
// namespace of its own where name is a node of device number rdev, and
// makes a detached mount of it there.
func mountByName(name string, rdev uint64, fstype string, flags uintptr, data string) (int, error) {
	if err := unix.Unshare(unix.CLONE_NEWNS | unix.CLONE_FS); err != nil {
		return -1, fmt.Errorf("a mount namespace for the lookup: %w", err)
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return -1, fmt.Errorf("a mount namespace for the lookup: %w", err)
	}
	if err := unix.Mount("nixrescue-names", "/dev", "tmpfs", unix.MS_NOSUID|unix.MS_NOEXEC, "mode=0700"); err != nil {
		return -1, fmt.Errorf("a /dev for the lookup: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(name), 0o700); err != nil {
		return -1, fmt.Errorf("a /dev for the lookup: %w", err)
	}
	if err := unix.Mknod(name, unix.S_IFBLK|0o600, int(rdev)); err != nil {
		return -1, fmt.Errorf("a /dev for the lookup: %w", err)
	}
	return newMount(fstype, name, flags, data)
}

// newMount makes a detached mount (fsopen, fsconfig, fsmount) of source,
// of type fstype, with mount(2)'s flags and data, and returns its
// descriptor. A read-only mount of a filesystem mounted read-write
// elsewhere shares its writable superblock, read-only here (mount(2)
// refuses it with EBUSY).
func newMount(fstype, source string, flags uintptr, data string) (int, error) {
	fd, err := configure(fstype, source, flags, data, flags&unix.MS_RDONLY != 0)
	if errors.Is(err, unix.EBUSY) && flags&unix.MS_RDONLY != 0 {
		fd, err = configure(fstype, source, flags, data, false)
	}
	if err != nil {
		return -1, err
	}
	defer unix.Close(fd)
	m, err := unix.Fsmount(fd, unix.FSMOUNT_CLOEXEC, mountAttrs(flags))
	if err != nil {
		return -1, &MountError{Device: source, Type: fstype, Err: err, Said: contextLog(fd)}
	}
	return m, nil
}

// configure opens a filesystem context of type fstype on source, with
// the superblock's flags and data, read-only if ro, and creates its
// superblock.
func configure(fstype, source string, flags uintptr, data string, ro bool) (int, error) {
	fs, err := unix.Fsopen(fstype, unix.FSOPEN_CLOEXEC)
	if errors.Is(err, unix.ENOSYS) {
		return -1, ErrNoDetached
	} else if err != nil {
		return -1, &MountError{Device: source, Type: fstype, Err: err}
	}
	set := func(key, value string) error {
		if value == "" {
			return unix.FsconfigSetFlag(fs, key)
		}
		return unix.FsconfigSetString(fs, key, value)
	}
	err = set("source", source)
	for _, f := range []struct {
		flag uintptr
		key  string
	}{{unix.MS_SYNCHRONOUS, "sync"}, {unix.MS_DIRSYNC, "dirsync"}, {unix.MS_LAZYTIME, "lazytime"}, {unix.MS_SILENT, "silent"}} {
		if err == nil && flags&f.flag != 0 {
			err = set(f.key, "")
		}
	}
	if err == nil && ro {
		err = set("ro", "")
	}
	for _, o := range strings.Split(data, ",") {
		if err != nil || o == "" {
			continue
		}
		k, v, _ := strings.Cut(o, "=")
		err = set(k, v)
	}
	if err == nil {
		err = unix.FsconfigCreate(fs)
	}
	if err != nil {
		said := contextLog(fs)
		unix.Close(fs)
		return -1, &MountError{Device: source, Type: fstype, Err: err, Said: said}
	}
	return fs, nil
}

// mountAttrs are the attributes of a mount (not of its filesystem) that
// mount(2)'s flags ask for.
func mountAttrs(flags uintptr) int {
	attrs := 0
	for _, a := range []struct {
		flag uintptr
		attr int
	}{{unix.MS_RDONLY, unix.MOUNT_ATTR_RDONLY}, {unix.MS_NOSUID, unix.MOUNT_ATTR_NOSUID}, {unix.MS_NODEV, unix.MOUNT_ATTR_NODEV},
		{unix.MS_NOEXEC, unix.MOUNT_ATTR_NOEXEC}, {unix.MS_NODIRATIME, unix.MOUNT_ATTR_NODIRATIME}} {
		if flags&a.flag != 0 {
			attrs |= a.attr
		}
	}
	switch {
	case flags&unix.MS_NOATIME != 0:
		attrs |= unix.MOUNT_ATTR_NOATIME
	case flags&unix.MS_STRICTATIME != 0:
		attrs |= unix.MOUNT_ATTR_STRICTATIME
	}
	return attrs
}

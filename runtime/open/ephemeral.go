package open

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/nixrescue/nixrescue/runtime/mount"
	"github.com/nixrescue/nixrescue/runtime/rootfs"
	"github.com/nixrescue/nixrescue/runtime/target"
)

// mountEphemeralRoot builds the root of a machine whose root is a tmpfs
// made afresh at each boot (impermanence), as its stage 1 does: a tmpfs
// on the session's root, with the machine's size and mode, and its /nix
// filesystem nix in it, where the system and its fstab are; the rest
// (/persist, /boot, the binds) is the plan's. ok is false when the fstab
// does not mount a tmpfs on /: no NixOS root after all (what is mounted
// goes with the session).
func (op *Opened) mountEphemeralRoot(ctx context.Context, nix target.Found) (target.PlanInput, bool, error) {
	in := target.PlanInput{Root: target.Found{Partition: nix.Partition, Ephemeral: true}, Nix: &nix}
	if err := unix.Mount("tmpfs", op.RootDir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755"); err != nil {
		return in, false, fmt.Errorf("a tmpfs for the root: %w", err)
	}
	op.ephemeral = true
	if err := os.Mkdir(filepath.Join(op.RootDir, "nix"), 0o755); err != nil {
		return in, false, fmt.Errorf("a tmpfs for the root: %w", err)
	}
	if err := op.mountNix(ctx, nix); err != nil {
		return in, false, err
	}
	fstab, err := op.readFstab()
	if err != nil {
		return in, false, err
	}
	e := target.EphemeralRoot(fstab)
	if e == nil {
		return in, false, nil
	}
	kept, _ := target.Options(e.Options)
	flags, data := mount.Flags(kept)
	if err := unix.Mount("", op.RootDir, "", unix.MS_REMOUNT|unix.MS_NOSUID|unix.MS_NODEV|flags&^unix.MS_RDONLY, data); err != nil {
		return in, false, fmt.Errorf("the root's tmpfs with the fstab's options (%s): %w", data, err)
	}
	in.Fstab = fstab
	op.Root = &in.Root
	return in, true, nil
}

// onRootTmpfs tells whether mount point mp would be made in the
// session's tmpfs root (its nearest existing directory is there), which
// is the session's own, not the target's, and may always be written.
func (op *Opened) onRootTmpfs(mp string) bool {
	if !op.ephemeral {
		return false
	}
	var root unix.Stat_t
	if err := unix.Stat(op.RootDir, &root); err != nil {
		return false
	}
	for p := path.Dir(path.Clean(mp)); ; p = path.Dir(p) {
		if d, err := rootfs.OpenDir(op.RootDir, p, false); err == nil {
			var st unix.Stat_t
			err = unix.Fstat(int(d.Fd()), &st)
			d.Close()
			return err == nil && st.Dev == root.Dev
		}
		if p == "/" {
			return false
		}
	}
}

// mountBind binds e's source, a directory of the target (links resolved
// inside it), on e's mount point: read-only for a look, and with "ro".
func (op *Opened) mountBind(e *target.Entry) error {
	src, err := rootfs.OpenDir(op.RootDir, e.Spec, false)
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ENOTDIR) {
		return fmt.Errorf("its source %s is no directory of the target", e.Spec)
	} else if err != nil {
		return err
	}
	defer src.Close()
	dst, err := op.mountpointDir(e.Mountpoint, op.makeWritable)
	if err != nil {
		return err
	}
	defer dst.Close()
	flags := uintptr(unix.MS_BIND)
	if e.Type == target.RbindType {
		flags |= unix.MS_REC
	}
	to := fmt.Sprintf("/proc/self/fd/%d", dst.Fd())
	if err := unix.Mount(fmt.Sprintf("/proc/self/fd/%d", src.Fd()), to, "", flags, ""); err != nil {
		return err
	}
	if mflags, _ := mount.Flags(e.Options); op.mounter.ReadOnly || mflags&unix.MS_RDONLY != 0 {
		where, _ := os.Readlink(to)
		return unix.Mount("", where, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY|flags&unix.MS_REC, "")
	}
	return nil
}

package open

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/nixrescue/nixrescue/runtime/hint"
	"github.com/nixrescue/nixrescue/runtime/mount"
	"github.com/nixrescue/nixrescue/runtime/nixos"
	"github.com/nixrescue/nixrescue/runtime/rootfs"
	"github.com/nixrescue/nixrescue/runtime/target"
	"golang.org/x/sys/unix"
)

// Directory opens a directory target. Its mounts are the user's, so
// they are checked against its fstab (target.MissingMounts): what a repair
// writes to (/boot, /boot/efi, /efi, /nix) must be mounted, or a rebuild
// writes the kernels and the bootloader into the directory below them and
// the machine still boots the old generation. Commands that write there
// (to.RequireMounts) refuse; the others warn. Boot, Mounts and, for
// what is missing and on the directory's own disk, MountMissing have
// the session mount them itself: on a copy of the directory's tree, in
// the session's own mount namespace (or private tree), which is then the
// session's root; the user's mounts are not touched.
func Directory(ctx context.Context, t target.Target, to Options, s *Session) (*Opened, error) {
	op := &Opened{Layout: Layout{Target: t, Partitions: []target.Partition{}, Plan: []target.Entry{}}, Warnings: []string{},
		mounter: &mount.Mounter{ReadOnly: to.ReadOnly}, RootDir: t.Path, fsck: to.Fsck, checked: map[string]bool{}}
	op.mounter.Name = op.mountName
	if nixos.CheckRoot(t.Path) != nil {
		return op, nil // Prepare says what is wrong with it
	}
	fstab, _, _ := target.ReadSystemFstab(t.Path)
	overrides, err := target.Overrides(to.Mounts, to.Boot)
	if err != nil {
		return nil, err
	}
	disk, parts, _ := target.MountedDisk(t.Path)
	mounted := func(mp string) bool {
		p, err := rootfs.Join(t.Path, mp)
		if err != nil {
			return false
		}
		m, _ := mount.At(p)
		return m != nil
	}
	sys, _ := nixos.ResolveSystem(t.Path, nixos.SystemChoice{})
	ids := diskIDs(disk, t.Path, sys.StorePath, to)
	extra, err := target.PlanOverrides(overrides, parts, ids)
	if err != nil {
		return nil, &hint.Error{Subject: t.Arg, Err: err}
	}
	for _, m := range target.MissingMounts(fstab, parts, ids, mounted) {
		if slices.ContainsFunc(extra, func(e target.Entry) bool { return e.Mountpoint == m.Mountpoint }) {
			continue
		}
		if to.MountMissing && m.Device != "" {
			extra = append(extra, target.Entry{Mountpoint: m.Mountpoint, Spec: m.Spec, Device: m.Device, Type: m.Type, Options: m.Options,
				Action: target.ActionMount, Origin: target.OriginFstab, MappedBy: "--mount-missing"})
			continue
		}
		err := missingMountError(t, disk, m, to.MountMissing)
		if to.RequireMounts {
			return nil, err
		}
		op.warn("%s", strings.TrimPrefix(err.Error(), t.Arg+": "))
	}
	// The fstab's binds (impermanence's /persist/etc/nixos on
	// /etc/nixos), which a root mounted by hand lacks.
	for _, f := range fstab {
		if mp := path.Clean(f.Mountpoint); target.IsBind(f) && target.Skip(f) == "" && !mounted(mp) &&
			!slices.ContainsFunc(extra, func(e target.Entry) bool { return e.Mountpoint == mp }) {
			extra = append(extra, target.BindEntry(f))
		}
	}
	if len(extra) == 0 {
		return op, nil
	}
	op.Disk, op.Partitions = disk, parts
	op.Plan = extra
	op.RootDir = filepath.Join(s.State.Dir(), "root")
	if err := os.MkdirAll(op.RootDir, 0o700); err != nil {
		return nil, fmt.Errorf("create %s: %w", op.RootDir, err)
	}
	// A copy of the tree, a slave of the user's: their mounts and
	// unmounts reach it, what the session mounts on it goes nowhere else.
	if err := unix.Mount(t.Path, op.RootDir, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return nil, fmt.Errorf("copy the mount tree of %s: %w", t.Path, err)
	}
	op.tree = true
	if err := unix.Mount("", op.RootDir, "", unix.MS_SLAVE|unix.MS_REC, ""); err != nil {
		return op, fmt.Errorf("make the copy of %s a slave: %w", t.Path, err)
	}
	return op, op.mountPlan(ctx)
}

// missingMountError says that m is not mounted in directory target t,
// whose disk is disk, and what to do.
func missingMountError(t target.Target, disk string, m target.Missing, tried bool) error {
	where := filepath.Join(t.Path, m.Mountpoint)
	if m.Device == "" {
		what := fmt.Sprintf("the fstab mounts %s on %s, but nothing is mounted at %s", m.Spec, m.Mountpoint, where)
		if tried {
			return &hint.Error{Subject: t.Arg, Err: fmt.Errorf("%s, and it is on no partition of %s", what, cmp.Or(disk, "the directory's disk")),
				Fix: fmt.Sprintf("mount it yourself, or pass {Mount DEVICE:%s}", m.Mountpoint)}
		}
		return &hint.Error{Subject: t.Arg, Err: fmt.Errorf("%s: a repair would write into the directory below it", what),
			Fix: fmt.Sprintf("mount it (mount %s %s), pass the disk itself as {Target}, or {Mount DEVICE:%s}", m.Spec, where, m.Mountpoint)}
	}
	flag := "{Boot " + m.Device + "}"
	if m.Mountpoint != "/boot" {
		flag = "{Mount " + m.Device + ":" + m.Mountpoint + "}"
	}
	return &hint.Error{Subject: t.Arg,
		Err: fmt.Errorf("the fstab mounts %s on %s (%s, on the same disk), but nothing is mounted at %s: a repair would write into the directory below it", m.Spec, m.Mountpoint, m.Device, where),
		Fix: fmt.Sprintf("mount it (mount %s %s), pass the disk itself as {Target %s}, %s, or {MountMissing} to have nixrescue mount it for this session", m.Device, where, disk, flag)}
}

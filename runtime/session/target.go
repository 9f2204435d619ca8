package session

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/nixrescue/nixrescue/runtime/mount"
	"github.com/nixrescue/nixrescue/runtime/nixos"
	"github.com/nixrescue/nixrescue/runtime/rootfs"
	"github.com/nixrescue/nixrescue/runtime/target"
)

// TargetOptions are the options about how a target is opened.
type TargetOptions struct {
	// ReadOnly attaches and mounts everything read-only.
	ReadOnly bool
	// RootPart picks the root partition (a number or a device) when a
	// disk has more than one NixOS root.
	RootPart string
	// Mounts are --mount DEV:PATH overrides; Boot is --boot DEV.
	Mounts []string
	Boot   string
	// Force opens a target that is mounted read-write elsewhere.
	Force bool
	// DiskAliases are more names for the target's disk (--disk-alias);
	// StrictDiskAliases refuses a configuration naming a disk that cannot
	// be mapped (rebuild) instead of warning.
	DiskAliases       []string
	StrictDiskAliases bool
}

// Layout is what opening a target finds: the disk, its partitions, the
// root and the mount plan. Its JSON field names are stable (inspect
// reports it).
type Layout struct {
	Target     target.Target      `json:"target"`
	Disk       string             `json:"disk,omitempty"`
	Image      string             `json:"image,omitempty"`
	Table      string             `json:"table,omitempty"`
	Partitions []target.Partition `json:"partitions"`
	Root       *target.Found      `json:"root,omitempty"`
	Plan       []target.Entry     `json:"mounts"`
}

// Opened is a target made ready: attached, partitions known, its root and
// filesystems mounted in the session's mount namespace.
type Opened struct {
	Layout
	Warnings []string `json:"warnings"`
	// Aliases are the disk names of the configuration, mapped to Disk.
	Aliases []DiskAlias `json:"-"`

	// RootDir is the mounted root on the host (in the session's mount
	// namespace).
	RootDir string `json:"-"`

	loop    *mount.Loop
	diskDev *os.File
	added   []int
	mounter *mount.Mounter
	lock    *os.File
}

func (op *Opened) warn(format string, a ...any) {
	op.Warnings = append(op.Warnings, fmt.Sprintf(format, a...))
}

// openTarget opens t for session s. On error, everything it did is undone.
func openTarget(ctx context.Context, t target.Target, to TargetOptions, s *session) (op *Opened, err error) {
	op = &Opened{Layout: Layout{Target: t, Partitions: []target.Partition{}}, mounter: &mount.Mounter{ReadOnly: to.ReadOnly}, Warnings: []string{}}
	defer func() {
		if err != nil {
			op.Close()
			op = nil
		}
	}()
	done := s.timer.start("attach")
	switch t.Kind {
	case target.KindImage:
		err = op.attachImage(ctx, t, to, s)
	case target.KindDisk, target.KindPartition:
		err = op.openDisk(ctx, t, to, s)
	default:
		err = fmt.Errorf("%s is a %s: it needs no opening", t.Arg, t.Kind)
	}
	done()
	if err != nil {
		return op, err
	}
	pauseForTest(ctx, "attached")
	done = s.timer.start("discover")
	err = op.probe(ctx)
	done()
	if err != nil {
		return op, err
	}
	if err := op.mountRoot(s, to); err != nil {
		return op, err
	}
	return op, nil
}

// lockTarget takes the session's lock on path (an image file or a whole
// disk), so that a second session on the same target is refused.
func (op *Opened) lockTarget(p string, s *session) error {
	f, err := os.Open(p)
	if err != nil {
		return &target.TargetError{Target: op.Target.Arg, Err: err}
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			who := "another program"
			if pid := s.st.holderOf(p); pid > 0 {
				who = fmt.Sprintf("nixrescue (pid %d)", pid)
			}
			return &target.TargetError{Target: op.Target.Arg, Err: fmt.Errorf("in use by %s", who),
				Fix: "wait for that session to end (one session per target)"}
		}
		return fmt.Errorf("lock %s: %w", p, err)
	}
	op.lock = f
	return s.record(func(r *undoRecord) { r.Lock = p })
}

// checkNotMounted refuses a target whose devices are mounted read-write
// on the host, unless forced: two kernels' worth of writers corrupt a
// filesystem.
func (op *Opened) checkNotMounted(devices []string, force bool) error {
	nums := map[[2]int]string{}
	for _, d := range devices {
		if maj, min, err := target.DeviceNumber(d); err == nil {
			nums[[2]int{int(maj), int(min)}] = d
		}
	}
	mounts, err := mountinfo.GetMounts(nil)
	if err != nil {
		return fmt.Errorf("read the mount table: %w", err)
	}
	for _, m := range mounts {
		d, ok := nums[[2]int{m.Major, m.Minor}]
		if !ok || slices.Contains(strings.Split(m.Options, ","), "ro") {
			continue
		}
		if force {
			op.warn("%s is mounted read-write at %s; going on because of --force", d, m.Mountpoint)
			continue
		}
		return &target.TargetError{Target: op.Target.Arg, Err: fmt.Errorf("%s is mounted read-write at %s", d, m.Mountpoint),
			Fix: "unmount it first, or use that directory as the target, or pass --force"}
	}
	return nil
}

func (op *Opened) attachImage(ctx context.Context, t target.Target, to TargetOptions, s *session) error {
	op.Image = t.Path
	if err := op.lockTarget(t.Path, s); err != nil {
		return err
	}
	// Loop devices already backed by this image (attached by hand or by
	// another tool) count as the target's devices.
	var others []string
	for _, l := range loopsBackedBy(t.Path) {
		others = append(others, l)
		if parts, err := target.KernelPartitions(l); err == nil {
			for _, p := range parts {
				others = append(others, p.Device)
			}
		}
	}
	if err := op.checkNotMounted(others, to.Force); err != nil {
		return err
	}
	// Read the table before attaching: a truncated image is refused
	// without anything attached, and the file stays as it was.
	size, err := fileSize(op.lock)
	if err != nil {
		return err
	}
	table, err := target.ReadTable(op.lock, size, 512)
	if err != nil {
		return &target.TargetError{Target: t.Arg, Err: err}
	}
	if table.Type == "" {
		// No table: a filesystem image, or nothing usable. (blkid only
		// then: it costs an exec and a read of the image.)
		pr, err := target.ProbeDevice(ctx, t.Path)
		if err != nil {
			return err
		}
		if pr.Type == "" {
			return &target.TargetError{Target: t.Arg, Err: errors.New("no partition table and no filesystem found"),
				Fix: "the image is empty, truncated or damaged; check that it was copied whole"}
		}
	}
	loop, err := mount.AttachLoop(t.Path, to.ReadOnly)
	if errors.Is(err, unix.EROFS) || errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) {
		return &target.TargetError{Target: t.Arg, Err: errors.New("the image cannot be opened for writing (a read-only filesystem or file)"),
			Fix: "pass --read-only to look at it, or copy it somewhere writable"}
	} else if err != nil {
		return fmt.Errorf("attach %s: %w", t.Arg, err)
	}
	op.loop, op.Disk, op.diskDev = loop, loop.Path, loop.File()
	if err := s.record(func(r *undoRecord) { r.Loops = append(r.Loops, loopRecord{Device: loop.Path, Backing: t.Path}) }); err != nil {
		return err
	}
	if table.Type == "" {
		// A bare filesystem: the loop device is the one "partition".
		op.Partitions = []target.Partition{{Number: 0, Device: loop.Path, Size: size}}
		return nil
	}
	op.Table = table.Type
	return op.addPartitions(table.Partitions, s)
}

// addPartitions makes each partition of the table a block device of the
// whole-disk device (BLKPG), unless the kernel already did.
func (op *Opened) addPartitions(parts []target.Partition, s *session) error {
	known, _ := target.KernelPartitions(op.Disk)
	for _, p := range parts {
		if i := slices.IndexFunc(known, func(k target.Partition) bool { return k.Number == p.Number }); i >= 0 {
			if known[i].Start != p.Start || known[i].Size != p.Size {
				return fmt.Errorf("the kernel's partition %d of %s differs from the partition table: run partprobe or partx -u %s", p.Number, op.Disk, op.Disk)
			}
			p.Device = known[i].Device
			op.Partitions = append(op.Partitions, p)
			continue
		}
		dev, err := mount.AddPartition(op.diskDev, p.Number, p.Start, p.Size)
		if err != nil {
			return err
		}
		op.added = append(op.added, p.Number)
		if err := s.record(func(r *undoRecord) {
			if n := len(r.Loops); n > 0 && r.Loops[n-1].Device == op.Disk {
				r.Loops[n-1].Partitions = append(r.Loops[n-1].Partitions, p.Number)
			}
		}); err != nil {
			return err
		}
		p.Device = dev
		op.Partitions = append(op.Partitions, p)
	}
	return nil
}

func (op *Opened) openDisk(ctx context.Context, t target.Target, to TargetOptions, s *session) error {
	op.Disk = t.Disk
	if err := op.lockTarget(t.Disk, s); err != nil {
		return err
	}
	known, err := target.KernelPartitions(t.Disk)
	if err != nil {
		return err
	}
	devs := []string{t.Disk}
	for _, p := range known {
		devs = append(devs, p.Device)
	}
	if err := op.checkNotMounted(devs, to.Force); err != nil {
		return err
	}
	flag := os.O_RDWR
	if to.ReadOnly {
		flag = os.O_RDONLY
	}
	f, err := os.OpenFile(t.Disk, flag|unix.O_CLOEXEC, 0)
	if err != nil {
		return &target.TargetError{Target: t.Arg, Err: err}
	}
	op.diskDev = f
	size, err := target.Size(f)
	if err != nil {
		return fmt.Errorf("size of %s: %w", t.Disk, err)
	}
	table, err := target.ReadTable(f, size, target.SectorSize(f))
	if err != nil {
		return &target.TargetError{Target: t.Arg, Err: err}
	}
	if table.Type == "" {
		op.Partitions = []target.Partition{{Number: 0, Device: t.Disk, Size: size}}
		return nil
	}
	op.Table = table.Type
	// Adding partitions (BLKPG) tells the kernel where they are and
	// writes nothing to the disk: read-only targets get them too.
	return op.addPartitions(table.Partitions, s)
}

// probe identifies the filesystem on each partition (blkid, one run per
// partition that may hold one, side by side).
func (op *Opened) probe(ctx context.Context) error {
	probes, err := target.ProbeDevices(ctx, target.Probed(op.Partitions))
	if err != nil {
		return err
	}
	for i := range op.Partitions {
		if p := &op.Partitions[i]; p.Device != "" {
			p.FS = probes[p.Device].FS
		}
	}
	return nil
}

// mountRoot finds the NixOS root, mounts it and, when the store is on a
// filesystem of its own, that one too, then plans and mounts the rest from
// the target's fstab.
func (op *Opened) mountRoot(s *session, to TargetOptions) error {
	probeDir := filepath.Join(s.dir(), "probe")
	op.RootDir = filepath.Join(s.dir(), "root")
	for _, d := range []string{probeDir, op.RootDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("create %s: %w", d, err)
		}
	}
	done := s.timer.start("discover")
	roots, nixes, err := target.Discover(op.Partitions, probeDir)
	done()
	if err != nil {
		return err
	}
	defer s.timer.start("mount")()
	if s.prewarm != nil {
		s.prewarm() // the container is created some 10-20 ms from here
	}
	root, err := op.chooseRoot(roots, to.RootPart)
	if err != nil {
		return err
	}
	op.Root = &root
	// Read-only until the plan is known to be good and every mount of it
	// has worked: a refused session, or a mount that fails halfway, leaves
	// the target as it was, superblocks included.
	if err := op.mountAt(root.Partition.Device, "/", root.Partition.Type, target.RootOptions(root, nil), nil); err != nil {
		return err
	}
	// The system, and with it the fstab, is in the store: mount a separate
	// /nix first when the root alone has no system profile.
	var nixEntry *target.Entry
	if !nixos.Exists(op.RootDir, nixos.SystemProfile) && len(nixes) > 0 {
		n := nixes[0]
		opts := target.RootOptions(n, nil)
		if err := op.mountAt(n.Partition.Device, "/nix", n.Partition.Type, opts, nil); err != nil {
			return err
		}
		nixEntry = &target.Entry{Mountpoint: "/nix", Spec: n.Describe(), Device: n.Partition.Device, Type: n.Partition.Type,
			Options: opts, Action: target.ActionMount, Origin: "discovered", MappedBy: "holds the Nix store"}
	}
	fstab, err := op.readFstab()
	if err != nil {
		return err
	}
	var overrides []target.Override
	for _, m := range to.Mounts {
		o, err := target.ParseOverride(m)
		if err != nil {
			return err
		}
		overrides = append(overrides, o)
	}
	if to.Boot != "" {
		overrides = append(overrides, target.Override{Spec: to.Boot, Mountpoint: "/boot", Origin: "--boot"})
	}
	rootEntry := target.Entry{Mountpoint: "/", Spec: root.Describe(), Device: root.Partition.Device, Type: root.Partition.Type,
		Options: target.RootOptions(root, nil), Action: target.ActionMount, Origin: "discovered", MappedBy: "holds /etc/NIXOS"}
	if fe := target.RootEntry(fstab); fe != nil {
		rootEntry.Spec = fe.Spec
		if p, _, ok := target.MapSource(fe.Spec, op.Partitions); !ok || p.Device != root.Partition.Device {
			op.warn("the fstab's root %s is not %s, where the NixOS root was found", fe.Spec, root.Describe())
		}
	}
	plan := target.BuildPlan(fstab, op.Partitions, overrides)
	if nixEntry != nil {
		// /nix is mounted already: the fstab's entry for it is that
		// mount, if it names the same filesystem.
		i := slices.IndexFunc(plan, func(e target.Entry) bool { return e.Mountpoint == "/nix" && e.Action == target.ActionMount })
		switch {
		case i >= 0 && plan[i].Device == nixEntry.Device:
			// Marked discovered: it is not mounted a second time.
			plan[i].Origin, plan[i].Options = "discovered", nixEntry.Options
			plan[i].Reason = "mounted first: it holds the store, where the fstab is"
		case i >= 0:
			op.warn("the fstab mounts %s on /nix, but the store was found on %s: that one is mounted", plan[i].Spec, nixEntry.Spec)
			plan[i].Action, plan[i].Reason = target.ActionSkip, "the store is on "+nixEntry.Spec
			plan = append([]target.Entry{*nixEntry}, plan...)
		default:
			plan = append([]target.Entry{*nixEntry}, plan...)
		}
	}
	op.Plan = append([]target.Entry{rootEntry}, plan...)
	if missing := target.Unmapped(plan); len(missing) > 0 {
		e := missing[0]
		return &target.TargetError{Target: op.Target.Arg,
			Err: fmt.Errorf("the fstab mounts %s on %s, which is not on this disk", e.Spec, e.Mountpoint),
			Fix: fmt.Sprintf("pass --mount DEVICE:%s, or mark the entry nofail", e.Mountpoint)}
	}
	// Disk names the configuration gives the boot disk, checked while
	// nothing is written yet: a rebuild refuses what cannot be mapped.
	sys, _ := currentGeneration(op.RootDir)
	op.Aliases, err = checkedDiskAliases(op.RootDir, sys, fstab, to.DiskAliases, op.Disk, to.StrictDiskAliases,
		func(p string) { op.warn("%s", p) })
	if err != nil {
		return err
	}
	// A missing mount point is made as systemd would, which needs its
	// parent writable: only then is anything written before the end.
	for i := range op.Plan {
		e := &op.Plan[i]
		if e.Action != target.ActionMount || e.Origin == "discovered" {
			continue
		}
		if e.Type == "" || e.Type == "auto" {
			pr, err := target.ProbeDevice(context.Background(), e.Device)
			if err != nil {
				return err
			}
			e.Type = pr.Type
		}
		if err := op.mountAt(e.Device, e.Mountpoint, e.Type, e.Options, op.mounter.MakeWritable); err != nil {
			if e.NoFail {
				e.Action, e.Reason = target.ActionSkip, "failed (nofail): "+err.Error()
				op.warn("%s: %v (nofail: going on)", e.Mountpoint, err)
				continue
			}
			return fmt.Errorf("mount %s: %w", e.Mountpoint, err)
		}
	}
	return op.mounter.MakeWritable()
}

// mountAt mounts device read-only on the target's mount point mp
// (mountpointDir; beforeCreate as there).
func (op *Opened) mountAt(device, mp, fstype string, options []string, beforeCreate func() error) error {
	dir, err := op.mountpointDir(mp, beforeCreate)
	if err != nil {
		return err
	}
	defer dir.Close()
	return op.mounter.MountReadOnly(device, dir, fstype, options)
}

// chooseRoot picks the root among those found.
func (op *Opened) chooseRoot(roots []target.Found, want string) (target.Found, error) {
	if want != "" {
		for _, r := range roots {
			if r.Partition.Device == want || strconv.Itoa(r.Partition.Number) == strings.TrimPrefix(want, "p") {
				return r, nil
			}
		}
		return target.Found{}, &target.TargetError{Target: op.Target.Arg, Err: fmt.Errorf("--root-part %s holds no NixOS root", want),
			Fix: "name one of " + describeFound(roots)}
	}
	if op.Target.Kind == target.KindPartition {
		for _, r := range roots {
			if r.Partition.Number == op.Target.Partition {
				return r, nil
			}
		}
		return target.Found{}, &target.NoRootError{Target: op.Target.Arg, Parts: op.partitionsNumbered(op.Target.Partition)}
	}
	switch len(roots) {
	case 0:
		return target.Found{}, &target.NoRootError{Target: op.Target.Arg, Parts: op.Partitions}
	case 1:
		return roots[0], nil
	}
	return target.Found{}, &target.TargetError{Target: op.Target.Arg, Err: fmt.Errorf("%d NixOS roots found: %s", len(roots), describeFound(roots)),
		Fix: "choose one with --root-part N"}
}

func (op *Opened) partitionsNumbered(n int) []target.Partition {
	for _, p := range op.Partitions {
		if p.Number == n {
			return []target.Partition{p}
		}
	}
	return nil
}

func describeFound(roots []target.Found) string {
	var s []string
	for _, r := range roots {
		s = append(s, fmt.Sprintf("%d (%s)", r.Partition.Number, r.Describe()))
	}
	return strings.Join(s, ", ")
}

// mountpointDir opens a mount point inside the mounted root, every link
// resolved inside it, and makes it when it is missing, as systemd does at
// boot. A mount point that is a link (a /boot that leads to /etc) is
// followed inside the target, as systemd would, and said. beforeCreate
// runs before a missing one is made (it makes the root writable); nil
// refuses to make it.
func (op *Opened) mountpointDir(mp string, beforeCreate func() error) (*os.File, error) {
	dir, err := rootfs.OpenDir(op.RootDir, mp, false)
	if errors.Is(err, os.ErrNotExist) {
		if op.mounter.ReadOnly || beforeCreate == nil {
			return nil, fmt.Errorf("mount point %s does not exist in the target (read-only: not created)", mp)
		}
		if err := beforeCreate(); err != nil {
			return nil, err
		}
		if dir, err = rootfs.OpenDir(op.RootDir, mp, true); err == nil {
			op.warn("created the missing mount point %s in the target, as systemd would at boot", mp)
		} else if errors.Is(err, unix.ENOTDIR) || errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("mount point %s cannot be made in the target: a link on its way leads nowhere or to a file; fix the link or pass --mount DEV:PATH elsewhere", mp)
		}
	}
	switch {
	case errors.Is(err, unix.ENOTDIR):
		return nil, fmt.Errorf("mount point %s is not a directory in the target", mp)
	case err != nil:
		return nil, fmt.Errorf("mount point %s in the target: %w", mp, err)
	}
	if where, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", dir.Fd())); err == nil {
		if rel, err := filepath.Rel(op.RootDir, where); err == nil && path.Join("/", filepath.ToSlash(rel)) != path.Clean(mp) {
			op.warn("mount point %s is a link in the target: mounted on %s, inside the target, as systemd would", mp, path.Join("/", filepath.ToSlash(rel)))
		}
	}
	return dir, nil
}

// readFstab reads the target's fstab (target.ReadSystemFstab).
func (op *Opened) readFstab() ([]target.FstabEntry, error) {
	entries, from, err := target.ReadSystemFstab(op.RootDir)
	if err != nil {
		return nil, &target.TargetError{Target: op.Target.Arg, Err: err, Fix: "fix the target's fstab, or mount by hand and pass the directory"}
	}
	if from == "" {
		op.warn("the target has no fstab: only the root is mounted")
	}
	return entries, nil
}

// Close unmounts everything, removes the partitions it added and lets the
// loop device go; it is safe to call more than once.
func (op *Opened) Close() error {
	var first error
	keep := func(err error) {
		if err != nil && first == nil {
			first = err
		}
	}
	if op.RootDir != "" {
		// What the kernel says is mounted there, not what was recorded:
		// the target's programs ran on these mounts (mount.UnmountUnder).
		keep(mount.UnmountUnder(op.RootDir))
	}
	if op.diskDev != nil {
		for i := len(op.added) - 1; i >= 0; i-- {
			keep(mount.DeletePartition(op.diskDev, op.added[i]))
		}
		op.added = nil
	}
	if op.loop != nil {
		keep(op.loop.Close())
		op.loop = nil
	} else if op.diskDev != nil {
		keep(op.diskDev.Close())
	}
	op.diskDev = nil
	if op.lock != nil {
		op.lock.Close()
		op.lock = nil
	}
	return first
}

// loopsBackedBy lists loop devices attached to file.
func loopsBackedBy(file string) []string {
	var out []string
	want, err := os.Stat(file)
	if err != nil {
		return nil
	}
	entries, _ := os.ReadDir("/sys/block")
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), "loop") {
			continue
		}
		b := mount.BackingFile(e.Name())
		if b == "" {
			continue
		}
		if st, err := os.Stat(strings.TrimSuffix(b, " (deleted)")); err == nil && os.SameFile(st, want) {
			out = append(out, "/dev/"+e.Name())
		}
	}
	return out
}

func fileSize(f *os.File) (int64, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}

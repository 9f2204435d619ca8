package open

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nixrescue/nixrescue/runtime/hint"
	"github.com/nixrescue/nixrescue/runtime/image"
	"github.com/nixrescue/nixrescue/runtime/layers"
	"github.com/nixrescue/nixrescue/runtime/mount"
	"github.com/nixrescue/nixrescue/runtime/nixos"
	"github.com/nixrescue/nixrescue/runtime/rootfs"
	"github.com/nixrescue/nixrescue/runtime/state"
	"github.com/nixrescue/nixrescue/runtime/target"
)

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
	// Layers are the LUKS volumes, LVM volume groups and md arrays found
	// between the partitions and the filesystems.
	Layers []layers.Info `json:"layers,omitempty"`
	// Format is the image's, as qemu reads it (raw images read
	// directly have none), or the snapshot's.
	Format *image.Info `json:"format,omitempty"`
}

// Opened is a target made ready: attached, partitions known, its root and
// filesystems mounted in the session's mount namespace.
type Opened struct {
	Layout
	Warnings []string `json:"warnings"`
	// Aliases are the disk names of the configuration, mapped to Disk.
	Aliases []target.DiskAlias `json:"-"`

	// RootDir is the mounted root on the host (in the session's mount
	// namespace).
	RootDir string `json:"-"`

	loop    *mount.Loop
	diskDev *os.File
	image   *os.File
	added   []int
	mounter *mount.Mounter
	layers  layerSet
	// export is qemu's export of an image or a snapshot; overlay the
	// snapshot's overlay, removed at the end unless kept.
	export      *image.Export
	overlay     string
	keepOverlay bool
	// backing is the loop device's file, as the kernel names it.
	backing string
	// skipUnmountable leaves out a filesystem whose type this kernel
	// does not know (Options.SkipUnmountable).
	skipUnmountable bool
	// tree says RootDir is the session's own mount tree, torn down with
	// it (not a directory target's, which is the user's).
	tree bool
	// diskIDs are the by-id names of Disk (diskIDs).
	diskIDs target.DiskIDs
	// fsck checks filesystems before their first mount (checkFS);
	// checked are the devices checkFS looked at; overlaid says writes go
	// to an overlay, not the target.
	fsck, overlaid bool
	checked        map[string]bool
	// dmParts says the partitions of the loop device are device-mapper
	// maps (mapPartitions) rather than BLKPG partitions; mapped are the
	// maps made.
	dmParts bool
	mapped  []string
	// ephemeral says RootDir is a tmpfs of the session's: the machine's
	// root is made afresh at each boot (mountEphemeralRoot).
	ephemeral bool
}

// warn keeps a warning, its mentions of options worded.
func (op *Opened) warn(format string, a ...any) {
	op.Warnings = append(op.Warnings, hint.Render(fmt.Sprintf(format, a...)))
}

// Target opens t for session s. On error, everything it did is undone.
func Target(ctx context.Context, t target.Target, to Options, s *Session) (op *Opened, err error) {
	op = &Opened{Layout: Layout{Target: t, Partitions: []target.Partition{}}, mounter: &mount.Mounter{ReadOnly: to.ReadOnly}, Warnings: []string{},
		layers: layerSet{st: s.State, handled: map[string]bool{}, found: map[string]layers.Found{}, writable: map[int]bool{}}, skipUnmountable: to.SkipUnmountable,
		fsck: to.Fsck, overlaid: to.Snapshot, checked: map[string]bool{}}
	op.mounter.Name = op.mountName
	defer func() {
		if err != nil {
			op.Close()
			op = nil
		}
	}()
	if op.layers.keys, err = layers.NewKeys(to.KeyFiles, to.KeyStdin); err != nil {
		return op, &hint.Error{Subject: t.Arg, Err: err}
	}
	done := s.Time("attach")
	keys, err := target.Keys(t)
	if err == nil {
		claimed := s.guard(GuardClaims)
		err = s.State.Claim(t.Arg, t.Path, keys)
		claimed()
	}
	if err == nil {
		checked := s.guard(GuardTwoWriters)
		err = op.checkNotMounted(keys, to.Force, s.State.State().SessionsDir())
		checked()
	}
	if err == nil {
		switch t.Kind {
		case target.KindImage:
			err = op.attachImage(ctx, t, to, s)
		case target.KindDisk, target.KindPartition:
			if to.Snapshot {
				err = op.snapshotDisk(ctx, t, to, s)
			} else {
				err = op.openDisk(ctx, t, to, s)
			}
		default:
			err = fmt.Errorf("%s is a %s: it needs no opening", t.Arg, t.Kind)
		}
	}
	done()
	if err != nil {
		return op, err
	}
	done = s.Time("discover")
	err = op.probe(ctx)
	done()
	if err != nil {
		return op, err
	}
	if err := op.mountRoot(ctx, s, to); err != nil {
		return op, err
	}
	return op, nil
}

// checkNotMounted refuses a target whose data is mounted read-write
// anywhere on this host, in any mount namespace, under any device name
// (a second loop device on the image, a partition of the disk), unless
// forced: two writers on one filesystem lose data. keys are the target's
// (target.Keys). A copy of a mount under the sessions directory, in a
// namespace made while an ended session's tree existed, goes by itself:
// it is waited for a moment.
func (op *Opened) checkNotMounted(keys []target.Key, force bool, sessionsDir string) error {
	if m := target.HostRoot(keys); m != nil {
		return target.HostRootError(op.Target.Arg, m.Source)
	}
	host, _ := os.Readlink("/proc/1/ns/mnt")
	deadline := time.Now().Add(2 * time.Second)
	for {
		busy, err := target.MountedReadWrite(keys)
		if err != nil {
			return err
		}
		leftover := func(m mount.NamespaceMount) bool {
			return m.Namespace != host && strings.HasPrefix(m.Mountpoint, sessionsDir+"/")
		}
		if len(busy) > 0 && !force && !slices.ContainsFunc(busy, func(m mount.NamespaceMount) bool { return !leftover(m) }) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
			continue
		}
		for _, m := range busy {
			where := m.Mountpoint
			if m.Namespace != host {
				comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", m.PID))
				where += fmt.Sprintf(" in the mount namespace of pid %d (%s)", m.PID, strings.TrimSpace(string(comm)))
			}
			if force {
				op.warn("%s is mounted read-write at %s; going on because of {Force}", m.Source, where)
				continue
			}
			return &hint.Error{Subject: op.Target.Arg, Err: fmt.Errorf("%s (the same data) is mounted read-write at %s", m.Source, where),
				Fix: "unmount it first, or use that directory as the target, or pass {Force}"}
		}
		return nil
	}
}

func (op *Opened) attachImage(ctx context.Context, t target.Target, to Options, s *Session) error {
	op.Image = t.Path
	f, err := os.Open(t.Path)
	if err != nil {
		return &hint.Error{Subject: t.Arg, Err: err}
	}
	op.image = f
	st, err := f.Stat()
	if err != nil {
		return &hint.Error{Subject: t.Arg, Err: err}
	}
	format := image.Detect(f, st.Size())
	if format != image.Raw || to.Snapshot {
		// qemu's block layer reads it; the session sees its raw content.
		return op.openExported(ctx, t, to, s, format, false)
	}
	op.Format = &image.Info{Format: image.Raw, VirtualSize: st.Size(), InUse: image.InUse(t.Path)}
	if op.Format.InUse && !to.ReadOnly {
		return image.InUseError(t.Arg)
	}
	if !to.ReadOnly && st.Mode().Perm()&0o222 == 0 {
		// Root may write to it all the same: the mode is someone's wish
		// that it stay as it is.
		if !to.Force {
			return &hint.Error{Subject: t.Arg, Err: fmt.Errorf("the image is read-only (mode %04o)", st.Mode().Perm()),
				Fix: "pass {ReadOnly} to look at it, {Snapshot} to change a throwaway copy, or {Force} to write to it all the same"}
		}
		op.warn("writing to %s although its mode is %04o, because of {Force}", t.Path, st.Mode().Perm())
	}
	return op.attachRaw(ctx, t, to, s, t.Path)
}

// attachRaw attaches a raw disk image, or the raw export of another
// format, to a loop device, with its partitions.
func (op *Opened) attachRaw(ctx context.Context, t target.Target, to Options, s *Session, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return &hint.Error{Subject: t.Arg, Err: err}
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return &hint.Error{Subject: t.Arg, Err: err}
	}
	// Read the table before attaching: a truncated image is refused
	// without anything attached, and the file stays as it was.
	size := st.Size()
	table, err := target.ReadTable(f, size, 0)
	if err != nil {
		return &hint.Error{Subject: t.Arg, Err: err}
	}
	if table.Type == "" {
		// No table: a filesystem image, or nothing usable.
		if err := probeBare(ctx, t, path); err != nil {
			return err
		}
	}
	var loopOpts []mount.LoopOption
	if op.export != nil {
		loopOpts = op.export.LoopOptions()
	}
	loop, err := mount.AttachLoop(path, to.ReadOnly, table.SectorSize, loopOpts...)
	if errors.Is(err, unix.EROFS) || errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) {
		return &hint.Error{Subject: t.Arg, Err: errors.New("the image cannot be opened for writing (a read-only filesystem or file)"),
			Fix: "pass {ReadOnly} to look at it, {Snapshot} to change a throwaway copy, or copy it somewhere writable"}
	} else if err != nil {
		return fmt.Errorf("attach %s: %w", t.Arg, err)
	}
	op.loop, op.Disk, op.diskDev = loop, loop.Path, loop.File()
	op.dmParts = mapsPartitions(to, table)
	// As the kernel names the file: an export is in its daemon's namespace.
	op.backing = mount.BackingFile(filepath.Base(loop.Path))
	if err := s.State.Record(func(j *state.Journal) { j.Loops = append(j.Loops, state.Loop{Device: loop.Path, Backing: op.backing}) }); err != nil {
		return err
	}
	if table.Type == "" {
		// A bare filesystem: the loop device is the one "partition".
		op.Partitions = []target.Partition{{Number: 0, Device: loop.Path, Size: size}}
		return nil
	}
	return op.useTable(ctx, table, s)
}

// probeBare says whether a disk (or image) without a partition table has
// a filesystem: blkid only then, since it costs an exec and a read.
func probeBare(ctx context.Context, t target.Target, path string) error {
	pr, err := target.ProbeDevice(ctx, path)
	if err != nil {
		return err
	}
	if pr.Type == "" {
		return &hint.Error{Subject: t.Arg, Err: errors.New("no partition table and no filesystem found"),
			Fix: "the image is empty, truncated or damaged; check that it was copied whole"}
	}
	return nil
}

// bareFilesystem takes a disk without a partition table, probed for a
// filesystem, as the one "partition".
func (op *Opened) bareFilesystem(ctx context.Context, t target.Target, dev string, size int64) error {
	if err := probeBare(ctx, t, dev); err != nil {
		return err
	}
	op.Partitions = []target.Partition{{Number: 0, Device: dev, Size: size}}
	return nil
}

// mapsPartitions tells whether the partitions of an image's disk (a loop
// device, or the kernel's nbd device on its export) are device-mapper
// maps: when it may be written, has a table, and the kernel has
// device-mapper. They tell grub-install where they start, which loop
// partitions cannot (mount/dmpart.go).
func mapsPartitions(to Options, table target.Table) bool {
	return !to.ReadOnly && table.Type != "" && mount.DMPartitionsAvailable() == nil
}

// useTable takes the partitions of a table read from the disk, and says
// what is wrong with the table.
func (op *Opened) useTable(ctx context.Context, table target.Table, s *Session) error {
	op.Table = table.Type
	for _, w := range table.Warnings {
		op.warn("%s", w)
	}
	return op.addPartitions(ctx, table.Partitions, s)
}

// mapPartition makes partition p a device-mapper map of its bytes of the
// disk (mount.MapPartition), named after the session so that a cleanup
// finds it after a crash; inside the container it is also the partition
// of the disk by the kernel's name for one (/dev/loop0p2), which tells
// grub-install which disk it is part of.
func (op *Opened) mapPartition(ctx context.Context, p *target.Partition, s *Session) error {
	name := mount.DMPartitionName(s.State.ID, p.Number)
	dev, err := mount.MapPartition(ctx, name, op.Disk, p.Start, p.Size)
	if err != nil {
		return err
	}
	op.mapped = append(op.mapped, name)
	p.Device, p.Inside = dev, mount.PartitionPath(op.Disk, p.Number)
	if len(op.mapped) == 1 {
		s.Log.Info(fmt.Sprintf("the partitions of %s are device-mapper maps over %s (%s…), which tell GRUB where they start", op.Target.Arg, op.Disk, name), "verbose", true)
	}
	return nil
}

// addPartitions makes each partition of the table a block device of the
// whole-disk device (BLKPG), unless the kernel already did, or a
// device-mapper map of it (dmParts).
func (op *Opened) addPartitions(ctx context.Context, parts []target.Partition, s *Session) error {
	known, _ := target.KernelPartitions(op.Disk)
	for _, p := range parts {
		i := slices.IndexFunc(known, func(k target.Partition) bool { return k.Number == p.Number })
		if p.Extended {
			// The container of the logical partitions: the kernel makes a
			// device of its first sectors only; nothing to probe or mount.
			if i >= 0 {
				p.Device = known[i].Device
			}
			op.Partitions = append(op.Partitions, p)
			continue
		}
		if op.dmParts {
			// Whether the kernel scanned the table or not: its partitions
			// of a loop device do not tell grub-install where they start.
			if err := op.mapPartition(ctx, &p, s); err != nil {
				return err
			}
			op.Partitions = append(op.Partitions, p)
			continue
		}
		if i >= 0 {
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
		if err := s.State.Record(func(j *state.Journal) {
			if n := len(j.Loops); n > 0 && j.Loops[n-1].Device == op.Disk {
				j.Loops[n-1].Partitions = append(j.Loops[n-1].Partitions, p.Number)
			}
		}); err != nil {
			return err
		}
		p.Device = dev
		op.Partitions = append(op.Partitions, p)
	}
	return nil
}

func (op *Opened) openDisk(ctx context.Context, t target.Target, to Options, s *Session) error {
	op.Disk = t.Disk
	flag := os.O_RDWR
	if to.ReadOnly {
		flag = os.O_RDONLY
	}
	f, err := os.OpenFile(t.Disk, flag|unix.O_CLOEXEC, 0)
	if err != nil {
		return &hint.Error{Subject: t.Arg, Err: err}
	}
	op.diskDev = f
	size, err := target.Size(f)
	if err != nil {
		return fmt.Errorf("size of %s: %w", t.Disk, err)
	}
	table, err := target.ReadTable(f, size, target.SectorSize(f))
	if err != nil {
		return &hint.Error{Subject: t.Arg, Err: err}
	}
	if table.Type == "" {
		op.Partitions = []target.Partition{{Number: 0, Device: t.Disk, Size: size}}
		return nil
	}
	// Adding partitions (BLKPG) tells the kernel where they are and
	// writes nothing to the disk: read-only targets get them too.
	return op.useTable(ctx, table, s)
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
// filesystem of its own, that one too, then plans (target.MakePlan) and
// mounts the rest from the target's fstab.
func (op *Opened) mountRoot(ctx context.Context, s *Session, to Options) error {
	probeDir := filepath.Join(s.State.Dir(), "probe")
	op.RootDir = filepath.Join(s.State.Dir(), "root")
	for _, d := range []string{probeDir, op.RootDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("create %s: %w", d, err)
		}
	}
	done := s.Time("discover")
	found, err := op.discoverThroughLayers(ctx, s, to, probeDir)
	done()
	if err != nil {
		return err
	}
	defer s.Time("mount")()
	if s.Prewarm != nil {
		s.Prewarm()
	}
	partition := 0
	if op.Target.Kind == target.KindPartition {
		partition = op.Target.Partition
	}
	root, err := target.ChooseRoot(op.Target.Arg, op.Target.Disk, found.Roots, op.Partitions, to.RootPart, partition)
	var nr *target.NoRootError
	if errors.As(err, &nr) {
		nr.Failed = found.Failed
		if locked := op.lockedDatasets(); len(locked) > 0 {
			return &LockedError{Layout: op.snapshot(), Err: &hint.Error{Subject: op.Target.Arg,
				Err: fmt.Errorf("no NixOS root found, and the encrypted ZFS dataset %s stays locked", strings.Join(locked, ", ")),
				Fix: "give its passphrase with {KeyFile FILE} (- for standard input), or run nixrescue at a terminal to type it"}}
		}
	}
	op.tree = true
	var in target.PlanInput
	switch {
	case err == nil:
		in, err = op.mountFoundRoot(ctx, root, found)
	case nr != nil && len(found.Roots) == 0 && len(found.Nixes) == 1:
		// No root: the machine's may be a tmpfs (impermanence), its
		// system on /nix, which its fstab then says.
		var ok bool
		if in, ok, err = op.mountEphemeralRoot(ctx, found.Nixes[0]); err == nil && !ok {
			err = nr
		}
	}
	if err != nil {
		return err
	}
	return op.planAndMount(ctx, s, to, in)
}

// mountFoundRoot mounts the root discovery found, and the /nix found
// beside it when the root alone holds no system, read-only: until the
// plan is known to be good and every mount of it has worked, a refused
// session, or a mount that fails halfway, leaves the target as it was,
// superblocks included. The fstab is read from the system.
func (op *Opened) mountFoundRoot(ctx context.Context, root target.Found, found target.Discovery) (target.PlanInput, error) {
	in := target.PlanInput{Root: root}
	op.Root = &root
	if err := op.checkFS(ctx, root.Partition.Source(), root.Partition.Type, "/"); err != nil {
		return in, err
	}
	if err := op.mountAt(root.Partition.Source(), "/", root.Partition.Type, target.FirstOptions(root), nil); err != nil {
		return in, err
	}
	// The system, and with it the fstab, is in the store: mount a separate
	// /nix first when the root alone has no system profile.
	if !nixos.Exists(op.RootDir, nixos.SystemProfile) && len(found.Nixes) > 0 {
		in.Nix = &found.Nixes[0]
		if err := op.mountNix(ctx, *in.Nix); err != nil {
			return in, err
		}
	}
	var err error
	in.Fstab, err = op.readFstab()
	return in, err
}

// mountNix mounts the /nix filesystem f read-only, checked first.
func (op *Opened) mountNix(ctx context.Context, f target.Found) error {
	if err := op.checkFS(ctx, f.Partition.Source(), f.Partition.Type, "/nix"); err != nil {
		return err
	}
	return op.mountAt(f.Partition.Source(), "/nix", f.Partition.Type, target.FirstOptions(f), nil)
}

// planAndMount plans the mounts of the target from in (its root and
// fstab read), checks the disk names of its configuration while nothing
// is written yet (a rebuild refuses what cannot be mapped, or a disk GRUB
// cannot be installed on from here), and mounts the plan.
func (op *Opened) planAndMount(ctx context.Context, s *Session, to Options, in target.PlanInput) error {
	sys, _ := nixos.ResolveSystem(op.RootDir, nixos.SystemChoice{})
	op.diskIDs = diskIDs(op.Disk, op.RootDir, sys.StorePath, to)
	if err := op.nameLayers(ctx, s, to, in.Fstab); err != nil {
		return err
	}
	in.Partitions, in.DiskIDs, in.KeepGoing = op.Partitions, op.diskIDs, to.KeepGoing && to.ReadOnly
	var err error
	if in.Overrides, err = target.Overrides(to.Mounts, to.Boot); err != nil {
		return err
	}
	plan, err := target.MakePlan(in)
	if err != nil {
		return &hint.Error{Subject: op.Target.Arg, Err: err}
	}
	op.Plan = plan.Entries
	op.Warnings = append(op.Warnings, plan.Warnings...)
	op.Aliases, err = CheckedDiskAliases(op.RootDir, sys.StorePath, in.Fstab, to, op.Disk, op.warn)
	if err != nil {
		return err
	}
	if to.InstallsBootloader {
		if err := op.GRUBInstallProblem(); err != nil {
			return err
		}
	}
	if err := op.mountPlan(ctx); err != nil {
		return err
	}
	return op.exportUnneeded(ctx, s)
}

// exportUnneeded exports the ZFS pools none of whose datasets the plan
// mounts: all the pools on the target's devices were imported to find
// the root (the fstab that names the needed ones is inside one), but
// NixOS's stage 1 imports only the pools of the fstab's entries (its
// other pools come later, in stage 2), and a repair needs no more.
func (op *Opened) exportUnneeded(ctx context.Context, s *Session) error {
	for _, o := range op.opened() {
		if o.Kind != layers.ZFS || slices.ContainsFunc(op.Plan, func(e target.Entry) bool {
			return e.Action == target.ActionMount && (e.Device == o.Name || strings.HasPrefix(e.Device, o.Name+"/"))
		}) {
			continue
		}
		if err := layers.Close(ctx, o); err != nil {
			return fmt.Errorf("export the ZFS pool %s, which the fstab does not mount: %w", o.Name, err)
		}
		op.forget(s, o.Name)
		op.layerInfo(o.Devices[0]).State = "exported: the fstab mounts none of its datasets"
	}
	return nil
}

// mountPlan mounts the plan's entries (those mounted already, found by
// discovery, get their options), read-only, then all of it as the plan
// says. A missing mount point is made as systemd would, which needs its
// parent writable: only then is anything written before the end.
func (op *Opened) mountPlan(ctx context.Context) error {
	for i := range op.Plan {
		e := &op.Plan[i]
		switch {
		case e.Action != target.ActionMount || e.IsBind():
		case e.Origin == target.OriginDiscovered && op.ephemeral && e.Mountpoint == "/":
			// The session's tmpfs: mounted with its options already.
		case e.Origin == target.OriginDiscovered:
			where, err := rootfs.Join(op.RootDir, e.Mountpoint)
			if err == nil {
				err = op.mounter.SetOptions(where, e.Options)
			}
			if err != nil {
				return err
			}
		default:
			if err := op.mountEntry(ctx, e); err != nil {
				return err
			}
		}
	}
	if err := op.makeWritable(); err != nil {
		return err
	}
	// Binds last, from the filesystems now mounted as they will stay; one
	// that cannot be made is left out, as systemd's failed mount unit
	// would leave it.
	for i := range op.Plan {
		if e := &op.Plan[i]; e.Action == target.ActionMount && e.IsBind() {
			if err := op.mountBind(e); err != nil {
				e.Action, e.Reason = target.ActionSkip, "bind failed: "+err.Error()
				op.warn("%s: the bind of %s: %v", e.Mountpoint, e.Spec, err)
			}
		}
	}
	return nil
}

// mountEntry mounts plan entry e read-only (mountAt), its filesystem
// checked first (checkFS), or leaves it out saying why when a look, or
// the entry (nofail), allows it.
func (op *Opened) mountEntry(ctx context.Context, e *target.Entry) error {
	if e.Type == "" || e.Type == "auto" {
		pr, err := target.ProbeDevice(ctx, e.Device)
		if err != nil {
			return err
		}
		e.Type = pr.Type
	}
	if err := op.checkFS(ctx, e.Device, e.Type, e.Mountpoint); err != nil {
		return err
	}
	err := op.mountAt(e.Device, e.Mountpoint, e.Type, e.Options, op.makeWritable)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, errNoMountPoint):
		// A look changes nothing, not even to make a directory.
		e.Action, e.Reason = target.ActionSkip, "its mount point is missing (read-only: not made)"
		op.warn("%s: %v", e.Mountpoint, err)
		return nil
	case errors.Is(err, unix.ENODEV) && (op.skipUnmountable || op.mounter.ReadOnly):
		// The kernel has no driver for the type (vfat on some rescue
		// kernels): a look goes on without it.
		e.Action, e.Reason = target.ActionSkip, "this kernel cannot mount "+e.Type
		if !op.skipUnmountable {
			op.warn("%s (%s on %s) is not looked at: this kernel has no %s driver (load it: modprobe %s)", e.Mountpoint, e.Type, e.Device, e.Type, e.Type)
		}
		return nil
	case errors.Is(err, unix.ENODEV):
		return &hint.Error{Subject: op.Target.Arg, Err: fmt.Errorf("%s (%s on %s) cannot be mounted: this kernel has no %s driver", e.Mountpoint, e.Type, e.Device, e.Type),
			Fix: fmt.Sprintf("load it (modprobe %s) and run nixrescue again, or run it on a host whose kernel has it; {ReadOnly} looks at the rest", e.Type)}
	case e.NoFail:
		e.Action, e.Reason = target.ActionSkip, "failed (nofail): "+err.Error()
		op.warn("%s: %v (nofail: going on)", e.Mountpoint, err)
		return nil
	}
	return fmt.Errorf("mount %s: %w", e.Mountpoint, err)
}

// errNoMountPoint says a mount point is missing in a target that is not
// to be written.
var errNoMountPoint = errors.New("does not exist in the target (read-only: not created)")

// mountAt mounts device read-only on the target's mount point mp
// (mountpointDir; beforeCreate as there).
func (op *Opened) mountAt(device, mp, fstype string, options []string, beforeCreate func() error) error {
	dir, err := op.mountpointDir(mp, beforeCreate)
	if err != nil {
		return err
	}
	defer dir.Close()
	if op.mounter.ReadOnly {
		// A look writes nothing, not even a journal's replay.
		options = append(slices.Clone(options), target.NoReplayOptions(fstype)...)
	}
	return op.mounter.MountReadOnly(device, dir, fstype, options)
}

// mountpointDir opens a mount point inside the mounted root, every link
// resolved inside it, and makes it when it is missing, as systemd does at
// boot. A mount point that is a link (a /boot that leads to /etc) is
// followed inside the target, as systemd would, and said. beforeCreate
// runs before a missing one is made (it makes the root writable); nil
// refuses to make it.
func (op *Opened) mountpointDir(mp string, beforeCreate func() error) (*os.File, error) {
	dir, err := rootfs.OpenDir(op.RootDir, mp, false)
	if errors.Is(err, os.ErrNotExist) && op.onRootTmpfs(mp) {
		// The session's own tmpfs root: made as the machine's stage 1
		// and systemd make them, whatever the session.
		dir, err = rootfs.OpenDir(op.RootDir, mp, true)
	}
	if errors.Is(err, os.ErrNotExist) {
		if op.mounter.ReadOnly || beforeCreate == nil {
			return nil, fmt.Errorf("mount point %s %w", mp, errNoMountPoint)
		}
		if err := beforeCreate(); err != nil {
			return nil, err
		}
		if dir, err = rootfs.OpenDir(op.RootDir, mp, true); err == nil {
			op.warn("created the missing mount point %s in the target, as systemd would at boot", mp)
		} else if errors.Is(err, unix.ENOTDIR) || errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("mount point %s cannot be made in the target: a link on its way leads nowhere or to a file; fix the link or pass {Mount DEV:PATH} elsewhere", mp)
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

// diskIDs are the by-id names of disk: this host's (target.HostDiskIDs),
// the user's {DiskAlias} names, and the one disk the configuration of the
// root at root (its system, system) installs GRUB on, if one: an image,
// or a host without udev, knows its disk by no other.
func diskIDs(disk, root, system string, to Options) target.DiskIDs {
	ids := target.HostDiskIDs(disk).With(to.DiskAliases...)
	if grub := grubDevices(root, system); len(grub) == 1 {
		ids = ids.With(grub[0])
	}
	return ids
}

// readFstab reads the target's fstab (target.ReadSystemFstab).
func (op *Opened) readFstab() ([]target.FstabEntry, error) {
	entries, from, err := target.ReadSystemFstab(op.RootDir)
	if err != nil {
		return nil, &hint.Error{Subject: op.Target.Arg, Err: err, Fix: "fix the target's fstab, or mount by hand and pass the directory"}
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
	if op.tree {
		// What the kernel says is mounted there, not what was recorded:
		// the target's programs ran on these mounts (mount.UnmountUnder).
		keep(mount.UnmountUnder(op.RootDir))
	}
	keep(op.closeLayers())
	for i := len(op.mapped) - 1; i >= 0; i-- {
		keep(mount.UnmapPartition(context.Background(), op.mapped[i]))
	}
	op.mapped = nil
	if op.diskDev != nil {
		for i := len(op.added) - 1; i >= 0; i-- {
			keep(mount.DeletePartition(op.diskDev, op.added[i]))
		}
		op.added = nil
	}
	if op.loop != nil {
		keep(op.loop.Close())
		if op.export != nil {
			// The export ends once nothing reads it: the loop device
			// goes first.
			keep(mount.WaitReleased(op.loop.Path, op.backing, 5*time.Second))
		}
		op.loop = nil
	} else if op.diskDev != nil {
		keep(op.diskDev.Close())
	}
	op.diskDev = nil
	if op.image != nil {
		op.image.Close()
		op.image = nil
	}
	keep(op.stopExport())
	return first
}

// lockedDatasets are the encrypted datasets the layers left locked for
// want of a key.
func (op *Opened) lockedDatasets() []string {
	var out []string
	for _, l := range op.Layers {
		out = append(out, l.Locked...)
	}
	return out
}

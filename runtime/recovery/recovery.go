// Package recovery undoes what killed nixrescue sessions left, found
// through their state (runtime/state): their containers and processes,
// cgroups, loop devices and partitions, mount points made in targets, and
// the state itself. The engine calls it before a session opens its own
// target (what was left may be in it); nixrescue cleanup calls Recover.
package recovery

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nixrescue/nixrescue/runtime/audit"
	"github.com/nixrescue/nixrescue/runtime/backend/containerd"
	"github.com/nixrescue/nixrescue/runtime/backend/embedded"
	"github.com/nixrescue/nixrescue/runtime/boottest"
	"github.com/nixrescue/nixrescue/runtime/guard"
	"github.com/nixrescue/nixrescue/runtime/host"
	"github.com/nixrescue/nixrescue/runtime/image"
	"github.com/nixrescue/nixrescue/runtime/layers"
	"github.com/nixrescue/nixrescue/runtime/mount"
	"github.com/nixrescue/nixrescue/runtime/rootfs"
	"github.com/nixrescue/nixrescue/runtime/state"
)

// Options say where to look for what killed sessions left.
type Options struct {
	StateDir string
	// All also removes nixrescue cgroups that no session's state names
	// (left by a crash while the state was being written).
	All bool
	// Containerd, when set, is where containerd containers of dead
	// sessions are looked for.
	Containerd *containerd.Runner
}

// Recovered is what Recover removed and what it left alone.
type Recovered struct {
	// Removed are the sessions whose leftovers were removed.
	Removed []string
	// Containers are containerd containers of dead sessions, deleted
	// (namespace/id).
	Containers []string
	// Cgroups are stray nixrescue cgroups removed (All).
	Cgroups []string
	// Overlays are throwaway overlays of sessions gone (a snapshot's, a
	// boot test's) removed.
	Overlays []string
	// Live are the sessions still running, left alone.
	Live []string
}

// Recover undoes what killed sessions left: their containers and
// processes, cgroups, loop devices and partitions, mount points made in
// targets, state. Sessions still running are left alone. It returns what
// it did even when it fails midway.
func Recover(ctx context.Context, o Options) (Recovered, error) {
	var r Recovered
	dir := state.At(o.StateDir)
	live, _, err := dir.Sessions()
	if err != nil {
		return r, err
	}
	r.Live = live
	// The state directory is not made: without it (a rescue host just
	// booted) there are no stale sessions, but there may be containerd's
	// containers and overlays on disk.
	sw, err := RemoveStale(ctx, dir, o.Containerd)
	r.Removed, r.Containers, r.Overlays = sw.Sessions, sw.Containers, sw.Overlays
	if err != nil {
		return r, err
	}
	if o.All {
		r.Cgroups, err = removeCgroups("nixrescue-*", dir.Live)
		if err != nil {
			return r, err
		}
	}
	dir.RemoveIfUnused()
	return r, nil
}

// Swept is what RemoveStale removed.
type Swept struct {
	Sessions, Containers, Overlays []string
}

// RemoveStale removes what killed sessions left: first their containerd
// containers (when a containerd is at hand), whose processes may hold the
// rest, then everything their journals record, then the claims nobody
// holds and the overlays on disk whose session is gone.
func RemoveStale(ctx context.Context, dir *state.Dir, cd *containerd.Runner) (Swept, error) {
	var sw Swept
	var err error
	if cd != nil {
		if sw.Containers, err = cd.Leftovers(ctx, dir.Live); err != nil {
			return sw, err
		}
	}
	_, stale, err := dir.Sessions()
	if err != nil {
		return sw, err
	}
	for _, id := range stale {
		if err := undoSession(ctx, dir, id); err != nil {
			return sw, err
		}
		sw.Sessions = append(sw.Sessions, id)
	}
	dir.RemoveStaleClaims()
	sw.Overlays = dir.RemoveOrphanOverlays()
	return sw, nil
}

// undoSession undoes what dead session id left: its container and its
// processes (through its cgroup: a containerd that died with the session
// killed none), the mount point it made in a target, its private tree,
// its layers (LUKS, LVM, md), its partitions mapped by device-mapper,
// its loop devices, qemu's export of its
// image, its directory.
func undoSession(ctx context.Context, dir *state.Dir, id string) error {
	if err := embedded.DestroyByID(dir.ContainersDir(), id); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("destroy the container of stale session %s: %w", id, err)
	}
	// A journal that cannot be read (a session killed before it wrote
	// one) records nothing to undo.
	j, _ := dir.ReadJournal(id)
	UndoPlaceholder(j)
	if _, err := removeCgroups(id, func(string) bool { return false }); err != nil {
		return fmt.Errorf("undo stale session %s: %w", id, err)
	}
	if j.HostTree != "" {
		if err := mount.UnmountUnder(j.HostTree); err != nil {
			return fmt.Errorf("undo stale session %s: %w", id, err)
		}
	}
	UndoVM(j)
	auditKilled(id, j)
	if err := UndoLayers(ctx, j); err != nil {
		return fmt.Errorf("undo stale session %s: %w", id, err)
	}
	// Its partitions mapped by device-mapper hold its loop device.
	for _, m := range mount.DMMaps(mount.DMPartitionPrefix(id)) {
		if err := mount.UnmapPartition(ctx, m); err != nil {
			return fmt.Errorf("undo stale session %s: %w", id, err)
		}
	}
	// The loop devices first, then qemu's export they read; a loop
	// device the export keeps busy (its daemon in the namespace that
	// holds the mounts) goes once the daemon has.
	loopErr := UndoLoops(j)
	if err := UndoExport(j); err != nil {
		return fmt.Errorf("undo stale session %s: %w", id, err)
	}
	if loopErr != nil {
		if err := UndoLoops(j); err != nil {
			return fmt.Errorf("undo stale session %s: %w", id, err)
		}
	}
	if err := dir.RemoveSession(id); err != nil {
		return fmt.Errorf("remove stale session %s: %w", id, err)
	}
	return nil
}

// UndoPlaceholder removes the resolv.conf mount point the session of
// journal j made in its target, if it is still the empty file it made.
// For a target the session mounted itself this only works while it is
// mounted: a killed session's placeholder stays in the image (it is
// empty).
func UndoPlaceholder(j state.Journal) {
	if j.Placeholder == "" {
		return
	}
	d, err := rootfs.OpenDir(j.Root, path.Dir(j.Placeholder), false)
	if err != nil {
		return
	}
	defer d.Close()
	fd := int(d.Fd())
	var st unix.Stat_t
	if unix.Fstatat(fd, path.Base(j.Placeholder), &st, unix.AT_SYMLINK_NOFOLLOW) != nil {
		return
	}
	if st.Mode&unix.S_IFMT == unix.S_IFREG && st.Size == 0 && st.Ino == j.Inode {
		_ = unix.Unlinkat(fd, path.Base(j.Placeholder), 0)
	}
}

// UndoLayers closes the LUKS volumes, volume groups and arrays journal j
// records, in reverse: after its mounts are gone (they went with its
// mount namespace), before its loop devices.
func UndoLayers(ctx context.Context, j state.Journal) error {
	var first error
	for i := len(j.Layers) - 1; i >= 0; i-- {
		if err := layers.Close(ctx, j.Layers[i]); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// UndoVM ends the qemu of a boot test journal j records and removes its
// overlay and files.
func UndoVM(j state.Journal) {
	if j.VM == nil {
		return
	}
	boottest.KillRecorded(j.VM.PID, j.VM.Overlay)
	if j.VM.Overlay != "" {
		_ = os.Remove(j.VM.Overlay)
	}
	if j.VM.Dir != "" {
		_ = os.RemoveAll(j.VM.Dir)
	}
}

// UndoExport ends the qemu-storage-daemon journal j records (after its
// loop device let go of the export), and removes the snapshot's overlay
// unless it was to be kept.
func UndoExport(j state.Journal) error {
	if j.Export == nil {
		return nil
	}
	if err := image.StopRecorded(image.Recorded{PID: j.Export.PID, File: j.Export.File, Socket: j.Export.Socket, Device: j.Export.Device}); err != nil {
		return err
	}
	if j.Export.Overlay != "" && !j.Export.KeepOverlay {
		if err := os.Remove(j.Export.Overlay); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

// UndoLoops releases the loop devices journal j records, if they are
// still attached to the same files: normally they went by themselves
// (autoclear) once nothing held them.
func UndoLoops(j state.Journal) error {
	var first error
	for _, l := range j.Loops {
		if err := releaseLoop(l); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// releaseLoop detaches a recorded loop device if it still serves the
// recorded file, removing the partitions added to it first.
func releaseLoop(l state.Loop) error {
	name := filepath.Base(l.Device)
	if mount.BackingFile(name) != l.Backing {
		return nil
	}
	if f, err := os.Open(l.Device); err == nil {
		for _, n := range l.Partitions {
			_ = mount.DeletePartition(f, n)
		}
		f.Close()
	}
	if err := mount.Detach(l.Device); err != nil {
		return fmt.Errorf("detach %s: %w", l.Device, err)
	}
	// Detaching waits for the last user; give it a moment.
	return mount.WaitReleased(l.Device, l.Backing, 3*time.Second)
}

// removeCgroups kills the processes of the cgroups named like pattern (in
// every hierarchy) whose session is not live (guard.KillCgroup, as a
// session's guard does), and removes the cgroups: what a container whose
// runtime is gone (a containerd that died) leaves.
func removeCgroups(pattern string, live func(string) bool) ([]string, error) {
	var removed []string
	killed := map[string]bool{}
	for _, d := range host.CgroupDirs(pattern) {
		id := filepath.Base(d)
		if live(id) {
			continue
		}
		if !killed[id] {
			killed[id] = true
			if err := guard.KillCgroup("/" + id); err != nil {
				return removed, err
			}
		}
		deadline := time.Now().Add(3 * time.Second)
		for {
			err := syscall.Rmdir(d)
			if err == nil || errors.Is(err, os.ErrNotExist) {
				removed = append(removed, d)
				break
			}
			if time.Now().After(deadline) {
				return removed, fmt.Errorf("remove cgroup %s: %w", d, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return removed, nil
}

// auditKilled writes the audit record of the end of a session that was
// killed: its start was recorded, its end never was.
func auditKilled(id string, j state.Journal) {
	if j.Audit == "" || j.Started.IsZero() {
		return
	}
	l, err := audit.Open(j.Audit)
	if err != nil {
		return
	}
	now := time.Now()
	_ = l.Write(audit.Record{Event: "end", Session: id, Caller: j.Caller, Target: j.Target, Disk: j.Disk, Ended: &now,
		Error: fmt.Sprintf("nixrescue (pid %d) was killed; what the session left was removed by a later nixrescue", j.PID)})
}

package commands

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"

	"github.com/nixrescue/nixrescue/runtime/doctor"
	"github.com/nixrescue/nixrescue/runtime/engine"
	"github.com/nixrescue/nixrescue/runtime/nixos"
	"github.com/nixrescue/nixrescue/runtime/rootfs"
)

// pruneIn prunes the root of session s (see Prune), its container
// prepared as p; it returns switch-to-configuration's status.
func pruneIn(ctx context.Context, s *engine.Session, p *engine.Prepared, o *Options, keep int, r *PruneReport) (int, error) {
	root := s.Root()
	var err error
	if r.Bootloader, r.Plan, err = planPrune(root, keep); err != nil {
		return 0, err
	}
	before, roomy := bootSpace(s, r.Bootloader)
	r.BootFreeBefore = before.Avail
	files := nixos.BootFiles(root, r.Bootloader)
	var aside *asideFiles
	if !roomy && len(r.Plan.Unreferenced) > 0 {
		o.Log.Info(fmt.Sprintf("%s has no room for the installer's writes: moving the %d files no kept entry names onto the root filesystem first", before.Mountpoint, len(r.Plan.Unreferenced)))
		if aside, err = moveAside(root, r.Plan.Unreferenced, s.ID()); err != nil {
			return 0, err
		}
		r.MovedAside = true
	}
	deleted, err := deleteGenerations(root, r.Plan.Delete)
	switch {
	case err != nil:
	case len(deleted) == 0:
		o.Log.Info(fmt.Sprintf("no generation is older than the newest %d (kept %s); the current system's installer rewrites the boot menu", keep, joinInts(r.Plan.Kept)))
	default:
		o.Log.Info(fmt.Sprintf("deleted system generations %s (kept %s); the current system's installer rewrites the boot menu", joinInts(r.Plan.Delete), joinInts(r.Plan.Kept)))
	}
	code := 0
	if err == nil {
		code, err = s.RunFirst(ctx, p, newProcess(o, []string{nixos.SystemProfile + "/bin/switch-to-configuration", "boot"}, p.Env))
	}
	if err != nil || code != 0 {
		rerr := errors.Join(restoreGenerations(root, deleted), aside.restore(root))
		if rerr != nil {
			return code, fmt.Errorf("the prune failed (%v), and putting back what it had changed failed too: %w", err, rerr)
		}
		o.Log.Info("the installer failed: the deleted generations and the files moved aside are back")
		return code, err
	}
	if err := removeUnreferenced(root, r.Bootloader); err != nil {
		return 0, err
	}
	if err := aside.remove(root); err != nil {
		o.Log.Warn(err.Error())
	}
	after := nixos.BootFiles(root, r.Bootloader)
	for _, f := range files {
		if !slices.Contains(after, f) {
			r.Removed = append(r.Removed, f)
		}
	}
	sp, _ := bootSpace(s, r.Bootloader)
	r.BootFreeAfter = sp.Avail
	r.Freed = int64(r.BootFreeAfter) - int64(r.BootFreeBefore)
	return 0, nil
}

// removeUnreferenced removes the files of the kernel directories that no
// entry of the menu names (the menu as the installer just wrote it: every
// entry is a kept one).
func removeUnreferenced(root string, b nixos.Bootloader) error {
	gens, err := nixos.Generations(root)
	if err != nil {
		return err
	}
	entries, ok := nixos.ReadBootEntries(root, b, gens)
	if !ok {
		return fmt.Errorf("the installer left no boot menu to read: nothing more is removed from /boot")
	}
	plan := doctor.PlanPrune(root, b, gens, nixos.CurrentGeneration(root), entries, len(gens))
	for _, f := range plan.Unreferenced {
		if err := removeIn(root, f); err != nil {
			return err
		}
	}
	return nil
}

// removeIn removes the regular file p of root.
func removeIn(root, p string) error {
	dir, err := rootfs.Join(root, path.Dir(p))
	if err != nil {
		return err
	}
	full := filepath.Join(dir, path.Base(p))
	if st, err := os.Lstat(full); err != nil || !st.Mode().IsRegular() {
		return nil
	}
	return os.Remove(full)
}

// deleteGenerations deletes the generations' links; on a failure, it puts
// back those it deleted. It returns where each pointed.
func deleteGenerations(root string, numbers []int) (map[int]string, error) {
	deleted := map[int]string{}
	for _, n := range numbers {
		dest, err := nixos.DeleteGeneration(root, n)
		if err != nil {
			return nil, errors.Join(err, restoreGenerations(root, deleted))
		}
		deleted[n] = dest
	}
	return deleted, nil
}

func restoreGenerations(root string, deleted map[int]string) error {
	var errs []error
	for n, dest := range deleted {
		errs = append(errs, nixos.RestoreGeneration(root, n, dest))
	}
	return errors.Join(errs...)
}

// asideFiles are files of /boot moved onto the root filesystem, into
// dir (a path in the root), by their paths there.
type asideFiles struct {
	dir   string
	moved map[string]string
}

// moveAside moves files (paths in root) into a directory of the root
// filesystem's top named after the session; a failure puts back what
// was moved.
func moveAside(root string, files []string, id string) (*asideFiles, error) {
	a := &asideFiles{dir: "/.nixrescue-prune-" + id, moved: map[string]string{}}
	dir, err := rootfs.Join(root, a.dir)
	if err == nil {
		err = os.Mkdir(dir, 0o700)
	}
	if err != nil {
		return nil, fmt.Errorf("make a place for /boot's files on the root filesystem: %w", err)
	}
	for i, f := range files {
		to := path.Join(a.dir, fmt.Sprintf("%d-%s", i, path.Base(f)))
		if err := moveIn(root, f, to); err != nil {
			return nil, errors.Join(fmt.Errorf("move %s onto the root filesystem: %w", f, err), a.restore(root))
		}
		a.moved[f] = to
	}
	return a, nil
}

// restore moves the files back where they were (nil a: nothing).
func (a *asideFiles) restore(root string) error {
	if a == nil {
		return nil
	}
	var errs []error
	for from, to := range a.moved {
		errs = append(errs, moveIn(root, to, from))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("/boot's files moved aside are left in %s: %w", a.dir, err)
	}
	return a.remove(root)
}

// remove removes the files moved aside, and their directory.
func (a *asideFiles) remove(root string) error {
	if a == nil {
		return nil
	}
	dir, err := rootfs.Join(root, a.dir)
	if err != nil {
		return err
	}
	return os.RemoveAll(dir)
}

// moveIn moves the regular file from to to (paths in root) across
// filesystems: copied, synced, then the original removed.
func moveIn(root, from, to string) error {
	src, err := rootfs.Open(root, from)
	if err != nil {
		return err
	}
	defer src.Close()
	dir, err := rootfs.Join(root, path.Dir(to))
	if err != nil {
		return err
	}
	dst, err := os.OpenFile(filepath.Join(dir, path.Base(to)), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	_, err = io.Copy(dst, src)
	err = errors.Join(err, dst.Sync(), dst.Close())
	if err != nil {
		os.Remove(dst.Name())
		return err
	}
	return removeIn(root, from)
}

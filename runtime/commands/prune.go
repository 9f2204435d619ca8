package commands

import (
	"context"
	"fmt"

	"github.com/nixrescue/nixrescue/runtime/doctor"
	"github.com/nixrescue/nixrescue/runtime/engine"
	"github.com/nixrescue/nixrescue/runtime/hint"
	"github.com/nixrescue/nixrescue/runtime/nixos"
	"github.com/nixrescue/nixrescue/runtime/target"
)

// PruneOptions are prune's.
type PruneOptions struct {
	Options
	// Keep is how many of the newest generations are kept (the current
	// one and the bootloader's default are kept besides).
	Keep   int
	DryRun bool
}

// DefaultKeep is how many generations prune keeps unless told.
const DefaultKeep = 3

// PruneReport is what prune did, or would do. Its JSON field names are
// stable (docs/json.md).
type PruneReport struct {
	Target     target.Target    `json:"target"`
	Bootloader nixos.Bootloader `json:"bootloader"`
	// Plan is what was planned before anything was done: the
	// generations deleted and kept, the files no kept entry names.
	Plan   doctor.PrunePlan `json:"plan"`
	DryRun bool             `json:"dry_run"`
	// Removed are the files of /boot removed: by the installer, or by
	// nixrescue after it (paths in the target's root).
	Removed []string `json:"removed"`
	// MovedAside says the unreferenced files were moved onto the root
	// filesystem before the installer ran (there was not room for its
	// writes), and removed after.
	MovedAside bool `json:"moved_aside"`
	// BootFree is the free space of /boot (or the ESP) before and after,
	// in bytes; Freed the difference.
	BootFreeBefore uint64 `json:"boot_free_before"`
	BootFreeAfter  uint64 `json:"boot_free_after"`
	Freed          int64  `json:"freed"`
	// ExitStatus is switch-to-configuration's.
	ExitStatus int `json:"exit_status"`
}

// Prune frees /boot the way that works when it is full: it deletes the
// system generations older than the newest Keep (never the current one
// nor the bootloader's default), runs the current system's
// switch-to-configuration boot in the recovery container (the system's
// own installer rewrites the menu, building nothing), then removes the
// kernels and initrds no kept entry names. When /boot has no room for
// the installer's writes, those files are moved onto the root filesystem
// first and removed after. If the installer fails, the generations and
// the files are put back.
func Prune(ctx context.Context, po PruneOptions) (*PruneReport, int, error) {
	if err := po.check(); err != nil {
		return nil, 0, err
	}
	o := po.Options
	if po.DryRun {
		return dryPrune(ctx, po)
	}
	o.RequireMounts = true
	o.Container.NoActivate = true
	s, err := open(ctx, &o, true)
	if err != nil {
		return nil, 0, err
	}
	r := &PruneReport{Target: s.Target(), Removed: []string{}}
	code := 0
	p, err := prepare(s, &o, true)
	if err == nil {
		code, err = pruneIn(ctx, s, p, &o, po.Keep, r)
	}
	s.Outcome(code, err, r.wrote()...)
	s.Close()
	r.ExitStatus = code
	return r, code, err
}

func (po PruneOptions) check() error {
	switch {
	case po.Keep < 1:
		return &hint.Error{Err: hint.Errorf("{Keep %d}: prune keeps one generation at the least", po.Keep), Fix: "give {Keep N} with N of 1 or more"}
	case po.ReadOnly && !po.DryRun:
		return writesRefusal("a prune deletes generations and files of /boot")
	case po.Container.System != (nixos.SystemChoice{}):
		return &hint.Error{Err: hint.Errorf("prune keeps the newest generations: {Generation} and {System} choose none"), Fix: "use {Keep N}"}
	}
	return nil
}

// dryPrune plans, read-only, and does nothing.
func dryPrune(ctx context.Context, po PruneOptions) (*PruneReport, int, error) {
	o := po.Options
	s, err := openReadOnly(ctx, &o)
	if err != nil {
		return nil, 0, err
	}
	defer s.Close()
	defer s.Outcome(0, nil)
	warn(o.Log, s.Warnings())
	r := &PruneReport{Target: s.Target(), DryRun: true, Removed: []string{}}
	r.Bootloader, r.Plan, err = planPrune(s.Root(), po.Keep)
	if err != nil {
		return nil, 0, err
	}
	sp, _ := bootSpace(s, r.Bootloader)
	r.BootFreeBefore = sp.Avail
	r.BootFreeAfter = r.BootFreeBefore + r.Plan.Bytes
	r.Freed = int64(r.Plan.Bytes)
	return r, 0, nil
}

// planPrune reads the root's generations and menu and plans keeping
// keep of them.
func planPrune(root string, keep int) (nixos.Bootloader, doctor.PrunePlan, error) {
	sys, err := nixos.ResolveSystem(root, nixos.SystemChoice{})
	if err != nil {
		return nixos.Bootloader{}, doctor.PrunePlan{}, err
	}
	b := nixos.DetectBootloader(root, sys.StorePath)
	if len(nixos.BootFileDirs(b)) == 0 {
		return b, doctor.PrunePlan{}, fmt.Errorf("the system's bootloader is %s: prune knows where GRUB and systemd-boot keep their kernels, not where it does", b.Kind)
	}
	gens, err := nixos.Generations(root)
	if err != nil {
		return b, doctor.PrunePlan{}, err
	}
	entries, _ := nixos.ReadBootEntries(root, b, gens)
	return b, doctor.PlanPrune(root, b, gens, sys.Generation, entries, keep), nil
}

// bootSpace is what /boot (the filesystem the bootloader's kernels are
// on) has left, and whether the installer has room there (its kernel
// and initrd fit, or /boot is on the root's filesystem, where moving
// files aside would free nothing).
func bootSpace(s *engine.Session, b nixos.Bootloader) (sp doctor.Space, roomy bool) {
	sys, _ := currentGeneration(s.Root())
	sp, need, own := doctor.BootRoom(s.Root(), sys, b, func(p string) doctor.Space { return spaceOf(s.Root(), s.Layout().Plan, p) })
	return sp, !own || sp.Avail >= need
}

// wrote says what prune wrote, for the audit record.
func (r *PruneReport) wrote() []string {
	var w []string
	if len(r.Plan.Delete) > 0 && !r.DryRun && r.ExitStatus == 0 {
		w = append(w, fmt.Sprintf("system generations %s deleted", joinInts(r.Plan.Delete)))
	}
	if len(r.Removed) > 0 {
		w = append(w, fmt.Sprintf("%d files removed from /boot (%d bytes freed)", len(r.Removed), r.Freed))
	}
	return w
}

package commands

import (
	"context"
	"errors"
	"fmt"

	"github.com/nixrescue/nixrescue/runtime/boottest"
	"github.com/nixrescue/nixrescue/runtime/engine"
	"github.com/nixrescue/nixrescue/runtime/hint"
	"github.com/nixrescue/nixrescue/runtime/host"
	"github.com/nixrescue/nixrescue/runtime/nixos"
	"github.com/nixrescue/nixrescue/runtime/target"
)

// Report is what inspect finds on a target. Its JSON field names are
// stable (docs/json.md).
type Report struct {
	engine.Layout
	Generations []nixos.Generation `json:"generations"`
	// Current is the generation the system profile points at (or the
	// one {System} or {Generation} chose); nil when none could be read.
	Current *GenerationRef `json:"current,omitempty"`
	// Arch is the CPU architecture of that system (x86_64, aarch64 …),
	// as its name says.
	Arch string `json:"arch,omitempty"`
	// Runs says how this host runs that system's programs: native,
	// emulated (through Emulator, a qemu-user binfmt_misc handler) or
	// no (a session refuses it).
	Runs       string           `json:"runs,omitempty"`
	Emulator   string           `json:"emulator,omitempty"`
	Bootloader nixos.Bootloader `json:"bootloader"`
	// Configuration is what a rebuild would build: the flake and its
	// attribute, or configuration.nix.
	Configuration *nixos.ConfigSource `json:"configuration,omitempty"`
	DiskAliases   []target.DiskAlias  `json:"disk_aliases"`
	HostEFI       bool                `json:"host_efi"`
	Warnings      []string            `json:"warnings"`
}

// Inspect opens the target as a session would, read-only, reads what is
// there, runs nothing in it, tears everything down, and returns what it
// found.
func Inspect(ctx context.Context, o Options) (_ *Report, err error) {
	s, err := openReadOnly(ctx, &o)
	var locked *engine.LockedError
	if errors.As(err, &locked) {
		// What can be read without a key: the partitions and the locked
		// volumes' headers.
		return &Report{Layout: locked.Layout, Warnings: []string{hint.Render(locked.Error())}, DiskAliases: []target.DiskAlias{},
			Generations: []nixos.Generation{}, Bootloader: nixos.Bootloader{Kind: nixos.UnknownLoader}, HostEFI: host.EFIBooted("/sys")}, nil
	}
	if err != nil {
		return nil, err
	}
	defer s.Close()
	defer func() { s.Outcome(0, err) }()
	root := s.Root()
	r := &Report{Layout: s.Layout(), Warnings: append([]string{}, s.Warnings()...), DiskAliases: []target.DiskAlias{}, HostEFI: host.EFIBooted("/sys")}
	r.DiskAliases = append(r.DiskAliases, s.DiskAliases()...)
	if s.Layout().Root == nil {
		// A directory: the names its configuration gives the disk
		// behind it, if it is on one.
		r.DiskAliases = append(r.DiskAliases, engine.DirectoryDiskAliases(root, o.TargetOptions, func(w string) { r.Warnings = append(r.Warnings, w) })...)
	}
	if r.Generations, err = nixos.Generations(root); err != nil {
		r.Warnings = append(r.Warnings, err.Error())
		r.Generations = []nixos.Generation{}
	}
	if sys, err := nixos.ResolveSystem(root, o.Container.System); err == nil {
		r.Current = &GenerationRef{Generation: sys.Generation, System: sys.StorePath}
		r.Arch = nixos.SystemArch(root, sys.StorePath)
		r.readRuns()
		r.Bootloader = nixos.DetectBootloader(root, sys.StorePath)
		if host, err := nixos.Hostname(root, sys.Path); err == nil {
			src := nixos.RebuildSource(root, "", host)
			r.Configuration = &src
		}
		if w := missingESP(s, sys.StorePath); w != "" {
			r.Warnings = append(r.Warnings, w)
		}
	} else {
		r.Warnings = append(r.Warnings, err.Error())
		r.Bootloader = nixos.Bootloader{Kind: nixos.UnknownLoader}
	}
	for _, g := range r.Generations {
		if g.Missing {
			r.Warnings = append(r.Warnings, fmt.Sprintf("generation %d names %s, which is not in the store", g.Number, g.StorePath))
		}
	}
	if r.Bootloader.Kind == nixos.SystemdBoot && !r.HostEFI {
		r.Warnings = append(r.Warnings, "the system boots with systemd-boot but this host did not boot by EFI: a rebuild from here makes no NVRAM boot entry, and the firmware will boot the disk through the fallback path "+boottest.EFIFallbackOf(r.Arch))
	}
	return r, nil
}

// openReadOnly opens a session that only looks: everything read-only (not
// even a superblock's mount time changes), no container, and the root
// checked to be NixOS.
func openReadOnly(ctx context.Context, o *Options) (*engine.Session, error) {
	o.ReadOnly = true
	s, err := open(ctx, o, false)
	if err != nil {
		return nil, err
	}
	if err := nixos.CheckRoot(s.Root()); err != nil {
		s.Outcome(0, err)
		s.Close()
		return nil, err
	}
	return s, nil
}

// readRuns says in r how this host runs the system's programs, and warns
// with the refusal a session would give when it cannot.
func (r *Report) readRuns() {
	if r.Arch == "" {
		return
	}
	handler, err := engine.HostRuns(r.Arch)
	switch {
	case err != nil:
		r.Runs = "no"
		r.Warnings = append(r.Warnings, hint.Render(err.Error()))
	case handler != "":
		r.Runs, r.Emulator = "emulated", handler
	default:
		r.Runs = "native"
	}
}

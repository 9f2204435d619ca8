package commands

import (
	"context"
	"fmt"
	"slices"

	"github.com/nixrescue/nixrescue/runtime/engine"
	"github.com/nixrescue/nixrescue/runtime/hint"
	"github.com/nixrescue/nixrescue/runtime/nixos"
	"github.com/nixrescue/nixrescue/runtime/target"
)

// DryRunReport is what a rebuild or a rollback would do, read from the
// target opened read-only: nothing ran in it and nothing was written. Its
// JSON field names are stable (docs/json.md).
type DryRunReport struct {
	Target target.Target `json:"target"`
	// Mounts is the mount plan the session would follow.
	Mounts  []target.Entry `json:"mounts"`
	Current *GenerationRef `json:"current,omitempty"`
	// Boots is the generation that would boot by default after: the
	// rollback's, or the one a rebuild makes (its system is known only
	// once built).
	Boots *GenerationRef `json:"boots"`
	// Builds says what nixos-rebuild would build (rebuild), and
	// Configuration what it would build from.
	Builds        string              `json:"builds,omitempty"`
	Configuration *nixos.ConfigSource `json:"configuration,omitempty"`
	// Command is what would run in the recovery container, Env what it
	// would be given besides the system's environment.
	Command []string `json:"command"`
	Env     []string `json:"env"`
	// Activates says whether the system's activation would run first.
	Activates bool `json:"activates"`
	// Bootloader is what would be done of it: action install or
	// configure, on its devices (as the current configuration names them,
	// for a rebuild: a changed configuration may name others).
	Bootloader  BootloaderStep     `json:"bootloader"`
	DiskAliases []target.DiskAlias `json:"disk_aliases"`
	Warnings    []string           `json:"warnings"`
}

// RebuildPlan says what Rebuild would do with ro, and refuses what it
// would refuse before anything runs, having run nothing.
func RebuildPlan(ctx context.Context, ro RebuildOptions) (*DryRunReport, error) {
	o := ro.RunOptions
	if err := rebuildCheck(o); err != nil {
		return nil, err
	}
	if ro.BootTest != nil {
		return nil, &hint.Error{Err: hint.Errorf("{DryRun} builds nothing for {BootTest} to boot"), Fix: "drop one; nixrescue boot-test TARGET boots what is there now"}
	}
	if err := flakeArgsCheck(&ro); err != nil {
		return nil, err
	}
	installing := !ro.NoInstallBootloader
	o.StrictDiskAliases, o.RequireMounts, o.InstallsBootloader = true, true, installing
	return plan(ctx, &o.Options, func(s *engine.Session, r *DryRunReport) error {
		root := s.Root()
		err := hasRebuild(root, o.Container.System)
		if err != nil {
			return err
		}
		r.Command, r.Activates = []string{"nixos-rebuild", "boot"}, !o.NoActivate
		if installing {
			r.Command = append(r.Command, "--install-bootloader")
			r.Env = append(r.Env, "NIXOS_INSTALL_BOOTLOADER=1")
		}
		r.Command = append(r.Command, ro.Extra...)
		run := RunOptions{Options: o.Options, Args: r.Command}
		if r.Configuration, err = buildsFrom(root, ro, &run); err != nil {
			return err
		}
		r.Command, r.Builds = run.Args, sourceNote(*r.Configuration)
		if len(run.NixConfig) > 0 {
			r.Env = append(r.Env, nixConfigEnv(run.NixConfig))
		}
		gens, err := nixos.Generations(root)
		if err != nil {
			return err
		}
		next := 1
		for _, g := range gens {
			next = max(next, g.Number+1)
		}
		r.Boots = &GenerationRef{Generation: next}
		r.Bootloader = bootloaderPlan(root, r.Current.system(), installing)
		return nil
	})
}

// RollbackPlan says what Rollback would do with ro, and refuses what it
// would refuse, having run nothing.
func RollbackPlan(ctx context.Context, ro RollbackOptions) (*DryRunReport, error) {
	if err := ro.check(); err != nil {
		return nil, err
	}
	o := ro.Options
	o.RequireMounts = true
	return plan(ctx, &o, func(s *engine.Session, r *DryRunReport) error {
		root := s.Root()
		_, to, err := rollbackTarget(root, ro.To)
		if err != nil {
			return err
		}
		gens, _ := nixos.Generations(root)
		i := slices.IndexFunc(gens, func(g nixos.Generation) bool { return g.Number == to })
		r.Boots = &GenerationRef{Generation: to, System: gens[i].StorePath}
		r.Command = []string{nixos.SystemProfile + "/bin/switch-to-configuration", "boot"}
		r.Bootloader = bootloaderPlan(root, r.Boots.System, false)
		return nil
	})
}

// plan opens the target read-only as the command would open it, and
// fills what is common to every dry run; fill adds the command's.
func plan(ctx context.Context, o *Options, fill func(*engine.Session, *DryRunReport) error) (_ *DryRunReport, err error) {
	s, err := openReadOnly(ctx, o)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	defer func() { s.Outcome(0, err) }()
	r := &DryRunReport{Target: s.Target(), Mounts: s.Layout().Plan, Current: currentRef(s.Root()), Env: []string{},
		DiskAliases: append([]target.DiskAlias{}, s.DiskAliases()...), Warnings: append([]string{}, s.Warnings()...)}
	if r.Mounts == nil {
		r.Mounts = []target.Entry{}
	}
	if err := fill(s, r); err != nil {
		return nil, err
	}
	if r.Boots == nil {
		return nil, fmt.Errorf("nothing to do")
	}
	return r, nil
}

// bootloaderPlan is what a rebuild or a rollback would do of system's
// bootloader: install it, or write its configuration.
func bootloaderPlan(root, system string, installing bool) BootloaderStep {
	b := nixos.DetectBootloader(root, system)
	step := BootloaderStep{Kind: b.Kind, Devices: b.Devices, Action: "configure"}
	if installing {
		step.Action = "install"
	}
	return step
}

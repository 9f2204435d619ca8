package commands

import (
	"context"

	"github.com/nixrescue/nixrescue/runtime/nixos"
	"github.com/nixrescue/nixrescue/runtime/target"
)

// GenerationsReport lists a target's system generations. Its JSON field
// names are stable (docs/json.md).
type GenerationsReport struct {
	Target      target.Target      `json:"target"`
	Generations []nixos.Generation `json:"generations"`
	// Current is the generation the system profile points at.
	Current int `json:"current"`
	// BootDefault is what the boot partition boots by default.
	BootDefault nixos.BootDefault `json:"boot_default"`
	Bootloader  string            `json:"bootloader"`
}

// Generations opens the target read-only and lists its generations, with
// the current one and the one the bootloader boots by default. What
// opening found amiss is logged.
func Generations(ctx context.Context, o Options) (_ *GenerationsReport, err error) {
	s, err := openReadOnly(ctx, &o)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	defer func() { s.Outcome(0, err) }()
	warn(o.Log, s.Warnings())
	root := s.Root()
	gens, err := nixos.Generations(root)
	if err != nil {
		return nil, err
	}
	r := &GenerationsReport{Target: s.Target(), Generations: gens, Current: nixos.CurrentGeneration(root)}
	r.BootDefault = nixos.ReadBootDefault(root, gens)
	sys, _ := currentGeneration(root)
	r.Bootloader = nixos.DetectBootloader(root, sys).Kind
	return r, nil
}

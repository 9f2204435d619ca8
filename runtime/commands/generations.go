package commands

import (
	"context"

	"github.com/nixrescue/nixrescue/runtime/hint"
	"github.com/nixrescue/nixrescue/runtime/nixos"
	"github.com/nixrescue/nixrescue/runtime/target"
)

// GenerationsReport lists a target's system generations. Its JSON field
// names are stable (docs/json.md).
type GenerationsReport struct {
	Target      target.Target      `json:"target"`
	Generations []nixos.Generation `json:"generations"`
	// Current is the generation the system profile points at.
	Current *GenerationRef `json:"current,omitempty"`
	// BootDefault is what the boot partition boots by default.
	BootDefault nixos.BootDefault `json:"boot_default"`
	Bootloader  nixos.Bootloader  `json:"bootloader"`
}

// Generations opens the target read-only and lists its generations, with
// the current one and the one the bootloader boots by default. What
// opening found amiss is logged.
func Generations(ctx context.Context, o Options) (_ *GenerationsReport, err error) {
	if o.Container.System != (nixos.SystemChoice{}) {
		return nil, &hint.Error{Err: hint.Errorf("generations lists every generation: {Generation} and {System} choose none of them"),
			Fix: "drop it; to boot one, nixrescue boot-test TARGET {Generation N}; to make one the default, nixrescue rollback TARGET {To N}"}
	}
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
	r := &GenerationsReport{Target: s.Target(), Generations: gens, Current: currentRef(root)}
	r.BootDefault = nixos.ReadBootDefault(root, gens)
	r.Bootloader = nixos.DetectBootloader(root, r.Current.system())
	return r, nil
}

package session

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/nixrescue/nixrescue/runtime/nixos"
	"github.com/nixrescue/nixrescue/runtime/target"
)

// GenerationsReport lists a target's system generations. Its JSON field
// names are stable; the README documents them.
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
// the current one and the one the bootloader boots by default.
func Generations(ctx context.Context, o Options, print func(*GenerationsReport) error) (int, error) {
	l, code, err := openReadOnly(ctx, o)
	if l == nil {
		return code, err
	}
	defer l.close()
	for _, w := range l.s.opened.Warnings {
		fmt.Fprintf(l.o.Stderr, "nixrescue: warning: %s\n", w)
	}
	root := l.o.Root
	gens, err := nixos.Generations(root)
	if err != nil {
		return ExitFailure, err
	}
	r := &GenerationsReport{Target: l.target, Generations: gens, Current: nixos.CurrentGeneration(root)}
	r.BootDefault = nixos.ReadBootDefault(root, gens)
	sys, _ := currentGeneration(root)
	r.Bootloader = nixos.DetectBootloader(root, sys).Kind
	return 0, print(r)
}

// WriteText prints the generations for people: * marks the current one,
// "boot default" the bootloader's default.
func (r *GenerationsReport) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  GEN\tDATE\tNIXOS\tKERNEL\t")
	for _, g := range r.Generations {
		mark := " "
		if g.Number == r.Current {
			mark = "*"
		}
		var notes []string
		if g.Number == r.BootDefault.Generation {
			notes = append(notes, "boot default")
		}
		if g.Missing {
			notes = append(notes, "missing from the store")
		}
		fmt.Fprintf(tw, "%s %d\t%s\t%s\t%s\t%s\n", mark, g.Number, g.Date.Format("2006-01-02 15:04"), dash(g.NixOSVersion), dash(g.Kernel), strings.Join(notes, ", "))
	}
	tw.Flush()
	switch {
	case r.BootDefault.Source == "":
		fmt.Fprintf(w, "bootloader: %s; no grub.cfg or loader.conf on /boot\n", r.Bootloader)
	case r.BootDefault.Generation == 0:
		fmt.Fprintf(w, "bootloader: %s; its default entry (%q in %s) names no generation\n", r.Bootloader, r.BootDefault.Entry, r.BootDefault.Source)
	default:
		fmt.Fprintf(w, "bootloader: %s; boots generation %d by default (%s)\n", r.Bootloader, r.BootDefault.Generation, r.BootDefault.Source)
	}
	return nil
}

// RollbackOptions are rollback's.
type RollbackOptions struct {
	Options
	// To is the generation to go back to; 0 means the one before the
	// current.
	To int
}

// Rollback points the system profile at an older generation, as
// nix-env --switch-generation does, then runs that generation's
// switch-to-configuration boot in the recovery container, so that the
// bootloader's default follows. If that fails, the profile is pointed
// back where it was.
func Rollback(ctx context.Context, ro RollbackOptions) (int, error) {
	o := ro.Options
	o.defaults()
	o.RequireMounts = true
	o.NoActivate = true // switch-to-configuration boot activates nothing
	o.Args = []string{nixos.SystemProfile + "/bin/switch-to-configuration", "boot"}
	var before, to int
	o.beforeContainer = func(root string) error {
		var err error
		before, to, err = rollbackTarget(root, ro.To)
		if err != nil {
			return err
		}
		if err := nixos.SwitchGeneration(root, to); err != nil {
			return err
		}
		fmt.Fprintf(o.Stderr, "nixrescue: the system profile now points at generation %d (it was %d); making it the bootloader's default\n", to, before)
		return nil
	}
	o.afterCommand = func(root string, code int) error {
		if code == 0 {
			return nil
		}
		if err := nixos.SwitchGeneration(root, before); err != nil {
			return fmt.Errorf("switch-to-configuration of generation %d failed (status %d), and pointing the profile back at %d failed too: %w", to, code, before, err)
		}
		fmt.Fprintf(o.Stderr, "nixrescue: switch-to-configuration of generation %d failed (status %d); the system profile points at generation %d again\n", to, code, before)
		return nil
	}
	if o.Report == nil {
		o.Report = &RunReport{}
	}
	o.bootloaderStep = true
	return Run(ctx, o)
}

// rollbackTarget checks the profile and picks the generation to go to.
func rollbackTarget(root string, want int) (current, to int, err error) {
	current = nixos.CurrentGeneration(root)
	if current == 0 {
		return 0, 0, fmt.Errorf("the system profile (%s) points at no generation link: it is not a NixOS system profile nixrescue can roll back", nixos.SystemProfile)
	}
	gens, err := nixos.Generations(root)
	if err != nil {
		return 0, 0, err
	}
	var numbers []int
	for _, g := range gens {
		numbers = append(numbers, g.Number)
	}
	to = want
	if to == 0 {
		for _, n := range numbers {
			if n < current {
				to = n
			}
		}
		if to == 0 {
			return 0, 0, fmt.Errorf("generation %d is the oldest: there is none to roll back to", current)
		}
	}
	i := slices.IndexFunc(gens, func(g nixos.Generation) bool { return g.Number == to })
	switch {
	case len(numbers) > 0 && to > numbers[len(numbers)-1]:
		return 0, 0, fmt.Errorf("--to %d is past the newest generation (%d): pick one of %s", to, numbers[len(numbers)-1], joinInts(numbers))
	case i < 0:
		return 0, 0, fmt.Errorf("generation %d does not exist: pick one of %s", to, joinInts(numbers))
	case to == current:
		return 0, 0, fmt.Errorf("generation %d is the current one already", to)
	case gens[i].Missing:
		return 0, 0, fmt.Errorf("generation %d's system (%s) is gone from the store: pick another of %s", to, gens[i].StorePath, joinInts(numbers))
	case !nixos.IsNixOSSystem(root, gens[i].StorePath):
		return 0, 0, fmt.Errorf("generation %d (%s) is not a NixOS system (no bin/switch-to-configuration): the profile is not a NixOS system profile", to, gens[i].StorePath)
	}
	return current, to, nil
}

func joinInts(ns []int) string {
	var s []string
	for _, n := range ns {
		s = append(s, fmt.Sprint(n))
	}
	return strings.Join(s, ", ")
}

package commands

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/nixrescue/nixrescue/runtime/hint"
	"github.com/nixrescue/nixrescue/runtime/nixos"
)

// RollbackOptions are rollback's.
type RollbackOptions struct {
	Options
	// To is the generation to go back to; 0 means the one before the
	// current.
	To int
}

// Rollback points the system profile at an older generation, as
// nix-env --switch-generation does, then runs that generation's
// switch-to-configuration boot in the recovery container (its first
// process: it activates nothing), so that the bootloader's default
// follows. If that fails, the profile is pointed back where it was.
func Rollback(ctx context.Context, ro RollbackOptions) (*RunReport, int, error) {
	if err := ro.check(); err != nil {
		return nil, 0, err
	}
	o := ro.Options
	o.RequireMounts = true
	o.Container.NoActivate = true
	s, err := open(ctx, &o, true)
	if err != nil {
		return nil, 0, err
	}
	rep := newRunReport(s)
	code := 0
	p, err := prepare(s, &o, true)
	if err == nil {
		rep.DiskAliases = append(rep.DiskAliases, p.Aliases...)
		code, err = rollbackIn(s.Root(), ro.To, o.Log, func(args []string) (int, error) {
			return s.RunFirst(ctx, p, newProcess(&o, args, p.Env))
		})
	}
	if err == nil {
		rep.Bootloader = bootloaderAfter(s.Root(), false, code)
	}
	rep.CurrentAfter = currentRef(s.Root())
	esp := ""
	if err == nil && code != 0 {
		esp = missingESP(s, rep.CurrentAfter.system())
	}
	s.Outcome(code, err, rep.wrote()...)
	s.Close()
	rep.ended(s, &o)
	rep.ExitStatus = code
	bootloaderHints(o.Log, rep.Bootloader, esp)
	return rep, code, err
}

// check refuses what a rollback cannot do: write nothing, or go to a
// generation named two ways. {Generation N} is taken as {To N}: both
// name the generation to boot.
func (ro *RollbackOptions) check() error {
	sys := &ro.Container.System
	switch {
	case ro.ReadOnly:
		return writesRefusal("a rollback writes the target (the system profile, the bootloader's default)")
	case ro.To < 0:
		return &hint.Error{Err: hint.Errorf("{To %d}: generations are numbered from 1", ro.To), Fix: "give a generation's number, as nixrescue generations lists them"}
	case sys.Path != "":
		return &hint.Error{Err: hint.Errorf("a rollback goes to a generation, by its number; {System} picks the system other commands run"),
			Fix: "use {To N} (or {Generation N}) alone (without it, the generation before the current one)"}
	case sys.Generation != 0 && ro.To != 0 && sys.Generation != ro.To:
		return &hint.Error{Err: hint.Errorf("{To %d} and {Generation %d} name two generations to go to", ro.To, sys.Generation),
			Fix: "give one of them"}
	case sys.Generation != 0:
		ro.To, sys.Generation = sys.Generation, 0
	}
	return nil
}

// writesRefusal refuses --read-only for a command that writes what.
func writesRefusal(what string) error {
	return &hint.Error{Err: hint.Errorf("%s, which {ReadOnly} forbids", what),
		Fix: "drop {ReadOnly}; to try it without changing the target, use {Snapshot} (or {SnapshotOut FILE} to keep the result)"}
}

// rollbackIn switches the profile of the root at root to generation want
// (0: the one before the current), runs switch-to-configuration boot of it
// with run, and switches back if that fails.
func rollbackIn(root string, want int, log logger, run func(args []string) (int, error)) (int, error) {
	before, to, err := rollbackTarget(root, want)
	if err != nil {
		return 0, err
	}
	if err := nixos.SwitchGeneration(root, to); err != nil {
		return 0, err
	}
	log.Info(fmt.Sprintf("pointing the system profile at generation %d (it was %d), and making it the bootloader's default", to, before))
	code, err := run([]string{nixos.SystemProfile + "/bin/switch-to-configuration", "boot"})
	if err == nil && code == 0 {
		return 0, nil
	}
	if serr := nixos.SwitchGeneration(root, before); serr != nil {
		return code, fmt.Errorf("switch-to-configuration of generation %d failed (status %d), and pointing the profile back at %d failed too: %w", to, code, before, serr)
	}
	log.Info(fmt.Sprintf("switch-to-configuration of generation %d failed (status %d); the system profile points at generation %d again", to, code, before))
	return code, err
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
		return 0, 0, hint.Errorf("{To %d} is past the newest generation (%d): pick one of %s", to, numbers[len(numbers)-1], joinInts(numbers))
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

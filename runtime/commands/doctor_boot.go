package commands

import (
	"context"
	"errors"
	"fmt"

	"github.com/nixrescue/nixrescue/runtime/doctor"
)

// doctorBoots boots the default generation on a snapshot and, when it
// does not get to its goal, the older generations newest first until one
// does: that one is the rollback doctor proposes.
func doctorBoots(ctx context.Context, do DoctorOptions, f *doctor.Facts, r *DoctorReport) error {
	bo := do.Boot
	bo.Options = do.Options
	first, err := doctorBoot(ctx, bo, 0, r)
	var skipped *bootNotRun
	if errors.As(err, &skipped) {
		// What stops it is a finding of the checks already (no
		// bootloader, no menu): said, not a failure of doctor's.
		r.Findings = append(r.Findings, doctor.Finding{ID: "boot-test-not-run", Severity: doctor.Warning, Summary: "the boot test could not run",
			Evidence: []string{skipped.err.Error()}, Fix: []string{}})
		return nil
	}
	if err != nil || first.Passed {
		return err
	}
	def := first.Generation
	ev := []string{fmt.Sprintf("generation %d, the bootloader's default, stopped at %s", def, first.Reached)}
	ev = append(ev, first.Failure...)
	for i := len(f.Generations) - 1; i >= 0; i-- {
		g := f.Generations[i]
		if g.Number == def || g.Missing {
			continue
		}
		b, err := doctorBoot(ctx, bo, g.Number, r)
		if err != nil {
			return err
		}
		if b.Passed {
			ev = append(ev, fmt.Sprintf("generation %d boots to %s", g.Number, b.Reached))
			r.Findings = append([]doctor.Finding{{ID: "boot-fails", Severity: doctor.Fatal, Evidence: ev,
				Summary: fmt.Sprintf("the default generation, %d, does not boot; generation %d, the newest that does, is the one to go back to", def, g.Number),
				Fix:     []string{f.Command("rollback", fmt.Sprintf("{Generation %d}", g.Number))}}}, r.Findings...)
			return nil
		}
		ev = append(ev, fmt.Sprintf("generation %d stopped at %s too", g.Number, b.Reached))
	}
	r.Findings = append([]doctor.Finding{{ID: "boot-fails", Severity: doctor.Fatal, Evidence: ev, Fix: []string{},
		Summary: fmt.Sprintf("the default generation, %d, does not boot, and no other generation does either", def)}}, r.Findings...)
	return nil
}

// doctorBoot boots generation n (0: the default) and notes it in r.
func doctorBoot(ctx context.Context, bo BootTestOptions, n int, r *DoctorReport) (DoctorBoot, error) {
	bo.Generation = n
	rep, _, err := BootTest(ctx, bo)
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return DoctorBoot{}, err
		}
		if n == 0 && errors.Is(err, errNoBootloader) {
			return DoctorBoot{}, &bootNotRun{err}
		}
		return DoctorBoot{}, fmt.Errorf("the boot test of generation %s: %w", genName(n), err)
	}
	b := DoctorBoot{Passed: rep.Passed, Reached: rep.Reached, Failure: rep.Failure}
	if rep.Booted != nil {
		b.Generation = rep.Booted.Generation
	}
	r.Boots = append(r.Boots, b)
	return b, nil
}

func genName(n int) string {
	if n == 0 {
		return "the default"
	}
	return fmt.Sprint(n)
}

// bootNotRun is a boot test that could not start on the target as it
// is.
type bootNotRun struct{ err error }

func (b *bootNotRun) Error() string { return b.err.Error() }

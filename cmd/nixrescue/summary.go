package main

// What a session that writes (run, rebuild, rollback) says when it ends:
// its report as JSON, or one line for people of what it did and where
// the writes went.

import (
	"fmt"
	"log/slog"
	"strings"

	"github.com/nixrescue/nixrescue/runtime/commands"
	"github.com/nixrescue/nixrescue/runtime/hint"
)

// endSession writes what a session did and returns main's error: with
// --json its report (nixrescue's own failure in it, with the status it
// exits with, so that the two never disagree); for people, summary's line
// when the command succeeded, and where a snapshot's writes went.
func endSession(asJSON bool, log *slog.Logger, rep *commands.RunReport, code int, err error, summary func(*commands.RunReport) string) error {
	if rep == nil {
		return exitResult(code, err)
	}
	if err != nil {
		rep.Error, rep.Fix, rep.ExitStatus = err.Error(), hint.FixOf(err), exitCodeOf(err)
	}
	if asJSON {
		if perr := writeJSON(rep); err == nil {
			err = perr
		}
		return exitResult(code, err)
	}
	if summary != nil && err == nil && rep.ExitStatus == 0 {
		line := summary(rep)
		if rep.Snapshot != nil {
			line = "in the snapshot: " + line
		}
		log.Info(line)
	}
	if s := snapshotSummary(rep); s != "" {
		log.Info(s)
	}
	return exitResult(code, err)
}

// snapshotSummary says where a snapshot session's writes went, "" for a
// session that wrote to its target.
func snapshotSummary(r *commands.RunReport) string {
	switch s := r.Snapshot; {
	case s == nil:
		return ""
	case s.Kept != "":
		return fmt.Sprintf("nothing was written to %s: the changes are in %s; boot that, or apply it with qemu-img commit %s", printable(r.Target.Arg), printable(s.Kept), printable(s.Kept))
	}
	return fmt.Sprintf("nothing was written to %s: the changes went to a throwaway snapshot and are discarded (--snapshot-out FILE keeps them)", printable(r.Target.Arg))
}

// rebuildSummary says in one line what a rebuild that succeeded did:
// the generation it made the default, and what of the bootloader, on
// which disk (here and as the configuration names it).
func rebuildSummary(r *commands.RunReport) string {
	before, after := generationOf(r.CurrentBefore), generationOf(r.CurrentAfter)
	s := fmt.Sprintf("generation %d built and made the default", after)
	if after == before {
		s = fmt.Sprintf("generation %d rebuilt; it stays the default", after)
	} else if before != 0 {
		s += fmt.Sprintf(" (it was %d)", before)
	}
	s += bootloaderSummary(r.Bootloader, r)
	if b := r.Bootloader; b != nil && b.Action == "configured" {
		s += " (its configuration written, not installed: --no-install-bootloader)"
	}
	return s
}

// rollbackSummary says in one line what a rollback that succeeded did.
func rollbackSummary(r *commands.RunReport) string {
	s := fmt.Sprintf("rolled back: generation %d is the system profile's and the bootloader's default (it was %d)", generationOf(r.CurrentAfter), generationOf(r.CurrentBefore))
	return s + bootloaderSummary(r.Bootloader, r)
}

// bootloaderSummary is "; KIND ACTION on DISK (here DEVICE)", "" for no
// bootloader step.
func bootloaderSummary(b *commands.BootloaderStep, r *commands.RunReport) string {
	if b == nil {
		return ""
	}
	return fmt.Sprintf("; %s %s", b.Kind, b.Action) + onDevices(b.Devices, r.DiskAliases)
}

// onDevices is " on DISK (here DEVICE) and …", "" for no devices.
func onDevices(devices []string, aliases []commands.DiskAlias) string {
	var on []string
	for _, d := range devices {
		for _, a := range aliases {
			if a.Name == d {
				d += " (here " + a.Device + ")"
				break
			}
		}
		on = append(on, d)
	}
	if len(on) == 0 {
		return ""
	}
	return " on " + strings.Join(on, " and ")
}

func generationOf(g *commands.GenerationRef) int {
	if g == nil {
		return 0
	}
	return g.Generation
}

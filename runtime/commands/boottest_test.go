package commands

import (
	"strings"
	"testing"
	"time"

	"github.com/nixrescue/nixrescue/runtime/boottest"
)

func consoleOf(lines ...string) *boottest.Console {
	c := boottest.NewConsole()
	for i, l := range lines {
		c.Add(l, time.Duration(i+1)*time.Second)
	}
	return c
}

// TestFillReport: a boot that passed went past stage 1's wait for a device
// (no failure), but its failed units are said; one the timeout stopped
// says so, with the timeout it was given and how far it got.
func TestFillReport(t *testing.T) {
	r := &BootTestReport{Until: boottest.MultiUser, Failure: []string{}, FailedUnits: []string{}}
	r.fill(&boottest.Run{Console: consoleOf("SeaBIOS (version 1.16.2)", "<<< NixOS Stage 1 >>>", "waiting for device /dev/disk/by-label/nixos to appear...",
		"mounting /dev/disk/by-label/nixos on /...", "<<< NixOS Stage 2 >>>", "[FAILED] Failed to start broken.service.", "Reached target multi-user.target")}, time.Minute)
	if !r.Passed || len(r.Failure) != 1 || !strings.Contains(r.Failure[0], "[FAILED]") || len(r.FailedUnits) != 1 {
		t.Errorf("a boot that passed: %+v", r)
	}
	r = &BootTestReport{Until: boottest.MultiUser, Failure: []string{}, FailedUnits: []string{}}
	r.fill(&boottest.Run{Console: consoleOf("SeaBIOS (version 1.16.2)", "Booting `NixOS - Default'"), TimedOut: true, Elapsed: 12 * time.Second}, 10*time.Second)
	if r.Passed || len(r.Failure) != 1 || r.Failure[0] != "no multi-user within the timeout (10s): the boot was stopped there, having reached bootloader" {
		t.Errorf("a boot the timeout stopped: %+v", r)
	}
}

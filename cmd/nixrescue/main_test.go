package main

import (
	"fmt"
	"os/exec"
	"testing"
)

// TestExitCodeOfAHostProgram: a host program that failed or was killed
// (zdb aborted: exit code -1) makes nixrescue fail with its own status.
func TestExitCodeOfAHostProgram(t *testing.T) {
	err := exec.Command("sh", "-c", "kill -ABRT $$").Run()
	if got := exitCodeOf(fmt.Errorf("zdb: %w", err)); got != ExitFailure {
		t.Errorf("killed: %d", got)
	}
	err = exec.Command("sh", "-c", "exit 3").Run()
	if got := exitCodeOf(err); got != ExitFailure {
		t.Errorf("exit 3: %d", got)
	}
}

package main

import (
	"encoding/json"
	"path/filepath"
	"slices"
	"testing"

	"github.com/nixrescue/nixrescue/hack/fixture"
	"github.com/nixrescue/nixrescue/hack/testenv"
	"github.com/nixrescue/nixrescue/runtime/commands"
	"github.com/nixrescue/nixrescue/runtime/engine"
)

// TestSessionReportsPhasesAndGuards: run --json says where a whole
// session's time went, phase by phase in order, and what each of its
// protections cost within them (docs/performance.md is made of these).
func TestSessionReportsPhasesAndGuards(t *testing.T) {
	testenv.Require(t)
	img, _ := image(t, string(fixture.LayoutBIOS))
	auditLog := filepath.Join(t.TempDir(), "audit.log")
	r := imageSession(t, "run", img, "-q", "--json", "--audit-log", auditLog, "--", "true")
	var rep commands.RunReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil || r.code != 0 {
		t.Fatalf("run --json: exit %d %v\n%s%s", r.code, err, r.stdout, r.stderr)
	}
	names := func(list []engine.Phase) []string {
		var n []string
		for _, p := range list {
			if p.MS < 0 {
				t.Errorf("%s took %v ms", p.Name, p.MS)
			}
			n = append(n, p.Name)
		}
		return n
	}
	if got, want := names(rep.Phases), []string{"attach", "discover", "mount", "container create", "activation", "command", "teardown"}; !slices.Equal(got, want) {
		t.Errorf("phases %q, want %q", got, want)
	}
	got := names(rep.Guards)
	slices.Sort(got)
	if want := []string{engine.GuardAudit, engine.GuardClaims, engine.GuardProcess, engine.GuardTwoWriters}; !slices.Equal(got, want) {
		t.Errorf("guards %q, want %q", got, want)
	}
}

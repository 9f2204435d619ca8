package engine

import (
	"time"

	"github.com/nixrescue/nixrescue/runtime/open"
)

// The guards a session times (Session.Guards): what protects the user,
// and what it costs.
const (
	GuardClaims     = open.GuardClaims
	GuardTwoWriters = open.GuardTwoWriters
	// GuardProcess is starting and disarming the guard process, which
	// kills the container's processes should nixrescue die.
	GuardProcess = "guard process"
	// GuardAudit is opening the audit log and writing the records.
	GuardAudit = "audit"
)

// Phase is how long one step of a session took.
type Phase struct {
	Name string  `json:"name"`
	MS   float64 `json:"ms"`
}

// timer records a session's phases, and what its guards cost within
// them.
type timer struct {
	phases []Phase
	guards []Phase
	// onStart, when set, is told each phase as it starts; onEnd, as it
	// ends, with how long it took.
	onStart func(name string)
	onEnd   func(name string, ms float64)
}

// start times a phase; call the result when it ends. A phase in several
// steps adds them up.
func (t *timer) start(name string) func() {
	begin := time.Now()
	if t.onStart != nil {
		t.onStart(name)
	}
	return func() {
		ms := since(begin)
		if t.onEnd != nil {
			t.onEnd(name, ms)
		}
		t.phases = add(t.phases, name, ms)
	}
}

// guard times one of the checks that protect the user (claims, the
// two-writers check, the guard process, the audit record), inside
// whatever phase it runs in; call the result when it ends. Its steps add
// up, as a phase's do.
func (t *timer) guard(name string) func() {
	begin := time.Now()
	return func() { t.guards = add(t.guards, name, since(begin)) }
}

func since(begin time.Time) float64 { return float64(time.Since(begin).Microseconds()) / 1000 }

// add adds ms to the entry name of list, made when missing.
func add(list []Phase, name string, ms float64) []Phase {
	for i := range list {
		if list[i].Name == name {
			list[i].MS += ms
			return list
		}
	}
	return append(list, Phase{Name: name, MS: ms})
}

package engine

import "time"

// Phase is how long one step of a session took.
type Phase struct {
	Name string  `json:"name"`
	MS   float64 `json:"ms"`
}

// timer records a session's phases.
type timer struct {
	phases []Phase
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
		ms := float64(time.Since(begin).Microseconds()) / 1000
		if t.onEnd != nil {
			t.onEnd(name, ms)
		}
		for i := range t.phases {
			if t.phases[i].Name == name {
				t.phases[i].MS += ms
				return
			}
		}
		t.phases = append(t.phases, Phase{Name: name, MS: ms})
	}
}

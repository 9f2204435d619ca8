package session

import "testing"

// A sessions directory removed by a session that just ended (between this
// session's making it and its sweep) means nothing is stale, not an error.
func TestRemoveStaleSessionsWithoutTheDirectory(t *testing.T) {
	st := &state{dir: t.TempDir()}
	removed, err := st.removeStaleSessions()
	if err != nil || len(removed) != 0 {
		t.Fatalf("removed %v, err %v; want nothing and no error", removed, err)
	}
}

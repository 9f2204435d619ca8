package state

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"slices"
	"testing"
)

// TestRemoveOrphanOverlays: an overlay whose session has a directory, or
// that a process holds open, stays; one whose session is gone goes.
func TestRemoveOrphanOverlays(t *testing.T) {
	d, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	newID := func() string {
		var b [6]byte
		rand.Read(b[:])
		return "nixrescue-" + hex.EncodeToString(b[:])
	}
	live, orphan, held := newID(), newID(), newID()
	if err := os.Mkdir(d.SessionDir(live), 0o700); err != nil {
		t.Fatal(err)
	}
	paths := map[string]string{}
	for id, kind := range map[string]string{live: "snapshot", orphan: "boot-test", held: "snapshot"} {
		paths[id] = OverlayPath(id, kind)
		if err := os.WriteFile(paths[id], nil, 0o600); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Remove(paths[id]) })
	}
	f, err := os.Open(paths[held])
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	removed := d.RemoveOrphanOverlays()
	if !slices.Equal(removed, []string{paths[orphan]}) {
		t.Errorf("removed %v, want only %s", removed, paths[orphan])
	}
	for _, id := range []string{live, held} {
		if _, err := os.Stat(paths[id]); err != nil {
			t.Errorf("%s removed: %v", paths[id], err)
		}
	}
}

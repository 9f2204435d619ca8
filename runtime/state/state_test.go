package state

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nixrescue/nixrescue/runtime/target"
)

// TestClaims: a second session's claim on the same data is refused with
// the first one's name; released, the data can be claimed again, and no
// claim file is left.
func TestClaims(t *testing.T) {
	st, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	a, err := st.Begin("/images/disk.img", 11)
	if err != nil {
		t.Fatal(err)
	}
	b, err := st.Begin("/images/link.img", 22)
	if err != nil {
		t.Fatal(err)
	}
	keys := []target.Key{"file-1-2", "disk-7-0"}
	if err := a.Claim("disk.img", "/images/disk.img", keys); err != nil {
		t.Fatal(err)
	}
	err = b.Claim("link.img", "/images/link.img", keys[1:])
	var iu *InUseError
	if !errors.As(err, &iu) || iu.Holder != (Claim{Session: a.ID, PID: 11, Target: "/images/disk.img"}) {
		t.Fatalf("second claim: %v", err)
	}
	if err.Error() != "link.img: in use by nixrescue (pid 11, session "+a.ID+", on /images/disk.img): wait for that session to end (one session per disk or image, under whatever name)" {
		t.Errorf("message: %s", err)
	}
	b.ReleaseClaims()
	a.ReleaseClaims()
	if err := b.Claim("link.img", "/images/link.img", keys); err != nil {
		t.Fatalf("after the first let go: %v", err)
	}
	b.ReleaseClaims()
	if entries, _ := os.ReadDir(st.claimsDir()); len(entries) != 0 {
		t.Errorf("claim files left: %v", entries)
	}
	// Another session's sweep of stale claims holds a claim for a moment,
	// naming no one: the claim waits for it, and is not refused.
	sweep, err := st.lockClaim("file-5-6")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(50 * time.Millisecond)
		os.Remove(sweep.Name())
		sweep.Close()
	}()
	if err := a.Claim("disk.img", "/images/disk.img", []target.Key{"file-5-6"}); err != nil {
		t.Errorf("a claim a sweep looked at: %v", err)
	}
	a.ReleaseClaims()
	// A claim file left by a killed session (nobody holds its lock) is
	// removed by the next session's sweep.
	if err := os.WriteFile(filepath.Join(st.claimsDir(), "file-3-4"), []byte(`{"session":"dead"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	st.RemoveStaleClaims()
	if entries, _ := os.ReadDir(st.claimsDir()); len(entries) != 0 {
		t.Errorf("stale claim files left: %v", entries)
	}
}

// A sessions directory removed by a session that just ended (between this
// session's making it and its sweep) means nothing is stale, not an error.
func TestSessionsWithoutTheDirectory(t *testing.T) {
	live, stale, err := At(t.TempDir()).Sessions()
	if err != nil || len(live)+len(stale) != 0 {
		t.Fatalf("live %v, stale %v, err %v; want nothing and no error", live, stale, err)
	}
}

package privatens

import (
	"os"
	"testing"
	"time"

	"github.com/nixrescue/nixrescue/hack/testenv"
)

// The warm-up, once or repeated, finds this process's cgroup and moves
// it there: no cgroup of the process changes, in any hierarchy.
func TestWarmCgroupAttachMovesNothing(t *testing.T) {
	testenv.Require(t)
	before, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	if err := WarmCgroupAttach(); err != nil {
		t.Fatalf("warm the cgroup attach lock: %v", err)
	}
	stop := KeepCgroupAttachWarm()
	time.Sleep(20 * time.Millisecond)
	stop()
	after, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	if string(before) != string(after) {
		t.Fatalf("cgroups changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

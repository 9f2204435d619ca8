package embedded

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/nixrescue/nixrescue/hack/testenv"
)

// The directory found is the cgroup this process is in: its cgroup.procs
// lists us (readable without root).
func TestOwnCgroupDirListsUs(t *testing.T) {
	dir, err := ownCgroupDir()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(strings.Fields(string(b)), strconv.Itoa(os.Getpid())) {
		t.Fatalf("%s/cgroup.procs does not list this process (%d)", dir, os.Getpid())
	}
}

// The warm-up's move changes no cgroup of the process, in any hierarchy.
func TestMoveToOwnCgroupMovesNothing(t *testing.T) {
	testenv.Require(t)
	before, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	if err := moveToOwnCgroup(); err != nil {
		t.Fatalf("move to own cgroup: %v", err)
	}
	after, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	if string(before) != string(after) {
		t.Fatalf("cgroups changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

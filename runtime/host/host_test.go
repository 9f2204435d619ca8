package host

import (
	"slices"
	"strings"
	"testing"
)

func TestParseBoundingSetLacksSysResource(t *testing.T) {
	// This machine's bounding set: everything but CAP_SYS_RESOURCE (24).
	status := "Name:\tcat\nCapInh:\t0000000000000000\nCapBnd:\t000001fffeffffff\n"
	caps, err := ParseBoundingSet(strings.NewReader(status))
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(caps, "CAP_SYS_RESOURCE") {
		t.Errorf("CAP_SYS_RESOURCE is not in the set but was returned")
	}
	for _, want := range []string{"CAP_SYS_ADMIN", "CAP_CHOWN", "CAP_MKNOD", "CAP_CHECKPOINT_RESTORE"} {
		if !slices.Contains(caps, want) {
			t.Errorf("%s missing from %v", want, caps)
		}
	}
	if !slices.IsSorted(caps) {
		t.Errorf("not sorted: %v", caps)
	}
}

func TestParseBoundingSetEmptyAndBad(t *testing.T) {
	caps, err := ParseBoundingSet(strings.NewReader("CapBnd:\t0000000000000000\n"))
	if err != nil || len(caps) != 0 {
		t.Errorf("empty set: %v %v", caps, err)
	}
	if _, err := ParseBoundingSet(strings.NewReader("Name: x\n")); err == nil {
		t.Error("no CapBnd line: want an error")
	}
	if _, err := ParseBoundingSet(strings.NewReader("CapBnd: zz\n")); err == nil {
		t.Error("bad hex: want an error")
	}
}

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

func TestRootIsInitramfs(t *testing.T) {
	disk := "22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n"
	initramfs := "1 1 0:2 / / rw - rootfs rootfs rw\n"
	switchedRoot := initramfs + "25 1 254:0 / / rw - ext4 /dev/vda rw\n"
	for in, want := range map[string]bool{disk: false, initramfs: true, switchedRoot: false} {
		got, err := RootIsInitramfs(strings.NewReader(in))
		if err != nil || got != want {
			t.Errorf("%q: got %v %v, want %v", in, got, err, want)
		}
	}
	if _, err := RootIsInitramfs(strings.NewReader("garbage\n")); err == nil {
		t.Error("malformed mountinfo accepted")
	}
}

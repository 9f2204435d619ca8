package host

import (
	"os"
	"path/filepath"
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

func TestCgroupMemoryFiles(t *testing.T) {
	dir := t.TempDir()
	// cgroup v1's memory.oom_control, and v2's memory.events.
	v1 := filepath.Join(dir, "oom_control")
	os.WriteFile(v1, []byte("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n"), 0o644)
	v2 := filepath.Join(dir, "events")
	os.WriteFile(v2, []byte("low 0\nhigh 0\nmax 7\noom 1\noom_kill 1\noom_group_kill 0\n"), 0o644)
	for file, want := range map[string]uint64{v1: 2, v2: 1} {
		if n, ok := readCounter(file, "oom_kill"); !ok || n != want {
			t.Errorf("%s: %d %v, want %d", file, n, ok, want)
		}
	}
	if _, ok := readCounter(filepath.Join(dir, "missing"), "oom_kill"); ok {
		t.Error("a missing file counted")
	}
	// Swap accounting: v1 by its memsw files, v2 by the memory controller.
	if swapAccounted(dir) {
		t.Error("swap accounted in an empty hierarchy")
	}
	os.MkdirAll(filepath.Join(dir, "memory"), 0o755)
	os.WriteFile(filepath.Join(dir, "memory/memory.memsw.limit_in_bytes"), nil, 0o644)
	if !swapAccounted(dir) {
		t.Error("v1 memsw not seen")
	}
	v2root := t.TempDir()
	os.WriteFile(filepath.Join(v2root, "cgroup.controllers"), []byte("cpuset cpu io memory pids\n"), 0o644)
	if !swapAccounted(v2root) {
		t.Error("v2 memory controller not seen")
	}
}

func TestReadBinfmt(t *testing.T) {
	// What Debian's qemu-user-static registers (binfmt-support).
	const entry = "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: POCF\noffset 0\nmagic 7f454c460201010000000000000000000200b700\nmask ffffffffffffff00fffffffffffffffffeffffff\n"
	if enabled, fixed := readBinfmt(strings.NewReader(entry)); !enabled || !fixed {
		t.Errorf("qemu-aarch64: enabled %v, F %v", enabled, fixed)
	}
	if enabled, fixed := readBinfmt(strings.NewReader(strings.Replace(strings.Replace(entry, "enabled", "disabled", 1), "POCF", "PO", 1))); enabled || fixed {
		t.Errorf("a disabled handler without F: enabled %v, F %v", enabled, fixed)
	}
	if h, ok := Emulator(Arch()); h != "" || !ok {
		t.Errorf("this host's own architecture: %q %v", h, ok)
	}
}

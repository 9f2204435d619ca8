package nbd

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

// TestDevicesFromSysfs: free devices are those without a pid (no
// connection), lowest first; Serving finds connected devices by the
// backend the kernel records; Index reads a device's number.
func TestDevicesFromSysfs(t *testing.T) {
	sysBlock = t.TempDir()
	defer func() { sysBlock = "/sys/block" }()
	mk := func(name string, files map[string]string) {
		d := filepath.Join(sysBlock, name)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		for f, v := range files {
			if err := os.WriteFile(filepath.Join(d, f), []byte(v), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	mk("nbd10", nil)
	mk("nbd2", map[string]string{"pid": "77\n", "backend": "/run/nixrescue/sessions/a/export.nbd\n"})
	mk("nbd0", nil)
	mk("nbd1", map[string]string{"pid": "78\n", "backend": "/run/nixrescue/sessions/b/export.nbd\n"})
	mk("nbd3", map[string]string{"backend": "/run/nixrescue/sessions/a/export.nbd\n"}) // disconnected
	mk("loop0", nil)
	if got := freeDevices(); !slices.Equal(got, []int{0, 3, 10}) {
		t.Errorf("free devices %v, want [0 3 10]", got)
	}
	if got := Serving("/run/nixrescue/sessions/a/export.nbd"); !slices.Equal(got, []string{"/dev/nbd2"}) {
		t.Errorf("serving a: %v, want [/dev/nbd2]", got)
	}
	if !Connected("/dev/nbd1") || Connected("/dev/nbd0") || !RecordsBackend("/dev/nbd1") || RecordsBackend("/dev/nbd0") {
		t.Error("Connected or RecordsBackend misread sysfs")
	}
	for dev, want := range map[string]int{"/dev/nbd12": 12, "nbd0": 0, "/dev/loop1": -1, "/dev/nbd": -1, "/dev/nbd1p2": -1} {
		if got := Index(dev); got != want {
			t.Errorf("Index(%s) = %d, want %d", dev, got, want)
		}
	}
}

// TestUnusedIndex: a new device goes at the lowest index no device has.
func TestUnusedIndex(t *testing.T) {
	sysBlock = t.TempDir()
	defer func() { sysBlock = "/sys/block" }()
	if got := unusedIndex(0); got != 0 {
		t.Errorf("no devices: %d, want 0", got)
	}
	for _, n := range []string{"nbd0", "nbd1", "nbd3"} {
		if err := os.Mkdir(filepath.Join(sysBlock, n), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if got, got3 := unusedIndex(0), unusedIndex(3); got != 2 || got3 != 4 {
		t.Errorf("unusedIndex(0), (3) = %d, %d; want 2, 4", got, got3)
	}
}

// TestChooseDevice: a new device at the lowest unused index; the next
// when that one was taken meanwhile (EBUSY) or is still going away
// (EINVAL, once); a kernel that refuses to add devices at an index twice
// gets one of its free devices, as it is (not destroyed after); an other
// error is said as it is.
func TestChooseDevice(t *testing.T) {
	sysBlock = t.TempDir()
	defer func() { sysBlock = "/sys/block" }()
	for _, n := range []string{"nbd0", "nbd1"} {
		if err := os.Mkdir(filepath.Join(sysBlock, n), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// nbd0 serves a connection; nbd1 is free.
	if err := os.WriteFile(filepath.Join(sysBlock, "nbd0", "pid"), []byte("1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	type call struct {
		idx     int
		destroy bool
	}
	for _, c := range []struct {
		name    string
		answers []error // by call; beyond them, success
		want    string
		calls   []call
	}{
		{"new", nil, "/dev/nbd2", []call{{2, true}}},
		{"taken meanwhile", []error{unix.EBUSY}, "/dev/nbd3", []call{{2, true}, {3, true}}},
		{"going away", []error{unix.EINVAL}, "/dev/nbd3", []call{{2, true}, {3, true}}},
		{"no index creation", []error{unix.EINVAL, unix.EINVAL}, "/dev/nbd1", []call{{2, true}, {3, true}, {1, false}}},
		{"other error", []error{unix.EPERM}, "", []call{{2, true}}},
	} {
		var calls []call
		dev, err := chooseDevice(func(idx int, destroy bool) (string, error) {
			calls = append(calls, call{idx, destroy})
			if n := len(calls) - 1; n < len(c.answers) {
				return "", c.answers[n]
			}
			return DevicePath(idx), nil
		})
		if dev != c.want || !slices.Equal(calls, c.calls) || (c.want == "") != (err != nil) {
			t.Errorf("%s: %q, %v after %v; want %q after %v", c.name, dev, err, calls, c.want, c.calls)
		}
	}
}

package mount

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/nixrescue/nixrescue/hack/testenv"
)

// ext4Loop makes a small ext4 filesystem holding the directories dirs,
// attaches it and returns the loop device; both go at cleanup.
func ext4Loop(t *testing.T, dirs ...string) string {
	t.Helper()
	tmp := t.TempDir()
	src := filepath.Join(tmp, "src")
	for _, d := range append(dirs, ".") {
		if err := os.MkdirAll(filepath.Join(src, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	img := filepath.Join(tmp, "fs.img")
	if out, err := exec.Command("mkfs.ext4", "-q", "-d", src, img, "8M").CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v %s", err, out)
	}
	l, err := AttachLoop(img, false, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l.Path
}

// mountOptions gives the per-mount options of the mounts at dir and under
// it, by mount point.
func mountOptions(t *testing.T, dir string) map[string][]string {
	t.Helper()
	ms, err := mountinfo.GetMounts(mountinfo.PrefixFilter(dir))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]string{}
	for _, m := range ms {
		if _, dup := got[m.Mountpoint]; dup {
			t.Errorf("%s is mounted twice", m.Mountpoint)
		}
		got[m.Mountpoint] = strings.Split(m.Options, ",")
	}
	return got
}

// mountReadOnlyOn mounts dev read-only with m on dir (an ext4 with
// options), unmounted at cleanup.
func mountReadOnlyOn(t *testing.T, m *Mounter, dev, dir string, options []string) {
	t.Helper()
	d, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := m.MountReadOnly(dev, d, "ext4", options); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = UnmountUnder(dir) })
}

// copyMountNamespace starts a process in a copy of this mount namespace,
// as a container or service starting on the host makes one, and returns
// once it runs; it ends at cleanup. unshare(1) makes the copy's mounts
// private: what is unmounted here stays mounted there.
func copyMountNamespace(t *testing.T) {
	t.Helper()
	pin := exec.Command("unshare", "--mount", "sh", "-c", "echo up; exec sleep 60")
	out, err := pin.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := pin.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pin.Process.Kill(); _ = pin.Wait() })
	if _, err := out.Read(make([]byte, 3)); err != nil {
		t.Fatalf("the process in a copied mount namespace: %v", err)
	}
}

// MakeWritable mounts each filesystem again as its options ask, nested
// mounts included and in place, and leaves one whose options say ro
// read-only.
func TestMakeWritable(t *testing.T) {
	testenv.Require(t)
	root := ext4Loop(t, "boot", "srv")
	boot, srv := ext4Loop(t), ext4Loop(t)
	dir := t.TempDir()
	m := &Mounter{}
	mountIn := func(dev, sub string, options []string) {
		t.Helper()
		mountReadOnlyOn(t, m, dev, filepath.Join(dir, sub), options)
	}
	mountIn(root, "", []string{"defaults"})
	mountIn(boot, "boot", []string{"noatime"})
	mountIn(srv, "srv", []string{"ro"})
	before := mountOptions(t, dir)
	if len(before) != 3 {
		t.Fatalf("mounts %v, want 3", before)
	}
	for mp, o := range before {
		if !slices.Contains(o, "ro") {
			t.Errorf("%s is mounted %v before MakeWritable, want ro", mp, o)
		}
	}
	if err := m.MakeWritable(); err != nil {
		t.Fatal(err)
	}
	after := mountOptions(t, dir)
	want := map[string]string{dir: "rw", filepath.Join(dir, "boot"): "rw", filepath.Join(dir, "srv"): "ro"}
	for mp, w := range want {
		if !slices.Contains(after[mp], w) {
			t.Errorf("%s is mounted %v, want %s", mp, after[mp], w)
		}
	}
	if !slices.Contains(after[filepath.Join(dir, "boot")], "noatime") {
		t.Errorf("/boot lost its options: %v", after[filepath.Join(dir, "boot")])
	}
	for _, sub := range []string{"", "boot"} {
		if err := os.WriteFile(filepath.Join(dir, sub, "written"), nil, 0o644); err != nil {
			t.Errorf("write in %s: %v", sub, err)
		}
	}
	// Done once: a second call changes nothing.
	if err := m.MakeWritable(); err != nil {
		t.Fatal(err)
	}
	if again := mountOptions(t, dir); len(again) != 3 {
		t.Errorf("mounts after a second call: %v", again)
	}
}

// A read-only Mounter leaves everything read-only.
func TestMakeWritableReadOnly(t *testing.T) {
	testenv.Require(t)
	dev, dir := ext4Loop(t), t.TempDir()
	m := &Mounter{ReadOnly: true}
	mountReadOnlyOn(t, m, dev, dir, nil)
	if err := m.MakeWritable(); err != nil {
		t.Fatal(err)
	}
	if o := mountOptions(t, dir)[dir]; !slices.Contains(o, "ro") {
		t.Errorf("mounted %v, want ro", o)
	}
	if err := unix.Access(dir, unix.W_OK); err == nil {
		t.Error("the mount is writable")
	}
}

// A copy of the read-only mount in another mount namespace (one made
// while it existed: a container starting on the host, a service with a
// private /tmp, another session) keeps its superblock read-only after
// the unmount here, and the kernel then refuses a read-write mount of the
// device (EBUSY, "would change RO state"): MakeWritable still makes it
// writable, as a remount does.
func TestMakeWritableWhileACopyPinsIt(t *testing.T) {
	testenv.Require(t)
	dev, dir := ext4Loop(t), t.TempDir()
	m := &Mounter{}
	mountReadOnlyOn(t, m, dev, dir, nil)
	copyMountNamespace(t)
	if err := m.MakeWritable(); err != nil {
		t.Fatal(err)
	}
	if o := mountOptions(t, dir)[dir]; !slices.Contains(o, "rw") {
		t.Errorf("mounted %v, want rw", o)
	}
	if err := os.WriteFile(filepath.Join(dir, "written"), nil, 0o644); err != nil {
		t.Errorf("write: %v", err)
	}
	if got := mountOptions(t, dir); len(got) != 1 {
		t.Errorf("mounts %v, want one", got)
	}
}

// When the superblock such a copy keeps is a probe's, mounted without
// journal replay, MakeWritable refuses rather than write the filesystem
// without its journal, and leaves it unmounted here.
func TestMakeWritableRefusesAPinnedProbe(t *testing.T) {
	testenv.Require(t)
	dev := ext4Loop(t)
	probe, dir := t.TempDir(), t.TempDir()
	t.Cleanup(func() { _ = UnmountUnder(dir); _ = UnmountUnder(probe) })
	if err := unix.Mount(dev, probe, "ext4", unix.MS_RDONLY, "noload"); err != nil {
		t.Fatal(err)
	}
	copyMountNamespace(t)
	if err := unix.Unmount(probe, 0); err != nil {
		t.Fatal(err)
	}
	m := &Mounter{}
	mountReadOnlyOn(t, m, dev, dir, nil)
	err := m.MakeWritable()
	if err == nil || !strings.Contains(err.Error(), "without its journal (norecovery)") {
		t.Fatalf("MakeWritable: %v, want a refusal naming norecovery", err)
	}
	if got := mountOptions(t, dir); len(got) != 0 {
		t.Errorf("still mounted: %v", got)
	}
}

// A detached mount is in no mount table, so a mount namespace made while
// it exists has no copy of it: once it is closed, the next mount of the
// device is a new superblock with its own options, not the probe's.
func TestDetachedLeavesNoCopy(t *testing.T) {
	testenv.Require(t)
	dev := ext4Loop(t, "etc")
	f, err := Detached(dev, "ext4", []string{"ro", "noload"})
	if err != nil {
		t.Fatal(err)
	}
	top := fmt.Sprintf("/proc/self/fd/%d", f.Fd())
	if st, err := os.Stat(filepath.Join(top, "etc")); err != nil || !st.IsDir() {
		t.Fatalf("etc through the detached mount: %v", err)
	}
	if err := unix.Access(top, unix.W_OK); err == nil {
		t.Error("the detached mount is writable")
	}
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(mi), dev) {
		t.Errorf("%s is in the mount table", dev)
	}
	copyMountNamespace(t)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := unix.Mount(dev, dir, "ext4", unix.MS_RDONLY, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = UnmountUnder(dir) })
	if o := withoutJournal(dir); o != "" {
		t.Errorf("the next mount took the probe's superblock up (%s)", o)
	}
}

// The refusal is for a look without journal the fstab did not ask for:
// an entry that says noload itself gets what it asks, read-write.
func TestMakeWritableKeepsANoloadTheFstabAsks(t *testing.T) {
	testenv.Require(t)
	dev, dir := ext4Loop(t), t.TempDir()
	m := &Mounter{}
	mountReadOnlyOn(t, m, dev, dir, []string{"noload"})
	copyMountNamespace(t)
	if err := m.MakeWritable(); err != nil {
		t.Fatal(err)
	}
	if o := mountOptions(t, dir)[dir]; !slices.Contains(o, "rw") {
		t.Errorf("mounted %v, want rw", o)
	}
}

package image

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nixrescue/nixrescue/hack/testenv"
	"github.com/nixrescue/nixrescue/runtime/hint"
	"github.com/nixrescue/nixrescue/runtime/mount"
)

// TestExportTakesParallelWrites: what is written in parallel through a
// loop device on a writable export, as a session's filesystem writes, is
// what the image holds after. The writer is the reproducer of QEMU's
// "fuse: Copy write buffer content before polling" (qemu-img convert with
// -t none: parallel O_DIRECT writes); without serialize, the FUSE export
// of this host's qemu-storage-daemon (7.2) writes other requests' bytes
// in their place, from the first megabyte on.
func TestExportTakesParallelWrites(t *testing.T) {
	testenv.Require(t)
	testenv.RequireTool(t, "qemu-storage-daemon")
	testenv.RequireTool(t, "qemu-img")
	dir := t.TempDir()
	src, img := filepath.Join(dir, "src.raw"), filepath.Join(dir, "disk.raw")
	data := make([]byte, 32<<20)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(src, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(img, make([]byte, len(data)), 0o600); err != nil {
		t.Fatal(err)
	}
	e, err := Start(context.Background(), ExportOptions{Image: img, Format: Raw, File: filepath.Join(dir, "export.raw"), Log: filepath.Join(dir, "qsd.log")})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Stop()
	noFusectlLeft(t, dir)
	loop, err := mount.AttachLoop(e.Path(), false, 0, e.LoopOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	backing := mount.BackingFile(loop.Name)
	out, err := exec.Command("qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", "-t", "none", src, loop.Path).CombinedOutput()
	loop.Close()
	if err != nil {
		t.Fatalf("qemu-img convert: %v %s", err, out)
	}
	if err := mount.WaitReleased(loop.Path, backing, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := e.Stop(); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	if i := mismatch(got, data); i >= 0 {
		t.Fatalf("the image differs from what was written through the export, from byte %d on", i)
	}
}

// TestUnserializedExportIsNotWritten: an export whose FUSE connection
// cannot be set to one request at a time is refused for writing, in one
// error that says what to do instead, and read-only it goes on; the
// fusectl mounted for the attempt is gone either way.
func TestUnserializedExportIsNotWritten(t *testing.T) {
	testenv.Require(t)
	dir := t.TempDir()
	// An ordinary file where the export would be: no FUSE connection.
	file := filepath.Join(dir, "export.raw")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	e := &Export{PID: os.Getpid(), File: file}
	err := e.serialize(ExportOptions{Image: "disk.qcow2", File: file})
	var he *hint.Error
	if !errors.As(err, &he) || !strings.Contains(he.Err.Error(), "cannot write through qemu-storage-daemon's FUSE export safely") ||
		!strings.Contains(he.Fix, "{ReadOnly}") || he.Subject != "disk.qcow2" {
		t.Errorf("writable: %#v", err)
	}
	if err := e.serialize(ExportOptions{Image: "disk.qcow2", File: file, ReadOnly: true}); err != nil {
		t.Errorf("read-only: %v", err)
	}
	noFusectlLeft(t, dir)
}

// noFusectlLeft fails t when serialize left its fusectl mounted, or its
// directory in dir.
func noFusectlLeft(t *testing.T, dir string) {
	t.Helper()
	if left, _ := filepath.Glob(filepath.Join(dir, "fusectl-*")); len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}
	if mi, _ := os.ReadFile("/proc/self/mountinfo"); bytes.Contains(mi, []byte(" fusectl ")) {
		t.Error("fusectl is still mounted")
	}
}

// mismatch is the first offset where a and b differ, -1 when none.
func mismatch(a, b []byte) int {
	if bytes.Equal(a, b) {
		return -1
	}
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

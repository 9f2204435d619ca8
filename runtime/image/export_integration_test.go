package image

import (
	"bytes"
	"context"
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/nixrescue/nixrescue/hack/testenv"
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

package image

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/nixrescue/nixrescue/hack/testenv"
	"github.com/nixrescue/nixrescue/runtime/nbd"
)

// TestNBDExportHandshakeAndReads: qemu-storage-daemon's NBD export, on a
// socket made in a directory deeper than a socket address may be, gives
// a qcow2 image's raw content (size, bytes at odd offsets, the end)
// through the handshake and reads done before the kernel takes the
// connection; Stop ends the daemon and removes the socket. (The kernel's
// side is the VM lane's: this host's kernel has no nbd.)
func TestNBDExportHandshakeAndReads(t *testing.T) {
	testenv.Require(t)
	testenv.RequireTool(t, "qemu-storage-daemon")
	testenv.RequireTool(t, "qemu-img")
	dir := filepath.Join(t.TempDir(), strings.Repeat("d", 60), strings.Repeat("e", 60))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 3<<20+512)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	raw, img := filepath.Join(dir, "src.raw"), filepath.Join(dir, "disk.qcow2")
	if err := os.WriteFile(raw, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, img).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img convert: %v %s", err, out)
	}
	o := ExportOptions{Image: img, Format: QCOW2, ReadOnly: true, Socket: filepath.Join(dir, "export.nbd"), Log: filepath.Join(dir, "qsd.log")}
	e := startNBDDaemon(t, o)
	defer e.Stop()
	if err := e.handshake(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	if e.Via() != ViaNBD || e.Size() != int64(len(data)) {
		t.Fatalf("via %s, size %d; want nbd, %d", e.Via(), e.Size(), len(data))
	}
	if e.conn.Flags&nbd.FlagReadOnly == 0 {
		t.Errorf("a read-only export's flags %#x lack NBD_FLAG_READ_ONLY", e.conn.Flags)
	}
	r := e.ReaderAt()
	for _, span := range [][2]int{{0, 4096}, {513, 70000}, {len(data) - 1000, 1000}} {
		got := make([]byte, span[1])
		if _, err := r.ReadAt(got, int64(span[0])); err != nil {
			t.Fatalf("read %d bytes at %d: %v", span[1], span[0], err)
		}
		if !bytes.Equal(got, data[span[0]:span[0]+span[1]]) {
			t.Fatalf("the %d bytes at %d differ from the image's", span[1], span[0])
		}
	}
	if n, err := r.ReadAt(make([]byte, 1024), int64(len(data)-512)); n != 512 || err != io.EOF {
		t.Errorf("a read past the end gave %d bytes, %v; want 512, EOF", n, err)
	}
	pid := e.PID
	if err := e.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(o.Socket); !os.IsNotExist(err) {
		t.Errorf("the socket is left: %v", err)
	}
	if _, err := os.Stat(filepath.Join("/proc", strconv.Itoa(pid), "cmdline")); err == nil {
		t.Errorf("qemu-storage-daemon (%d) still runs", pid)
	}
}

// TestNBDExportRefusesAnUnknownName: a server without the export asked
// for says so in the handshake, as an error and not a hang.
func TestNBDExportRefusesAnUnknownName(t *testing.T) {
	testenv.Require(t)
	testenv.RequireTool(t, "qemu-storage-daemon")
	dir := t.TempDir()
	img := filepath.Join(dir, "disk.raw")
	if err := os.WriteFile(img, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	o := ExportOptions{Image: img, Format: Raw, ReadOnly: true, Socket: filepath.Join(dir, "export.nbd"), Log: filepath.Join(dir, "qsd.log")}
	e := startNBDDaemon(t, o)
	defer e.Stop()
	_, err := nbd.Dial(o.Socket, "no-such-export")
	if err == nil || !strings.Contains(err.Error(), "refused the export") {
		t.Fatalf("got %v, want the server's refusal", err)
	}
}

// startNBDDaemon starts qemu-storage-daemon's NBD export as Start does
// where the kernel has nbd, whether this one has or not.
func startNBDDaemon(t *testing.T, o ExportOptions) *Export {
	t.Helper()
	e, err := startDaemon(context.Background(), "qemu-storage-daemon", o)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

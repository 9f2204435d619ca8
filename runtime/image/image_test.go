package image

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixrescue/nixrescue/hack/testenv"
	"golang.org/x/sys/unix"
)

// TestInUse: a read lock on one byte, as qemu takes on the images it
// opens (its permission bytes from offset 100), is seen through another
// open file description; an unlocked file, or one whose lock was let go,
// is not in use.
func TestInUse(t *testing.T) {
	path := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(path, make([]byte, 4096), 0o644); err != nil {
		t.Fatal(err)
	}
	if InUse(path) {
		t.Fatal("an unlocked file is in use")
	}
	holder, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	lk := unix.Flock_t{Type: unix.F_RDLCK, Whence: io.SeekStart, Start: 100, Len: 1}
	if err := unix.FcntlFlock(holder.Fd(), unix.F_OFD_SETLK, &lk); err != nil {
		t.Fatal(err)
	}
	if !InUse(path) {
		t.Fatal("a file with qemu's kind of lock on it is not in use")
	}
	holder.Close()
	if InUse(path) {
		t.Fatal("a file whose lock holder closed it is still in use")
	}
	if InUse(filepath.Join(t.TempDir(), "missing.img")) {
		t.Fatal("a missing file is in use")
	}
}

// TestDaemonArgs: the daemon's export is over NBD on descriptor 3 (its
// server before the export, which names the socket: cleanup finds the
// daemon by it) or over FUSE on the file, writable as asked, of the
// overlay's node when there is one; commas in paths are escaped.
func TestDaemonArgs(t *testing.T) {
	o := ExportOptions{Image: "/i/a,b.qcow2", Format: QCOW2, File: "/s/export.raw", Socket: "/s/export.nbd"}
	nbdArgs := strings.Join(o.args(), " ")
	for _, want := range []string{"filename=/i/a,,b.qcow2,", "--nbd-server addr.type=fd,addr.str=3 --export type=nbd,id=export,node-name=image,name=/s/export.nbd,writable=on"} {
		if !strings.Contains(nbdArgs, want) {
			t.Errorf("NBD args lack %q:\n%s", want, nbdArgs)
		}
	}
	if strings.Contains(nbdArgs, "fuse") {
		t.Errorf("NBD args name FUSE:\n%s", nbdArgs)
	}
	fuse := o
	fuse.Socket, fuse.Overlay = "", "/s/overlay.qcow2"
	fuseArgs := strings.Join(fuse.args(), " ")
	if !strings.HasSuffix(fuseArgs, "--export type=fuse,id=export,node-name=overlay,mountpoint=/s/export.raw,writable=on") || strings.Contains(fuseArgs, "nbd") {
		t.Errorf("FUSE args:\n%s", fuseArgs)
	}
	o.ReadOnly = true
	if a := strings.Join(o.args(), " "); !strings.HasSuffix(a, "writable=off") || !strings.Contains(a, "read-only=on") {
		t.Errorf("read-only NBD args:\n%s", a)
	}
}

// TestRecordedDaemonIsKnownByItsExport: a cleanup ends a process only
// when its command line names the recorded export's file or socket.
func TestRecordedDaemonIsKnownByItsExport(t *testing.T) {
	o := ExportOptions{Image: "/i/disk.qcow2", Format: QCOW2, File: "/s/export.raw", Socket: "/s/export.nbd"}
	for _, c := range []struct {
		viaNBD bool
		r      Recorded
		ours   bool
	}{
		{true, Recorded{File: o.File, Socket: o.Socket}, true},
		{false, Recorded{File: o.File, Socket: o.Socket}, true},
		{true, Recorded{File: o.File, Socket: "/other/export.nbd"}, false},
		{false, Recorded{File: "/other/export.raw", Socket: o.Socket}, false},
	} {
		started := o
		if !c.viaNBD {
			started.Socket = ""
		}
		cmdline := []byte("qemu-storage-daemon\x00" + strings.Join(started.args(), "\x00") + "\x00")
		if got := c.r.cmdlineIsOurs(cmdline); got != c.ours {
			t.Errorf("via NBD %v, recorded %+v: ours %v, want %v", c.viaNBD, c.r, got, c.ours)
		}
	}
}

// TestQCOW2HeaderSaysBacked: the header read without qemu tells an
// overlay (a backing file) from a standalone qcow2, so that a session
// asks qemu-img for the backing chain only when there is one.
func TestQCOW2HeaderSaysBacked(t *testing.T) {
	testenv.RequireTool(t, "qemu-img")
	dir := t.TempDir()
	base, over := filepath.Join(dir, "base.qcow2"), filepath.Join(dir, "over.qcow2")
	for _, args := range [][]string{{"create", "-q", "-f", "qcow2", base, "64M"}, {"create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", base, over}} {
		if out, err := exec.Command("qemu-img", args...).CombinedOutput(); err != nil {
			t.Fatalf("qemu-img %v: %v %s", args, err, out)
		}
	}
	for path, backed := range map[string]bool{base: false, over: true} {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		h, err := ReadQCOW2Header(f)
		f.Close()
		if err != nil || h.Backed != backed || h.VirtualSize != 64<<20 || h.Encrypted {
			t.Errorf("%s: %+v, %v; want backed %v, 64 MiB, not encrypted", filepath.Base(path), h, err, backed)
		}
	}
}

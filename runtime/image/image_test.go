package image

import (
	"io"
	"os"
	"path/filepath"
	"testing"

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

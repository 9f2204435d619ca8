package mount

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nixrescue/nixrescue/hack/testenv"
)

// partitionedLoop attaches a new 8 MiB image with partition 1 added; the
// loop device is detached at cleanup.
func partitionedLoop(t *testing.T) (*Loop, string) {
	t.Helper()
	img := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 8<<20); err != nil {
		t.Fatal(err)
	}
	l, err := AttachLoop(img, false, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	p, err := AddPartition(l.File(), 1, 1<<20, 4<<20)
	if err != nil {
		t.Fatal(err)
	}
	return l, p
}

// A partition someone still has open for a moment (another mount
// namespace's copy of a mount, while that namespace is being set up) is
// removed once they let go.
func TestDeletePartitionWaitsForAUserToLetGo(t *testing.T) {
	testenv.Require(t)
	l, p := partitionedLoop(t)
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := blkpgOp(l.File(), unix.BLKPG_DEL_PARTITION, 1, 0, 0); !errors.Is(err, unix.EBUSY) {
		f.Close()
		t.Fatalf("deleting an open partition: %v, want EBUSY (the premise of this test)", err)
	}
	time.AfterFunc(300*time.Millisecond, func() { f.Close() })
	if err := DeletePartition(l.File(), 1); err != nil {
		t.Fatal(err)
	}
}

// One that stays in use is an error, after a bounded wait.
func TestDeletePartitionGivesUpOnAUserThatStays(t *testing.T) {
	testenv.Require(t)
	l, p := partitionedLoop(t)
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		f.Close()
		_ = DeletePartition(l.File(), 1)
	}()
	err = DeletePartition(l.File(), 1)
	if err == nil || !strings.Contains(err.Error(), "busy") {
		t.Fatalf("%v, want a busy error", err)
	}
}

// WithDirectIO: the loop device reads its file with direct I/O (the
// kernel says so in sysfs); without it, through the page cache.
func TestAttachLoopWithDirectIO(t *testing.T) {
	testenv.Require(t)
	img := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(img, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		opts []LoopOption
		dio  string
	}{{nil, "0"}, {[]LoopOption{WithDirectIO()}, "1"}} {
		l, err := AttachLoop(img, true, 0, c.opts...)
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join("/sys/block", l.Name, "loop/dio"))
		l.Close()
		if err != nil || strings.TrimSpace(string(b)) != c.dio {
			t.Errorf("options %d: dio %q %v, want %s", len(c.opts), b, err, c.dio)
		}
	}
}

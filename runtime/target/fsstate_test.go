package target

import (
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixrescue/nixrescue/hack/testenv"
)

// mkfsFile makes a filesystem image of size bytes with the host's mkfs
// and runs the commands after it on the file (FILE in their arguments);
// the tools are what hack/install-deps installs.
func mkfsFile(t *testing.T, size int64, mkfs []string, then ...[]string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "fs.img")
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(p, size); err != nil {
		t.Fatal(err)
	}
	for _, c := range append([][]string{mkfs}, then...) {
		args := make([]string, len(c))
		for i, a := range c {
			args[i] = strings.ReplaceAll(a, "FILE", p)
		}
		testenv.RequireTool(t, args[0])
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v %s", args, err, out)
		}
	}
	return p
}

func stateOf(t *testing.T, p, fsType string) FSState {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := ReadFSState(f, fsType)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestReadFSState reads what real filesystems record: made by the host's
// mkfs, with the state the kernel would leave set by e2fsprogs' debugfs
// and xfs_db, as dumpe2fs reports it ("not clean with errors",
// needs_recovery).
func TestReadFSState(t *testing.T) {
	clean := mkfsFile(t, 32<<20, []string{"mkfs.ext4", "-q", "FILE"})
	if st := stateOf(t, clean, "ext4"); st != (FSState{}) {
		t.Errorf("a clean ext4: %+v", st)
	}
	dirty := mkfsFile(t, 32<<20, []string{"mkfs.ext4", "-q", "FILE"}, []string{"debugfs", "-w", "-R", "feature needs_recovery", "FILE"})
	if st := stateOf(t, dirty, "ext4"); st != (FSState{Replay: "journal"}) {
		t.Errorf("an ext4 with its journal to replay: %+v", st)
	}
	errs := mkfsFile(t, 32<<20, []string{"mkfs.ext4", "-q", "FILE"},
		[]string{"debugfs", "-w", "-R", "ssv state 2", "FILE"}, []string{"debugfs", "-w", "-R", "ssv error_count 3", "FILE"},
		[]string{"debugfs", "-w", "-R", "ssv last_error_time 20261201120000", "FILE"},
		[]string{"debugfs", "-w", "-R", "ssv last_error_func ext4_lookup", "FILE"})
	want := FSState{Errors: "the kernel found 3 error(s) in it, the last on 2026-12-01 12:00 UTC in ext4_lookup", Check: "e2fsck"}
	if st := stateOf(t, errs, "ext4"); st != want {
		t.Errorf("an ext4 with errors: %+v, want %+v", st, want)
	}
	flagged := mkfsFile(t, 32<<20, []string{"mkfs.ext4", "-q", "FILE"}, []string{"debugfs", "-w", "-R", "ssv state 2", "FILE"})
	if st := stateOf(t, flagged, "ext4"); st.Errors != "the kernel found errors in it" {
		t.Errorf("an ext4 flagged with errors only: %+v", st)
	}
	noJournal := mkfsFile(t, 32<<20, []string{"mkfs.ext2", "-q", "FILE"})
	if st := stateOf(t, noJournal, "ext2"); st != (FSState{}) {
		t.Errorf("ext2: %+v", st)
	}

	x := mkfsFile(t, 320<<20, []string{"mkfs.xfs", "-q", "-f", "FILE"})
	if st := stateOf(t, x, "xfs"); st != (FSState{}) {
		t.Errorf("a clean xfs: %+v", st)
	}
	x = mkfsFile(t, 320<<20, []string{"mkfs.xfs", "-q", "-f", "FILE"}, []string{"xfs_db", "-x", "-c", "sb 0", "-c", "write -d features_incompat 16", "FILE"})
	if st := stateOf(t, x, "xfs"); st.Check != "xfs_repair" || !strings.Contains(st.Errors, "needsrepair") {
		t.Errorf("an xfs xfs_repair left unfinished: %+v", st)
	}

	b := mkfsFile(t, 128<<20, []string{"mkfs.btrfs", "-q", "-f", "FILE"})
	if st := stateOf(t, b, "btrfs"); st != (FSState{}) {
		t.Errorf("a clean btrfs: %+v", st)
	}
	// A log tree to replay (what an fsync before a crash leaves): its
	// root's address in the superblock.
	f, err := os.OpenFile(b, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	var root [8]byte
	binary.LittleEndian.PutUint64(root[:], 30408704)
	_, err = f.WriteAt(root[:], btrfsSuperOffset+0x60)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	if st := stateOf(t, b, "btrfs"); st != (FSState{Replay: "log tree"}) {
		t.Errorf("a btrfs with a log tree: %+v", st)
	}

	if _, err := ReadFSState(strings.NewReader(strings.Repeat("\x00", 4096)), "ext4"); err == nil {
		t.Errorf("zeros read as an ext4")
	}
	if st, err := ReadFSState(strings.NewReader(""), "vfat"); err != nil || st != (FSState{}) {
		t.Errorf("vfat: %+v %v", st, err)
	}
}

package embedded

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// The state directory removed between its making and the container's
// directory (another session ending): made again, and the creation done.
func TestInStateDirMakesItAgain(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "containers")
	calls := 0
	err := inStateDir(dir, func() error {
		calls++
		if calls == 1 {
			if err := os.Remove(dir); err != nil {
				t.Fatal(err)
			}
			return os.Mkdir(filepath.Join(dir, "id"), 0o711)
		}
		return os.Mkdir(filepath.Join(dir, "id"), 0o711)
	})
	if err != nil || calls != 2 {
		t.Fatalf("err %v after %d calls, want nil after 2", err, calls)
	}
	if _, err := os.Stat(filepath.Join(dir, "id")); err != nil {
		t.Fatal(err)
	}
}

// A missing file while the directory is there is the creation's own
// error: returned at once.
func TestInStateDirOtherNotExist(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "containers")
	calls := 0
	want := fmt.Errorf("open rootfs: %w", os.ErrNotExist)
	err := inStateDir(dir, func() error { calls++; return want })
	if !errors.Is(err, os.ErrNotExist) || calls != 1 {
		t.Fatalf("err %v after %d calls, want the creation's error after 1", err, calls)
	}
}

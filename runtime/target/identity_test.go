package target

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixrescue/nixrescue/hack/testenv"
)

// TestKeysFollowTheData: an image, a hard link and a symbolic link to it,
// and a loop device attached to it share a key; another image does not.
func TestKeysFollowTheData(t *testing.T) {
	testenv.Require(t)
	dir := t.TempDir()
	img, other := filepath.Join(dir, "disk.img"), filepath.Join(dir, "other.img")
	for _, p := range []string{img, other} {
		if err := os.WriteFile(p, make([]byte, 1<<20), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Link(img, filepath.Join(dir, "hard.img")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(img, filepath.Join(dir, "sym.img")); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("losetup", "--find", "--show", img).Output()
	if err != nil {
		t.Fatal(err)
	}
	loop := strings.TrimSpace(string(out))
	defer exec.Command("losetup", "-d", loop).Run()
	keys := func(arg string) []Key {
		t.Helper()
		tg, err := Resolve(arg)
		if err != nil {
			t.Fatal(err)
		}
		k, err := Keys(tg)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	want := keys(img)
	for _, name := range []string{filepath.Join(dir, "hard.img"), filepath.Join(dir, "sym.img"), loop} {
		if got := keys(name); !Shares(got, want) {
			t.Errorf("%s: keys %v share nothing with the image's %v", name, got, want)
		}
	}
	if Shares(keys(other), want) {
		t.Error("another image shares the image's key")
	}
}

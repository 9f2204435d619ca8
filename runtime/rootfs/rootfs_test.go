package rootfs

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// hostileRoot is a target whose paths try to leave it or to block.
func hostileRoot(t *testing.T) (root, hostSecret string) {
	t.Helper()
	base := t.TempDir()
	hostSecret = filepath.Join(base, "host-secret")
	if err := os.WriteFile(hostSecret, []byte("host\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	root = filepath.Join(base, "root")
	for _, d := range []string{"etc", "nix/var/nix/profiles", "boot"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(root, "etc/hostname"), []byte("inside\n"), 0o644)
	os.WriteFile(filepath.Join(root, "host-secret"), []byte("the target's own\n"), 0o644)
	// Where the host's path leads inside the target.
	os.MkdirAll(filepath.Join(root, filepath.Dir(hostSecret)), 0o755)
	os.WriteFile(filepath.Join(root, hostSecret), []byte("the target's own\n"), 0o644)
	links := map[string]string{
		"etc/abs":          hostSecret,
		"etc/rel":          "../../../../../../../../" + strings.TrimPrefix(hostSecret, "/"),
		"etc/loop-a":       "loop-b",
		"etc/loop-b":       "loop-a",
		"etc/up":           "/",
		"nix/var/nix/link": "/etc",
	}
	for l, to := range links {
		if err := os.Symlink(to, filepath.Join(root, l)); err != nil {
			t.Fatal(err)
		}
	}
	if err := unix.Mkfifo(filepath.Join(root, "etc/fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	return root, hostSecret
}

func TestReadFileStaysInside(t *testing.T) {
	root, _ := hostileRoot(t)
	for _, p := range []string{"/etc/abs", "/etc/rel", "/etc/up/host-secret"} {
		b, err := ReadFile(root, p, 100)
		if err != nil || string(b) != "the target's own\n" {
			t.Errorf("%s: %q %v, want the target's file", p, b, err)
		}
	}
	if b, err := ReadFile(root, "/etc/hostname", 100); err != nil || string(b) != "inside\n" {
		t.Errorf("hostname: %q %v", b, err)
	}
}

func TestOpenRefusesWhatIsNotAFile(t *testing.T) {
	root, _ := hostileRoot(t)
	done := make(chan struct{})
	go func() {
		defer close(done)
		var nr *NotRegularError
		if _, err := Open(root, "/etc/fifo"); !errors.As(err, &nr) || nr.Mode != "FIFO" {
			t.Errorf("FIFO: %v", err)
		}
		if _, err := Open(root, "/etc"); !errors.As(err, &nr) || nr.Mode != "directory" {
			t.Errorf("directory: %v", err)
		}
		if _, err := Open(root, "/etc/loop-a"); err == nil {
			t.Error("a link loop opened")
		}
		if _, err := Open(root, "/etc/missing"); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("missing: %v", err)
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Open blocked")
	}
}

func TestReadBounded(t *testing.T) {
	root, _ := hostileRoot(t)
	// 2 GiB, sparse, with a first line.
	p := filepath.Join(root, "etc/big")
	if err := os.WriteFile(p, []byte("bighost\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(p, 2<<30); err != nil {
		t.Fatal(err)
	}
	var tl *TooLargeError
	if b, err := ReadFile(root, "/etc/big", 4096); !errors.As(err, &tl) || len(b) != 4096 {
		t.Errorf("ReadFile: %d bytes, %v", len(b), err)
	}
	if b, err := ReadHead(root, "/etc/big", 4096); err != nil || !strings.HasPrefix(string(b), "bighost\n") {
		t.Errorf("ReadHead: %v", err)
	}
}

func TestLstatReadlinkAndOpenDirStayInside(t *testing.T) {
	root, secret := hostileRoot(t)
	// /nix/var/nix/link leads to "/etc": inside, the target's /etc.
	if l, err := Readlink(root, "/nix/var/nix/link"); err != nil || l != "/etc" {
		t.Errorf("Readlink: %q %v", l, err)
	}
	if p, err := Resolve(root, "/nix/var/nix/link/hostname"); err != nil || p != "/etc/hostname" {
		t.Errorf("Resolve: %q %v", p, err)
	}
	if p, err := Resolve(root, "/etc/rel"); err != nil || p != secret {
		t.Errorf("Resolve of a link out of the root: %q %v, want %s inside", p, err, secret)
	}
	if _, err := Lstat(root, "/nix/var/nix/link/hostname"); err != nil {
		t.Errorf("Lstat through a link: %v", err)
	}
	hostOnly := filepath.Join(filepath.Dir(secret), "host-only")
	if err := os.WriteFile(hostOnly, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Lstat(root, "/etc/up"+hostOnly); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Lstat reached the host's %s: %v", hostOnly, err)
	}
	d, err := OpenDir(root, "/etc/up/boot", false)
	if err != nil {
		t.Fatal(err)
	}
	where, _ := os.Readlink("/proc/self/fd/" + strconv.FormatUint(uint64(d.Fd()), 10))
	d.Close()
	if where != filepath.Join(root, "boot") {
		t.Errorf("OpenDir: %s", where)
	}
	d, err = OpenDir(root, "/etc/abs-dir/new", true)
	if err != nil {
		t.Fatal(err)
	}
	d.Close()
	if _, err := os.Stat(filepath.Join(root, "etc/abs-dir/new")); err != nil {
		t.Errorf("OpenDir did not create inside: %v", err)
	}
	if _, err := OpenDir(root, "/etc/hostname", false); !errors.Is(err, unix.ENOTDIR) {
		t.Errorf("a file as a directory: %v", err)
	}
}

func TestReadDir(t *testing.T) {
	root, _ := hostileRoot(t)
	if err := os.MkdirAll(filepath.Join(root, "etc/nixos"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "etc/nixos/configuration.nix"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	entries, err := ReadDir(root, "/etc/nixos")
	if err != nil || len(entries) != 1 || entries[0].Name() != "configuration.nix" {
		t.Errorf("%v %v", entries, err)
	}
}

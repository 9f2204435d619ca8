package commands

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/nixrescue/nixrescue/runtime/nixos"
)

// pruneRoot is a root with generations 1 to 3 (3 current), GRUB's menu
// naming generation 3's kernel and initrd only, and /boot/kernels holding
// those and generation 1's.
func pruneRoot(t *testing.T) string {
	root := t.TempDir()
	files := map[string]string{
		"/boot/grub/grub.cfg": "menuentry 'NixOS - Configuration 3' {\n  linux /kernels/k3\n  initrd /kernels/i3\n}\n",
		"/boot/kernels/k3":    "kernel 3",
		"/boot/kernels/i3":    "initrd 3",
		"/boot/kernels/k1":    "kernel 1",
		"/boot/kernels/i1":    "initrd 1",
		"/nix/store/s1/x":     "",
		"/nix/store/s3/x":     "",
	}
	for p, c := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	prof := filepath.Join(root, "nix/var/nix/profiles")
	os.MkdirAll(prof, 0o755)
	for _, n := range []string{"1", "2", "3"} {
		os.Symlink("/nix/store/s"+n, filepath.Join(prof, "system-"+n+"-link"))
	}
	os.Symlink("system-3-link", filepath.Join(prof, "system"))
	return root
}

// TestRemoveUnreferenced: after the installer, what no entry names goes
// (an installer that leaves old kernels, as older ones did), what an entry
// names stays.
func TestRemoveUnreferenced(t *testing.T) {
	root := pruneRoot(t)
	b := nixos.Bootloader{Kind: nixos.GRUBBIOS}
	if err := removeUnreferenced(root, b); err != nil {
		t.Fatal(err)
	}
	if got := sorted(nixos.BootFiles(root, b)); !slices.Equal(got, []string{"/boot/kernels/i3", "/boot/kernels/k3"}) {
		t.Errorf("left %v", got)
	}
}

// TestPruneFailurePutsBack: files moved aside and deleted generations
// come back as they were, and the aside directory goes.
func TestPruneFailurePutsBack(t *testing.T) {
	root := pruneRoot(t)
	b := nixos.Bootloader{Kind: nixos.GRUBBIOS}
	before := sorted(nixos.BootFiles(root, b))
	aside, err := moveAside(root, []string{"/boot/kernels/k1", "/boot/kernels/i1"}, "test")
	if err != nil {
		t.Fatal(err)
	}
	if got := nixos.BootFiles(root, b); len(got) != 2 {
		t.Errorf("after moving aside: %v", got)
	}
	deleted, err := deleteGenerations(root, []int{1, 2})
	if err != nil || len(deleted) != 2 {
		t.Fatalf("%v %v", deleted, err)
	}
	if _, err := deleteGenerations(root, []int{3}); err == nil {
		t.Error("the current generation was deleted")
	}
	if err := restoreGenerations(root, deleted); err != nil {
		t.Fatal(err)
	}
	if err := aside.restore(root); err != nil {
		t.Fatal(err)
	}
	if got := sorted(nixos.BootFiles(root, b)); !slices.Equal(got, before) {
		t.Errorf("after restoring: %v, want %v", got, before)
	}
	if b, err := os.ReadFile(filepath.Join(root, "boot/kernels/k1")); err != nil || string(b) != "kernel 1" {
		t.Errorf("k1 back: %q %v", b, err)
	}
	gens, _ := nixos.Generations(root)
	if len(gens) != 3 {
		t.Errorf("generations after restoring: %+v", gens)
	}
	if _, err := os.Stat(filepath.Join(root, ".nixrescue-prune-test")); !os.IsNotExist(err) {
		t.Errorf("the aside directory stays: %v", err)
	}
}

func sorted(s []string) []string { slices.Sort(s); return s }

package target

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/nixrescue/nixrescue/runtime/nixos"
)

// TestIsRootLooksInsideOnly: a filesystem whose etc is a link to an
// absolute path is judged by what that path holds inside it, not by the
// host's directory of that name.
func TestIsRootLooksInsideOnly(t *testing.T) {
	host := t.TempDir() // stands for the rescue host's /etc, on a NixOS rescue system
	if err := os.WriteFile(filepath.Join(host, "NIXOS"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	fs := t.TempDir()
	if err := os.Symlink(host, filepath.Join(fs, "etc")); err != nil {
		t.Fatal(err)
	}
	if nixos.IsRoot(fs) {
		t.Errorf("a filesystem whose etc links to %s was taken for a NixOS root", host)
	}
	// The same link, with the target's own file where it leads inside.
	if err := os.MkdirAll(filepath.Join(fs, host), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(fs, host, "NIXOS"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if !nixos.IsRoot(fs) {
		t.Error("the target's own /etc/NIXOS, reached through its link, was not found")
	}
}

package commands

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// hints keeps what a command says to its logger.
type hints []string

func (s *hints) Info(msg string, _ ...any) { *s = append(*s, msg) }

// TestFailureWatch: what a rebuild's output reports, even split across
// writes, gets its hint once it is done.
func TestFailureWatch(t *testing.T) {
	for _, c := range []struct {
		output, hint string
	}{
		{"installing the GRUB 2 boot loader on /dev/sdz...\ngrub-install: error: cannot find a GRUB drive for /dev/loop0p2.  Check your device.map.\n", "grub-install could not tell where a partition of the loop device starts"},
		{"error: unable to download 'http://x/y': Couldn't resolve host name (6)\n", "the command needed the network and could not reach it"},
		{"cp: error writing '/nix/store/x': No space left on device\n", "a filesystem of the target is full"},
	} {
		var seen failures
		w := &failureWatch{w: io.Discard, seen: &seen}
		// Split in the middle of what is looked for.
		half := len(c.output) / 2
		w.Write([]byte(c.output[:half]))
		w.Write([]byte(c.output[half:]))
		var log hints
		seen.hint(&log, false)
		if len(log) != 1 || !strings.Contains(log[0], c.hint) {
			t.Errorf("%q: hints %q, want one saying %q", c.output, log, c.hint)
		}
	}
}

// TestRebuildSource: what a rebuild builds, as nixos-rebuild chooses it,
// and the flake it is told explicitly.
func TestRebuildSource(t *testing.T) {
	root := t.TempDir()
	src, err := rebuildSource(root, RebuildOptions{}, "")
	if err != nil || src.Kind != "configuration" || src.File != "/etc/nixos/configuration.nix" {
		t.Errorf("no flake: %+v, %v", src, err)
	}
	os.MkdirAll(filepath.Join(root, "etc/nixos"), 0o755)
	os.MkdirAll(filepath.Join(root, "srv/conf"), 0o755)
	os.WriteFile(filepath.Join(root, "srv/conf/flake.nix"), []byte("{ }\n"), 0o644)
	os.Symlink("/srv/conf/flake.nix", filepath.Join(root, "etc/nixos/flake.nix"))
	os.WriteFile(filepath.Join(root, "etc/hostname"), []byte("web1\n"), 0o644)
	src, err = rebuildSource(root, RebuildOptions{}, "")
	if err != nil || src.Ref() != "/srv/conf#web1" || src.Attribute != `nixosConfigurations."web1"` || src.NameFrom != "hostname" ||
		src.File != "/srv/conf/flake.nix" || src.ChosenBy != "/etc/nixos/flake.nix" {
		t.Errorf("flake.nix, a link: %+v, %v", src, err)
	}
	if note := sourceNote(*src); !strings.Contains(note, "passing --flake /srv/conf#web1") || !strings.Contains(note, "hostname") {
		t.Errorf("note: %q", note)
	}
	src, err = rebuildSource(root, RebuildOptions{Flake: "/srv/conf#db"}, "")
	if err != nil || src.Ref() != "/srv/conf#db" || src.NameFrom != "flake reference" || src.ChosenBy != "--flake" {
		t.Errorf("--flake: %+v, %v", src, err)
	}
	src, err = rebuildSource(root, RebuildOptions{Extra: []string{"--no-flake"}}, "")
	if err != nil || src.Kind != "configuration" {
		t.Errorf("--no-flake: %+v, %v", src, err)
	}
	if _, err := rebuildSource(root, RebuildOptions{Flake: "/srv/none#x"}, ""); err == nil || !strings.Contains(err.Error(), "Flake") {
		t.Errorf("--flake of a missing directory: %v, want a refusal naming the option", err)
	}
}

// TestFlakeArgsCheck: a --flake among nixos-rebuild's own arguments is
// taken as the rebuild's, once.
func TestFlakeArgsCheck(t *testing.T) {
	ro := RebuildOptions{Extra: []string{"--show-trace", "--flake", "/srv#a", "-L"}}
	if err := flakeArgsCheck(&ro); err != nil || ro.Flake != "/srv#a" || strings.Join(ro.Extra, " ") != "--show-trace -L" {
		t.Errorf("got %+v, %v", ro, err)
	}
	ro = RebuildOptions{Flake: "/x", Extra: []string{"--flake=/srv#a"}}
	if err := flakeArgsCheck(&ro); err == nil {
		t.Error("two flakes accepted")
	}
	ro = RebuildOptions{Flake: "/x", Extra: []string{"--no-flake"}}
	if err := flakeArgsCheck(&ro); err == nil {
		t.Error("--flake with --no-flake accepted")
	}
	for _, ro := range []RebuildOptions{{Flake: "./conf"}, {Extra: []string{"--flake", "../conf#a"}}} {
		if err := flakeArgsCheck(&ro); err == nil || !strings.Contains(err.Error(), "relative path") {
			t.Errorf("%+v: %v, want a relative path refused", ro, err)
		}
	}
}

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

func TestFlakeNote(t *testing.T) {
	root := t.TempDir()
	if got := flakeNote(root, nil); got != "" {
		t.Errorf("no flake: %q", got)
	}
	if got := flakeNote(root, []string{"--flake", "/srv/conf#web"}); !strings.Contains(got, "the flake /srv/conf#web (--flake)") {
		t.Errorf("--flake: %q", got)
	}
	os.MkdirAll(filepath.Join(root, "etc/nixos"), 0o755)
	os.WriteFile(filepath.Join(root, "etc/nixos/flake.nix"), []byte("{ }\n"), 0o644)
	os.WriteFile(filepath.Join(root, "etc/hostname"), []byte("web1\n"), 0o644)
	if got := flakeNote(root, nil); !strings.Contains(got, `the flake /etc/nixos/flake.nix, attribute nixosConfigurations."web1"`) {
		t.Errorf("flake.nix: %q", got)
	}
}

package engine

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixrescue/nixrescue/runtime/hint"
	"github.com/nixrescue/nixrescue/runtime/target"
)

// TestResolveTarget: an image file, a directory named with --root, and no
// TARGET where the default --root holds no NixOS root (one error, its fix
// as data), without root and without opening anything.
func TestResolveTarget(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "disk.img")
	if err := os.WriteFile(img, make([]byte, 512), 0o644); err != nil {
		t.Fatal(err)
	}
	if tg, err := ResolveTarget(Options{Target: img}); err != nil || tg.Kind != target.KindImage || tg.Path != img {
		t.Errorf("an image: %+v %v", tg, err)
	}
	if tg, err := ResolveTarget(Options{Root: dir}); err != nil || tg.Kind != target.KindDirectory || tg.Arg != dir {
		t.Errorf("--root DIR: %+v %v", tg, err)
	}
	_, err := ResolveTarget(Options{Root: dir, RootIsDefault: true})
	var he *hint.Error
	if !errors.As(err, &he) || !strings.Contains(err.Error(), "no TARGET given, and "+dir) || !strings.Contains(hint.FixOf(err), "or mount the NixOS root on "+dir) {
		t.Errorf("no TARGET, %s holding no root: %v", dir, err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "etc/NIXOS"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if tg, err := ResolveTarget(Options{Root: dir, RootIsDefault: true}); err != nil || tg.Kind != target.KindDirectory {
		t.Errorf("no TARGET, %s holding a root: %+v %v", dir, tg, err)
	}
}

// TestTimer: a phase in several steps adds them up, and each step's end
// is told.
func TestTimer(t *testing.T) {
	var ended []string
	tm := timer{onEnd: func(name string, ms float64) { ended = append(ended, name) }}
	tm.start("discover")()
	tm.start("mount")()
	tm.start("discover")()
	if len(tm.phases) != 2 || tm.phases[0].Name != "discover" || tm.phases[1].Name != "mount" {
		t.Errorf("phases %+v", tm.phases)
	}
	if strings.Join(ended, " ") != "discover mount discover" {
		t.Errorf("ends told: %v", ended)
	}
}

package nixos_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixrescue/nixrescue/hack/fixture"
	"github.com/nixrescue/nixrescue/runtime/hint"
	"github.com/nixrescue/nixrescue/runtime/nixos"
)

// fixtureRoot builds a NixOS-shaped root; busybox is a stand-in file, as
// nothing here runs it.
func fixtureRoot(t *testing.T) (string, fixture.Layout) {
	t.Helper()
	bb := filepath.Join(t.TempDir(), "busybox")
	if err := os.WriteFile(bb, []byte("#!/bin/false\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	l, err := fixture.Build(dir, fixture.Options{Busybox: bb})
	if err != nil {
		t.Fatal(err)
	}
	return dir, l
}

func TestCheckRoot(t *testing.T) {
	r, _ := fixtureRoot(t)
	if err := nixos.CheckRoot(r); err != nil {
		t.Errorf("fixture: %v", err)
	}
	var re *hint.Error
	if err := nixos.CheckRoot(t.TempDir()); !errors.Is(err, nixos.ErrNotNixOS) || !errors.As(err, &re) {
		t.Errorf("empty dir: %v", err)
	}
	if err := nixos.CheckRoot(filepath.Join(r, "nope")); err == nil || !strings.Contains(err.Error(), "no such directory") {
		t.Errorf("missing dir: %v", err)
	}
	if err := nixos.CheckRoot(filepath.Join(r, "etc/NIXOS")); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("file: %v", err)
	}
}

func TestResolveSystem(t *testing.T) {
	r, l := fixtureRoot(t)
	s, err := nixos.ResolveSystem(r, nixos.SystemChoice{})
	if err != nil {
		t.Fatal(err)
	}
	if s.Path != nixos.SystemProfile || s.StorePath != l.Systems[1] || s.Generation != 2 {
		t.Errorf("default: %+v", s)
	}
	s, err = nixos.ResolveSystem(r, nixos.SystemChoice{Generation: 1})
	if err != nil || s.StorePath != l.Systems[0] || s.Path != nixos.GenerationLink(1) || s.Generation != 1 {
		t.Errorf("generation 1: %+v %v", s, err)
	}
	s, err = nixos.ResolveSystem(r, nixos.SystemChoice{Path: l.Systems[0]})
	if err != nil || s.StorePath != l.Systems[0] || s.Generation != 0 {
		t.Errorf("--system: %+v %v", s, err)
	}
}

func TestResolveSystemErrors(t *testing.T) {
	r, l := fixtureRoot(t)
	cases := map[string]struct {
		c    nixos.SystemChoice
		want string
	}{
		"both":          {nixos.SystemChoice{Path: l.Systems[0], Generation: 1}, "give one"},
		"relative":      {nixos.SystemChoice{Path: "nix/store/x"}, "as the target sees it"},
		"no generation": {nixos.SystemChoice{Generation: 7}, "generation 7 does not exist"},
		"negative":      {nixos.SystemChoice{Generation: -1}, "numbered from 1"},
		"missing path":  {nixos.SystemChoice{Path: "/nix/store/00000000000000000000000000000000-gone"}, "does not exist"},
		"not a dir":     {nixos.SystemChoice{Path: "/etc/NIXOS"}, "not a system directory"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := nixos.ResolveSystem(r, c.c)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("got %v, want …%s…", err, c.want)
			}
		})
	}
	// A dangling profile: the store path it names was deleted.
	if err := os.RemoveAll(filepath.Join(r, l.Systems[1])); err != nil {
		t.Fatal(err)
	}
	_, err := nixos.ResolveSystem(r, nixos.SystemChoice{})
	if err == nil || !strings.Contains(err.Error(), "does not exist in the target") || !strings.Contains(err.Error(), "Generation=N") {
		t.Errorf("dangling profile: %v", err)
	}
}

func TestHostname(t *testing.T) {
	r, _ := fixtureRoot(t)
	if h, err := nixos.Hostname(r, ""); err != nil || h != "nixfixture" {
		t.Errorf("through /etc/static: %q %v", h, err)
	}
	os.Remove(filepath.Join(r, "etc/hostname"))
	// No /etc/hostname (a root made afresh at each boot, before its
	// activation): the system's.
	if h, err := nixos.Hostname(r, nixos.SystemProfile); err != nil || h != "nixfixture" {
		t.Errorf("from the system: %q %v", h, err)
	}
	if h, err := nixos.Hostname(r, ""); err != nil || h != nixos.DefaultHostname {
		t.Errorf("missing: %q %v", h, err)
	}
	// An escaping link is resolved inside the root: the host's
	// /etc/hostname is never read.
	os.Symlink("../../../../../../../etc/hostname-of-target", filepath.Join(r, "etc/hostname"))
	os.WriteFile(filepath.Join(r, "etc/hostname-of-target"), []byte("inside\n"), 0o644)
	if h, err := nixos.Hostname(r, ""); err != nil || h != "inside" {
		t.Errorf("escaping link: %q %v", h, err)
	}
	os.Remove(filepath.Join(r, "etc/hostname"))
	os.WriteFile(filepath.Join(r, "etc/hostname"), []byte("bad name; rm -rf /\n"), 0o644)
	if _, err := nixos.Hostname(r, ""); err == nil {
		t.Error("junk accepted as hostname")
	}
}

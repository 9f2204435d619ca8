package nixos

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestFlakeSettings: flakes' features are given for the session only when
// the target's nix.conf does not turn them on; a Nix older than flakes is
// refused.
func TestFlakeSettings(t *testing.T) {
	for _, c := range []struct {
		conf string
		want []string
	}{
		{"", []string{FlakeFeaturesSetting}},
		{"sandbox = true\n", []string{FlakeFeaturesSetting}},
		{"experimental-features = nix-command flakes\n", nil},
		{"experimental-features = nix-command\nextra-experimental-features = flakes # for the flake\n", nil},
		{"experimental-features = flakes\n", []string{FlakeFeaturesSetting}},
	} {
		root := t.TempDir()
		if c.conf != "" {
			os.MkdirAll(filepath.Join(root, "etc/nix"), 0o755)
			os.WriteFile(filepath.Join(root, NixConf), []byte(c.conf), 0o644)
		}
		got, err := FlakeSettings(root, "")
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("%q: %q, %v; want %q", c.conf, got, err, c.want)
		}
	}
	root := t.TempDir()
	sys := "/nix/store/" + "0123456789abcdfghijklmnpqrsvwxyz" + "-nixos-system"
	nix := "/nix/store/" + "abcdfghijklmnpqrsvwxyz0123456789" + "-nix-2.3.16"
	os.MkdirAll(filepath.Join(root, nix, "bin"), 0o755)
	os.WriteFile(filepath.Join(root, nix, "bin/nix"), []byte("#!/bin/sh\n"), 0o755)
	os.MkdirAll(filepath.Join(root, sys, "sw"), 0o755)
	os.Symlink(nix+"/bin", filepath.Join(root, sys, "sw/bin"))
	if v := NixVersion(root, sys); v != "2.3.16" {
		t.Fatalf("NixVersion: %q", v)
	}
	if _, err := FlakeSettings(root, sys); err == nil {
		t.Error("Nix 2.3 given a flake")
	}
}

// TestRebuildSourceNames: the configuration's name as nixos-rebuild
// takes it from REF#NAME, else the hostname, else "default".
func TestRebuildSourceNames(t *testing.T) {
	for _, c := range []struct{ ref, host, flake, name string }{
		{"github:me/conf#web", "x", "github:me/conf", "web"},
		{"/etc/nixos", "host1", "/etc/nixos", "host1"},
		{"/etc/nixos#", "host1", "/etc/nixos", "host1"},
		{"/etc/nixos", "", "/etc/nixos", "default"},
	} {
		s := RebuildSource(t.TempDir(), c.ref, c.host)
		if s.Flake != c.flake || s.Name != c.name {
			t.Errorf("%q: %+v", c.ref, s)
		}
	}
}

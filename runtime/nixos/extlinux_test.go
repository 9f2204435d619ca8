package nixos

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// extlinuxConf is a menu as extlinux-conf-builder.sh writes it: the
// default entry by the store (a /boot on the store's filesystem), the
// generations' copied into /boot/nixos (an SD image as populateCmd made
// it), keywords in another case as U-Boot allows; an older menu's label
// (nixos-7) beside today's (nixos-9-default) and a specialisation's
// (nixos-9-kiosk).
const extlinuxConf = `# Generated file, all changes will be lost on nixos-rebuild!

# Change this to e.g. nixos-42 to temporarily boot to an older configuration.
DEFAULT nixos-default

MENU TITLE ------------------------------------------------------------
TIMEOUT 50

LABEL nixos-default
  MENU LABEL NixOS - Default
  LINUX /nix/store/11111111111111111111111111111111-linux-6.6/Image
  INITRD /nix/store/22222222222222222222222222222222-initrd/initrd
  APPEND init=/nix/store/00000000000000000000000000000000-nixos-system-x/init console=ttyAMA0 loglevel=4
  FDTDIR /nix/store/11111111111111111111111111111111-linux-6.6/dtbs

label nixos-7
  menu label NixOS - Configuration 7 (2026-12-01 10:00 - 24.11)
  kernel ../nixos/abc-linux-6.6-Image
  initrd ../nixos/abc-initrd-initrd
  append init=/nix/store/33333333333333333333333333333333-nixos-system-x/init

LABEL nixos-9-default
  MENU LABEL NixOS - Configuration 9-default (2026-12-02 10:00 - 24.11)
  LINUX ../nixos/def-linux-6.6-Image
  INITRD ../nixos/def-initrd-initrd
  APPEND init=/nix/store/44444444444444444444444444444444-nixos-system-x/init

LABEL nixos-9-kiosk
  MENU LABEL NixOS - Configuration 9-kiosk (2026-12-02 10:00 - 24.11)
  LINUX ../nixos/def-linux-6.6-Image
  INITRD ../nixos/def-initrd-initrd
  APPEND init=/nix/store/55555555555555555555555555555555-kiosk/init
`

// TestExtlinux: generic-extlinux-compatible is found by its builder,
// its menu's default and entries are read (generation by label, or by the
// system init= names), and its kernels' directory is /boot/nixos.
func TestExtlinux(t *testing.T) {
	m := ParseExtlinux(extlinuxConf)
	if m.LabelOf(9) != "nixos-9-default" || m.LabelOf(7) != "nixos-7" || m.LabelOf(8) != "" || m.Entries[3].Generation(nil) != 9 {
		t.Errorf("labels of generations: %q %q %q, kiosk's generation %d", m.LabelOf(9), m.LabelOf(7), m.LabelOf(8), m.Entries[3].Generation(nil))
	}
	if m.Default != "nixos-default" || len(m.Entries) != 4 || m.Entries[1].MenuLabel != "NixOS - Configuration 7 (2026-12-01 10:00 - 24.11)" ||
		m.Entries[0].FDT == "" || m.Entries[1].Kernel != "../nixos/abc-linux-6.6-Image" || m.DefaultEntry() != &m.Entries[0] {
		t.Fatalf("parsed %+v", m)
	}
	root := t.TempDir()
	full := filepath.Join(root, ExtlinuxConf)
	os.MkdirAll(filepath.Dir(full), 0o755)
	if err := os.WriteFile(full, []byte(extlinuxConf), 0o644); err != nil {
		t.Fatal(err)
	}
	gens := []Generation{{Number: 8, StorePath: "/nix/store/00000000000000000000000000000000-nixos-system-x"}}
	b := Bootloader{Kind: Extlinux}
	entries, ok := ReadBootEntries(root, b, gens)
	if !ok || len(entries) != 4 || !entries[0].Default || entries[0].Generation != 8 || entries[1].Generation != 7 ||
		strings.Join(entries[0].Files, " ") != "/nix/store/11111111111111111111111111111111-linux-6.6/Image /nix/store/22222222222222222222222222222222-initrd/initrd" ||
		strings.Join(entries[1].Files, " ") != "/boot/nixos/abc-linux-6.6-Image /boot/nixos/abc-initrd-initrd" {
		t.Errorf("entries %v %+v", ok, entries)
	}
	if d := ReadBootDefault(root, gens); d.Source != ExtlinuxConf || d.Entry != "nixos-default" || d.Generation != 8 {
		t.Errorf("default %+v", d)
	}
	if dirs := BootFileDirs(b); len(dirs) != 1 || dirs[0] != "/boot/nixos" {
		t.Errorf("kernel dirs %v", dirs)
	}
	if l, ok := LoaderOf(Extlinux); !ok || l.EFI || l.Menu != ExtlinuxConf {
		t.Errorf("loader %+v", l)
	}
	sys := "/nix/store/00000000000000000000000000000000-nixos-system-x"
	builder := "/nix/store/44444444444444444444444444444444-extlinux-conf-builder.sh"
	os.MkdirAll(filepath.Join(root, sys, "bin"), 0o755)
	if err := os.WriteFile(filepath.Join(root, sys, "bin/switch-to-configuration"), []byte("#!/bin/sh\nexec "+builder+" -g 20 -t 5 -c \"$1\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if got := DetectBootloader(root, sys); got.Kind != Extlinux || got.Installer != builder {
		t.Errorf("detected %+v", got)
	}
}

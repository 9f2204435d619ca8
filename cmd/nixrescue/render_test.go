package main

import (
	"testing"

	"github.com/nixrescue/nixrescue/runtime/commands"
	nrtarget "github.com/nixrescue/nixrescue/runtime/target"
)

func TestPrintable(t *testing.T) {
	for in, want := range map[string]string{
		"/srv/disk.img":           "/srv/disk.img",
		"/srv/my disk.img":        "/srv/my disk.img",
		"/srv/d\u00e4t\u00e4.img": "/srv/d\u00e4t\u00e4.img",
		"/srv/\x1b[2Jevil.img":    `/srv/\x1b[2Jevil.img`,
		"a\nb\tc":                 `a\nb\tc`,
		"bad\xffutf8":             `bad\xffutf8`,
	} {
		if got := printable(in); got != want {
			t.Errorf("printable(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRebuildSummary(t *testing.T) {
	r := &commands.RunReport{GenerationBefore: 2, GenerationAfter: 3,
		Bootloader:  &commands.BootloaderStep{Kind: "grub-bios", Devices: []string{"/dev/sdz"}, Action: "installed"},
		DiskAliases: []nrtarget.DiskAlias{{Name: "/dev/sdz", Device: "/dev/loop0"}}}
	if got, want := rebuildSummary(r), "generation 3 built and made the default (it was 2); grub-bios installed on /dev/sdz (here /dev/loop0)"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	r.Bootloader = &commands.BootloaderStep{Kind: "systemd-boot", Action: "configured"}
	r.GenerationBefore = 3
	if got, want := rebuildSummary(r), "generation 3 rebuilt; it stays the default; systemd-boot configured (its configuration written, not installed: --no-install-bootloader)"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

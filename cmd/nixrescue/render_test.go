package main

import (
	"strings"
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
	r := &commands.RunReport{CurrentBefore: &commands.GenerationRef{Generation: 2}, CurrentAfter: &commands.GenerationRef{Generation: 3},
		Bootloader:  &commands.BootloaderStep{Kind: "grub-bios", Devices: []string{"/dev/sdz"}, Action: "installed"},
		DiskAliases: []nrtarget.DiskAlias{{Name: "/dev/sdz", Device: "/dev/loop0"}}}
	if got, want := rebuildSummary(r), "generation 3 built and made the default (it was 2); grub-bios installed on /dev/sdz (here /dev/loop0)"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	r.Bootloader = &commands.BootloaderStep{Kind: "systemd-boot", Action: "configured"}
	r.CurrentBefore.Generation = 3
	if got, want := rebuildSummary(r), "generation 3 rebuilt; it stays the default; systemd-boot configured (its configuration written, not installed: --no-install-bootloader)"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestSessionSummaries(t *testing.T) {
	r := &commands.RunReport{Target: nrtarget.Target{Arg: "disk.img"}, CurrentBefore: &commands.GenerationRef{Generation: 2}, CurrentAfter: &commands.GenerationRef{Generation: 1},
		Bootloader: &commands.BootloaderStep{Kind: "systemd-boot", Action: "configured"}}
	if got, want := rollbackSummary(r), "rolled back: generation 1 is the system profile's and the bootloader's default (it was 2); systemd-boot configured"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if got := snapshotSummary(r); got != "" {
		t.Errorf("a session on its target said %q", got)
	}
	r.Snapshot = &commands.SnapshotOutcome{Discarded: true}
	if got, want := snapshotSummary(r), "nothing was written to disk.img: the changes went to a throwaway snapshot and are discarded (--snapshot-out FILE keeps them)"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	r.Snapshot = &commands.SnapshotOutcome{Kept: "repair.qcow2"}
	if got, want := snapshotSummary(r), "nothing was written to disk.img: the changes are in repair.qcow2; boot that, or apply it with qemu-img commit repair.qcow2"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestNearestFlag(t *testing.T) {
	cmd := newRootCommand()
	inspect, _, err := cmd.Find([]string{"inspect"})
	if err != nil {
		t.Fatal(err)
	}
	for typed, want := range map[string]string{"jsn": "json", "josn": "json", "read-onyl": "read-only", "roo": "root", "mount-miss": "mount-missing", "zzzzzz": ""} {
		if got := nearestFlag(inspect, typed); got != want {
			t.Errorf("--%s: got --%s, want --%s", typed, got, want)
		}
	}
}

// TestPSShowsTheExport: ps's table names how a session's image is read
// (the NBD export and its device, or FUSE), and nothing for a disk.
func TestPSShowsTheExport(t *testing.T) {
	r := &commands.PSReport{Sessions: []commands.SessionInfo{
		{ID: "nixrescue-a", Target: nrtarget.Target{Arg: "vm.qcow2"}, Disk: "image /srv/vm.qcow2", Export: &commands.ExportInfo{Via: "nbd", PID: 7, Device: "/dev/nbd16"}},
		{ID: "nixrescue-b", Target: nrtarget.Target{Arg: "old.vmdk"}, Disk: "image /srv/old.vmdk", Export: &commands.ExportInfo{Via: "fuse", PID: 8}},
		{ID: "nixrescue-c", Target: nrtarget.Target{Arg: "/dev/sdb"}, Disk: "disk /dev/sdb"},
	}}
	var b strings.Builder
	if err := writePS(&b, r); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"vm.qcow2 on image /srv/vm.qcow2 (nbd export /dev/nbd16)", "old.vmdk on image /srv/old.vmdk (fuse export)", "/dev/sdb on disk /dev/sdb\n"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("ps lacks %q:\n%s", want, b.String())
		}
	}
}

package open

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixrescue/nixrescue/runtime/hint"
	"github.com/nixrescue/nixrescue/runtime/internal/hosttool"
	"github.com/nixrescue/nixrescue/runtime/internal/hosttool/hosttooltest"
	"github.com/nixrescue/nixrescue/runtime/layers"
	"github.com/nixrescue/nixrescue/runtime/mount"
	"github.com/nixrescue/nixrescue/runtime/target"
)

// TestFstabMapperName: the fstab's /dev/mapper name goes to the one LUKS
// volume only this host has named.
func TestFstabMapperName(t *testing.T) {
	fstab := []target.FstabEntry{{Spec: "/dev/disk/by-label/boot", Mountpoint: "/boot"}, {Spec: "/dev/mapper/cryptroot", Mountpoint: "/"}}
	one := []target.Partition{{Device: "/dev/dm-0", Layer: string(layers.LUKS), Names: []string{"/dev/mapper/nixrescue-x"}}}
	if got := fstabMapperName(fstab, one); got != "cryptroot" {
		t.Errorf("one unnamed volume: %q", got)
	}
	two := append(one, target.Partition{Device: "/dev/dm-1", Layer: string(layers.LUKS), Names: []string{"/dev/mapper/nixrescue-y"}})
	if got := fstabMapperName(fstab, two); got != "" {
		t.Errorf("two unnamed volumes: %q", got)
	}
}

// TestFsckRunsTheHostsCheckerAsTheBootWould: with --fsck, each ext4 is
// checked with e2fsck -p once before its first mount (the answers are
// recorded: no root, no e2fsck run), what it did is said, and what it
// could not repair alone stops the session with the way to do it by hand.
func TestFsckRunsTheHostsCheckerAsTheBootWould(t *testing.T) {
	dev := filepath.Join(t.TempDir(), "boot.img")
	if err := os.WriteFile(dev, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(dev, 4<<20); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", dev).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4 (e2fsprogs): %v %s", err, out)
	}
	line := "e2fsck -p " + dev
	rec := &hosttooltest.Record{Answers: map[string]hosttooltest.Answer{line: {Stdout: "boot: clean, 11/1024 files, 1086/4096 blocks\n"}}}
	ctx := rec.Context(context.Background())
	newOpened := func() *Opened {
		return &Opened{Layout: Layout{Target: target.Target{Arg: "disk.img"}}, mounter: &mount.Mounter{}, fsck: true, checked: map[string]bool{}}
	}
	op := newOpened()
	for range 2 {
		if err := op.checkFS(ctx, dev, "ext4", "/boot"); err != nil {
			t.Fatal(err)
		}
	}
	if calls := rec.Calls(); len(calls) != 1 || calls[0] != line {
		t.Errorf("calls %q, want one %q", calls, line)
	}
	want := "checked " + dev + " (ext4, for /boot) with e2fsck -p: boot: clean, 11/1024 files, 1086/4096 blocks"
	if len(op.Warnings) != 1 || op.Warnings[0] != want {
		t.Errorf("warnings %q, want %q", op.Warnings, want)
	}
	rec.Answers[line] = hosttooltest.Answer{Code: 4, Stdout: "boot: UNEXPECTED INCONSISTENCY; RUN fsck MANUALLY.\n"}
	err := newOpened().checkFS(ctx, dev, "ext4", "/boot")
	if err == nil || !strings.Contains(err.Error(), "e2fsck (-p) could not repair "+dev+" (ext4, for /boot) alone (exit 4): boot: UNEXPECTED INCONSISTENCY") ||
		!strings.Contains(hint.FixOf(err), "repair it by hand with e2fsck and answer its questions ("+dev+" here)") {
		t.Errorf("exit 4: %v (fix %q)", err, hint.FixOf(err))
	}
	rec.Answers[line] = hosttooltest.Answer{Missing: true}
	var missing *hosttool.MissingError
	if err := newOpened().checkFS(ctx, dev, "ext4", "/boot"); !errors.As(err, &missing) || !strings.Contains(err.Error(), "needs: install e2fsprogs") {
		t.Errorf("no e2fsck: %v", err)
	}
}

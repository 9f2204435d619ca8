package open

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nixrescue/nixrescue/runtime/hint"
	"github.com/nixrescue/nixrescue/runtime/internal/hosttool"
	"github.com/nixrescue/nixrescue/runtime/internal/hosttool/hosttooltest"
	"github.com/nixrescue/nixrescue/runtime/layers"
	"github.com/nixrescue/nixrescue/runtime/mount"
	"github.com/nixrescue/nixrescue/runtime/state"
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

// fakeLayer is a kind of layer for the generic path's tests: its Open
// gives a dataset, or fails (after opening something when openedAnyway).
type fakeLayer struct {
	fail, openedAnyway bool
}

func (fakeLayer) Kind() layers.Kind                                      { return "fake" }
func (fakeLayer) Keyed() bool                                            { return false }
func (fakeLayer) Find(context.Context, []string) ([]layers.Found, error) { return nil, nil }
func (fakeLayer) Describe(f layers.Found) layers.Info {
	return layers.Info{Kind: "fake", On: f.Members}
}
func (fakeLayer) Usable(layers.Found) error { return nil }
func (fakeLayer) Planned(f layers.Found, name string) layers.Opened {
	return layers.Opened{Kind: "fake", Name: "planned-" + name, Devices: f.Members}
}
func (l fakeLayer) Open(_ context.Context, f layers.Found, name string, _ layers.OpenOptions) (layers.Result, error) {
	opened := layers.Opened{Kind: "fake", Name: "opened-" + name, Devices: f.Members}
	switch {
	case l.fail && l.openedAnyway:
		return layers.Result{Opened: opened}, errors.New("opened, then lost")
	case l.fail:
		return layers.Result{}, errors.New("did not open")
	}
	return layers.Result{Opened: opened, Info: layers.Info{Kind: "fake", On: f.Members, State: "imported"},
		Volumes: []layers.Volume{{Dataset: "pool/root", Type: "zfs"}}, Warnings: []string{"a warning"}}, nil
}
func (fakeLayer) ReadWrite(context.Context, layers.Opened) error { return nil }
func (fakeLayer) Close(context.Context, layers.Opened) error     { return nil }

// journaled is a session with a journal of its own and its Opened, with
// no target opened.
func journaled(t *testing.T) (*Session, *Opened) {
	t.Helper()
	dir, err := state.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	st, err := dir.Begin("/tmp/disk.img", os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.End() })
	return &Session{State: st}, &Opened{Layout: Layout{Target: target.Target{Arg: "disk.img"}},
		layers: layerSet{st: st, handled: map[string]bool{}, found: map[string]layers.Found{}, writable: map[int]bool{}}}
}

// TestOpenLayerKeepsTheJournalTrue: a layer is recorded before it is
// opened, under what it turned out to be after; forgotten when nothing
// opened; kept, for the teardown to close, when it opened and then
// failed. What it gives (here a dataset: no device, not probed) joins the
// volumes; its view and warnings are shown. No root, no devices.
func TestOpenLayerKeepsTheJournalTrue(t *testing.T) {
	s, op := journaled(t)
	st := s.State
	f := layers.Found{Kind: "fake", Members: []string{"/dev/loop9p2"}}
	open := func(l fakeLayer) error {
		_, err := op.openLayer(context.Background(), s, l, f, func(name string) (layers.Result, error) {
			if got := st.Journal().Layers; len(got) == 0 || got[len(got)-1].Name != "planned-"+name {
				t.Errorf("not recorded before it was opened: %+v", got)
			}
			return l.Open(context.Background(), f, name, layers.OpenOptions{})
		})
		return err
	}
	if err := open(fakeLayer{}); err != nil {
		t.Fatal(err)
	}
	if j := st.Journal().Layers; len(j) != 1 || !strings.HasPrefix(j[0].Name, "opened-") {
		t.Errorf("journal after an open: %+v", j)
	}
	if p := op.Partitions; len(p) != 1 || p[0].Dataset != "pool/root" || p[0].Device != "" || p[0].Type != "zfs" || p[0].Layer != "fake" || p[0].Source() != "pool/root" {
		t.Errorf("volumes: %+v", p)
	}
	if len(op.Layers) != 1 || op.Layers[0].State != "imported" || len(op.Warnings) != 1 {
		t.Errorf("shown: %+v, warnings %q", op.Layers, op.Warnings)
	}
	if err := open(fakeLayer{fail: true}); err == nil || len(st.Journal().Layers) != 1 {
		t.Errorf("nothing opened: %v, journal %+v", err, st.Journal().Layers)
	}
	if err := open(fakeLayer{fail: true, openedAnyway: true}); err == nil || len(st.Journal().Layers) != 2 || !strings.HasPrefix(st.Journal().Layers[1].Name, "opened-") {
		t.Errorf("opened, then failed: %v, journal %+v", err, st.Journal().Layers)
	}
}

// TestExportUnneeded: of the pools imported to find the root, those the
// plan mounts nothing of are exported and forgotten; the others stay.
func TestExportUnneeded(t *testing.T) {
	s, op := journaled(t)
	st := s.State
	for _, o := range []layers.Opened{{Kind: layers.ZFS, Name: "rpool", ID: "1", Devices: []string{"/dev/loop9p2"}}, {Kind: layers.ZFS, Name: "tank", ID: "2", Devices: []string{"/dev/loop9p3"}}} {
		if err := op.record(s, o); err != nil {
			t.Fatal(err)
		}
	}
	op.Plan = []target.Entry{{Mountpoint: "/", Device: "rpool/root", Action: target.ActionMount}, {Mountpoint: "/data", Device: "tank/data", Action: target.ActionSkip}}
	rec := &hosttooltest.Record{Answers: map[string]hosttooltest.Answer{"zpool list -H -o name,guid": {Stdout: "rpool\t1\ntank\t2\n"}, "zpool export tank": {}}}
	if err := op.exportUnneeded(rec.Context(context.Background()), s); err != nil {
		t.Fatal(err)
	}
	if j := st.Journal().Layers; len(j) != 1 || j[0].Name != "rpool" || !slices.Contains(rec.Calls(), "zpool export tank") || slices.Contains(rec.Calls(), "zpool export rpool") {
		t.Errorf("journal %+v, calls %q", j, rec.Calls())
	}
	if i := op.layerInfo("/dev/loop9p3"); !strings.HasPrefix(i.State, "exported") {
		t.Errorf("tank shown as %+v", i)
	}
}

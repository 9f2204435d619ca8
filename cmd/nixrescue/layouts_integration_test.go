package main

// What real NixOS layouts showed: names in the fstab of other disks and
// with blanks, a partition taken for a disk, filesystems with errors or a
// journal to replay, impermanence. Each test failed before the behaviour
// it names was there.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/nixrescue/nixrescue/hack/fixture"
	"github.com/nixrescue/nixrescue/hack/testenv"
	"github.com/nixrescue/nixrescue/runtime/commands"
	"github.com/nixrescue/nixrescue/runtime/host"
	rtarget "github.com/nixrescue/nixrescue/runtime/target"
)

// Variants of the BIOS layout for these tests.
const (
	// A swap area (4) and a data filesystem labelled "my data" (5), and
	// an fstab naming partition 4 of another disk by its by-id name.
	imgOtherDisk = "other-disk-by-id"
	// The same disk, its fstab naming partition 5 of another disk
	// (nofail), this disk's by its by-id name, and a label with a blank
	// (fstab's \040).
	imgFstabNames = "fstab-names"
	// The ext4 root, and the xfs /nix of the xfs-nix layout, as a crash
	// leaves them; the root flagged with errors by the kernel.
	imgUncleanRoot = "unclean-root"
	imgUncleanXFS  = "unclean-xfs-nix"
	imgRootErrors  = "root-with-errors"
	// A real vfat ESP at /boot (made with mtools: this host needs no
	// vfat to build it).
	imgVFATESP = "vfat-esp"
)

// dataPartitions are a swap area and a filesystem after the BIOS
// layout's.
var dataPartitions = []fixture.ImagePartition{
	{Number: 4, Size: 8 << 20, GPTType: "8200", FSType: "swap", UUID: "2b7d3b5e-6c0f-4d8e-9a51-4f3c2d1e0a94", Label: "swap", PartUUID: "7c1f0e3a-2b4d-4e6f-8a9b-0c1d2e3f4a5b", PartLabel: "swap"},
	{Number: 5, Size: 8 << 20, GPTType: "8300", FSType: "ext4", UUID: "9e8d7c6b-5a49-4382-a716-05f4e3d2c1b0", Label: "my data", PartUUID: "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d", PartLabel: "data"},
}

// buildLayoutImages adds the variants of this file.
func buildLayoutImages(build func(string, fixture.ImageOptions) *fixture.Image) {
	build(imgOtherDisk, fixture.ImageOptions{Layout: fixture.LayoutBIOS, Extra: dataPartitions,
		ExtraFstab: "/dev/disk/by-id/ata-OTHER_DISK_123-part4 /data ext4 defaults 0 2\n"})
	build(imgFstabNames, fixture.ImageOptions{Layout: fixture.LayoutBIOS, Extra: dataPartitions,
		ExtraFstab: "/dev/disk/by-id/ata-OTHER_DISK_123-part5 /data ext4 defaults,nofail 0 2\n" +
			"LABEL=my\\040data /srv/my\\040data ext4 defaults 0 2\n" +
			"/dev/disk/by-id/ata-THIS_DISK_9-part5 /srv/by-id ext4 defaults 0 2\n"})
	build(imgUncleanRoot, fixture.ImageOptions{Layout: fixture.LayoutBIOS, Unclean: 3})
	build(imgUncleanXFS, fixture.ImageOptions{Layout: fixture.LayoutXFSNix, Unclean: 3})
	build(imgRootErrors, fixture.ImageOptions{Layout: fixture.LayoutBIOS, Errors: 3})
	build(imgVFATESP, fixture.ImageOptions{Layout: fixture.LayoutUEFI})
}

// TestFstabNamesAsTheMachineKnowsThem: a by-id name is the target's
// partition only when its disk is the target's: partition 4 of another
// disk was taken for the target's swap area (and inspect failed on it),
// partition 5 of another disk was mounted read-write on /data. A label
// with a blank, written \040 in the fstab and escaped by blkid, never
// matched; --mount takes one too.
func TestFstabNamesAsTheMachineKnowsThem(t *testing.T) {
	testenv.Require(t)
	img, _ := image(t, imgOtherDisk)
	sum := fileHash(t, img)
	for _, cmd := range []string{"inspect", "run"} {
		r := nixrescue(t, cmd, img, "--", "true")
		if cmd == "inspect" {
			r = nixrescue(t, cmd, img)
		}
		oneLine(t, r, "the fstab mounts /dev/disk/by-id/ata-OTHER_DISK_123-part4 on /data, a partition of another disk, which is not on the target disk (whose by-id names are: none known): pass --disk-alias /dev/disk/by-id/ata-OTHER_DISK_123 if that disk is this one, --mount DEVICE:/data, or mark the entry nofail")
	}
	if fileHash(t, img) != sum {
		t.Errorf("a refused session changed the image")
	}

	img, _ = image(t, imgFstabNames)
	// This disk's by-id name is known to nobody here (an image has no
	// udev names): refused until the user says it is this disk.
	oneLine(t, nixrescue(t, "run", img, "-q", "--", "true"), "the fstab mounts /dev/disk/by-id/ata-THIS_DISK_9-part5 on /srv/by-id, a partition of another disk")
	host := testenv.SnapshotHost(t)
	args := []string{"--disk-alias", "/dev/disk/by-id/ata-THIS_DISK_9"}
	rep, r := inspectReport(t, append([]string{img}, args...)...)
	if r.code != 0 {
		t.Fatalf("inspect: exit %d %s", r.code, r.stderr)
	}
	plan := map[string]rtarget.Entry{}
	for _, e := range rep.Plan {
		plan[e.Mountpoint] = e
	}
	if e := plan["/data"]; e.Action != rtarget.ActionSkip || e.Reason != "not on the target disk: a partition of disk by-id/ata-OTHER_DISK_123 (nofail)" {
		t.Errorf("/data of another disk: %+v", e)
	}
	for _, mp := range []string{"/srv/my data", "/srv/by-id"} {
		if e := plan[mp]; !strings.HasSuffix(e.Device, "p5") {
			t.Errorf("%s: %+v, want partition 5", mp, e)
		}
	}
	r = nixrescue(t, append(append([]string{"run", img, "-q"}, args...), "--mount", "LABEL=my data:/srv/other data", "--",
		"sh", "-c", "grep -E ' /(data|srv)' /proc/mounts | cut -d' ' -f1,2 | sort")...)
	// Mounted by the name the machine knows partition 5 by.
	p5 := "/dev/disk/by-uuid/" + dataPartitions[1].UUID
	if want := p5 + " /srv/by-id\n" + p5 + " /srv/my\\040data\n" + p5 + " /srv/other\\040data\n"; r.code != 0 || r.stdout != want {
		t.Errorf("run: exit %d, mounts:\n%s\nwant:\n%s%s", r.code, r.stdout, want, r.stderr)
	}
	testenv.AssertHostUnchanged(t, host)
}

// attachPart attaches partition n of img by hand, the usual way on a
// kernel that scans no partition tables: a loop device from its offset,
// as long as the partition (losetup -o OFFSET --sizelimit SIZE).
func attachPart(t *testing.T, img string, n int) string {
	t.Helper()
	p := partitionOf(t, img, n)
	out, err := exec.Command("losetup", "--find", "--show", "-o", fmt.Sprint(p.Start), "--sizelimit", fmt.Sprint(p.Size), img).Output()
	if err != nil {
		t.Fatalf("losetup -o: %v", err)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })
	return dev
}

// tableOf reads img's partition table.
func tableOf(t *testing.T, img string) rtarget.Table {
	t.Helper()
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	table, err := rtarget.ReadTable(f, st.Size(), 0)
	if err != nil {
		t.Fatal(err)
	}
	return table
}

// partitionOf reads partition n of img's table.
func partitionOf(t *testing.T, img string, n int) rtarget.Partition {
	t.Helper()
	for _, p := range tableOf(t, img).Partitions {
		if p.Number == n {
			return p
		}
	}
	t.Fatalf("%s has no partition %d", img, n)
	return rtarget.Partition{}
}

// bootSectors reads what boot code would overwrite: the image's first
// MiB (MBR, GPT, the BIOS boot partition) and the first KiB of each
// partition (the boot block ahead of an ext4 superblock, an xfs
// superblock), which no mount writes.
func bootSectors(t *testing.T, img string) []byte {
	t.Helper()
	table := tableOf(t, img)
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := make([]byte, 1<<20)
	if _, err := f.ReadAt(out, 0); err != nil {
		t.Fatal(err)
	}
	for _, p := range table.Partitions {
		b := make([]byte, 1024)
		if _, err := f.ReadAt(b, p.Start); err != nil {
			t.Fatal(err)
		}
		out = append(out, b...)
	}
	return out
}

// TestNoBootCodeOnAFilesystem: a root mounted by hand from a partition of
// an image attached with an offset (losetup -o), and a filesystem image:
// the GRUB disk of the configuration leads to no device, inspect says why
// and what to pass, a rebuild is refused before anything runs, and no
// boot sector changes. Before, inspect said /dev/sdz leads to the loop
// device of the root partition, and the rebuild wrote GRUB's boot code
// over the root's first sector.
func TestNoBootCodeOnAFilesystem(t *testing.T) {
	testenv.Require(t)
	img := realNixImage(t, imgRealNix)
	dir := t.TempDir()
	root := attachPart(t, img, 3)
	mountIn(t, root, dir)
	mountIn(t, attachPart(t, img, 2), filepath.Join(dir, "boot"))
	exec.Command("sync").Run()
	before := bootSectors(t, img)
	grub := testenv.SnapshotTree(t, filepath.Join(dir, "boot/grub"))
	host := testenv.SnapshotHost(t)
	want := fmt.Sprintf("the configuration installs GRUB on /dev/sdz, which here would be %s, a loop device of %s from byte %d for %d bytes (a part of that image, attached by hand), not a whole disk: its boot code would be written over a filesystem; unmount what is mounted from %[1]s and detach it (losetup -d %[1]s), then pass %[2]s as TARGET",
		root, img, partitionOf(t, img, 3).Start, partitionOf(t, img, 3).Size)
	rep, r := inspectReport(t, dir)
	if r.code != 0 || len(rep.DiskAliases) != 0 || !strings.Contains(strings.Join(rep.Warnings, "\n"), want) {
		t.Errorf("inspect: exit %d, disk aliases %+v, warnings %q; want one saying %q", r.code, rep.DiskAliases, rep.Warnings, want)
	}
	oneLine(t, nixrescue(t, "rebuild", dir), want)
	testenv.AssertTreeUnchanged(t, filepath.Join(dir, "boot/grub"), grub)
	exec.Command("sync").Run()
	if !bytes.Equal(bootSectors(t, img), before) {
		t.Errorf("the boot sectors of the image or of its partitions changed")
	}
	testenv.AssertHostUnchanged(t, host)

	// A filesystem image holds no partition table: nothing to put boot
	// code on either.
	bare, _ := image(t, string(fixture.LayoutBare))
	sum := fileHash(t, bare)
	oneLine(t, nixrescue(t, "rebuild", bare), "a loop device of "+bare+", which has no partition table (a filesystem image, or a partition copied whole), not a whole disk")
	if fileHash(t, bare) != sum {
		t.Errorf("the refused rebuild changed the filesystem image")
	}
}

// stateOf is the state inspect reports for partition n.
func stateOf(rep commands.Report, n int) rtarget.FSState {
	for _, p := range rep.Partitions {
		if p.Number == n && p.State != nil {
			return *p.State
		}
	}
	return rtarget.FSState{}
}

// hasWarning tells whether one of warnings says want.
func hasWarning(warnings []string, want string) bool {
	return slices.ContainsFunc(warnings, func(w string) bool { return strings.Contains(w, want) })
}

// TestUncleanShutdownIsLookedAtWithoutAWrite: an ext4 root whose
// journal, and an xfs /nix whose log, wait to be replayed (the machine
// crashed): inspect, generations and run --read-only look at them as
// they were at their last commit, say the journal was not replayed, and
// write nothing (the file only the journal holds is not there); a session
// that writes says it replays them, and then the file is there. Before,
// the looks failed with "read-only file system", and a plain run replayed
// without a word.
func TestUncleanShutdownIsLookedAtWithoutAWrite(t *testing.T) {
	testenv.Require(t)
	for _, c := range []struct {
		name, fs, mp, file, what string
		part                     int
	}{
		{imgUncleanRoot, "ext4", "/", "/unclean-shutdown", "journal", 3},
		{imgUncleanXFS, "xfs", "/nix", "/nix/unclean-shutdown", "log", 3},
	} {
		t.Run(c.fs, func(t *testing.T) {
			img, _ := image(t, c.name)
			sum := fileHash(t, img)
			host := testenv.SnapshotHost(t)
			notReplayed := fmt.Sprintf("(%s, for %s) was not shut down cleanly: its %s is not replayed for this read-only look", c.fs, c.mp, c.what)
			rep, r := inspectReport(t, img)
			if r.code != 0 || !hasWarning(rep.Warnings, notReplayed) || stateOf(rep, c.part).Replay != c.what {
				t.Errorf("inspect: exit %d, warnings %q, state %+v %s", r.code, rep.Warnings, stateOf(rep, c.part), r.stderr)
			}
			if r := nixrescue(t, "generations", img); r.code != 0 || !strings.Contains(r.stderr, notReplayed) {
				t.Errorf("generations: exit %d %s", r.code, r.stderr)
			}
			// Mounted without replay (ext4 shows noload as norecovery);
			// what only the log holds is not there (ext4 wrote the file
			// in place before its shutdown: only its journal's flag is
			// left).
			r = nixrescue(t, "run", img, "--read-only", "--", "sh", "-c", fmt.Sprintf(`awk '$2 == "%s" {print $4}' /proc/mounts; if test -e %s; then echo there; fi`, c.mp, c.file))
			if r.code != 0 || !strings.Contains(r.stdout, "norecovery") || c.fs == "xfs" && strings.Contains(r.stdout, "there") || !strings.Contains(r.stderr, notReplayed) {
				t.Errorf("run --read-only: exit %d, %q, %s", r.code, r.stdout, r.stderr)
			}
			if fileHash(t, img) != sum {
				t.Fatalf("a read-only look changed the image")
			}
			r = nixrescue(t, "run", img, "-q", "--", "cat", c.file)
			if replayed := fmt.Sprintf("(%s, for %s) was not shut down cleanly: its %s is replayed now", c.fs, c.mp, c.what); r.code != 0 || r.stdout != "crashed\n" || !strings.Contains(r.stderr, replayed) {
				t.Errorf("run: exit %d, %q, stderr %s", r.code, r.stdout, r.stderr)
			}
			if rep, r := inspectReport(t, img); r.code != 0 || stateOf(rep, c.part).Replay != "" || hasWarning(rep.Warnings, "not shut down cleanly") {
				t.Errorf("inspect after the replay: exit %d, warnings %q", r.code, rep.Warnings)
			}
			testenv.AssertHostUnchanged(t, host)
		})
	}
}

// TestFilesystemWithErrorsIsCheckedFirst: a root the kernel flagged with
// errors is mounted read-write only after the check NixOS's boot would
// run: inspect says so, a session that writes is refused with --fsck as
// the fix and the image untouched, and --fsck runs this host's e2fsck -p
// first, which clears the flag. Before, it was mounted read-write with no
// word.
func TestFilesystemWithErrorsIsCheckedFirst(t *testing.T) {
	testenv.Require(t)
	img, _ := image(t, imgRootErrors)
	sum := fileHash(t, img)
	host := testenv.SnapshotHost(t)
	const flagged = "(ext4, for /) is flagged with errors: the kernel found 1 error(s) in it, the last on 2026-12-01 12:00 UTC in ext4_lookup"
	rep, r := inspectReport(t, img)
	if r.code != 0 || !hasWarning(rep.Warnings, flagged+"; NixOS's boot would check it first (a session that writes to it needs --fsck)") || stateOf(rep, 3).Check != "e2fsck" {
		t.Errorf("inspect: exit %d, warnings %q %s", r.code, rep.Warnings, r.stderr)
	}
	for _, cmd := range []string{"run", "rebuild", "rollback"} {
		r := nixrescue(t, cmd, img, "--", "true")
		if cmd != "run" {
			r = nixrescue(t, cmd, img)
		}
		oneLine(t, r, flagged+": NixOS's boot would check it before mounting it: pass --fsck to have nixrescue run this host's e2fsck on it first, or --read-only to look at it as it is")
	}
	oneLine(t, nixrescue(t, "run", img, "--fsck", "--read-only", "--", "true"), "--fsck repairs what it can, --read-only writes nothing: choose one")
	if fileHash(t, img) != sum {
		t.Fatalf("a refused session changed the image")
	}
	r = nixrescue(t, "run", img, "-q", "--fsck", "--", "true")
	if r.code != 0 || !strings.Contains(r.stderr, "(ext4, for /) with e2fsck -p: ") {
		t.Errorf("run --fsck: exit %d %s", r.code, r.stderr)
	}
	if rep, r := inspectReport(t, img); r.code != 0 || stateOf(rep, 3).Errors != "" || hasWarning(rep.Warnings, "flagged with errors") {
		t.Errorf("inspect after e2fsck: exit %d, warnings %q", r.code, rep.Warnings)
	}
	testenv.AssertHostUnchanged(t, host)
}

// TestHardwareConfigNamesNoHostFile: nixos-generate-config (its stand-in
// does what the real one does with a loop device) writes a mount's
// source into fileSystems, and for a loop device the file behind it on
// this host, with options = [ "loop" ]: exit 0 and a machine that cannot
// boot. Mounted by nixrescue, the target's filesystems show the names the
// machine knows them by (by-uuid), inside and in the generated
// configuration; mounted by hand from a loop device (a directory target),
// the result is said to be unbootable and --write refuses it.
func TestHardwareConfigNamesNoHostFile(t *testing.T) {
	testenv.Require(t)
	img, fx := image(t, string(fixture.LayoutBIOS))
	host := testenv.SnapshotHost(t)
	r := nixrescue(t, "run", img, "-q", "--", "awk", `$5 == "/" || $5 == "/boot" {print $5, $(NF-1)}`, "/proc/self/mountinfo")
	want := fmt.Sprintf("/ /dev/disk/by-uuid/%s\n/boot /dev/disk/by-uuid/%s\n", fx.Partitions[3].UUID, fx.Partitions[2].UUID)
	if r.code != 0 || r.stdout != want {
		t.Errorf("mount sources inside: exit %d\n%s\nwant\n%s%s", r.code, r.stdout, want, r.stderr)
	}
	r = nixrescue(t, "hardware-config", img, "--json")
	var rep commands.HardwareReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil || r.code != 0 || strings.Contains(rep.Generated, "loop") || strings.Contains(rep.Generated, img) ||
		!strings.Contains(rep.Generated, "/dev/disk/by-uuid/"+fx.Partitions[3].UUID) || len(rep.Unbootable) != 0 {
		t.Errorf("hardware-config of the image: exit %d %v\n%s%s", r.code, err, rep.Generated, r.stderr)
	}
	testenv.AssertHostUnchanged(t, host)

	dev := attach(t, img, true)
	dir := t.TempDir()
	mountIn(t, dev+"p3", dir)
	mountIn(t, dev+"p2", filepath.Join(dir, "boot"))
	before := testenv.SnapshotTree(t, filepath.Join(dir, "etc/nixos"))
	unbootable := fmt.Sprintf(`fileSystems."/" is %s mounted with the loop option: a file of this host (nixos-generate-config saw a loop device as its source), not a device of the machine`, img)
	r = nixrescue(t, "hardware-config", dir)
	if r.code != 0 || !strings.Contains(r.stderr, "warning: the generated configuration would leave a machine that cannot boot: "+unbootable) {
		t.Errorf("hardware-config of a directory on a loop device: exit %d %s", r.code, r.stderr)
	}
	r = nixrescue(t, "hardware-config", dir, "--write")
	oneLine(t, r, "not written: the generated configuration would leave a machine that cannot boot: "+unbootable)
	if !strings.Contains(r.stderr, "not a device of the machine: pass the disk or image itself as TARGET") {
		t.Errorf("the refusal does not say what to do: %s", r.stderr)
	}
	// With --json the report says the refusal and the status too.
	r = nixrescue(t, "hardware-config", dir, "--write", "--json")
	var rep2 commands.HardwareReport
	if r.code != 125 || json.Unmarshal([]byte(r.stdout), &rep2) != nil || rep2.ExitStatus != 125 || rep2.Written ||
		!strings.Contains(rep2.Error, "not written") || !strings.Contains(rep2.Fix, "pass the disk or image itself as TARGET") {
		t.Errorf("hardware-config --write --json, refused: exit %d %+v", r.code, rep2)
	}
	testenv.AssertTreeUnchanged(t, filepath.Join(dir, "etc/nixos"), before)
}

// TestMessagesOfRealLayouts: what a new user met, said as it is. An ESP
// on vfat where this host's kernel has no vfat ("no such device" before):
// a look goes on without it and says what to load; a session that writes
// is refused with it. A root of another architecture ("exec format error"
// and "its output is above" before, with no output). A --root that is a
// link to the mount point (a false "not mounted" before). --root-part on
// a disk with no root (an ungrammatical hint before). A rebuild that
// succeeded (silent before). An image whose name holds an escape
// sequence, in ps (printed raw before). A flake (a word of which, none
// before).
func TestMessagesOfRealLayouts(t *testing.T) {
	testenv.Require(t)
	t.Run("vfat", func(t *testing.T) {
		img, _ := image(t, imgVFATESP)
		if fixture.KernelHasVFAT() {
			if r := nixrescue(t, "run", img, "-q", "--", "true"); r.code != 0 {
				t.Errorf("a kernel with vfat mounts the ESP: exit %d %s", r.code, r.stderr)
			}
			return
		}
		sum := fileHash(t, img)
		rep, r := inspectReport(t, img)
		if r.code != 0 || !hasWarning(rep.Warnings, "/boot (vfat on ") || !hasWarning(rep.Warnings, "is not looked at: this kernel has no vfat driver (load it: modprobe vfat)") {
			t.Errorf("inspect: exit %d, warnings %q %s", r.code, rep.Warnings, r.stderr)
		}
		oneLine(t, nixrescue(t, "run", img, "--", "true"), "cannot be mounted: this kernel has no vfat driver: load it (modprobe vfat) and run nixrescue again, or run it on a host whose kernel has it; --read-only looks at the rest")
		if fileHash(t, img) != sum {
			t.Errorf("the image changed")
		}
	})
	t.Run("architecture", func(t *testing.T) {
		tg := newTarget(t, fixture.Options{})
		if err := os.WriteFile(filepath.Join(tg.root, current(tg), "system"), []byte("aarch64-linux"), 0o444); err != nil {
			t.Fatal(err)
		}
		// A spec runs nothing here: it is written, with a warning.
		specWarning := "this spec's programs run only on aarch64 machines"
		if handler, ok := host.Emulator("aarch64"); ok {
			// This host runs aarch64 programs (binfmt_misc, F flag): the
			// run goes ahead, warned that it is slow.
			specWarning = "its programs run through qemu-user (binfmt_misc's " + handler + ")"
			if r := nixrescue(t, "run", "--root", tg.root, "--", "true"); r.code != 0 || !strings.Contains(r.stderr, specWarning) {
				t.Errorf("an aarch64 system on a host with %s: exit %d\n%s", handler, r.code, r.stderr)
			}
		} else {
			oneLine(t, nixrescue(t, "run", "--root", tg.root, "--", "true"), "the target's system is aarch64-linux and this host is x86_64: its programs cannot run here; register qemu-user for aarch64 with binfmt_misc")
		}
		if r := nixrescue(t, "inspect", "--root", tg.root); r.code != 0 {
			t.Errorf("inspect needs no emulation: exit %d %s", r.code, r.stderr)
		}
		if r := nixrescue(t, "spec", "--root", tg.root, "--", "true"); r.code != 0 || !strings.Contains(r.stdout, `"ociVersion"`) || !strings.Contains(r.stderr, specWarning) {
			t.Errorf("spec of an aarch64 system: exit %d\n%s", r.code, r.stderr)
		}
		// An architecture no handler runs here (hack/install-deps
		// registers qemu-aarch64 alone): refused before anything runs,
		// in one line; inspect says so.
		if err := os.WriteFile(filepath.Join(tg.root, current(tg), "system"), []byte("riscv64-linux"), 0o444); err != nil {
			t.Fatal(err)
		}
		if _, ok := host.Emulator("riscv64"); ok {
			t.Fatal("this host runs riscv64 programs: the refusal cannot be tested here")
		}
		snap := testenv.SnapshotTree(t, tg.root)
		oneLine(t, nixrescue(t, "run", "--root", tg.root, "--", "true"), "the target's system is riscv64-linux and this host is x86_64: its programs cannot run here; register qemu-user for riscv64 with binfmt_misc")
		testenv.AssertTreeUnchanged(t, tg.root, snap)
		r := nixrescue(t, "inspect", "--root", tg.root, "--json")
		var rep commands.Report
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &rep) != nil || rep.Arch != "riscv64" || rep.Runs != "no" || !hasWarning(rep.Warnings, "the target's system is riscv64-linux and this host is x86_64: its programs cannot run here") {
			t.Errorf("inspect of a riscv64 system: exit %d %+v", r.code, rep)
		}
	})
	t.Run("root-link", func(t *testing.T) {
		img, _ := image(t, string(fixture.LayoutBIOS))
		dev := attach(t, img, true)
		dir := t.TempDir()
		mountIn(t, dev+"p3", dir)
		mountIn(t, dev+"p2", filepath.Join(dir, "boot"))
		link := filepath.Join(t.TempDir(), "mnt")
		if err := os.Symlink(dir, link); err != nil {
			t.Fatal(err)
		}
		if r := nixrescue(t, "run", "--root", link, "-q", "--", "true"); r.code != 0 || strings.Contains(r.stderr, "nothing is mounted") {
			t.Errorf("--root LINK: exit %d %s", r.code, r.stderr)
		}
	})
	t.Run("root-part", func(t *testing.T) {
		img, _ := image(t, imgEmpty)
		oneLine(t, nixrescue(t, "inspect", img, "--root-part", "3"), ": no NixOS root found (no /etc/NIXOS or /nix/var/nix/profiles/system) on /dev/loop")
	})
	t.Run("rebuild", func(t *testing.T) {
		img := realNixImage(t, imgRealNix)
		r := nixrescue(t, "rebuild", img, "--no-install-bootloader")
		last := strings.TrimSpace(r.stderr)
		last = last[strings.LastIndex(last, "\n")+1:]
		if want := "nixrescue: generation 3 built and made the default (it was 2); grub-bios configured on /dev/sdz (here /dev/loop"; r.code != 0 || !strings.HasPrefix(last, want) {
			t.Errorf("rebuild: exit %d, last line %q, want %q…", r.code, last, want)
		}
	})
	t.Run("ps", func(t *testing.T) {
		src, _ := image(t, string(fixture.LayoutBIOS))
		img := filepath.Join(filepath.Dir(src), "evil\x1b[2J.img")
		if err := os.Rename(src, img); err != nil {
			t.Fatal(err)
		}
		c, _ := startSession(t, img, "echo ready; exec sleep 60")
		defer func() { c.Process.Signal(syscall.SIGTERM); waitExit(t, c) }()
		out := nixrescue(t, "ps").stdout
		if strings.Contains(out, "\x1b") || !strings.Contains(out, `evil\x1b[2J.img`) {
			t.Errorf("ps prints the image's name raw:\n%q", out)
		}
	})
}

// ephemeralImage is the impermanence layout with a real Nix and GRUB
// and Debian's kernel in its generations: it is rebuilt, then booted.
func ephemeralImage(t *testing.T) string {
	return kernelImage(t, "impermanence-real", fixture.ImageOptions{Layout: fixture.LayoutImpermanence})
}

// TestImpermanence: a machine whose root is a tmpfs made afresh at each
// boot, its store and profiles on /nix and its configuration on /persist
// bound on /etc/nixos (the impermanence module's layout). Before: "no
// NixOS root found"; a root mounted by hand got no bind mounts, and
// rebuild could not find its disk. Now the root is built as its stage 1
// builds it (a tmpfs, /nix, /persist, then the binds), inspected,
// entered, rebuilt and boot-tested like any other; as a directory mounted
// by hand, its binds are made for the session and its disk is the one
// its /nix is on.
func TestImpermanence(t *testing.T) {
	testenv.Require(t)
	img := ephemeralImage(t)
	host := testenv.SnapshotHost(t)
	rep, r := inspectReport(t, img)
	if r.code != 0 || rep.Root == nil || !rep.Root.Ephemeral || rep.Root.Partition.Number != 3 {
		t.Fatalf("inspect: exit %d, root %+v %s", r.code, rep.Root, r.stderr)
	}
	var plan []string
	for _, e := range rep.Plan {
		plan = append(plan, fmt.Sprintf("%s %s %s", e.Mountpoint, e.Type, e.Action))
	}
	if want := "/ tmpfs mount|/nix ext4 mount|/boot ext4 mount|/persist ext4 mount|/etc/nixos bind mount"; strings.Join(plan, "|") != want {
		t.Errorf("plan %q, want %q", strings.Join(plan, "|"), want)
	}
	r = nixrescue(t, "run", img, "-q", "--", "sh", "-c",
		`awk '$2 == "/" || $2 == "/nix" || $2 == "/persist" || $2 == "/etc/nixos" || $2 == "/boot" {print $2, $3}' /proc/mounts | sort; hostname; grep -c grub.device /etc/nixos/configuration.nix`)
	if want := "/ tmpfs\n/boot ext4\n/etc/nixos ext4\n/nix ext4\n/persist ext4\nnixfixture\n1\n"; r.code != 0 || r.stdout != want {
		t.Errorf("run: exit %d\n%s\nwant\n%s%s", r.code, r.stdout, want, r.stderr)
	}
	writeConfiguration(t, img, grubOnSdz)
	if r := nixrescue(t, append([]string{"rebuild", img, "-q"}, rebuildFlags()...)...); r.code != 0 || profileGeneration(t, img) != "system-3-link" {
		t.Fatalf("rebuild: exit %d %s", r.code, r.stderr)
	}
	bt, r := bootTest(t, img)
	if r.code != 0 || !bt.Passed || bt.Booted.Generation != 3 || bt.Reached != "multi-user" {
		t.Errorf("boot-test after the rebuild: exit %d %+v\n%s", r.code, bt, r.stderr)
	}
	testenv.AssertHostUnchanged(t, host)

	// Mounted by hand, as its stage 1 would: tmpfs, /nix, /persist, /boot.
	dev := attach(t, img, true)
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", dir).Run() })
	for _, m := range []struct{ part, mp string }{{"p3", "nix"}, {"p4", "persist"}, {"p2", "boot"}} {
		os.Mkdir(filepath.Join(dir, m.mp), 0o755)
		mountIn(t, dev+m.part, filepath.Join(dir, m.mp))
	}
	host = testenv.SnapshotHost(t)
	r = nixrescue(t, "run", dir, "-q", "--", "sh", "-c", "grep -c grub.device /etc/nixos/configuration.nix")
	if r.code != 0 || r.stdout != "1\n" {
		t.Errorf("run on the directory: exit %d %q %s", r.code, r.stdout, r.stderr)
	}
	// The bind was the session's own (its mount point made as systemd
	// makes it): nothing of /persist shows in the user's tree.
	if _, err := os.Stat(filepath.Join(dir, "etc/nixos/configuration.nix")); err == nil {
		t.Errorf("the session's bind reached the user's tree")
	}
	r = nixrescue(t, "rebuild", dir, "--no-install-bootloader", "--json")
	var rr commands.RunReport
	if err := json.Unmarshal([]byte(r.stdout), &rr); err != nil || r.code != 0 || len(rr.DiskAliases) != 1 || rr.DiskAliases[0].Device != dev {
		t.Errorf("rebuild of the directory: exit %d, disk aliases %+v (want /dev/sdz on %s) %s", r.code, rr.DiskAliases, dev, r.stderr)
	}
	testenv.AssertHostUnchanged(t, host)
}

package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nixrescue/nixrescue/hack/fixture"
	"github.com/nixrescue/nixrescue/hack/testenv"
	"github.com/nixrescue/nixrescue/runtime/commands"
	"github.com/nixrescue/nixrescue/runtime/doctor"
)

// doctorImage is a machine as installed: real Nix, Debian's kernel in each
// generation, GRUB for BIOS installed and its menu and kernels on /boot.
func doctorImage(t *testing.T, name string, o fixture.ImageOptions) string {
	o.Layout = fixture.LayoutBIOS
	return kernelImage(t, name, o)
}

// diagnose runs doctor --json on img (changing nothing: its checksum is
// the same after, and the host is as it was) and reads its report.
func diagnose(t *testing.T, img string, args ...string) (commands.DoctorReport, result) {
	t.Helper()
	before := fileHash(t, img)
	host := testenv.SnapshotHost(t)
	r := nixrescueWithin(t, 15*time.Minute, append([]string{"doctor", img, "--json"}, args...)...)
	testenv.AssertHostUnchanged(t, host)
	if fileHash(t, img) != before {
		t.Errorf("doctor %v changed the image", args)
	}
	var rep commands.DoctorReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("doctor %s: exit %d, no report: %v\n%s%s", img, r.code, err, r.stdout, r.stderr)
	}
	if want := map[bool]int{true: 1, false: 0}[rep.Fatal]; r.code != want {
		t.Errorf("doctor: exit %d with fatal=%v, want %d", r.code, rep.Fatal, want)
	}
	return rep, r
}

// findingOf is the finding with id, failing the test without it.
func findingOf(t *testing.T, rep commands.DoctorReport, id string) doctor.Finding {
	t.Helper()
	i := slices.IndexFunc(rep.Findings, func(f doctor.Finding) bool { return f.ID == id })
	if i < 0 {
		t.Fatalf("doctor does not find %s: %+v", id, rep.Findings)
	}
	return rep.Findings[i]
}

// noneFatal fails the test when doctor finds something fatal.
func noneFatal(t *testing.T, rep commands.DoctorReport, r result) {
	t.Helper()
	if rep.Fatal || r.code != 0 {
		t.Errorf("doctor still finds something fatal (exit %d): %+v", r.code, rep.Findings)
	}
}

// applyFix runs each command line of a finding's fix as printed (its
// comment dropped), and fails the test if one fails.
func applyFix(t *testing.T, f doctor.Finding) {
	t.Helper()
	if len(f.Fix) == 0 {
		t.Fatalf("%s has no fix", f.ID)
	}
	for _, line := range f.Fix {
		if i := strings.Index(line, "    #"); i >= 0 {
			line = line[:i]
		}
		args := strings.Fields(line)
		if len(args) < 2 || args[0] != "nixrescue" {
			t.Fatalf("the fix %q is not a nixrescue command line", line)
		}
		r := imageSession(t, args[1:]...)
		if r.code != 0 {
			t.Fatalf("the fix %q: exit %d\n%s%s", line, r.code, r.stdout, r.stderr)
		}
	}
}

// TestDoctorHealthyMachine: an installed machine, healthy, gets nothing
// fatal, nor a warning, in text or JSON.
func TestDoctorHealthyMachine(t *testing.T) {
	testenv.Require(t)
	img := doctorImage(t, "doctor-healthy", fixture.ImageOptions{})
	rep, r := diagnose(t, img)
	noneFatal(t, rep, r)
	for _, f := range rep.Findings {
		if f.Severity != doctor.Info {
			t.Errorf("a false alarm on a healthy machine: %+v", f)
		}
	}
	if len(rep.Checks) < 10 || rep.Current == nil || rep.Bootloader.Kind != "grub-bios" {
		t.Errorf("the report: %+v", rep)
	}
	text := nixrescue(t, "doctor", img)
	if text.code != 0 || !strings.Contains(text.stdout, "nothing found: fstab, luks, filesystems") {
		t.Errorf("doctor in text: exit %d\n%s%s", text.code, text.stdout, text.stderr)
	}
}

// TestDoctorBootFull: a /boot filled by four generations' kernels has no
// room for the next one's: doctor says so and proposes the prune that
// keeps the most generations; run as printed, it moves the files aside
// (no room even for the installer), deletes generations 1 and 2, and
// removes no file a kept entry names; doctor then finds nothing, and a
// rebuild runs.
func TestDoctorBootFull(t *testing.T) {
	testenv.Require(t)
	img := doctorImage(t, "doctor-boot-full", fixture.ImageOptions{Root: fixture.Options{OldGenerations: 2}})
	rep, _ := diagnose(t, img)
	f := findingOf(t, rep, "boot-full")
	if f.Severity != doctor.Fatal || len(f.Fix) != 1 || f.Fix[0] != "nixrescue prune "+img+" --keep 2" {
		t.Fatalf("boot-full: %+v", f)
	}
	before := fileHash(t, img)
	dry := imageSession(t, "prune", img, "--keep", "2", "--dry-run", "--json")
	if fileHash(t, img) != before {
		t.Error("prune --dry-run changed the image")
	}
	var plan commands.PruneReport
	if dry.code != 0 || json.Unmarshal([]byte(dry.stdout), &plan) != nil || !plan.DryRun || fmt.Sprint(plan.Plan.Delete) != "[1 2]" || len(plan.Plan.Unreferenced) != 4 {
		t.Fatalf("prune --dry-run: exit %d %+v\n%s", dry.code, plan, dry.stderr)
	}
	// The fix as printed, with --json (which changes only the output).
	pr := imageSession(t, append(strings.Fields(strings.TrimPrefix(f.Fix[0], "nixrescue ")), "--json")...)
	var done commands.PruneReport
	if pr.code != 0 || json.Unmarshal([]byte(pr.stdout), &done) != nil || !done.MovedAside || len(done.Removed) != 4 || done.Freed < 20<<20 {
		t.Fatalf("%s --json: exit %d %+v\n%s", f.Fix[0], pr.code, done, pr.stderr)
	}
	rep, r := diagnose(t, img)
	noneFatal(t, rep, r)
	// No file a kept entry names was removed: doctor reads every entry.
	if slices.ContainsFunc(rep.Findings, func(f doctor.Finding) bool { return f.ID == "boot-files-missing" }) {
		t.Errorf("the prune removed a file a kept entry names: %+v", rep.Findings)
	}
	g := generations(t, img)
	if len(g.Generations) != 2 || g.Generations[0].Number != 3 || g.BootDefault.Generation != 4 {
		t.Errorf("after the prune: %+v", g)
	}
	if rb := imageSession(t, append([]string{"rebuild", img}, rebuildFlags()...)...); rb.code != 0 {
		t.Errorf("a rebuild after the prune: exit %d\n%s", rb.code, rb.stderr)
	}
	bootsAfterTheFix(t, img)
}

// TestDoctorFstabNamesAGoneFilesystem: /boot reformatted (a new UUID):
// doctor names the fstab's entry and the filesystem that holds /boot now;
// its fix (hardware-config --write, then a rebuild, both mounting that
// one) writes an fstab that names it, doctor finds nothing, and the
// machine boots.
func TestDoctorFstabNamesAGoneFilesystem(t *testing.T) {
	testenv.Require(t)
	img := doctorImage(t, "doctor-healthy", fixture.ImageOptions{})
	uuid := newUUID(t, img, 2)
	rep, _ := diagnose(t, img)
	f := findingOf(t, rep, "fstab-missing")
	if f.Severity != doctor.Fatal || len(f.Fix) != 2 || !strings.Contains(f.Fix[0], "--mount UUID="+uuid+":/boot --write") {
		t.Fatalf("fstab-missing: %+v", f)
	}
	if slices.ContainsFunc(rep.Findings, func(f doctor.Finding) bool { return f.ID == "boot-menu-missing" }) {
		t.Errorf("a /boot that was not mounted is said to lack its menu: %+v", rep.Findings)
	}
	applyFix(t, f)
	rep, r := diagnose(t, img)
	noneFatal(t, rep, r)
	bootsAfterTheFix(t, img)
}

// bootsAfterTheFix boot-tests a repaired machine to multi-user (on the
// embedded pass: a boot runs no container, once is enough).
func bootsAfterTheFix(t *testing.T, img string) {
	t.Helper()
	if backend == "containerd" {
		return
	}
	bt, r := bootTest(t, img)
	if r.code != 0 || !bt.Passed {
		t.Errorf("boot-test after the fix: exit %d %+v", r.code, bt)
	}
}

// newUUID gives the ext4 of partition n of img a new UUID, as a
// reformat would, and returns it.
func newUUID(t *testing.T, img string, n int) string {
	t.Helper()
	out, err := exec.Command("sfdisk", "-J", img).Output()
	if err != nil {
		t.Fatal(err)
	}
	var table struct {
		PartitionTable struct {
			Partitions []struct{ Start, Size int64 } `json:"partitions"`
		} `json:"partitiontable"`
	}
	if err := json.Unmarshal(out, &table); err != nil || len(table.PartitionTable.Partitions) < n {
		t.Fatalf("sfdisk -J: %v %s", err, out)
	}
	p := table.PartitionTable.Partitions[n-1]
	loop, err := exec.Command("losetup", "--find", "--show", "--offset", fmt.Sprint(p.Start*512), "--sizelimit", fmt.Sprint(p.Size*512), img).Output()
	if err != nil {
		t.Fatal(err)
	}
	dev := strings.TrimSpace(string(loop))
	defer exec.Command("losetup", "-d", dev).Run()
	exec.Command("e2fsck", "-fy", dev).Run()
	if out, err := exec.Command("tune2fs", "-U", "random", dev).CombinedOutput(); err != nil {
		t.Fatalf("tune2fs: %v %s", err, out)
	}
	uuid, err := exec.Command("blkid", "-p", "-s", "UUID", "-o", "value", dev).Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(uuid))
}

// TestDoctorBootloaderAndEntries: the boot code gone (another OS wrote
// its own) is fatal, and says why this host cannot put it back (an image
// without device-mapper; the VM lane installs it); the default entry's
// initrd gone from /boot is fatal, and its fix (a rebuild, which copies
// what is missing) repairs it.
func TestDoctorBootloaderAndEntries(t *testing.T) {
	testenv.Require(t)
	img := doctorImage(t, "doctor-healthy", fixture.ImageOptions{})
	noCode := img + ".no-boot-code"
	if out, err := exec.Command("cp", "--sparse=always", img, noCode).CombinedOutput(); err != nil {
		t.Fatalf("copy: %v %s", err, out)
	}
	defer os.Remove(noCode)
	if f, err := os.OpenFile(noCode, os.O_WRONLY, 0); err != nil {
		t.Fatal(err)
	} else {
		_, err = f.WriteAt([]byte(strings.Repeat("\x90", 440)), 0)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	rep, _ := diagnose(t, noCode)
	f := findingOf(t, rep, "bootcode-missing")
	if f.Severity != doctor.Fatal || !strings.Contains(strings.Join(f.Evidence, "\n"), "its first sector holds another bootloader's code") ||
		f.Fix[0] != "nixrescue rebuild "+noCode {
		t.Errorf("bootcode-missing: %+v", f)
	}
	if !grubOnImages && !strings.Contains(strings.Join(f.Evidence, "\n"), "this host cannot install it: GRUB for BIOS cannot be installed on /dev/sdz") {
		t.Errorf("bootcode-missing does not say this host cannot install it: %+v", f)
	}
	initrd := strings.TrimSpace(nixrescue(t, "run", img, "-q", "--no-activate", "--", "sh", "-c",
		"f=$(sed -n 's|^ *initrd /kernels/||p' /boot/grub/grub.cfg | head -n 1); rm /boot/kernels/$f; echo $f").stdout)
	if initrd == "" {
		t.Fatal("no initrd removed")
	}
	rep, _ = diagnose(t, img)
	f = findingOf(t, rep, "boot-files-missing")
	if f.Severity != doctor.Fatal || !strings.Contains(strings.Join(f.Evidence, "\n"), "/boot/kernels/"+initrd+" is not there") {
		t.Fatalf("boot-files-missing: %+v", f)
	}
	applyFix(t, f)
	rep, r := diagnose(t, img)
	noneFatal(t, rep, r)
	bootsAfterTheFix(t, img)
}

// TestDoctorFilesystemAndSpace: /boot flagged with errors is fatal, and
// its fix (--fsck, this host's e2fsck -p) clears it; a root filled with
// garbage of the store is fatal, and its fix (prune, then
// nix-collect-garbage) frees it without deleting what the systems use.
func TestDoctorFilesystemAndSpace(t *testing.T) {
	testenv.Require(t)
	img := doctorImage(t, "doctor-fs-errors", fixture.ImageOptions{Errors: 2})
	rep, _ := diagnose(t, img)
	f := findingOf(t, rep, "fs-errors")
	if f.Severity != doctor.Fatal || !strings.Contains(f.Summary, "partition 2 (ext4, label boot") || !strings.Contains(f.Fix[0], "--fsck --no-activate -- true") {
		t.Fatalf("fs-errors: %+v", f)
	}
	applyFix(t, f)
	rep, r := diagnose(t, img)
	noneFatal(t, rep, r)
	bootsAfterTheFix(t, img)

	img = doctorImage(t, "doctor-healthy", fixture.ImageOptions{})
	fill := nixrescueWithin(t, 5*time.Minute, "run", img, "-q", "--no-activate", "--", "sh", "-c", `free() { set -- $(stat -f -c "%a %S" /); echo $(( $1 * $2 / 1048576 )); }
i=0; f=$(free)
while [ "$f" -gt 12 ]; do
  i=$((i+1)); s=$((f - 8)); [ $s -gt 40 ] && s=40
  head -c $((s * 1048576)) /dev/zero > /dev/shm/junk$i
  nix-store --add /dev/shm/junk$i > /dev/null
  rm /dev/shm/junk$i; f=$(free)
done`)
	if fill.code != 0 {
		t.Fatalf("fill the store: exit %d %s", fill.code, fill.stderr)
	}
	rep, _ = diagnose(t, img)
	f = findingOf(t, rep, "root-full")
	if f.Severity != doctor.Fatal || len(f.Fix) != 2 || !strings.HasSuffix(f.Fix[1], "--no-activate -- nix-collect-garbage") {
		t.Fatalf("root-full: %+v", f)
	}
	applyFix(t, f)
	rep, r = diagnose(t, img)
	noneFatal(t, rep, r)
	if out := nixrescue(t, "run", img, "-q", "--no-activate", "--", "nix-store", "--verify"); out.code != 0 {
		t.Errorf("the store after the garbage collection: exit %d %s", out.code, out.stderr)
	}
}

// TestDoctorBootTest: the newest generation does not boot (its stage 1
// waits for a root that is on no disk); doctor --boot-test boots it, then
// the older one, which boots, and proposes rolling back to it; run as
// printed, the machine boots again and doctor --boot-test finds nothing.
func TestDoctorBootTest(t *testing.T) {
	testenv.Require(t)
	if backend == "containerd" {
		return // boot tests run no container; the rollback's session is proven on both backends by TestGenerationsAndRollbackWithGRUB
	}
	img := doctorImage(t, "doctor-newest-broken", fixture.ImageOptions{Root: fixture.Options{BrokenNewest: true}})
	rep, _ := diagnose(t, img, "--boot-test", "--until", "stage-2")
	f := findingOf(t, rep, "boot-fails")
	if f.Severity != doctor.Fatal || len(f.Fix) != 1 || f.Fix[0] != "nixrescue rollback "+img+" --generation 1" || len(rep.Boots) != 2 ||
		rep.Boots[0].Generation != 2 || rep.Boots[0].Passed || !rep.Boots[1].Passed {
		t.Fatalf("boot-fails: %+v %+v", f, rep.Boots)
	}
	applyFix(t, f)
	rep, r := diagnose(t, img, "--boot-test", "--until", "stage-2")
	noneFatal(t, rep, r)
	if len(rep.Boots) != 1 || rep.Boots[0].Generation != 1 || !rep.Boots[0].Passed {
		t.Errorf("the boot after the rollback: %+v", rep.Boots)
	}
}

// TestPruneWhoseInstallerFailsPutsBack: on a machine whose installer
// fails (this fixture's GRUB script without a real Nix refuses), prune
// exits with its status and the deleted generation is back.
func TestPruneWhoseInstallerFailsPutsBack(t *testing.T) {
	testenv.Require(t)
	img, _ := image(t, string(fixture.LayoutBIOS))
	r := imageSession(t, "prune", img, "--keep", "1")
	if r.code == 0 || !strings.Contains(r.stderr, "the deleted generations and the files moved aside are back") {
		t.Errorf("prune with a failing installer: exit %d\n%s", r.code, r.stderr)
	}
	if g := generations(t, img); len(g.Generations) != 2 {
		t.Errorf("after the failed prune: %+v", g.Generations)
	}
}

package main

// The rescue console as a new user meets it: options that make no sense
// together, mistakes on the command line, no TARGET, the host's own disk,
// what a session says it did and where its writes went, dry runs, JSON
// that agrees with the exit status, completions.

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/creack/pty"

	"github.com/nixrescue/nixrescue/hack/fixture"
	"github.com/nixrescue/nixrescue/hack/testenv"
	"github.com/nixrescue/nixrescue/runtime/commands"
	"github.com/nixrescue/nixrescue/runtime/nixos"
)

// jsonError reads the error object a failed command prints with --json,
// and checks that it agrees with the exit status and has a fix.
func jsonError(t *testing.T, r result, wantFix string) {
	t.Helper()
	var e struct {
		Error      string `json:"error"`
		Fix        string `json:"fix"`
		ExitStatus int    `json:"exit_status"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &e); err != nil {
		t.Errorf("exit %d: stdout is no JSON error object (%v):\n%s", r.code, err, r.stdout)
		return
	}
	if e.ExitStatus != r.code || e.Error == "" || !strings.Contains(e.Fix, wantFix) || !strings.HasSuffix(e.Error, e.Fix) {
		t.Errorf("exit %d, error object %+v; want the same status, and a fix with %q that ends the error", r.code, e, wantFix)
	}
}

// TestNonsensicalOptionsAreRefusedUpFront: each combination that cannot
// work is refused in one line, before anything opens, the image unchanged.
func TestNonsensicalOptionsAreRefusedUpFront(t *testing.T) {
	testenv.Require(t)
	img, _ := image(t, string(fixture.LayoutBIOS))
	before := fileHash(t, img)
	for _, c := range []struct {
		args []string
		says string
		fix  string
	}{
		{[]string{"rebuild", img, "--read-only"}, "a rebuild writes the target (a new generation, its bootloader), which --read-only forbids", "use --snapshot"},
		{[]string{"rollback", img, "--read-only"}, "a rollback writes the target", "drop --read-only"},
		{[]string{"rollback", img, "--to", "2", "--generation", "1"}, "--to 2 and --generation 1 name two generations to go to", "give one of them"},
		{[]string{"rollback", img, "--system", "/nix/store/x"}, "--system picks the system other commands run", "use --to N (or --generation N) alone"},
		{[]string{"rollback", img, "--to", "-1"}, "--to -1: generations are numbered from 1", "as nixrescue generations lists them"},
		{[]string{"generations", img, "--generation", "9"}, "generations lists every generation", "rollback TARGET --to N"},
		{[]string{"rebuild", img, "--dry-run", "--boot-test"}, "--dry-run builds nothing for --boot-test to boot", "drop one"},
		{[]string{"prune", img, "--keep", "0"}, "--keep 0: prune keeps one generation at the least", "give --keep N with N of 1 or more"},
		{[]string{"prune", img, "--read-only"}, "a prune deletes generations and files of /boot, which --read-only forbids", "use --snapshot"},
		{[]string{"prune", img, "--generation", "1"}, "prune keeps the newest generations: --generation and --system choose none", "use --keep N"},
		{[]string{"doctor", img, "--timeout", "1s", "--boot-test"}, "--timeout 1s: no boot gets anywhere that fast", "give"},
		{[]string{"inspect", img, "--jsn"}, "unknown flag: --jsn", "did you mean --json?"},
		{[]string{"inspect", "-q", img}, "unknown shorthand flag: 'q' in -q", "nixrescue inspect --help lists its flags"},
		{[]string{"inspect", img, "other.img"}, "one TARGET at most, got 2", "name one disk"},
		{[]string{"rollback", img, "extra"}, "one TARGET at most, got 2", "nixrescue rollback [TARGET]"},
		{[]string{"rollback", img, "--", "true"}, "rollback takes no command", "usage: nixrescue rollback"},
		{[]string{"rolback", img}, `unknown command "rolback"`, "did you mean rollback?"},
		{[]string{"ps", "x"}, `nixrescue ps takes no argument, got "x"`, "usage: nixrescue ps"},
	} {
		t.Run(strings.Join(c.args[:1], " ")+" "+strings.Join(c.args[2:], " "), func(t *testing.T) {
			r := nixrescue(t, c.args...)
			oneLine(t, r, c.says)
			if !strings.Contains(r.stderr, c.fix) {
				t.Errorf("the line does not end with the fix %q: %s", c.fix, r.stderr)
			}
			if c.args[0] == "rolback" || c.args[0] == "ps" {
				return
			}
			// --json before the arguments (a "--" may end them).
			r = nixrescue(t, append([]string{c.args[0], "--json"}, c.args[1:]...)...)
			oneLine(t, r, c.says)
			jsonError(t, r, c.fix)
		})
	}
	if fileHash(t, img) != before {
		t.Error("a refused command changed the image")
	}
}

// TestNoTargetIsOneMessage: every command that opens a target says the
// same thing when none is given and /mnt holds no NixOS root.
func TestNoTargetIsOneMessage(t *testing.T) {
	testenv.Require(t)
	if nixos.CheckRoot("/mnt") == nil {
		t.Fatal("/mnt holds a NixOS root on this host: the test needs it not to")
	}
	const says = "no TARGET given, and /mnt (where --root DIR looks by default) holds no NixOS root: name what to repair"
	for _, args := range [][]string{{"inspect"}, {"generations"}, {"rollback"}, {"rebuild"}, {"hardware-config"}, {"boot-test"}, {"run", "--", "true"}, {"enter"}, {"rollback", "--dry-run"}} {
		r := nixrescue(t, args...)
		oneLine(t, r, says)
		if args[0] != "enter" && args[0] != "run" {
			r = nixrescue(t, append(args, "--json")...)
			jsonError(t, r, "or mount the NixOS root on /mnt")
		}
	}
	r := nixrescue(t, "inspect", "--help")
	if !strings.Contains(r.stdout, "nixrescue inspect [TARGET]") {
		t.Errorf("the usage line should show TARGET as optional:\n%s", r.stdout)
	}
}

// TestNotRootSaysTheFix: a session run by another user says, with its fix.
func TestNotRootSaysTheFix(t *testing.T) {
	testenv.Require(t)
	bin, run := asNobody(t)
	for _, args := range [][]string{{"inspect", bin + ".img", "--json"}, {"ps", "--json"}, {"cleanup", "--json"}} {
		r := run(args...)
		oneLine(t, r, "needs root")
		jsonError(t, r, "run nixrescue as root, e.g. with sudo")
	}
}

// TestHostRootDiskIsRefused: the disk holding this host's / is refused as
// such, with no --force to offer and no kernel thread named, forced or
// not. Nothing is written: the refusal comes before the disk is opened.
func TestHostRootDiskIsRefused(t *testing.T) {
	testenv.Require(t)
	disk := hostRootDisk(t)
	for _, args := range [][]string{{"inspect", disk}, {"inspect", disk, "--force"}, {"rebuild", disk, "--force", "--dry-run"}, {"run", disk, "--read-only", "--", "true"}} {
		r := nixrescue(t, args...)
		oneLine(t, r, disk+": holds this host's own root filesystem")
		if strings.Contains(r.stderr, "--force") || strings.Contains(r.stderr, "kworker") || strings.Contains(r.stderr, "mount namespace of pid") {
			t.Errorf("%v: %s", args, r.stderr)
		}
	}
	jsonError(t, nixrescue(t, "inspect", disk, "--json"), "attach that disk or its image to this host")
}

// hostRootDisk is the whole disk of the filesystem on this host's /.
func hostRootDisk(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("findmnt", "-n", "-o", "SOURCE", "/").Output()
	src := strings.TrimSpace(string(out))
	if err != nil || !strings.HasPrefix(src, "/dev/") {
		t.Fatalf("this host's / is not on a disk (%q, %v): the test needs one that is", src, err)
	}
	pk, err := exec.Command("lsblk", "-n", "-d", "-o", "PKNAME", src).Output()
	if name := strings.TrimSpace(string(pk)); err == nil && name != "" {
		return "/dev/" + name
	}
	return src
}

// TestSnapshotSessionsSayWhereTheWritesWent: a rollback on a snapshot says
// that it is done in the snapshot and that the image was not written; one
// kept with --snapshot-out names the file and how to apply it; --json
// says the same as data. The image is unchanged.
func TestSnapshotSessionsSayWhereTheWritesWent(t *testing.T) {
	testenv.Require(t)
	img, _ := image(t, string(fixture.LayoutEFI))
	before := fileHash(t, img)
	r := imageSession(t, "rollback", img, "--snapshot", "-v")
	if !strings.Contains(r.stderr, "nixrescue: session phase attach: ") || !strings.Contains(r.stderr, "nixrescue: session phase teardown: ") {
		t.Errorf("-v does not show the session's phases:\n%s", r.stderr)
	}
	if r.code != 0 || !strings.Contains(r.stderr, "nixrescue: in the snapshot: rolled back: generation 1 is the system profile's and the bootloader's default (it was 2); systemd-boot configured") ||
		!strings.Contains(r.stderr, "nixrescue: nothing was written to "+img+": the changes went to a throwaway snapshot and are discarded") ||
		strings.Contains(r.stderr, "now points at") {
		t.Errorf("rollback --snapshot: exit %d\n%s", r.code, r.stderr)
	}
	kept := filepath.Join(t.TempDir(), "repair.qcow2")
	r = imageSession(t, "rollback", img, "--snapshot-out", kept)
	if r.code != 0 || !strings.Contains(r.stderr, "nothing was written to "+img+": the changes are in "+kept+"; boot that, or apply it with qemu-img commit "+kept) {
		t.Errorf("rollback --snapshot-out: exit %d\n%s", r.code, r.stderr)
	}
	kept2 := filepath.Join(t.TempDir(), "repair2.qcow2")
	r = imageSession(t, "rollback", img, "--snapshot-out", kept2, "--json")
	var rep commands.RunReport
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &rep) != nil || rep.Snapshot == nil || rep.Snapshot.Kept != kept2 || rep.Snapshot.Discarded ||
		rep.CurrentBefore == nil || rep.CurrentBefore.Generation != 2 || rep.CurrentAfter == nil || rep.CurrentAfter.Generation != 1 || rep.Error != "" {
		t.Errorf("rollback --snapshot-out --json: exit %d %+v\n%s", r.code, rep, r.stderr)
	}
	if strings.Contains(r.stderr, "rolled back") {
		t.Errorf("with --json the summary is the report's:\n%s", r.stderr)
	}
	if fileHash(t, img) != before {
		t.Error("a snapshot session changed the image")
	}
	// A rollback that fails after the session opened: its JSON says the
	// failure and the status nixrescue exits with.
	r = imageSession(t, "rollback", img, "--to", "9", "--json")
	oneLine(t, r, "--to 9 is past the newest generation (2)")
	if json.Unmarshal([]byte(r.stdout), &rep) != nil || rep.ExitStatus != 125 || !strings.Contains(rep.Error, "--to 9 is past the newest") {
		t.Errorf("rollback --to 9 --json: exit %d, report %+v", r.code, rep)
	}
}

// TestRebuildSaysWhatItDid: a rebuild kept in a snapshot file says what it
// built and where the change is; the image is unchanged.
func TestRebuildSaysWhatItDid(t *testing.T) {
	testenv.Require(t)
	img := realNixImage(t, imgRealNix)
	before := fileHash(t, img)
	kept := filepath.Join(t.TempDir(), "rebuilt.qcow2")
	r := imageSession(t, append([]string{"rebuild", img, "--snapshot-out", kept, "-q"}, rebuildFlags()...)...)
	if r.code != 0 || !strings.Contains(r.stderr, "nixrescue: in the snapshot: generation 3 built and made the default (it was 2); grub-bios ") ||
		!strings.Contains(r.stderr, "on /dev/sdz (here /dev/") || !strings.Contains(r.stderr, "the changes are in "+kept) {
		t.Errorf("rebuild --snapshot-out: exit %d\n%s", r.code, r.stderr)
	}
	if fileHash(t, img) != before {
		t.Error("rebuild --snapshot-out changed the image")
	}
}

// TestDryRuns: rebuild and rollback --dry-run say the mount plan, what
// would run, the generation that would boot and the bootloader, as text
// (the same on a terminal) and as JSON, and write nothing.
func TestDryRuns(t *testing.T) {
	testenv.Require(t)
	img := realNixImage(t, imgRealNix)
	before := fileHash(t, img)
	r := imageSession(t, "rollback", img, "--dry-run")
	for _, want := range []string{"dry run: nothing ran, nothing was written to " + img, "mount plan (from the target's fstab):", "  /boot ",
		"now:         generation 2 (/nix/store/", "would run:   /nix/var/nix/profiles/system/bin/switch-to-configuration boot",
		"would boot:  generation 1 (/nix/store/", "bootloader:  grub-bios, would write its configuration on /dev/sdz (here /dev/loop"} {
		if r.code != 0 || !strings.Contains(r.stdout, want) {
			t.Errorf("rollback --dry-run: exit %d, lacks %q:\n%s%s", r.code, want, r.stdout, r.stderr)
		}
	}
	if onTTY := onATerminal(t, "rollback", img, "--dry-run"); !strings.Contains(onTTY, "would boot:  generation 1 (/nix/store/") {
		t.Errorf("rollback --dry-run on a terminal:\n%s", onTTY)
	}
	r = imageSession(t, append([]string{"rebuild", img, "--dry-run", "--json"}, rebuildFlags()...)...)
	var rep commands.DryRunReport
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &rep) != nil || rep.Boots == nil || rep.Boots.Generation != 3 || rep.Current == nil || rep.Current.Generation != 2 ||
		len(rep.Command) < 2 || rep.Command[0] != "nixos-rebuild" || rep.Command[1] != "boot" || !rep.Activates || rep.Bootloader.Kind != "grub-bios" ||
		len(rep.Mounts) != 2 || rep.Builds != "nixos-rebuild builds /etc/nixos/configuration.nix" {
		t.Errorf("rebuild --dry-run --json: exit %d %+v\n%s", r.code, rep, r.stderr)
	}
	r = imageSession(t, "rollback", img, "--dry-run", "--to", "5")
	oneLine(t, r, "--to 5 is past the newest generation (2)")
	if fileHash(t, img) != before {
		t.Error("a dry run changed the image")
	}
}

// onATerminal runs nixrescue with args on a pty, and returns what it
// wrote there.
func onATerminal(t *testing.T, args ...string) string {
	t.Helper()
	cmd := command(context.Background(), args...)
	ptmx, err := pty.Start(cmd)
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx.Close()
	var out strings.Builder
	done := make(chan struct{})
	go func() { io.Copy(&out, ptmx); close(done) }()
	waitExit(t, cmd)
	<-done
	return strings.ReplaceAll(out.String(), "\r\n", "\n")
}

// TestEnterWithoutATerminal: enter whose standard input is no terminal
// says that the shell reads it; on a terminal it does not (TestEnterOnAPty).
func TestEnterWithoutATerminal(t *testing.T) {
	testenv.Require(t)
	tg := newTarget(t, fixture.Options{})
	cmd := command(context.Background(), "enter", "--root", tg.root, "--silent")
	cmd.Stdin = strings.NewReader("echo from-stdin; exit 4\n")
	r := resultOf(t, cmd)
	if r.code != 4 || strings.TrimSpace(r.stdout) != "from-stdin" || !strings.Contains(r.stderr, "nixrescue: standard input is not a terminal: the shell reads its commands from it") {
		t.Errorf("enter with stdin a pipe: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
}

// TestVersionAndCompletions: --version says what version does; the flags
// that take one of a few values complete them, and --to the generations
// of a mounted root.
func TestVersionAndCompletions(t *testing.T) {
	testenv.Require(t)
	a, b := nixrescue(t, "--version"), nixrescue(t, "version")
	if a.code != 0 || a.stdout != b.stdout || !strings.HasPrefix(a.stdout, "nixrescue ") {
		t.Errorf("--version %q and version %q differ", a.stdout, b.stdout)
	}
	tg := newTarget(t, fixture.Options{})
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"boot-test", "x.img", "--until", ""}, []string{"stage-1\t", "root\t", "stage-2\t", "multi-user\t"}},
		{[]string{"rebuild", "--backend", ""}, []string{"auto\t", "embedded\t", "containerd\t"}},
		{[]string{"boot-test", "--firmware", ""}, []string{"bios\t", "efi\t"}},
		{[]string{"rebuild", "--boot-test", "--accel", ""}, []string{"kvm", "tcg\t"}},
		{[]string{"rollback", tg.root, "--to", ""}, []string{"1\t", "2\t"}},
		{[]string{"rollback", "--root", tg.root, "--to", ""}, []string{"1\t", "2\t"}},
	} {
		out, err := exec.Command(binary, append([]string{"__complete"}, c.args...)...).Output()
		var values []string
		sc := bufio.NewScanner(strings.NewReader(string(out)))
		for sc.Scan() {
			values = append(values, sc.Text())
		}
		for _, w := range c.want {
			if err != nil || !strings.Contains(string(out), "\n"+w) && !strings.HasPrefix(string(out), w) {
				t.Errorf("completion of %v: %v, lacks %q: %q", c.args, err, w, values)
			}
		}
	}
}

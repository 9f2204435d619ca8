package main

// What a new user met: one filesystem mounted twice, an unmounted /boot,
// logical partitions, 4K sectors, dropped mount options, ambiguity, a
// killed nixrescue, a closed pipe, messages, an offline host, a
// filesystem the kernel would not mount. Each test failed before the
// behaviour it names was there.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nixrescue/nixrescue/hack/fixture"
	"github.com/nixrescue/nixrescue/hack/testenv"
	"github.com/nixrescue/nixrescue/runtime/commands"
)

// mountIn mounts dev on dir for the test (mount(8), in the test's own
// mount namespace: the host's), unmounted at its end.
func mountIn(t *testing.T, dev, dir string) {
	t.Helper()
	if out, err := exec.Command("mount", dev, dir).CombinedOutput(); err != nil {
		t.Fatalf("mount %s %s: %v %s", dev, dir, err, out)
	}
	t.Cleanup(func() { exec.Command("umount", dir).Run() })
}

// inspectReport runs inspect --json and decodes it.
func inspectReport(t *testing.T, args ...string) (commands.Report, result) {
	t.Helper()
	r := nixrescue(t, append([]string{"inspect", "--json"}, args...)...)
	var rep commands.Report
	if r.code == 0 {
		if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
			t.Fatalf("inspect --json: %v\n%s", err, r.stdout)
		}
	}
	return rep, r
}

// TestOneFilesystemNeverHasTwoWriters: while a session runs on an image,
// the same image under every other name (a second loop device on it, one
// of that device's partitions, a hard link, a symbolic link) is refused
// with the first session's name, and nothing of what the refused session
// would have written is there; a mount of the image's filesystem in
// another mount namespace (a container's, a service's) refuses a session
// too. Before, the second loop device's session mounted the same ext4
// read-write a second time, and one session's writes were lost.
func TestOneFilesystemNeverHasTwoWriters(t *testing.T) {
	testenv.Require(t)
	img, _ := image(t, string(fixture.LayoutBIOS))
	dev := attach(t, img, true)
	links := t.TempDir()
	hard, sym := filepath.Join(links, "hard.img"), filepath.Join(links, "sym.img")
	if err := os.Link(img, hard); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(img, sym); err != nil {
		t.Fatal(err)
	}
	host := testenv.SnapshotHost(t)
	first, _ := startSession(t, img, "echo ready; exec sleep 60")
	want := fmt.Sprintf("in use by nixrescue (pid %d, session nixrescue-", first.Process.Pid)
	for _, other := range []string{dev, dev + "p3", hard, sym} {
		r := nixrescue(t, "run", other, "-q", "--", "sh", "-c", "echo lost > /second-writer")
		oneLine(t, r, want)
		if !strings.Contains(r.stderr, "on "+img+")") {
			t.Errorf("%s: the message does not name what the first session opened (%s): %s", other, img, r.stderr)
		}
	}
	first.Process.Signal(syscall.SIGTERM)
	waitExit(t, first)
	if r := nixrescue(t, "run", img, "-q", "--read-only", "--", "test", "!", "-e", "/second-writer"); r.code != 0 {
		t.Errorf("a refused session wrote to the image: exit %d %s", r.code, r.stderr)
	}
	testenv.AssertHostUnchanged(t, host)

	// The filesystem mounted by another program, in a mount namespace of
	// its own: nothing in the host's mount table shows it. btrfs too,
	// whose mounts report a device number of their own.
	mountedElsewhere(t, img, dev+"p3", "")
	btrfs, _ := image(t, string(fixture.LayoutBtrfs))
	mountedElsewhere(t, btrfs, attach(t, btrfs, true)+"p2", "subvol=root")
}

// mountedElsewhere mounts part (of image img) in a mount namespace of its
// own, with options, and checks that a session on img is refused.
func mountedElsewhere(t *testing.T, img, part, options string) {
	t.Helper()
	mnt := t.TempDir()
	if options != "" {
		options = "-o " + options
	}
	other := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c", "mount "+options+" "+part+" "+mnt+" && echo mounted && exec sleep 60")
	var out safeBuffer
	other.Stdout = &out
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { other.Process.Kill(); other.Wait() }()
	waitFor(t, &out, func(s string) bool { return strings.Contains(s, "mounted") })
	r := nixrescue(t, "run", img, "-q", "--", "true")
	oneLine(t, r, fmt.Sprintf("%s (the same data) is mounted read-write at %s in the mount namespace of pid", part, mnt))
}

// TestDirectoryTargetWithBootUnmounted: the classic mistake of the manual
// procedure, the root mounted and /boot forgotten. inspect and run warn,
// rebuild, rollback and hardware-config refuse, each in one line naming
// the partition the fstab expects and the fixes; --mount-missing and
// --boot have the session mount it for itself, and the user's mounts are
// as they were after.
func TestDirectoryTargetWithBootUnmounted(t *testing.T) {
	testenv.Require(t)
	img, _ := image(t, string(fixture.LayoutBIOS))
	dev := attach(t, img, true)
	dir := t.TempDir()
	mountIn(t, dev+"p3", dir)
	host := testenv.SnapshotHost(t)
	want := "but nothing is mounted at " + dir + "/boot"
	rep, r := inspectReport(t, dir)
	if r.code != 0 || !slices.ContainsFunc(rep.Warnings, func(w string) bool { return strings.Contains(w, want) && strings.Contains(w, dev+"p2") }) {
		t.Errorf("inspect: exit %d, warnings %q, stderr %s", r.code, rep.Warnings, r.stderr)
	}
	r = nixrescue(t, "run", dir, "-q", "--", "true")
	if r.code != 0 || !strings.Contains(r.stderr, "warning: ") || !strings.Contains(r.stderr, want) {
		t.Errorf("run: exit %d, stderr %s", r.code, r.stderr)
	}
	for _, cmd := range []string{"rebuild", "rollback", "hardware-config"} {
		r := nixrescue(t, cmd, dir)
		oneLine(t, r, want)
		for _, fix := range []string{dev + "p2", "--boot " + dev + "p2", "--mount-missing", "pass the disk itself as TARGET (" + dev + ")"} {
			if !strings.Contains(r.stderr, fix) {
				t.Errorf("%s: the refusal does not name %q: %s", cmd, fix, r.stderr)
			}
		}
	}
	for _, flags := range [][]string{{"--mount-missing"}, {"--boot", dev + "p2"}} {
		r := nixrescue(t, append(append([]string{"run", dir, "-q"}, flags...), "--", "cat", "/boot/nixrescue-boot-marker")...)
		if r.code != 0 || r.stdout != "the /boot filesystem\n" || r.stderr != "" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", flags, r.code, r.stdout, r.stderr)
		}
	}
	if r := nixrescue(t, "hardware-config", dir, "--mount-missing"); r.code != 0 {
		t.Errorf("hardware-config --mount-missing: exit %d %s", r.code, r.stderr)
	}
	testenv.AssertHostUnchanged(t, host)
}

// withoutDevBlock is the nixrescue command line with args, run where
// /dev/block does not exist (a rescue system with mdev, or no udev): in a
// mount namespace of its own that hides it when this host has one.
func withoutDevBlock(args ...string) *exec.Cmd {
	script := `exec "$@"`
	if _, err := os.Stat("/dev/block"); err == nil {
		script = `mount -t tmpfs none /dev/block && exec "$@"`
	}
	args = append(append([]string{args[0]}, backendArgs()...), args[1:]...)
	return exec.Command("unshare", append([]string{"--mount", "--propagation", "private", "sh", "-c", script, "sh", binary}, args...)...)
}

// TestRebuildADirectoryOnARealMount: the root and /boot of a disk mounted
// by hand, on a host without /dev/block links: the disk behind the
// directory is found through sysfs, the curated /dev holds it, a rebuild
// that would install GRUB through the loop device's partitions is
// refused (NixOS's installer could not find where they start), one that
// leaves the installed GRUB be writes its configuration, and the disk
// boots the new generation. Before, the rebuild was
// refused: "not a mount point of a disk".
func TestRebuildADirectoryOnARealMount(t *testing.T) {
	testenv.Require(t)
	img := realNixImage(t, imgRealNix)
	dev := attach(t, img, true)
	dir := t.TempDir()
	mountIn(t, dev+"p3", dir)
	mountIn(t, dev+"p2", filepath.Join(dir, "boot"))
	host := testenv.SnapshotHost(t)
	// GRUB cannot be installed through the partitions of a loop device
	// (NixOS's installer has no udevadm): refused, with the fix.
	oneLine(t, nixrescue(t, "rebuild", dir), "its partitions are those of a loop device: detach it and pass the image itself as TARGET")
	cmd := withoutDevBlock("rebuild", dir, "--no-install-bootloader")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("rebuild %s: %v\n%s", dir, err, stderr.String())
	}
	if out := stdout.String() + stderr.String(); strings.Contains(out, "installing the GRUB 2 boot loader") {
		t.Errorf("grub-install ran:\n%s", out)
	}
	testenv.AssertHostUnchanged(t, host)
	for _, c := range [][]string{{"umount", filepath.Join(dir, "boot")}, {"umount", dir}, {"partx", "-d", dev}, {"losetup", "-d", dev}} {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v %s", c, err, out)
		}
	}
	if b := boot(t, img, 60*time.Second); b.TimedOut || !strings.Contains(b.Output, "booting generation 3") {
		t.Errorf("after the repair the disk should boot generation 3:\n%s", b.Output)
	}
}

// TestLogicalPartitionsOfAnMBR: an old BIOS install's MBR with its root
// on logical partition 5 and /home on 6 (the fstab naming /dev/sda1 and
// /dev/sda6): listed, probed, attached and mapped by number as the kernel
// numbers them; the extended container shown but not probed. Also as a
// disk whose partitions the kernel knows already (partx).
func TestLogicalPartitionsOfAnMBR(t *testing.T) {
	testenv.Require(t)
	img, _ := image(t, string(fixture.LayoutMBR))
	rep, r := inspectReport(t, img)
	if r.code != 0 {
		t.Fatalf("inspect: exit %d %s", r.code, r.stderr)
	}
	var parts []string
	for _, p := range rep.Partitions {
		parts = append(parts, fmt.Sprintf("%d %s ext=%v dev=%v", p.Number, p.Type, p.Extended, p.Device != ""))
	}
	if want := []string{"1 ext4 ext=false dev=true", "2  ext=true dev=false", "5 ext4 ext=false dev=true", "6 ext4 ext=false dev=true"}; !slices.Equal(parts, want) {
		t.Errorf("partitions %q, want %q", parts, want)
	}
	if rep.Root == nil || rep.Root.Partition.Number != 5 {
		t.Errorf("root %+v, want partition 5", rep.Root)
	}
	const inside = "cat /boot/nixrescue-boot-marker; awk '$2 == \"/\" || $2 == \"/home\" {print $2}' /proc/mounts"
	r = imageSession(t, "run", img, "-q", "--", "sh", "-c", inside)
	if r.code != 0 || r.stdout != "the /boot filesystem\n/\n/home\n" {
		t.Errorf("run: exit %d %q %s", r.code, r.stdout, r.stderr)
	}
	dev := attach(t, img, true)
	r = imageSession(t, "run", dev, "-q", "--", "sh", "-c", inside)
	if r.code != 0 || r.stdout != "the /boot filesystem\n/\n/home\n" {
		t.Errorf("run %s (the kernel's partitions): exit %d %q %s", dev, r.code, r.stdout, r.stderr)
	}
}

// TestFourKSectorImage: a GPT written for 4096-byte sectors, in an image
// file, is read as such (not "corrupt"), and the loop device has 4096-byte
// sectors, as the disk had.
func TestFourKSectorImage(t *testing.T) {
	testenv.Require(t)
	img, _ := image(t, string(fixture.Layout4K))
	rep, r := inspectReport(t, img)
	if r.code != 0 || rep.Table != "gpt" || rep.Root == nil || rep.Root.Partition.Number != 2 {
		t.Fatalf("inspect: exit %d, %+v %s", r.code, rep.Layout, r.stderr)
	}
	host := testenv.SnapshotHost(t)
	c, _ := startSession(t, img, "cat /boot/nixrescue-boot-marker >&2; echo ready; exec sleep 60")
	out, err := exec.Command("losetup", "--noheadings", "--output", "NAME,LOG-SEC", "--associated", img).Output()
	if err != nil || !strings.HasSuffix(strings.TrimSpace(string(out)), " 4096") {
		t.Errorf("the image's loop device: %q %v, want 4096-byte sectors", out, err)
	}
	c.Process.Signal(syscall.SIGTERM)
	waitExit(t, c)
	testenv.AssertHostUnchanged(t, host)
}

// TestFstabOptionsAreMounted: the fstab's options are the ones mounted,
// for / and /nix too (btrfs's compress=zstd and noatime; ext4's noatime
// and commit=60), and options for the boot are dropped with a reason.
// Before, the root and /nix were mounted with none: a rebuild wrote the
// store uncompressed.
func TestFstabOptionsAreMounted(t *testing.T) {
	testenv.Require(t)
	img, _ := image(t, string(fixture.LayoutBtrfs))
	r := imageSession(t, "run", img, "-q", "--", "awk", `$2 == "/" || $2 == "/nix" {print $2, $4}`, "/proc/mounts")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if r.code != 0 || len(lines) != 2 {
		t.Fatalf("btrfs: exit %d %q %s", r.code, r.stdout, r.stderr)
	}
	for _, l := range lines {
		if !strings.Contains(l, "noatime") || !strings.Contains(l, "compress=zstd") {
			t.Errorf("btrfs %s: want noatime and compress=zstd", l)
		}
	}
	img, _ = image(t, imgRootOptions)
	r = imageSession(t, "run", img, "-q", "--", "awk", `$2 == "/" {print $4}`, "/proc/mounts")
	if r.code != 0 || !strings.Contains(r.stdout, "noatime") || !strings.Contains(r.stdout, "commit=60") {
		t.Errorf("ext4 /: exit %d %q %s", r.code, r.stdout, r.stderr)
	}
	rep, r := inspectReport(t, img)
	if r.code != 0 || len(rep.Plan) == 0 {
		t.Fatalf("inspect: exit %d %s", r.code, r.stderr)
	}
	root := rep.Plan[0]
	if !slices.Equal(root.Options, []string{"noatime", "commit=60"}) || len(root.Dropped) != 1 ||
		root.Dropped[0].Option != "x-systemd.device-timeout=10s" || root.Dropped[0].Reason == "" {
		t.Errorf("the root's plan entry: options %q, dropped %+v", root.Options, root.Dropped)
	}
}

// TestAmbiguityIsSaid: a label two filesystems carry stops the session,
// naming both; a GPT without its backup is a warning; a read-only image
// file is not written unless forced.
func TestAmbiguityIsSaid(t *testing.T) {
	testenv.Require(t)
	t.Run("one label on two filesystems", func(t *testing.T) {
		img, _ := image(t, imgDupLabel)
		before := fileHash(t, img)
		r := imageSession(t, "run", img, "-q", "--", "true")
		oneLine(t, r, "the fstab's LABEL=nixos (for /data) names more than one partition, ")
		if !regexp.MustCompile(`/dev/loop\d+p2 and /dev/loop\d+p3: choose one with --mount DEVICE:/data`).MatchString(r.stderr) {
			t.Errorf("the message does not name both and --mount: %s", r.stderr)
		}
		if fileHash(t, img) != before {
			t.Error("the image changed")
		}
	})
	t.Run("GPT without its backup", func(t *testing.T) {
		img, _ := image(t, string(fixture.LayoutBIOS))
		f, err := os.OpenFile(img, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		st, _ := f.Stat()
		_, err = f.WriteAt(make([]byte, 33*512), st.Size()-33*512)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		const want = "the GPT's backup header"
		rep, r := inspectReport(t, img)
		if r.code != 0 || !slices.ContainsFunc(rep.Warnings, func(w string) bool { return strings.Contains(w, want) && strings.Contains(w, "sgdisk -e") }) {
			t.Errorf("inspect: exit %d, warnings %q", r.code, rep.Warnings)
		}
		r = imageSession(t, "run", img, "-q", "--", "true")
		if r.code != 0 || !strings.Contains(r.stderr, "warning: "+want) {
			t.Errorf("run: exit %d, stderr %q", r.code, r.stderr)
		}
	})
	t.Run("a read-only image file", func(t *testing.T) {
		img, _ := image(t, string(fixture.LayoutBIOS))
		if err := os.Chmod(img, 0o444); err != nil {
			t.Fatal(err)
		}
		before := fileHash(t, img)
		r := imageSession(t, "run", img, "-q", "--", "true")
		oneLine(t, r, "the image is read-only (mode 0444): pass --read-only to look at it, --snapshot to change a throwaway copy, or --force to write to it all the same")
		if fileHash(t, img) != before {
			t.Error("a refused session changed the image")
		}
		if r := imageSession(t, "run", img, "-q", "--read-only", "--", "cat", "/boot/nixrescue-boot-marker"); r.code != 0 {
			t.Errorf("--read-only: exit %d %s", r.code, r.stderr)
		}
		if r := imageSession(t, "inspect", img); r.code != 0 {
			t.Errorf("inspect: exit %d %s", r.code, r.stderr)
		}
		r = imageSession(t, "run", img, "-q", "--force", "--", "touch", "/forced")
		if r.code != 0 || !strings.Contains(r.stderr, "because of --force") {
			t.Errorf("--force: exit %d %s", r.code, r.stderr)
		}
	})
}

// gone tells whether process pid has ended (gone, or a zombie nobody has
// reaped yet).
func gone(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	return len(f) > 0 && f[0] == "Z"
}

// TestKilledNixrescueLeavesNothingRunning: nixrescue killed with SIGKILL
// while its command runs, a command that ignores SIGTERM and leaves a
// process in the background: both end at once, whatever started the
// command (the hold, after activation, or the container made around it,
// --no-activate), without waiting for a cleanup; with the embedded
// backend the mounts go with them, and the image's loop device detaches.
// Before, they ran on and kept the filesystems mounted read-write until
// the next session.
func TestKilledNixrescueLeavesNothingRunning(t *testing.T) {
	testenv.Require(t)
	for _, flags := range [][]string{nil, {"--no-activate"}} {
		t.Run(strings.Join(append([]string{"run"}, flags...), " "), func(t *testing.T) {
			img, _ := image(t, string(fixture.LayoutBIOS))
			host := testenv.SnapshotHost(t)
			c, stderr := startSession(t, img, `trap "" TERM; sleep 413 & echo pids=$$,$! >&2; echo ready; wait`, flags...)
			pidsRE := regexp.MustCompile(`pids=(\d+),(\d+)\n`)
			// (stderr may come after stdout's "ready": containerd's FIFOs.)
			waitFor(t, stderr, pidsRE.MatchString)
			m := pidsRE.FindStringSubmatch(stderr.String())
			c.Process.Kill()
			waitExit(t, c)
			var pids []int
			for _, s := range m[1:] {
				pid, _ := strconv.Atoi(s)
				pids = append(pids, pid)
			}
			defer killAll(pids)
			deadline := time.Now().Add(10 * time.Second)
			for !gone(pids[0]) || !gone(pids[1]) {
				if time.Now().After(deadline) {
					t.Fatalf("the container's processes %v still run 10 s after nixrescue was killed", pids)
				}
				time.Sleep(20 * time.Millisecond)
			}
			if backend == "embedded" {
				for {
					out, _ := exec.Command("losetup", "--associated", img).Output()
					if len(bytes.TrimSpace(out)) == 0 {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("the image's loop device is still attached: %s", out)
					}
					time.Sleep(20 * time.Millisecond)
				}
			}
			if r := nixrescue(t, "cleanup"); r.code != 0 {
				t.Errorf("cleanup: exit %d %s", r.code, r.stderr)
			}
			testenv.AssertHostUnchanged(t, host)
		})
	}
}

// TestClosedOutputLeavesNothing: inspect whose reader has gone (inspect
// IMG | head -1) ends quietly, with a shell's status for a broken pipe,
// and tears its session down: no state is left under /run. Before,
// SIGPIPE killed it midway.
func TestClosedOutputLeavesNothing(t *testing.T) {
	testenv.Require(t)
	img, _ := image(t, string(fixture.LayoutBIOS))
	host := testenv.SnapshotHost(t)
	rd, wr, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	rd.Close()
	cmd := command(context.Background(), "inspect", img)
	cmd.Stdout = wr
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err = cmd.Run()
	wr.Close()
	if cmd.ProcessState == nil || cmd.ProcessState.ExitCode() != 141 || stderr.Len() != 0 {
		t.Errorf("inspect into a closed pipe: %v (%v), stderr %q; want exit 141 and nothing said", cmd.ProcessState, err, stderr.String())
	}
	out, err := exec.Command("sh", "-c", binary+" inspect "+img+" | head -1").Output()
	if err != nil || !strings.HasPrefix(string(out), "target:") {
		t.Errorf("inspect | head -1: %q %v", out, err)
	}
	testenv.AssertHostUnchanged(t, host)
}

// TestMessagesAsANewUserReadsThem: each message a new user met, as it
// should read.
func TestMessagesAsANewUserReadsThem(t *testing.T) {
	testenv.Require(t)
	img, _ := image(t, string(fixture.LayoutBIOS))
	oneLine(t, nixrescue(t, "inspect", "/dev/null"), "/dev/null: is a character device, not a disk")
	oneLine(t, imageSession(t, "run", img, "-q", "--mount", "9:/boot", "--", "true"), "--mount 9:/boot: the disk has no partition 9 (it has 1, 2, 3)")
	oneLine(t, imageSession(t, "run", img, "-q", "--root-part", "9", "--", "true"), "--root-part 9: the disk has no partition 9 (it has 1, 2, 3)")
	oneLine(t, imageSession(t, append([]string{"rebuild", img, "-q"}, rebuildFlags()...)...), "has no nixos-rebuild (was it built with system.disableInstallerTools = true?)")

	// spec DIR [-- CMD], as its help says.
	tg := newTarget(t, fixture.Options{})
	for _, tc := range []struct {
		args []string
		want []string
	}{{nil, []string{"/run/nixrescue/nixrescue", "hold", "--listen", "/run/nixrescue/control.sock"}}, {[]string{"--", "echo", "hi"}, []string{"echo", "hi"}}} {
		r := nixrescue(t, append([]string{"spec", tg.root}, tc.args...)...)
		var spec struct {
			Root    struct{ Path string }
			Process struct{ Args []string }
		}
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &spec) != nil || spec.Root.Path != tg.root || !slices.Equal(spec.Process.Args, tc.want) {
			t.Errorf("spec %s %v: exit %d, root %q, args %q, stderr %s", tg.root, tc.args, r.code, spec.Root.Path, spec.Process.Args, r.stderr)
		}
	}

	// -v is --verbose everywhere; --version has no short form and says
	// the version the build was given, as nixrescue version does.
	if r := nixrescue(t, "--version"); r.code != 0 || !strings.HasPrefix(r.stdout, "nixrescue "+testenv.Version("../..")+"\nbuilt by: ") {
		t.Errorf("--version: %q, want the build's (%s)", r.stdout, testenv.Version("../.."))
	}
	if r := nixrescue(t, "-v"); strings.Contains(r.stdout, "built by: ") {
		t.Errorf("-v printed the version: %q", r.stdout)
	}
	if r := imageSession(t, "inspect", "-v", img); r.code != 0 {
		t.Errorf("inspect -v: exit %d %s", r.code, r.stderr)
	}

	// inspect --json that fails: an object on stdout, the line on stderr.
	r := nixrescue(t, "inspect", "--json", "/nonexistent")
	var e struct {
		Error      string `json:"error"`
		ExitStatus int    `json:"exit_status"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &e); err != nil || e.ExitStatus != 125 || !strings.Contains(e.Error, "/nonexistent: no such file") {
		t.Errorf("inspect --json /nonexistent: stdout %q (%v)", r.stdout, err)
	}
	oneLine(t, r, "/nonexistent: no such file")
}

// TestOfflineRescueHost: a rescue host with no /etc/resolv.conf runs
// sessions all the same, with one warning; --dns still names a server.
// Before, every session refused ("name a DNS server with --dns IP").
func TestOfflineRescueHost(t *testing.T) {
	testenv.Require(t)
	tg := newTarget(t, fixture.Options{Resolv: fixture.ResolvFile})
	host := testenv.SnapshotHost(t)
	tree := testenv.SnapshotTree(t, tg.root)
	etc := t.TempDir()
	// This host's /etc without resolv.conf, over /etc, for nixrescue only.
	const script = `mount -t tmpfs none "$ETC" && cp -a /etc/. "$ETC" && rm -f "$ETC/resolv.conf" && mount --bind "$ETC" /etc && exec "$@"`
	offline := func(args ...string) result {
		args = append(append([]string{"run"}, backendArgs()...), args...)
		cmd := exec.Command("unshare", append([]string{"--mount", "--propagation", "private", "sh", "-c", script, "sh", binary}, args...)...)
		cmd.Env = append(os.Environ(), "ETC="+etc)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		if cmd.ProcessState == nil {
			t.Fatalf("%v: %v", args, err)
		}
		return result{code: cmd.ProcessState.ExitCode(), stdout: stdout.String(), stderr: stderr.String()}
	}
	r := offline("--root", tg.root, "-q", "--", "cat", "/etc/resolv.conf")
	if r.code != 0 || !strings.Contains(r.stdout, fixture.TargetNameserver) ||
		strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, "warning: this host has no /etc/resolv.conf") {
		t.Errorf("offline: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	r = offline("--root", tg.root, "-q", "--dns", "192.0.2.53", "--", "cat", "/etc/resolv.conf")
	if r.code != 0 || !strings.Contains(r.stdout, "nameserver 192.0.2.53") || r.stderr != "" {
		t.Errorf("offline with --dns: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	testenv.AssertHostUnchanged(t, host)
	testenv.AssertTreeUnchanged(t, tg.root, tree)
}

// TestProbeFailureIsSaid: a root the kernel would not mount to look at
// (an ext4 with a feature this kernel lacks) is named with the kernel's
// answer, not called "no NixOS root".
func TestProbeFailureIsSaid(t *testing.T) {
	testenv.Require(t)
	img, _ := image(t, imgUnmountable)
	r := imageSession(t, "inspect", img)
	oneLine(t, r, "no NixOS root found, and the kernel would not mount ")
	if !regexp.MustCompile(`/dev/loop\d+p3 \(ext4\): invalid argument`).MatchString(r.stderr) {
		t.Errorf("the message does not name the partition and the kernel's answer: %s", r.stderr)
	}
}

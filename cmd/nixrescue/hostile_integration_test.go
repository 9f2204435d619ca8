package main

// Hostile and broken targets, crashes, concurrency and faults midway: a
// rescue host repairs disks it has no reason to trust, so these tests
// prove that nothing the target holds reaches the host, that nothing is
// left behind whatever happens to a session, and that each failure ends
// with one clear line. They run on every backend (TestMain).

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nixrescue/nixrescue/hack/fixture"
	"github.com/nixrescue/nixrescue/hack/testenv"
)

// hostCanaryDir is a host directory that a hostile image's links name by
// its absolute path: a session must neither write there nor mount there.
const hostCanaryDir = "/var/tmp/nixrescue-hostile-canary"

// buildHostileImages adds the hostile and faulty variants of the BIOS
// layout to the images built once per run.
func buildHostileImages(build func(string, fixture.ImageOptions) *fixture.Image) {
	// /boot is a link out of the root, and /srv a link to a host path
	// with a mount point under it: both are followed inside the target.
	build(imgLinks, fixture.ImageOptions{Layout: fixture.LayoutBIOS,
		ExtraFstab: "/dev/disk/by-label/boot /srv/data ext4 ro 0 2\n",
		Tweak: func(root string) error {
			if err := os.Remove(filepath.Join(root, "boot")); err != nil {
				return err
			}
			if err := os.Symlink("../../../../../../etc", filepath.Join(root, "boot")); err != nil {
				return err
			}
			// The same path exists in the target: the link is not dangling
			// (through a dangling one no mount point is made).
			if err := os.MkdirAll(filepath.Join(root, hostCanaryDir), 0o755); err != nil {
				return err
			}
			return os.Symlink(hostCanaryDir, filepath.Join(root, "srv"))
		}})
	// An fstab of binary junk (the same bytes every run).
	junk := []byte{}
	for i := 0; len(junk) < 4096; i++ {
		s := sha256.Sum256([]byte(fmt.Sprint("junk", i)))
		junk = append(junk, s[:]...)
	}
	build(imgJunkFstab, fixture.ImageOptions{Layout: fixture.LayoutBIOS, Fstab: string(junk)})
	// The third mount of the plan fails: /boot's filesystem is no xfs.
	build(imgHalfway, fixture.ImageOptions{Layout: fixture.LayoutBIOS, ExtraFstab: "/dev/disk/by-label/boot /mnt xfs defaults 0 2\n"})
	// Activation that says it started, then takes its time.
	build(imgSlowActivate, fixture.ImageOptions{Layout: fixture.LayoutBIOS, Tweak: func(root string) error {
		scripts, _ := filepath.Glob(filepath.Join(root, "nix/store/*/activate"))
		if len(scripts) == 0 {
			return fmt.Errorf("no activate script in %s", root)
		}
		for _, s := range scripts {
			if err := os.WriteFile(s, []byte("#!/bin/sh\necho activation-started >&2\nexec sleep 120\n"), 0o555); err != nil {
				return err
			}
		}
		return nil
	}})
}

// hostFiles are host files that no session may change, with the canary
// directory's content.
func hostFiles(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, p := range []string{"/etc/hostname", "/etc/passwd", "/etc/shadow", "/etc/resolv.conf", "/etc/fstab"} {
		if _, err := os.Stat(p); err == nil {
			out[p] = fileHash(t, p)
		}
	}
	if _, err := os.Stat(hostCanaryDir); err == nil {
		for k, v := range testenv.SnapshotTree(t, hostCanaryDir) {
			out[filepath.Join(hostCanaryDir, k)] = v
		}
	}
	return out
}

func assertHostFilesUnchanged(t *testing.T, before map[string]string) {
	t.Helper()
	after := hostFiles(t)
	for k, v := range before {
		if after[k] != v {
			t.Errorf("host file %s changed", k)
		}
	}
	for k := range after {
		if _, ok := before[k]; !ok {
			t.Errorf("host file %s appeared", k)
		}
	}
}

// newMountsOutsideSessions lists the host's mounts that are not in
// before and not under a session's tree (or, with containerd, its task's
// bundle, where the shim binds the root it was given).
func newMountsOutsideSessions(t *testing.T, before testenv.Host) []string {
	t.Helper()
	var out []string
	for _, m := range testenv.SnapshotHost(t).Mounts {
		if slices.Contains(before.Mounts, m) {
			continue
		}
		p := strings.Fields(m)[0]
		if strings.HasPrefix(p, "/run/nixrescue/sessions/") || strings.Contains(p, "/io.containerd.runtime.v2.task/nixrescue/") {
			continue
		}
		out = append(out, m)
	}
	return out
}

// oneLine checks that stderr is one nixrescue line holding want.
func oneLine(t *testing.T, r result, want string) {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
	if r.code != 125 || len(lines) != 1 || !strings.HasPrefix(lines[0], "nixrescue: ") || !strings.Contains(lines[0], want) {
		t.Errorf("exit %d, stderr %q; want 125 and one line with %q", r.code, r.stderr, want)
	}
}

// TestPathAttacksOnADirectoryTarget: links in the target that lead out of
// it, or at host files, are followed inside the target or refused; the
// host's files are never read or written.
func TestPathAttacksOnADirectoryTarget(t *testing.T) {
	testenv.Require(t)
	canary := t.TempDir()
	marker := filepath.Join(canary, "ran-on-the-host")
	hostScript := filepath.Join(canary, "activate")
	if err := os.WriteFile(hostScript, []byte("#!/bin/sh\ntouch "+marker+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(canary, "hostname"), []byte("host-canary-name\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	rel := "../../../../../../../../.."
	cases := []struct {
		name  string
		setup func(tg target)
		args  []string // flags before --
		cmd   string
		// want is the exit code; out, what stdout holds; errLine, the one
		// line of a refusal.
		want    int
		out     string
		errLine string
	}{
		// Resolved inside the target, the link leads nowhere: the
		// system's own hostname, never the host's file.
		{name: "hostname link absolute", setup: func(tg target) { relink(t, tg, "etc/hostname", filepath.Join(canary, "hostname")) },
			args: []string{"--no-activate"}, cmd: "hostname", want: 0, out: "nixfixture\n"},
		{name: "hostname link relative", setup: func(tg target) { relink(t, tg, "etc/hostname", rel+filepath.Join(canary, "hostname")) },
			args: []string{"--no-activate"}, cmd: "hostname", want: 0, out: "nixfixture\n"},
		{name: "hostname is a FIFO", setup: func(tg target) {
			os.Remove(filepath.Join(tg.root, "etc/hostname"))
			if err := unix.Mkfifo(filepath.Join(tg.root, "etc/hostname"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, cmd: "true", want: 125, errLine: "/etc/hostname is a FIFO in the target"},
		{name: "system profile to a host directory", setup: func(tg target) {
			relink(t, tg, "nix/var/nix/profiles/system", canary)
		}, cmd: "true", want: 125, errLine: "which does not exist in the target"},
		{name: "activate to a host script", setup: func(tg target) {
			relink(t, tg, strings.TrimPrefix(current(tg), "/")+"/activate", hostScript)
		}, cmd: "true", want: 125, errLine: "has no activate script"},
		{name: "run is a link to etc", setup: func(tg target) { relink(t, tg, "run", rel+"/etc") },
			cmd: "true", want: 125, errLine: "/run is a link to"},
		{name: "dev is a link to the host's dev", setup: func(tg target) { relink(t, tg, "dev", "/dev") },
			cmd: "true", want: 125, errLine: "/dev is a link to"},
		{name: "tmp is a file", setup: func(tg target) {
			os.RemoveAll(filepath.Join(tg.root, "tmp"))
			os.WriteFile(filepath.Join(tg.root, "tmp"), nil, 0o644)
		}, cmd: "true", want: 125, errLine: "/tmp is not a directory"},
		{name: "dev and run entries are hidden", setup: func(tg target) {
			os.MkdirAll(filepath.Join(tg.root, "dev"), 0o755)
			os.MkdirAll(filepath.Join(tg.root, "run"), 0o755)
			os.Symlink("/etc/shadow", filepath.Join(tg.root, "dev/sda"))
			os.Symlink(canary, filepath.Join(tg.root, "run/current-system"))
			os.WriteFile(filepath.Join(tg.root, "run/planted"), []byte("x"), 0o644)
		}, args: []string{"--no-activate"}, cmd: "ls /dev/sda /run/planted /run/current-system 2>&1 | grep -c 'No such file'",
			want: 0, out: "3\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tg := newTarget(t, fixture.Options{})
			c.setup(tg)
			files := hostFiles(t)
			canaryTree := testenv.SnapshotTree(t, canary)
			deadline := time.AfterFunc(45*time.Second, func() { t.Errorf("no answer in 45 s") })
			r := tg.session(t, append([]string{"-q"}, c.args...), []string{"sh", "-c", c.cmd})
			deadline.Stop()
			switch {
			case c.errLine != "":
				oneLine(t, r, c.errLine)
			case r.code != c.want || r.stdout != c.out:
				t.Errorf("exit %d, stdout %q, want %d %q; stderr %s", r.code, r.stdout, c.want, c.out, r.stderr)
			}
			if _, err := os.Stat(marker); err == nil {
				t.Errorf("the host's script ran")
				os.Remove(marker)
			}
			assertHostFilesUnchanged(t, files)
			testenv.AssertTreeUnchanged(t, canary, canaryTree)
		})
	}
}

// relink replaces the target's path rel with a link to dest.
func relink(t *testing.T, tg target, rel, dest string) {
	t.Helper()
	p := filepath.Join(tg.root, rel)
	if err := os.RemoveAll(p); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(dest, p); err != nil {
		t.Fatal(err)
	}
}

// TestHostDeviceNodeInTheTarget: a block device node the target holds for
// the host's own disk cannot be opened inside (the device cgroup allows
// only the target's disk). Nothing is written: only a read is tried.
func TestHostDeviceNodeInTheTarget(t *testing.T) {
	testenv.Require(t)
	var st unix.Stat_t
	if err := unix.Stat("/", &st); err != nil {
		t.Fatal(err)
	}
	tg := newTarget(t, fixture.Options{})
	node := filepath.Join(tg.root, "root/hostdisk")
	os.MkdirAll(filepath.Dir(node), 0o700)
	if err := unix.Mknod(node, unix.S_IFBLK|0o600, int(st.Dev)); err != nil {
		t.Fatal(err)
	}
	r := tg.session(t, []string{"-q", "--no-activate"}, []string{"sh", "-c", "head -c 1 /root/hostdisk >/dev/null 2>&1 && echo read || echo denied"})
	if r.code != 0 || r.stdout != "denied\n" {
		t.Errorf("the host's disk %d:%d through the target's node: exit %d %q %s", unix.Major(st.Dev), unix.Minor(st.Dev), r.code, r.stdout, r.stderr)
	}
}

// TestHostileLinksInAnImage: a /boot that leads out of the root and a
// /srv that names a host directory are followed inside the target; the
// host's directory gets no mount and no file, and every mount the
// session makes on the host is in its own tree.
func TestHostileLinksInAnImage(t *testing.T) {
	testenv.Require(t)
	if err := os.MkdirAll(hostCanaryDir, 0o755); err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(hostCanaryDir)
	if err := os.WriteFile(filepath.Join(hostCanaryDir, "canary"), []byte("host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	img, _ := image(t, imgLinks)
	files := hostFiles(t)
	host := testenv.SnapshotHost(t)
	// The entry for /srv/data says ro: it stays read-only when the others
	// are made writable (the same filesystem is writable on /etc).
	c := command(context.Background(), "run", img, "--no-activate", "--", "sh", "-c",
		"echo ready; ls /etc/nixrescue-boot-marker "+hostCanaryDir+"/data/nixrescue-boot-marker; "+
			"touch /etc/w && rm /etc/w && echo etc-writable; touch "+hostCanaryDir+"/data/w 2>/dev/null && echo data-writable || echo data-read-only; exec sleep 60")
	var stdout, stderr safeBuffer
	c.Stdout, c.Stderr = &stdout, &stderr
	c.WaitDelay = 2 * time.Second
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, &stdout, func(s string) bool {
		if strings.Contains(stderr.String(), "No such") || strings.Contains(stderr.String(), "nixrescue: ") && !strings.Contains(stderr.String(), "warning") {
			t.Fatalf("the session failed: %s", stderr.String())
		}
		return strings.Contains(s, "data-")
	})
	if outside := newMountsOutsideSessions(t, host); len(outside) > 0 {
		t.Errorf("mounts outside the session's tree while it runs: %v", outside)
	}
	c.Process.Signal(syscall.SIGTERM)
	waitExit(t, c)
	want := "ready\n/etc/nixrescue-boot-marker\n" + hostCanaryDir + "/data/nixrescue-boot-marker\netc-writable\ndata-read-only\n"
	if stdout.String() != want {
		t.Errorf("inside:\n%s\nwant:\n%s\nstderr %s", stdout.String(), want, stderr.String())
	}
	for _, w := range []string{"mount point /boot is a link in the target: mounted on /etc", "created the missing mount point /srv/data"} {
		if !strings.Contains(stderr.String(), w) {
			t.Errorf("no warning %q:\n%s", w, stderr.String())
		}
	}
	testenv.AssertHostUnchanged(t, host)
	assertHostFilesUnchanged(t, files)
}

// TestHostileSizes: huge, looping and junk contents give bounded work and
// clear answers, each within a deadline.
func TestHostileSizes(t *testing.T) {
	testenv.Require(t)
	t.Run("2 GiB hostname", func(t *testing.T) {
		tg := newTarget(t, fixture.Options{})
		p := filepath.Join(tg.root, "etc/hostname")
		os.Remove(p)
		if err := os.WriteFile(p, []byte("bighost\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(p, 2<<30); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		r := tg.session(t, []string{"-q", "--no-activate"}, []string{"hostname"})
		if r.code != 0 || r.stdout != "bighost\n" || time.Since(start) > 30*time.Second {
			t.Errorf("exit %d, %q in %v: %s", r.code, r.stdout, time.Since(start), r.stderr)
		}
	})
	t.Run("junk fstab", func(t *testing.T) {
		img, _ := image(t, imgJunkFstab)
		sum := fileHash(t, img)
		for _, cmd := range [][]string{{"inspect", img}, {"run", img, "-q", "--", "true"}} {
			r := imageSession(t, cmd...)
			oneLine(t, r, "fix the target's fstab")
		}
		if fileHash(t, img) != sum {
			t.Error("the image changed")
		}
	})
	t.Run("10000 generations", func(t *testing.T) {
		tg := newTarget(t, fixture.Options{})
		profiles := filepath.Join(tg.root, "nix/var/nix/profiles")
		for n := 3; n <= 10002; n++ {
			if err := os.Symlink(current(tg), filepath.Join(profiles, fmt.Sprintf("system-%d-link", n))); err != nil {
				t.Fatal(err)
			}
		}
		relink(t, tg, "nix/var/nix/profiles/system", "system-10002-link")
		start := time.Now()
		r := nixrescue(t, "generations", "--root", tg.root, "--json")
		if r.code != 0 || strings.Count(r.stdout, `"number":`) != 10002 || !strings.Contains(r.stdout, `"current": {
    "generation": 10002,`) {
			t.Errorf("generations: exit %d, %d entries, stderr %s", r.code, strings.Count(r.stdout, `"number":`), r.stderr)
		}
		r = tg.session(t, []string{"-q", "--generation", "9999"}, []string{"true"})
		if r.code != 0 || time.Since(start) > 40*time.Second {
			t.Errorf("run --generation 9999: exit %d in %v: %s", r.code, time.Since(start), r.stderr)
		}
	})
	t.Run("profile link loop", func(t *testing.T) {
		tg := newTarget(t, fixture.Options{})
		relink(t, tg, "nix/var/nix/profiles/system", "system-loop")
		relink(t, tg, "nix/var/nix/profiles/system-loop", "system")
		r := tg.session(t, []string{"-q"}, []string{"true"})
		oneLine(t, r, "/nix/var/nix/profiles/system")
		r = nixrescue(t, "generations", "--root", tg.root)
		if r.code != 0 && r.code != 125 || strings.Count(strings.TrimSpace(r.stderr), "\n") > 0 {
			t.Errorf("generations: exit %d, stderr %q", r.code, r.stderr)
		}
	})
}

// crashPoints are where a session is SIGKILLed: held there from outside
// (testenv.Hold, whose held call must name held), or once its stderr says
// marker.
var crashPoints = []struct {
	name   string
	hold   *testenv.Hold
	held   string
	image  string
	flags  []string
	marker string
}{
	{"after attach", &testenv.HoldAttached, "/dev/loop", string(fixture.LayoutBIOS), nil, ""},
	{"after the root is mounted", &testenv.HoldMounted, "/dev/loop", string(fixture.LayoutBIOS), []string{"--fsck"}, ""},
	{"during activation", nil, "", imgSlowActivate, nil, "activation-started"},
	{"during the command", nil, "", string(fixture.LayoutBIOS), nil, "command-started"},
	// A qcow2: its qemu-storage-daemon and FUSE export go too.
	{"qcow2 after attach", &testenv.HoldAttached, "/dev/loop", imgQcow2, nil, ""},
	{"qcow2 during the command", nil, "", imgQcow2, nil, "command-started"},
}

// TestSIGKILLAtEachPhaseThenCleanup: whatever the phase nixrescue is
// killed in, `nixrescue cleanup` leaves the host as it was: mounts, loop
// devices, cgroups, /run (the state directory) and containerd's objects.
func TestSIGKILLAtEachPhaseThenCleanup(t *testing.T) {
	testenv.Require(t)
	for _, p := range crashPoints {
		t.Run(p.name, func(t *testing.T) {
			img, _ := image(t, p.image)
			host := testenv.SnapshotHost(t)
			args := append(append([]string{"run", img}, p.flags...), "--", "sh", "-c", "echo command-started >&2; exec sleep 120")
			c := command(context.Background(), args...)
			var wait func() string
			if p.hold != nil {
				c.Env, wait = p.hold.Install(t)
			}
			var stderr safeBuffer
			c.Stderr = &stderr
			c.WaitDelay = 2 * time.Second
			if err := c.Start(); err != nil {
				t.Fatal(err)
			}
			if wait != nil {
				if held := wait(); !strings.Contains(held, p.held) {
					t.Errorf("held at %s, want a call on %s", held, p.held)
				}
			} else {
				waitFor(t, &stderr, func(s string) bool { return strings.Contains(s, p.marker) })
			}
			c.Process.Kill()
			waitExit(t, c)
			r := nixrescue(t, "cleanup")
			if r.code != 0 {
				t.Errorf("cleanup: exit %d %s %s", r.code, r.stdout, r.stderr)
			}
			testenv.AssertHostUnchanged(t, host)
			if r := nixrescue(t, "inspect", img); r.code != 0 {
				t.Errorf("the image cannot be opened after cleanup: %s", r.stderr)
			}
		})
	}
}

// TestTwoPartitionsOfOneDiskAreOneTarget: a session on one partition holds
// the whole disk; a second on another partition is refused.
func TestTwoPartitionsOfOneDiskAreOneTarget(t *testing.T) {
	testenv.Require(t)
	img, _ := image(t, string(fixture.LayoutBIOS))
	disk := attach(t, img, true)
	host := testenv.SnapshotHost(t)
	first, _ := startSession(t, disk+"p3", "echo ready; exec sleep 60")
	want := fmt.Sprintf("in use by nixrescue (pid %d, ", first.Process.Pid)
	for _, other := range []string{disk + "p2", disk} {
		r := nixrescue(t, "run", other, "-q", "--", "true")
		oneLine(t, r, want)
	}
	first.Process.Signal(syscall.SIGTERM)
	waitExit(t, first)
	testenv.AssertHostUnchanged(t, host)
}

// TestEightSessionsAtOnce: eight images, eight sessions at the same time:
// all work, nothing is left.
func TestEightSessionsAtOnce(t *testing.T) {
	testenv.Require(t)
	var imgs []string
	for i := 0; i < 8; i++ {
		img, _ := image(t, string(fixture.LayoutBIOS))
		imgs = append(imgs, img)
	}
	host := testenv.SnapshotHost(t)
	// Three rounds: a teardown that finds the target still busy (a
	// session's process left in its container's mount namespace) came in
	// one session of a few.
	for round := 1; round <= 3; round++ {
		results := make([]result, len(imgs))
		var wg sync.WaitGroup
		for i, img := range imgs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				results[i] = nixrescue(t, "run", img, "-q", "--", "cat", "/boot/nixrescue-boot-marker")
			}()
		}
		wg.Wait()
		for i, r := range results {
			// Nothing on stderr: with -q a session says nothing unless
			// something went wrong, such as a teardown warning.
			if r.code != 0 || r.stdout != "the /boot filesystem\n" || r.stderr != "" {
				t.Errorf("round %d, session %d: exit %d %q, stderr %q", round, i, r.code, r.stdout, r.stderr)
			}
		}
	}
	testenv.AssertHostUnchanged(t, host)
}

// TestCleanupAllLeavesALiveSessionAlone: cleanup --all while a session
// runs: its container, mounts and loop device stay, and it ends well.
func TestCleanupAllLeavesALiveSessionAlone(t *testing.T) {
	testenv.Require(t)
	img, _ := image(t, string(fixture.LayoutBIOS))
	host := testenv.SnapshotHost(t)
	live, stderr := startSession(t, img, "echo ready; sleep 2; cat /boot/nixrescue-boot-marker >/dev/null")
	r := nixrescue(t, "cleanup", "--all", "--json")
	if r.code != 0 || !strings.Contains(r.stdout, `"live": [`) {
		t.Errorf("cleanup --all: exit %d %s %s", r.code, r.stdout, r.stderr)
	}
	if code := waitExit(t, live); code != 0 {
		t.Errorf("the live session ended with %d after cleanup --all: %s", code, stderr.String())
	}
	testenv.AssertHostUnchanged(t, host)
}

// TestMountFailingHalfwayUnwinds: the third mount of the plan fails; the
// two before it are undone and the image is byte for byte as it was.
func TestMountFailingHalfwayUnwinds(t *testing.T) {
	testenv.Require(t)
	img, _ := image(t, imgHalfway)
	sum := fileHash(t, img)
	r := imageSession(t, "run", img, "-q", "--", "true")
	oneLine(t, r, "mount /mnt")
	if fileHash(t, img) != sum {
		t.Error("the image changed")
	}
}

// TestReadOnlyTargets: a directory on a read-only mount and an image on a
// read-only filesystem are refused with the way out (--read-only), which
// works.
func TestReadOnlyTargets(t *testing.T) {
	testenv.Require(t)
	tg := newTarget(t, fixture.Options{})
	ro := t.TempDir()
	mustRun(t, "mount", "--bind", tg.root, ro)
	defer exec.Command("umount", ro).Run()
	mustRun(t, "mount", "-o", "remount,bind,ro", ro)
	img, _ := image(t, string(fixture.LayoutBIOS))
	rofs := t.TempDir()
	mustRun(t, "mount", "-t", "tmpfs", "-o", "size=600m", "tmpfs", rofs)
	defer exec.Command("umount", rofs).Run()
	mustRun(t, "cp", "--sparse=always", img, rofs)
	mustRun(t, "mount", "-o", "remount,ro", rofs)
	roImg := filepath.Join(rofs, filepath.Base(img))

	host := testenv.SnapshotHost(t)
	oneLine(t, nixrescue(t, "run", "--root", ro, "-q", "--", "true"), "mounted read-only: remount it read-write")
	oneLine(t, nixrescue(t, "run", roImg, "-q", "--", "true"), "pass --read-only")
	for _, args := range [][]string{{"--root", ro}, {roImg}} {
		r := nixrescue(t, append(append([]string{"run"}, args...), "--read-only", "--", "cat", "/etc/hostname")...)
		if r.code != 0 || r.stdout != "nixfixture\n" {
			t.Errorf("%v --read-only: exit %d %q %s", args, r.code, r.stdout, r.stderr)
		}
	}
	testenv.AssertHostUnchanged(t, host)
}

func mustRun(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v %s", name, args, err, out)
	}
}

// TestMemoryLimitKillsTheCommand: a command that eats memory under
// --memory is killed by the kernel; nixrescue says so in one line, passes
// the status (137) on, and tears down.
func TestMemoryLimitKillsTheCommand(t *testing.T) {
	testenv.Require(t)
	tg := newTarget(t, fixture.Options{})
	r := tg.session(t, []string{"-q", "--memory", "48M", "--json"}, []string{"sh", "-c", "tail /dev/zero"})
	if r.code != 137 || !strings.Contains(r.stdout, `"oom_killed": true`) {
		t.Errorf("exit %d, report %s", r.code, r.stdout)
	}
	lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
	if last := lines[len(lines)-1]; !strings.HasPrefix(last, "nixrescue: the command was killed for lack of memory") || !strings.Contains(last, "--memory 48MiB") {
		t.Errorf("stderr %q", r.stderr)
	}
	// Under the limit, nothing is said.
	r = tg.session(t, []string{"-q", "--memory", "48M"}, []string{"sh", "-c", "head -c 1000000 /dev/zero | wc -c"})
	if r.code != 0 || strings.TrimSpace(r.stdout) != "1000000" || r.stderr != "" {
		t.Errorf("under the limit: exit %d %q %q", r.code, r.stdout, r.stderr)
	}
}

// TestRebuildOnAFullFilesystem: the target's root is full when the
// rebuild runs: it fails with Nix's own words and nixrescue's hint, the
// profile stays, and nothing is left.
func TestRebuildOnAFullFilesystem(t *testing.T) {
	testenv.Require(t)
	img := realNixImage(t, imgRealNix)
	writeConfiguration(t, img, "  environment.etc.\"full-disk-test\".text = \"x\";\n")
	// Fill the root (fallocate: fast, and real blocks).
	r := nixrescue(t, "run", img, "-q", "--no-activate", "--", "sh", "-c",
		"fallocate -l $(( $(stat -f -c '%a*%S' /) - 4096 )) /fill 2>/dev/null || dd if=/dev/zero of=/fill bs=1M 2>/dev/null; sync; df -k / | tail -1")
	if r.code != 0 && r.code != 1 {
		t.Fatalf("fill: exit %d %s", r.code, r.stderr)
	}
	profile := profileGeneration(t, img)
	r = imageSession(t, append([]string{"rebuild", img, "-q"}, rebuildFlags()...)...)
	if r.code == 0 || !strings.Contains(r.stderr, "nixrescue: hint: a filesystem of the target is full") {
		t.Errorf("exit %d, stderr:\n%s", r.code, r.stderr)
	}
	if got := profileGeneration(t, img); got != profile {
		t.Errorf("profile %s → %s", profile, got)
	}
}

// TestUnmountAfterTheTargetMovedItsMounts: the target's programs move a
// directory that holds a mount point and leave in its place a link to a
// host directory where the host has a mount of the same name. Teardown
// unmounts what the kernel's mount table says, not the paths recorded at
// mount time, which now lead to the host's mount (with containerd the
// session's mounts are in the host's namespace): the host's mount stays.
func TestUnmountAfterTheTargetMovedItsMounts(t *testing.T) {
	testenv.Require(t)
	victim := "/var/tmp/nixrescue-hostile-victim"
	if err := os.MkdirAll(hostCanaryDir, 0o755); err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(hostCanaryDir)
	if err := os.MkdirAll(victim+"/data", 0o755); err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(victim)
	mustRun(t, "mount", "-t", "tmpfs", "-o", "size=1m", "nixrescue-victim", victim+"/data")
	defer exec.Command("umount", victim+"/data").Run()
	img, _ := image(t, imgLinks)
	files := hostFiles(t)
	r := imageSession(t, "run", img, "--no-activate", "--", "sh", "-c",
		"mv "+hostCanaryDir+" /var/tmp/moved && ln -s "+victim+" "+hostCanaryDir+" && ls /var/tmp/moved/data/nixrescue-boot-marker")
	if r.code != 0 || strings.Contains(r.stderr, "teardown") {
		t.Errorf("exit %d, stdout %q, stderr:\n%s", r.code, r.stdout, r.stderr)
	}
	assertHostFilesUnchanged(t, files)
}

package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/nixrescue/nixrescue/hack/fixture"
	"github.com/nixrescue/nixrescue/hack/testenv"
	"github.com/nixrescue/nixrescue/runtime/dns"
)

// binary is the static nixrescue under test, built once by TestMain.
var binary string

// backends are the container runtimes every integration test runs on:
// the whole suite runs once for each (TestMain). containerd needs a daemon:
// hack/test starts a private one (hack/with-containerd) and names its
// socket in NIXRESCUE_CONTAINERD_ADDRESS.
var backends = []string{"embedded", "containerd"}

// backend is the one the suite runs on now; containerdAddress its socket.
var backend, containerdAddress string

func TestMain(m *testing.M) {
	if !testenv.Enabled() || os.Geteuid() != 0 {
		os.Exit(m.Run()) // the integration tests skip (or fail) themselves
	}
	dir, err := os.MkdirTemp("", "nixrescue-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary, err = testenv.BuildStatic("../..", dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := 0
	for _, backend = range backends {
		if backend == "containerd" {
			if containerdAddress = os.Getenv("NIXRESCUE_CONTAINERD_ADDRESS"); containerdAddress == "" {
				fmt.Fprintln(os.Stderr, "NIXRESCUE_CONTAINERD_ADDRESS is unset: run the tests with hack/with-containerd (hack/test does); the containerd backend is not tested")
				code = 1
				continue
			}
		}
		fmt.Printf("=== the integration tests on the %s backend\n", backend)
		if c := m.Run(); c != 0 {
			code = c
		}
	}
	os.RemoveAll(dir)
	if images.dir != "" {
		os.RemoveAll(images.dir)
	}
	os.Exit(code)
}

// takesBackend are the commands that run containers.
var takesBackend = map[string]bool{"run": true, "enter": true, "rebuild": true, "rollback": true, "hardware-config": true, "cleanup": true}

// backendArgs are the flags that choose the suite's backend.
func backendArgs() []string {
	args := []string{"--backend", backend}
	if backend == "containerd" {
		args = append(args, "--address", containerdAddress)
	}
	return args
}

// command is the nixrescue binary with args, the suite's backend chosen.
func command(ctx context.Context, args ...string) *exec.Cmd {
	if len(args) > 0 && takesBackend[args[0]] {
		args = append(append([]string{args[0]}, backendArgs()...), args[1:]...)
	}
	return exec.CommandContext(ctx, binary, args...)
}

// target is a fixture root for one test.
type target struct {
	root   string
	layout fixture.Layout
}

func newTarget(t *testing.T, o fixture.Options) target {
	t.Helper()
	root := filepath.Join(t.TempDir(), "root")
	l, err := fixture.Build(root, o)
	if err != nil {
		t.Fatal(err)
	}
	return target{root: root, layout: l}
}

// result is how a nixrescue invocation ended.
type result struct {
	code           int
	stdout, stderr string
}

// nixrescue runs the binary with args, with a deadline, stdin from
// /dev/null.
func nixrescue(t *testing.T, args ...string) result {
	t.Helper()
	return nixrescueWithin(t, 60*time.Second, args...)
}

// nixrescueWithin is nixrescue with a deadline of its own (a boot test
// under TCG takes minutes).
func nixrescueWithin(t *testing.T, deadline time.Duration, args ...string) result {
	t.Helper()
	return runWithin(t, deadline, nil, args...)
}

// runWithin runs the binary with args and env added to the environment,
// with a deadline.
func runWithin(t *testing.T, deadline time.Duration, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	cmd := command(ctx, args...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	r := resultOf(t, cmd)
	if ctx.Err() != nil {
		t.Fatalf("nixrescue %v did not finish in time; stderr:\n%s", args, r.stderr)
	}
	return r
}

// resultOf runs cmd and says how it ended.
func resultOf(t *testing.T, cmd *exec.Cmd) result {
	t.Helper()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%v: %v", cmd.Args, err)
	}
	return r
}

// session runs `nixrescue run --root ROOT FLAGS… -- CMD…` and checks
// that the host and the target are left as they were (but for allowed
// target paths).
func (tg target) session(t *testing.T, flags []string, cmd []string, allowed ...string) result {
	t.Helper()
	host := testenv.SnapshotHost(t)
	tree := testenv.SnapshotTree(t, tg.root)
	args := append([]string{"run", "--root", tg.root}, flags...)
	args = append(append(args, "--"), cmd...)
	r := nixrescue(t, args...)
	testenv.AssertHostUnchanged(t, host)
	testenv.AssertTreeUnchanged(t, tg.root, tree, allowed...)
	return r
}

func current(tg target) string { return tg.layout.Systems[len(tg.layout.Systems)-1] }

func TestActivationRunsInsideAndLeavesNothing(t *testing.T) {
	testenv.Require(t)
	tg := newTarget(t, fixture.Options{})
	r := tg.session(t, nil, []string{"sh", "-c",
		"readlink /run/current-system; awk '$2 == \"/run/wrappers\" {print \"wrappers:\" $3}' /proc/mounts; test -d /run/user/0 && echo tmpfiles-ran"})
	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	for _, want := range []string{current(tg), "wrappers:tmpfs", "tmpfiles-ran"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("inside, missing %q:\n%s", want, r.stdout)
		}
	}
	if !strings.Contains(r.stderr, "activating the configuration") {
		t.Errorf("activation's output not shown:\n%s", r.stderr)
	}
	if _, err := os.Lstat("/run/current-system"); err == nil {
		t.Error("the host has /run/current-system after the session")
	}
}

func TestQuietHidesActivation(t *testing.T) {
	testenv.Require(t)
	tg := newTarget(t, fixture.Options{})
	r := tg.session(t, []string{"--quiet"}, []string{"true"})
	if r.code != 0 || r.stderr != "" {
		t.Errorf("exit %d, stderr %q", r.code, r.stderr)
	}
}

func TestNoActivate(t *testing.T) {
	testenv.Require(t)
	tg := newTarget(t, fixture.Options{})
	r := tg.session(t, []string{"--no-activate"}, []string{"sh", "-c", "test -e /run/current-system && echo activated || echo not-activated"})
	if r.code != 0 || strings.TrimSpace(r.stdout) != "not-activated" || strings.Contains(r.stderr, "activating") {
		t.Errorf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
}

func TestGenerationAndSystem(t *testing.T) {
	testenv.Require(t)
	tg := newTarget(t, fixture.Options{})
	for _, flags := range [][]string{{"--generation", "1"}, {"--system", tg.layout.Systems[0]}} {
		// Activating generation 1 points /etc/static at its etc, as
		// NixOS's activation does.
		r := tg.session(t, append(flags, "-q"), []string{"sh", "-c", "readlink /run/current-system; readlink /etc/static"}, "etc/static")
		want := tg.layout.Systems[0] + "\n" + tg.layout.Etcs[0] + "\n"
		if r.code != 0 || r.stdout != want {
			t.Errorf("%v: exit %d, stdout %q, want %q; stderr %s", flags, r.code, r.stdout, want, r.stderr)
		}
	}
}

func TestActivationFailureIsAWarning(t *testing.T) {
	testenv.Require(t)
	tg := newTarget(t, fixture.Options{})
	activate := filepath.Join(tg.root, tg.layout.Systems[0], "activate")
	if err := os.WriteFile(activate, []byte("#!/bin/sh\necho 'activate: something broke' >&2\nexit 3\n"), 0o555); err != nil {
		t.Fatal(err)
	}
	r := tg.session(t, []string{"--generation", "1", "--quiet"}, []string{"echo", "command-ran"})
	if r.code != 0 || !strings.Contains(r.stdout, "command-ran") {
		t.Errorf("exit %d, stdout %q", r.code, r.stdout)
	}
	for _, want := range []string{"something broke", "warning: activation of /nix/var/nix/profiles/system-1-link exited with status 3"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}
}

func TestExitCodes(t *testing.T) {
	testenv.Require(t)
	tg := newTarget(t, fixture.Options{})
	// A script whose interpreter the target lacks: a shell's 127 too.
	if err := os.WriteFile(filepath.Join(tg.root, "root/no-interpreter"), []byte("#!/no/such/interpreter\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		cmd    []string
		code   int
		stderr string
	}{
		{[]string{"true"}, 0, ""},
		{[]string{"/root/no-interpreter"}, 127, "/root/no-interpreter: cannot be run: its interpreter /no/such/interpreter is missing in the target"},
		{[]string{"false"}, 1, ""},
		{[]string{"sh", "-c", "exit 42"}, 42, ""},
		{[]string{"sh", "-c", "kill -TERM $$"}, 128 + 15, ""},
		{[]string{"no-such-command"}, 127, "no-such-command: command not found"},
		{[]string{"/no/such/file"}, 127, "/no/such/file: command not found in the target"},
		{[]string{"/etc/NIXOS"}, 126, "/etc/NIXOS: cannot be run"},
	}
	// After activation the command is started in a running container;
	// with --no-activate it is the container's first process.
	for _, way := range []string{"after activation", "first process"} {
		flags := []string{"-q"}
		if way == "first process" {
			flags = append(flags, "--no-activate")
		}
		for _, c := range cases {
			t.Run(way+"/"+strings.Join(c.cmd, " "), func(t *testing.T) {
				host := testenv.SnapshotHost(t)
				r := tg.session(t, flags, c.cmd)
				if r.code != c.code {
					t.Errorf("exit %d, want %d; stderr %s", r.code, c.code, r.stderr)
				}
				if c.stderr != "" && (!strings.Contains(r.stderr, c.stderr) || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0) {
					t.Errorf("stderr %q, want one line with %q", r.stderr, c.stderr)
				}
				testenv.AssertHostUnchanged(t, host)
			})
		}
	}
}

func TestHostnameIsTheTargets(t *testing.T) {
	testenv.Require(t)
	tg := newTarget(t, fixture.Options{Hostname: "rescued-box"})
	r := tg.session(t, []string{"-q"}, []string{"hostname"})
	if r.code != 0 || strings.TrimSpace(r.stdout) != "rescued-box" {
		t.Errorf("exit %d, hostname %q", r.code, r.stdout)
	}
	if h, _ := os.Hostname(); h == "rescued-box" {
		t.Error("the host's hostname changed")
	}
}

func hostResolv(t *testing.T) string {
	b, err := dns.BuildFromHost(nil)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestDNSForEachResolvShape(t *testing.T) {
	testenv.Require(t)
	want := hostResolv(t)
	for _, shape := range fixture.Shapes {
		t.Run(string(shape), func(t *testing.T) {
			tg := newTarget(t, fixture.Options{Resolv: shape})
			r := tg.session(t, []string{"-q"}, []string{"cat", "/etc/resolv.conf"})
			if r.code != 0 || r.stdout != want {
				t.Errorf("exit %d; inside /etc/resolv.conf is\n%s\nwant\n%s\nstderr: %s", r.code, r.stdout, want, r.stderr)
			}
			r = tg.session(t, []string{"-q", "--dns", "192.0.2.7", "--dns", "192.0.2.8"}, []string{"cat", "/etc/resolv.conf"})
			if r.code != 0 || !strings.Contains(r.stdout, "nameserver 192.0.2.7\nnameserver 192.0.2.8\n") || strings.Contains(r.stdout, fixture.TargetNameserver) {
				t.Errorf("--dns: exit %d, inside:\n%s", r.code, r.stdout)
			}
			if shape == fixture.ResolvMissing {
				if _, err := os.Lstat(filepath.Join(tg.root, "etc/resolv.conf")); err == nil {
					t.Error("the mount point made for the missing resolv.conf is still in the target")
				}
			}
			r = tg.session(t, []string{"-q", "--dns", "none"}, []string{"sh", "-c", "cat /etc/resolv.conf 2>/dev/null || echo absent"})
			if strings.Contains(r.stdout, "written by nixrescue") {
				t.Errorf("--dns none injected:\n%s", r.stdout)
			}
		})
	}
}

func TestDNSLinksThatEscapeStayInside(t *testing.T) {
	testenv.Require(t)
	// A host file the target's link names: it must be neither read nor
	// covered by a mount.
	canaryDir, err := os.MkdirTemp("/var/tmp", "nixrescue-canary-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(canaryDir)
	canary := filepath.Join(canaryDir, "resolv.conf")
	if err := os.WriteFile(canary, []byte("nameserver 203.0.113.66\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	want := hostResolv(t)
	for name, link := range map[string]string{
		"relative": "../../../../../../../../../../tmp/escaped-resolv.conf",
		"absolute": "/tmp/escaped-resolv.conf",
	} {
		t.Run(name+"-into-tmp", func(t *testing.T) {
			tg := newTarget(t, fixture.Options{Resolv: fixture.ResolvMissing})
			os.Symlink(link, filepath.Join(tg.root, "etc/resolv.conf"))
			r := tg.session(t, []string{"-q"}, []string{"cat", "/etc/resolv.conf"})
			if r.code != 0 || r.stdout != want {
				t.Errorf("exit %d; inside:\n%s\nstderr %s", r.code, r.stdout, r.stderr)
			}
		})
	}
	for name, link := range map[string]string{
		"relative": "../../../../../../../../.." + canary,
		"absolute": canary,
	} {
		t.Run(name+"-to-a-host-file", func(t *testing.T) {
			tg := newTarget(t, fixture.Options{Resolv: fixture.ResolvMissing})
			os.Symlink(link, filepath.Join(tg.root, "etc/resolv.conf"))
			r := tg.session(t, []string{"-q"}, []string{"cat", "/etc/resolv.conf"})
			// The link leads, inside the root, into a directory the target
			// does not have: refused, clearly, before anything runs.
			if r.code != 125 || !strings.Contains(r.stderr, "--dns none") || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
				t.Errorf("exit %d, stderr %q", r.code, r.stderr)
			}
			if b, _ := os.ReadFile(canary); string(b) != "nameserver 203.0.113.66\n" {
				t.Errorf("the host's canary changed: %q", b)
			}
		})
	}
}

func TestIsolatePIDsReapsZombies(t *testing.T) {
	testenv.Require(t)
	tg := newTarget(t, fixture.Options{})
	// The subshell's child is orphaned and must be reaped by PID 1.
	r := tg.session(t, []string{"-q", "--isolate-pids"}, []string{"sh", "-c",
		"(sleep 0.2 &); sleep 1; echo pid1=$(cat /proc/1/cmdline | tr '\\0' ' '); ps -o stat,comm | grep -c '^Z' || true"})
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	if !strings.Contains(r.stdout, "pid1=/run/nixrescue/nixrescue hold") {
		t.Errorf("PID 1 is not the helper:\n%s", r.stdout)
	}
	if !strings.HasSuffix(strings.TrimSpace(r.stdout), "\n0") {
		t.Errorf("zombies left:\n%s", r.stdout)
	}
	// And by default the host's PID namespace is shared.
	r = tg.session(t, []string{"-q"}, []string{"sh", "-c", "cat /proc/1/cmdline | tr '\\0' ' '"})
	if strings.Contains(r.stdout, "nixrescue hold") {
		t.Errorf("PID namespace isolated by default: %s", r.stdout)
	}
}

func TestNetworkNone(t *testing.T) {
	testenv.Require(t)
	tg := newTarget(t, fixture.Options{})
	r := tg.session(t, []string{"-q", "--network", "none"}, []string{"sh", "-c", "ls /sys/class/net"})
	if r.code != 0 || strings.TrimSpace(r.stdout) != "lo" {
		t.Errorf("exit %d, interfaces %q", r.code, r.stdout)
	}
}

func TestBadInput(t *testing.T) {
	testenv.Require(t)
	tg := newTarget(t, fixture.Options{})
	dangling := newTarget(t, fixture.Options{})
	if err := os.RemoveAll(filepath.Join(dangling.root, current(dangling))); err != nil {
		t.Fatal(err)
	}
	notDir := filepath.Join(t.TempDir(), "file")
	os.WriteFile(notDir, nil, 0o644)
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"root missing", []string{"run", "--root", "/nonexistent/mnt", "--", "true"}, "no such directory"},
		{"root not a directory", []string{"run", "--root", notDir, "--", "true"}, "not a directory"},
		{"not NixOS", []string{"run", "--root", t.TempDir(), "--", "true"}, "not a NixOS root"},
		{"dangling profile", []string{"run", "--root", dangling.root, "--", "true"}, "--generation N or --system PATH"},
		{"no such generation", []string{"run", "--root", tg.root, "--generation", "9", "--", "true"}, "generation 9 does not exist"},
		{"no command", []string{"run", "--root", tg.root}, "run needs a command"},
		{"bad --efi", []string{"run", "--root", tg.root, "--efi", "maybe", "--", "true"}, "use auto, on or off"},
		{"bad --network", []string{"run", "--root", tg.root, "--network", "bridge", "--", "true"}, "use host or none"},
		{"bad --dns", []string{"run", "--root", tg.root, "--dns", "dns.google", "--", "true"}, "not an IP address"},
		{"unknown flag", []string{"run", "--root", tg.root, "--frobnicate", "--", "true"}, "unknown flag"},
		{"--memory too small", []string{"run", "--root", tg.root, "--memory", "1k", "--", "true"}, "give a size of at least 16M"},
		{"--memory not a size", []string{"run", "--root", tg.root, "--memory", "lots", "--", "true"}, "such as 512M or 2G"},
		{"rollback with a command", []string{"rollback", "--root", tg.root, "--", "true"}, "rollback takes no command"},
		{"hardware-config with a command", []string{"hardware-config", "--root", tg.root, "--", "true"}, "hardware-config takes no command"},
	}
	if _, err := os.Stat("/sys/firmware/efi"); err != nil {
		cases = append(cases, struct {
			name string
			args []string
			want string
		}{"--efi on without EFI", []string{"run", "--root", tg.root, "--efi", "on", "--", "true"}, "did not boot by EFI"})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			host := testenv.SnapshotHost(t)
			tree := testenv.SnapshotTree(t, tg.root)
			r := nixrescue(t, c.args...)
			if r.code != 125 {
				t.Errorf("exit %d, want 125", r.code)
			}
			lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
			if len(lines) != 1 || !strings.HasPrefix(lines[0], "nixrescue: ") || !strings.Contains(lines[0], c.want) {
				t.Errorf("stderr %q, want one line with %q", r.stderr, c.want)
			}
			testenv.AssertHostUnchanged(t, host)
			testenv.AssertTreeUnchanged(t, tg.root, tree)
		})
	}
}

// startSession starts `nixrescue run TARGET -q -- sh -c CMD`, where CMD
// prints "ready" once it runs, and waits for that.
func startSession(t *testing.T, targetArg string, cmd string, flags ...string) (*exec.Cmd, *safeBuffer) {
	t.Helper()
	args := append(append([]string{"run", targetArg, "-q"}, flags...), "--", "sh", "-c", cmd)
	c := command(context.Background(), args...)
	out, err := c.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr safeBuffer
	c.Stderr = &stderr
	// A command that outlives nixrescue (SIGKILL) keeps stderr open.
	c.WaitDelay = 2 * time.Second
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if sc.Text() == "ready" {
				ready <- true
				io.Copy(io.Discard, out)
				return
			}
		}
		ready <- false
	}()
	select {
	case ok := <-ready:
		if !ok {
			t.Fatalf("the session ended before its command ran: %s", stderr.String())
		}
	case <-time.After(30 * time.Second):
		c.Process.Kill()
		t.Fatalf("the command did not start: %s", stderr.String())
	}
	return c, &stderr
}

func waitExit(t *testing.T, c *exec.Cmd) int {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- c.Wait() }()
	select {
	case <-done:
		return c.ProcessState.ExitCode()
	case <-time.After(30 * time.Second):
		c.Process.Kill()
		t.Fatal("nixrescue did not exit")
		return -1
	}
}

// TestCtrlCTearsDown: SIGINT and SIGTERM reach the command, whose status
// (128+N) is nixrescue's, and the session is torn down.
func TestCtrlCTearsDown(t *testing.T) {
	testenv.Require(t)
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		// The command after activation, and as the container's first
		// process (--no-activate).
		for _, flags := range [][]string{nil, {"--no-activate"}} {
			t.Run(strings.Join(append([]string{sig.String()}, flags...), " "), func(t *testing.T) {
				tg := newTarget(t, fixture.Options{})
				host := testenv.SnapshotHost(t)
				tree := testenv.SnapshotTree(t, tg.root)
				c, stderr := startSession(t, tg.root, "echo ready; exec sleep 60", flags...)
				c.Process.Signal(sig)
				if code := waitExit(t, c); code != 128+int(sig) {
					t.Errorf("exit %d, want %d; stderr %s", code, 128+int(sig), stderr)
				}
				testenv.AssertHostUnchanged(t, host)
				testenv.AssertTreeUnchanged(t, tg.root, tree)
			})
		}
	}
}

// TestCapabilitiesAndLimitsInside: the host's bounding set, effective too;
// no NoNewPrivileges; RLIMIT_NOFILE raised to the host's hard limit;
// efivarfs only when the host booted by EFI.
func TestCapabilitiesAndLimitsInside(t *testing.T) {
	testenv.Require(t)
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	capBnd := ""
	for _, l := range strings.Split(string(status), "\n") {
		if strings.HasPrefix(l, "CapBnd:") {
			capBnd = strings.TrimSpace(strings.TrimPrefix(l, "CapBnd:"))
		}
	}
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	efivarfs := "0"
	if _, err := os.Stat("/sys/firmware/efi"); err == nil {
		efivarfs = "1"
	}
	tg := newTarget(t, fixture.Options{})
	r := tg.session(t, []string{"-q"}, []string{"sh", "-c",
		"grep -E '^(CapBnd|CapEff|NoNewPrivs):' /proc/self/status | tr -d '\\t'; ulimit -n; ulimit -Hn; grep -c ' /sys/firmware/efi/efivars efivarfs ' /proc/mounts || true; " +
			// sysfs is read-only: the host's kernel and devices are not
			// the target's to change, even as root with every capability.
			"grep ' /sys sysfs ' /proc/mounts | cut -d' ' -f4 | cut -d, -f1; ra=/sys/block/loop0/queue/read_ahead_kb; if (cat $ra > $ra) 2>/dev/null; then echo written; fi"})
	// In /proc/PID/status order.
	want := fmt.Sprintf("CapEff:%s\nCapBnd:%s\nNoNewPrivs:0\n%d\n%d\n%s\nro\n", capBnd, capBnd, min(rl.Max, 1<<20), min(rl.Max, 1<<20), efivarfs)
	if r.code != 0 || r.stdout != want {
		t.Errorf("inside:\n%s\nwant:\n%s%s", r.stdout, want, r.stderr)
	}
}

func TestEnterUsesTheTargetsBash(t *testing.T) {
	testenv.Require(t)
	tg := newTarget(t, fixture.Options{})
	sw, err := os.Readlink(filepath.Join(tg.root, current(tg), "sw"))
	if err != nil {
		t.Fatal(err)
	}
	// A bash in the system: a script that says it ran, then is sh.
	bash := "#!" + tg.layout.Busybox + "/bin/sh\necho the-targets-bash >&2\nexec " + tg.layout.Busybox + "/bin/sh \"$@\"\n"
	if err := os.WriteFile(filepath.Join(tg.root, sw, "bin/bash"), []byte(bash), 0o755); err != nil {
		t.Fatal(err)
	}
	r := nixrescue(t, "enter", "--root", tg.root, "--silent", "-c", "echo hi")
	if r.code != 0 || r.stdout != "hi\n" || !strings.Contains(r.stderr, "the-targets-bash") {
		t.Errorf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
}

func TestSIGKILLLeftoversDestroyedAtNextStart(t *testing.T) {
	testenv.Require(t)
	tg := newTarget(t, fixture.Options{Resolv: fixture.ResolvMissing})
	host := testenv.SnapshotHost(t)
	tree := testenv.SnapshotTree(t, tg.root)
	// The command says its PID (the host's: the container shares its PID
	// namespace), so that only it is looked for afterwards; a pattern
	// would match any "sleep 300" of the host (CI's own waits did).
	c, stderr := startSession(t, tg.root, "echo pid=$$ >&2; echo ready; exec sleep 300")
	c.Process.Kill()
	waitExit(t, c)
	m := regexp.MustCompile(`pid=(\d+)`).FindStringSubmatch(stderr.String())
	if m == nil {
		t.Fatalf("the command did not say its PID: %q", stderr.String())
	}
	// The command was in the host's PID namespace: it outlives nixrescue
	// until the next start destroys the stale container.
	r := nixrescue(t, "run", "--root", tg.root, "-q", "--", "true")
	if r.code != 0 {
		t.Fatalf("next session: exit %d: %s", r.code, r.stderr)
	}
	testenv.AssertHostUnchanged(t, host)
	testenv.AssertTreeUnchanged(t, tg.root, tree)
	if cmdline, err := os.ReadFile("/proc/" + m[1] + "/cmdline"); err == nil && strings.HasPrefix(string(cmdline), "sleep\x00300") {
		cg, _ := os.ReadFile("/proc/" + m[1] + "/cgroup")
		t.Errorf("the killed session's command (pid %s) still runs; its cgroups:\n%s", m[1], cg)
	}
}

// TestEnterOnAPty: the shell after activation, and as the container's
// first process (--no-activate), on a pty of the terminal's size that
// follows its resizes.
func TestEnterOnAPty(t *testing.T) {
	testenv.Require(t)
	for _, flags := range [][]string{nil, {"--no-activate"}} {
		t.Run(strings.Join(append([]string{"enter"}, flags...), " "), func(t *testing.T) { enterOnAPty(t, flags) })
	}
}

func enterOnAPty(t *testing.T, flags []string) {
	tg := newTarget(t, fixture.Options{})
	host := testenv.SnapshotHost(t)
	tree := testenv.SnapshotTree(t, tg.root)
	cmd := command(context.Background(), append([]string{"enter", "--root", tg.root, "--silent"}, flags...)...)
	cmd.Env = append(os.Environ(), "TERM=dumb", "PS1=# ")
	ptmx, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 30, Cols: 100})
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx.Close()
	var out safeBuffer
	go io.Copy(&out, ptmx)
	// Wait for the shell, check the pty size made it in, then answer.
	waitFor(t, &out, func(s string) bool { return strings.Contains(s, "#") })
	fmt.Fprintf(ptmx, "stty size; tty; echo pid=$$\n")
	waitFor(t, &out, func(s string) bool { return regexp.MustCompile(`pid=[0-9]+`).MatchString(s) })
	// The window changes: the container's pty follows.
	if err := pty.Setsize(ptmx, &pty.Winsize{Rows: 41, Cols: 121}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	fmt.Fprintf(ptmx, "stty size; exit 3\n")
	code := waitExit(t, cmd)
	if code != 3 {
		t.Errorf("exit %d, want 3; output:\n%s", code, out.String())
	}
	s := out.String()
	if !regexp.MustCompile(`pid=[0-9]+`).MatchString(s) {
		t.Errorf("no pid answer:\n%s", s)
	}
	if !strings.Contains(s, "30 100") || !strings.Contains(s, "/dev/pts/") {
		t.Errorf("not on a pty of the host's size:\n%s", s)
	}
	if !strings.Contains(s, "41 121") {
		t.Errorf("the pty did not follow the window's resize:\n%s", s)
	}
	testenv.AssertHostUnchanged(t, host)
	testenv.AssertTreeUnchanged(t, tg.root, tree)
}

func TestEnterCommandLikeNixosEnter(t *testing.T) {
	testenv.Require(t)
	tg := newTarget(t, fixture.Options{})
	r := nixrescue(t, "enter", "--root", tg.root, "--silent", "-c", "echo $0; exit 7")
	if r.code != 7 || strings.TrimSpace(r.stdout) != "/bin/sh" {
		t.Errorf("-c: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	r = nixrescue(t, "enter", "--root", tg.root, "--silent", "--", "echo", "args")
	if r.code != 0 || strings.TrimSpace(r.stdout) != "args" {
		t.Errorf("-- ARGS: exit %d, stdout %q", r.code, r.stdout)
	}
}

func waitFor(t *testing.T, b *safeBuffer, ok func(string) bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if ok(b.String()) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("timed out; output so far:\n%s", b.String())
}

func TestSpecAndBundleRunByRunc(t *testing.T) {
	testenv.Require(t)
	runc, err := exec.LookPath("runc")
	if err != nil {
		t.Fatal("runc is not installed: run hack/install-deps")
	}
	tg := newTarget(t, fixture.Options{})
	r := nixrescue(t, "spec", "--root", tg.root)
	if r.code != 0 || !strings.Contains(r.stdout, `"ociVersion"`) || !strings.Contains(r.stdout, tg.root) {
		t.Fatalf("spec: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	bundle := filepath.Join(t.TempDir(), "bundle")
	r = nixrescue(t, "spec", "--root", tg.root, "--bundle", bundle, "--", "sh", "-c", "hostname; cat /etc/resolv.conf")
	if r.code != 0 {
		t.Fatalf("spec --bundle: exit %d: %s", r.code, r.stderr)
	}
	host := testenv.SnapshotHost(t)
	tree := testenv.SnapshotTree(t, tg.root)
	stateDir := t.TempDir()
	id := "nixrescue-test-" + strconv.Itoa(os.Getpid())
	run := exec.Command(runc, "--root", stateDir, "run", "--bundle", bundle, id)
	var out, errb bytes.Buffer
	run.Stdout, run.Stderr = &out, &errb
	if err := run.Run(); err != nil {
		t.Fatalf("runc run: %v\n%s", err, errb.String())
	}
	if !strings.Contains(out.String(), "nixfixture\n") || !strings.Contains(out.String(), "written by nixrescue") {
		t.Errorf("runc run output:\n%s", out.String())
	}
	testenv.AssertHostUnchanged(t, host)
	testenv.AssertTreeUnchanged(t, tg.root, tree)
	if err := os.WriteFile(filepath.Join(bundle, "extra"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	r = nixrescue(t, "spec", "--root", tg.root, "--bundle", bundle)
	if r.code != 125 || !strings.Contains(r.stderr, "not empty") {
		t.Errorf("non-empty bundle: exit %d, %s", r.code, r.stderr)
	}
}

func TestCtrlCDuringActivationTearsDown(t *testing.T) {
	testenv.Require(t)
	tg := newTarget(t, fixture.Options{})
	activate := filepath.Join(tg.root, tg.layout.Systems[0], "activate")
	if err := os.WriteFile(activate, []byte("#!/bin/sh\necho activation-started\nexec sleep 60\n"), 0o555); err != nil {
		t.Fatal(err)
	}
	host := testenv.SnapshotHost(t)
	tree := testenv.SnapshotTree(t, tg.root)
	c := command(context.Background(), "run", "--root", tg.root, "--generation", "1", "--", "echo", "command-ran")
	var stdout, stderr safeBuffer
	c.Stdout, c.Stderr = &stdout, &stderr
	c.WaitDelay = 2 * time.Second
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, &stderr, func(s string) bool { return strings.Contains(s, "activation-started") })
	c.Process.Signal(syscall.SIGINT)
	code := waitExit(t, c)
	if code != 130 || strings.Contains(stdout.String(), "command-ran") {
		t.Errorf("exit %d (want 130), stdout %q", code, stdout.String())
	}
	if !strings.Contains(stderr.String(), "interrupted") {
		t.Errorf("stderr does not say it was interrupted:\n%s", stderr.String())
	}
	testenv.AssertHostUnchanged(t, host)
	testenv.AssertTreeUnchanged(t, tg.root, tree)
}

func TestHostDevAndSysInside(t *testing.T) {
	testenv.Require(t)
	// A block device of the host, made for this test: the container must
	// see it and be allowed to read it (grub-install writes the disk it
	// names).
	img := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(img, append([]byte("nixrescue-block-marker"), make([]byte, 1<<20)...), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("losetup", "--find", "--show", img).Output()
	if err != nil {
		t.Fatalf("losetup: %v", err)
	}
	dev := strings.TrimSpace(string(out))
	defer exec.Command("losetup", "-d", dev).Run()
	tg := newTarget(t, fixture.Options{})
	r := tg.session(t, []string{"-q", "--dev", "host"}, []string{"sh", "-c",
		"test -b " + dev + " && head -c 22 " + dev + "; echo; test -c /dev/null && echo null; " +
			"awk '$2 == \"/dev/pts\" || $2 == \"/dev/shm\" || $2 == \"/dev/mqueue\" || $2 == \"/sys\" || $2 == \"/proc\" || $2 == \"/run\" || $2 == \"/tmp\" {print $2, $3}' /proc/mounts | sort -u; " +
			"test -e /sys/firmware && echo sys-unmasked"})
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	want := "nixrescue-block-marker\nnull\n/dev/mqueue mqueue\n/dev/pts devpts\n/dev/shm tmpfs\n/proc proc\n/run tmpfs\n/sys sysfs\n/tmp tmpfs\nsys-unmasked\n"
	if r.stdout != want {
		t.Errorf("inside:\n%s\nwant:\n%s", r.stdout, want)
	}
}

// TestBackgroundProcessesEndWithTheSession: what the command leaves
// running in the background is killed at teardown, whether the command was
// the container's first process (--no-activate) or ran after activation.
func TestBackgroundProcessesEndWithTheSession(t *testing.T) {
	testenv.Require(t)
	for _, flags := range [][]string{{"-q"}, {"-q", "--no-activate"}} {
		t.Run(strings.Join(flags, " "), func(t *testing.T) {
			tg := newTarget(t, fixture.Options{})
			host := testenv.SnapshotHost(t)
			r := tg.session(t, flags, []string{"sh", "-c", "sleep 313 </dev/null >/dev/null 2>&1 & echo started"})
			if r.code != 0 || strings.TrimSpace(r.stdout) != "started" {
				t.Fatalf("exit %d, stdout %q, stderr %s", r.code, r.stdout, r.stderr)
			}
			if pids := containedProcesses("^sleep 313$"); len(pids) > 0 {
				killAll(pids)
				t.Errorf("the command's background process outlived the session: pids %v", pids)
			}
			testenv.AssertHostUnchanged(t, host)
		})
	}
}

// TestHoldSocketIsGoneInside: nothing in the container can reach the
// hold's control socket: inherited with the embedded backend; with
// containerd the one on the container's /run is removed as nixrescue's
// connection is accepted, before any program of the target runs.
func TestHoldSocketIsGoneInside(t *testing.T) {
	testenv.Require(t)
	tg := newTarget(t, fixture.Options{})
	r := tg.session(t, []string{"-q"}, []string{"ls", "-a", "/run/nixrescue"})
	if r.code != 0 || strings.Join(strings.Fields(r.stdout), " ") != ". .. nixrescue" {
		t.Errorf("exit %d, /run/nixrescue holds:\n%s\n%s", r.code, r.stdout, r.stderr)
	}
}

// containedProcesses lists the processes whose command line matches the
// pgrep pattern and whose mount namespace is not the host's: those of a
// container, not a host program that happens to look the same (CI's shell
// runs sleeps of its own). (Their /proc/PID/root reads "/" from here.)
func containedProcesses(pattern string) []int {
	host, _ := os.Readlink("/proc/self/ns/mnt")
	out, _ := exec.Command("pgrep", "-f", pattern).Output()
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			continue
		}
		if ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", pid)); err == nil && ns != host {
			pids = append(pids, pid)
		}
	}
	return pids
}

// killAll kills pids, so that a failing test leaves nothing running.
func killAll(pids []int) {
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/sys/mountinfo"

	"github.com/nixrescue/nixrescue/hack/fixture"
	"github.com/nixrescue/nixrescue/hack/testenv"
)

// onContainerdPass tells whether the suite runs on containerd now; the
// tests of containerd itself run in that pass only.
func onContainerdPass(t *testing.T) bool {
	if backend != "containerd" {
		t.Log("containerd's own tests run in the suite's containerd pass")
		return false
	}
	return true
}

// TestContainerdRunsTheEmbeddedSpec compares the spec containerd holds
// for a live session with the one nixrescue spec prints (the embedded
// backend's), but for what names the session (its cgroup, the paths of
// its own files).
func TestContainerdRunsTheEmbeddedSpec(t *testing.T) {
	testenv.Require(t)
	if !onContainerdPass(t) {
		return
	}
	tg := newTarget(t, fixture.Options{})
	want := nixrescue(t, "spec", "--root", tg.root)
	c, _ := startSession(t, tg.root, "echo ready; exec sleep 60")
	defer func() { c.Process.Signal(syscall.SIGTERM); waitExit(t, c) }()
	ids, err := exec.Command("ctr", "--address", containerdAddress, "-n", "nixrescue", "containers", "ls", "-q").Output()
	if err != nil || len(strings.Fields(string(ids))) != 1 {
		t.Fatalf("containers: %q %v", ids, err)
	}
	info, err := exec.Command("ctr", "--address", containerdAddress, "-n", "nixrescue", "containers", "info", strings.TrimSpace(string(ids))).Output()
	if err != nil {
		t.Fatal(err)
	}
	var ci struct {
		Labels map[string]string `json:"Labels"`
		Spec   json.RawMessage   `json:"Spec"`
	}
	if err := json.Unmarshal(info, &ci); err != nil {
		t.Fatal(err)
	}
	if ci.Labels["io.nixrescue.target"] != tg.root || ci.Labels["io.nixrescue.session"] == "" {
		t.Errorf("labels %v", ci.Labels)
	}
	// runc's state of it is nixrescue's, not in containerd's
	// /run/containerd/runc (which a host without containers lacks).
	id := strings.TrimSpace(string(ids))
	if _, err := os.Stat("/run/nixrescue/runc/nixrescue/" + id + "/state.json"); err != nil {
		t.Errorf("runc's state of the session's container: %v", err)
	}
	if _, err := os.Stat("/run/containerd/runc/nixrescue/" + id); err == nil {
		t.Errorf("runc's state is in containerd's /run/containerd/runc")
	}
	norm := func(b []byte) string {
		var s map[string]any
		if err := json.Unmarshal(b, &s); err != nil {
			t.Fatal(err)
		}
		linux := s["linux"].(map[string]any)
		delete(linux, "cgroupsPath")
		for _, m := range s["mounts"].([]any) {
			mm := m.(map[string]any)
			if src, _ := mm["source"].(string); strings.HasSuffix(src, "resolv.conf") {
				mm["source"] = "resolv.conf"
			}
		}
		out, _ := json.MarshalIndent(s, "", " ")
		return string(out)
	}
	if got, w := norm(ci.Spec), norm([]byte(want.stdout)); got != w {
		t.Errorf("containerd's spec differs from the embedded backend's:\ncontainerd:\n%s\nembedded:\n%s", got, w)
	}
}

func TestContainerdBadSockets(t *testing.T) {
	testenv.Require(t)
	if !onContainerdPass(t) {
		return
	}
	tg := newTarget(t, fixture.Options{})
	// A socket that is not containerd's: it accepts and says nothing.
	notContainerd := filepath.Join(t.TempDir(), "other.sock")
	l, err := net.Listen("unix", notContainerd)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	regular := filepath.Join(t.TempDir(), "file")
	exec.Command("touch", regular).Run()
	for name, c := range map[string]struct{ address, want string }{
		"missing":        {"/nonexistent/containerd.sock", "containerd at /nonexistent/containerd.sock: no such socket: start containerd, name its socket with --address, or use --backend embedded"},
		"not a socket":   {regular, "not a socket"},
		"not containerd": {notContainerd, "containerd at " + notContainerd + ": does not answer"},
	} {
		t.Run(name, func(t *testing.T) {
			host := testenv.SnapshotHost(t)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, binary, "run", "--root", tg.root, "--backend", "containerd", "--address", c.address, "--", "true").CombinedOutput()
			code := -1
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			}
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			if code != 125 || len(lines) != 1 || !strings.Contains(lines[0], c.want) {
				t.Errorf("exit %d, output %q, want one line with %q", code, out, c.want)
			}
			testenv.AssertHostUnchanged(t, host)
		})
	}
}

func TestBackendAuto(t *testing.T) {
	testenv.Require(t)
	if !onContainerdPass(t) {
		return
	}
	tg := newTarget(t, fixture.Options{})
	for address, want := range map[string]string{
		containerdAddress:   "backend containerd (auto: containerd answered at " + containerdAddress + ")",
		"/nonexistent.sock": "backend embedded (auto: containerd at /nonexistent.sock: no such socket)",
	} {
		out, err := exec.Command(binary, "run", "--root", tg.root, "-q", "-v", "--backend", "auto", "--address", address, "--", "true").CombinedOutput()
		if err != nil || !strings.Contains(string(out), want) {
			t.Errorf("--address %s: %v %q, want %q", address, err, out, want)
		}
		// And in the --json report.
		out, err = exec.Command(binary, "run", "--root", tg.root, "-q", "--json", "--backend", "auto", "--address", address, "--", "true").Output()
		var rep struct {
			Backend    string `json:"backend"`
			BackendWhy string `json:"backend_why"`
		}
		if err != nil || json.Unmarshal(out, &rep) != nil || want != "backend "+rep.Backend+" ("+rep.BackendWhy+")" {
			t.Errorf("--json with --address %s: %v %s", address, err, out)
		}
	}
}

// TestContainerdHoldEndsWithNixrescue: the hold's connection is its only
// tie to nixrescue; when nixrescue is killed, the hold ends and the task
// stops of itself, before any cleanup (the command it started is left for
// cleanup to kill, as in the embedded backend).
func TestContainerdHoldEndsWithNixrescue(t *testing.T) {
	testenv.Require(t)
	if !onContainerdPass(t) {
		return
	}
	tg := newTarget(t, fixture.Options{})
	c, _ := startSession(t, tg.root, "echo ready; exec sleep 61")
	c.Process.Kill()
	waitExit(t, c)
	ctr := func(args ...string) string {
		out, _ := exec.Command("ctr", append([]string{"--address", containerdAddress, "-n", "nixrescue"}, args...)...).Output()
		return string(out)
	}
	deadline := time.Now().Add(10 * time.Second)
	for strings.Contains(ctr("tasks", "ls"), "RUNNING") {
		if time.Now().After(deadline) {
			t.Errorf("the task still runs 10 s after nixrescue was killed:\n%s", ctr("tasks", "ls"))
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if r := nixrescue(t, "cleanup"); r.code != 0 {
		t.Errorf("cleanup: exit %d %s", r.code, r.stderr)
	}
	if out := ctr("containers", "ls", "-q"); strings.TrimSpace(out) != "" {
		t.Errorf("containers left after cleanup: %s", out)
	}
	if pids := containedProcesses("^sleep 61$"); len(pids) > 0 {
		killAll(pids)
		t.Errorf("the command still runs after cleanup: pids %v", pids)
	}
}

// TestEmbeddedSessionLeavesAContainerdSessionsMounts: a containerd session
// mounts its target in the host's mount namespace (under
// /run/nixrescue/sessions); an embedded session started meanwhile makes a
// namespace of its own, a copy of the host's, and must not keep that copy
// of the other's filesystems: the containerd session then ends cleanly,
// its loop device detached, while the embedded one still runs.
func TestEmbeddedSessionLeavesAContainerdSessionsMounts(t *testing.T) {
	testenv.Require(t)
	if !onContainerdPass(t) {
		return
	}
	img, _ := image(t, string(fixture.LayoutBIOS))
	tg := newTarget(t, fixture.Options{})
	host := testenv.SnapshotHost(t)
	cd, cdStderr := startSession(t, img, "echo ready; exec sleep 60")
	ms, err := mountinfo.GetMounts(mountinfo.PrefixFilter("/run/nixrescue/sessions"))
	if err != nil || len(ms) == 0 {
		t.Fatalf("the containerd session's mounts under /run/nixrescue/sessions: %v %v", ms, err)
	}
	emb, _ := startSession(t, "--root="+tg.root, "echo ready; exec sleep 60", "--backend", "embedded")
	mi, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", emb.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if strings.Contains(string(mi), " "+m.Mountpoint+" ") {
			t.Errorf("the embedded session's namespace holds the containerd session's %s", m.Mountpoint)
		}
	}
	cd.Process.Signal(syscall.SIGTERM)
	waitExit(t, cd)
	if s := cdStderr.String(); strings.Contains(s, "warning") {
		t.Errorf("the containerd session's teardown: %s", s)
	}
	emb.Process.Signal(syscall.SIGTERM)
	waitExit(t, emb)
	testenv.AssertHostUnchanged(t, host)
}

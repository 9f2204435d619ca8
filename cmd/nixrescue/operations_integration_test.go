package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nixrescue/nixrescue/hack/fixture"
	"github.com/nixrescue/nixrescue/hack/testenv"
	"github.com/nixrescue/nixrescue/runtime/audit"
	"github.com/nixrescue/nixrescue/runtime/commands"
)

// readAudit reads the records of an audit log file.
func readAudit(t *testing.T, path string) []audit.Record {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("audit log: %v", err)
	}
	defer f.Close()
	var recs []audit.Record
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var r audit.Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("audit log line %q: %v", sc.Text(), err)
		}
		recs = append(recs, r)
	}
	return recs
}

// asSudoUser runs nixrescue as sudo would for user nobody (uid 65534):
// root, with SUDO_UID, SUDO_GID and SUDO_USER set.
func asSudoUser(t *testing.T, args ...string) result {
	t.Helper()
	return runWithin(t, 60*time.Second, []string{"SUDO_UID=65534", "SUDO_GID=65534", "SUDO_USER=nobody"}, args...)
}

// TestPSListsTheSessions: ps shows each running session with its target
// and what that is on, its backend, PID, caller (and sudo's), command
// line, start and phase; nothing once they have ended.
func TestPSListsTheSessions(t *testing.T) {
	testenv.Require(t)
	tg := newTarget(t, fixture.Options{})
	img, _ := image(t, string(fixture.LayoutBIOS))
	host := testenv.SnapshotHost(t)
	before := time.Now()
	dirSession, _ := startSession(t, "--root="+tg.root, "echo ready; exec sleep 60")
	imgCmd := command(context.Background(), "run", img, "-q", "--", "sh", "-c", "echo ready; exec sleep 60")
	imgCmd.Env = append(os.Environ(), "SUDO_UID=65534", "SUDO_USER=nobody")
	out, _ := imgCmd.StdoutPipe()
	if err := imgCmd.Start(); err != nil {
		t.Fatal(err)
	}
	if l, _ := bufio.NewReader(out).ReadString('\n'); l != "ready\n" {
		t.Fatalf("the image session did not start: %q", l)
	}
	r := nixrescue(t, "ps", "--json")
	var rep commands.PSReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil || r.code != 0 {
		t.Fatalf("ps --json: exit %d %v\n%s%s", r.code, err, r.stdout, r.stderr)
	}
	byPID := map[int]commands.SessionInfo{}
	for _, s := range rep.Sessions {
		byPID[s.PID] = s
	}
	d, i := byPID[dirSession.Process.Pid], byPID[imgCmd.Process.Pid]
	if d.Target.Path != tg.root || d.Target.Kind != "directory" || d.Disk != "directory "+tg.root || d.Backend != backend || d.Phase != "running" || d.UID != 0 || d.SudoUser != "" ||
		d.Started.Before(before.Add(-time.Second)) || d.Command[1] != "run" || !strings.Contains(strings.Join(d.Command, " "), " --root="+tg.root+" -q -- sh -c echo ready; exec sleep 60") {
		t.Errorf("the directory session: %+v", d)
	}
	if i.Target.Path != img || i.Target.Arg != img || i.Target.Kind != "image" || i.Disk != "image "+img || i.SudoUser != "nobody" || i.SudoUID != 65534 || i.Phase != "running" {
		t.Errorf("the image session: %+v", i)
	}
	text := nixrescue(t, "ps").stdout
	for _, want := range []string{"SESSION", d.ID, i.ID, "nobody (sudo)", "running", "on image " + img} {
		if !strings.Contains(text, want) {
			t.Errorf("ps lacks %q:\n%s", want, text)
		}
	}
	for _, c := range []*exec.Cmd{dirSession, imgCmd} {
		c.Process.Signal(syscall.SIGTERM)
		waitExit(t, c)
	}
	if r := nixrescue(t, "ps"); r.code != 0 || r.stdout != "no nixrescue session is running\n" {
		t.Errorf("ps after the sessions: exit %d %q %s", r.code, r.stdout, r.stderr)
	}
	testenv.AssertHostUnchanged(t, host)
}

// TestAuditRecords: each session writes a start and an end record (who,
// target, command, times, exit status) to the file, journal or syslog
// socket asked for; a killed session's end is written by cleanup; a
// place that cannot be written stops the session before it begins.
func TestAuditRecords(t *testing.T) {
	testenv.Require(t)
	tg := newTarget(t, fixture.Options{})
	host := testenv.SnapshotHost(t)
	tree := testenv.SnapshotTree(t, tg.root)
	logFile := filepath.Join(t.TempDir(), "audit.log")
	if r := nixrescue(t, "run", "--root", tg.root, "-q", "--audit-log", logFile, "--", "sh", "-c", "exit 3"); r.code != 3 {
		t.Fatalf("exit %d %s", r.code, r.stderr)
	}
	recs := readAudit(t, logFile)
	if len(recs) != 2 || recs[0].Event != "start" || recs[1].Event != "end" || recs[0].Session != recs[1].Session ||
		recs[1].ExitStatus == nil || *recs[1].ExitStatus != 3 || recs[1].Target != tg.root || recs[1].Ended == nil ||
		!strings.HasSuffix(strings.Join(recs[0].Command, " "), "--audit-log "+logFile+" -- sh -c exit 3") || len(recs[1].Wrote) != 0 {
		t.Errorf("records: %+v", recs)
	}
	// The journal's native protocol, on a socket of the test's.
	sock := filepath.Join(t.TempDir(), "journal.sock")
	l, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if r := nixrescue(t, "run", "--root", tg.root, "-q", "--audit-log", "journal:"+sock, "--", "true"); r.code != 0 {
		t.Fatalf("journal: exit %d %s", r.code, r.stderr)
	}
	l.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 65536)
	for _, event := range []string{"start", "end"} {
		n, err := l.Read(buf)
		if err != nil || !strings.Contains(string(buf[:n]), "NIXRESCUE_EVENT="+event+"\n") || !strings.Contains(string(buf[:n]), "NIXRESCUE_TARGET="+tg.root+"\n") {
			t.Errorf("journal datagram for %s: %v %q", event, err, buf[:n])
		}
	}
	// Killed: the start is recorded; cleanup records the end.
	killedLog := filepath.Join(t.TempDir(), "killed.log")
	c, _ := startSession(t, "--root="+tg.root, "echo ready; exec sleep 60", "--audit-log", killedLog)
	c.Process.Kill()
	waitExit(t, c)
	if r := nixrescue(t, "cleanup"); r.code != 0 {
		t.Errorf("cleanup: exit %d %s", r.code, r.stderr)
	}
	recs = readAudit(t, killedLog)
	if len(recs) != 2 || recs[1].Event != "end" || !strings.Contains(recs[1].Error, fmt.Sprintf("nixrescue (pid %d) was killed", c.Process.Pid)) {
		t.Errorf("records of a killed session: %+v", recs)
	}
	// A place that cannot be written: nothing runs.
	for _, bad := range []struct{ arg, want string }{
		{"/nonexistent/audit.log", "--audit-log /nonexistent/audit.log: /nonexistent/audit.log: no such file or directory: name a file this host can write to"},
		{"journal:" + filepath.Join(t.TempDir(), "none.sock"), "no journal socket at"},
		{"jornal", "not a place for records"},
	} {
		r := nixrescue(t, "run", "--root", tg.root, "-q", "--audit-log", bad.arg, "--", "touch", "/ran")
		oneLine(t, r, bad.want)
	}
	testenv.AssertHostUnchanged(t, host)
	testenv.AssertTreeUnchanged(t, tg.root, tree)
}

// cgroupFile is the file of the controller's cgroup of process pid, as
// the host sees it (cgroup v1: the controller's hierarchy; v2: the one).
func cgroupFile(pid int, controller, file string) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	for _, l := range strings.Split(string(b), "\n") {
		parts := strings.SplitN(l, ":", 3)
		if len(parts) != 3 {
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			if c == controller {
				mounts, _ := filepath.Glob("/sys/fs/cgroup/*" + controller + "*")
				for _, m := range mounts {
					if p := filepath.Join(m, parts[2], file); fileExists(p) {
						return p
					}
				}
			}
		}
		if parts[0] == "0" && parts[1] == "" {
			if p := filepath.Join("/sys/fs/cgroup", parts[2], file); fileExists(p) {
				return p
			}
		}
	}
	return ""
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// TestLimits: --pids-limit stops a fork bomb at the limit, inside only;
// --cpus throttles the container (the kernel's own count says so); limits
// out of range are refused in one line.
func TestLimits(t *testing.T) {
	testenv.Require(t)
	tg := newTarget(t, fixture.Options{})
	host := testenv.SnapshotHost(t)
	// 200 processes asked for, 64 allowed: the inner shell dies at the
	// first fork that fails; the outer one counts what runs without a fork
	// (/proc is the container's own with --isolate-pids). The session's
	// end kills the rest.
	bomb := `sh -c 'i=0; while [ $i -lt 200 ]; do sleep 30 & i=$((i+1)); done' 2>/dev/null; set -- /proc/[0-9]*; echo $#`
	r := nixrescue(t, "run", "--root", tg.root, "-q", "--isolate-pids", "--pids-limit", "64", "--", "sh", "-c", bomb)
	n, err := strconv.Atoi(strings.TrimSpace(r.stdout))
	if r.code != 0 || err != nil || n > 64 || n < 32 {
		t.Errorf("fork bomb under --pids-limit 64: exit %d, %q processes %s", r.code, r.stdout, r.stderr)
	}
	if out, err := exec.Command("sh", "-c", "for i in 1 2 3 4 5 6 7 8; do true & done; wait; echo fine").Output(); err != nil || string(out) != "fine\n" {
		t.Errorf("the host cannot fork after the bomb: %v", err)
	}
	// A CPU quota of a fifth of a CPU: a busy loop gets throttled.
	c, _ := startSession(t, "--root="+tg.root, "echo ready; i=0; while [ $i -lt 2000000 ]; do i=$((i+1)); done; exec sleep 61", "--cpus", "0.2")
	var pids []int
	for deadline := time.Now().Add(10 * time.Second); len(pids) == 0 && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		pids = containedProcesses(`^sh -c echo ready; i=0`)
	}
	if len(pids) == 0 {
		t.Fatal("the busy loop is not running")
	}
	quota, stat := cgroupFile(pids[0], "cpu", "cpu.cfs_quota_us"), cgroupFile(pids[0], "cpu", "cpu.stat")
	if max := cgroupFile(pids[0], "cpu", "cpu.max"); max != "" {
		quota = max
	}
	if b, _ := os.ReadFile(quota); !strings.HasPrefix(string(b), "20000") {
		t.Errorf("%s: %q, want a quota of 20000 us a period", quota, b)
	}
	throttled := false
	for deadline := time.Now().Add(20 * time.Second); !throttled && time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		b, _ := os.ReadFile(stat)
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "nr_throttled "); ok && v != "0" {
				throttled = true
			}
		}
	}
	if !throttled {
		t.Errorf("%s: the busy loop was never throttled", stat)
	}
	c.Process.Signal(syscall.SIGTERM)
	waitExit(t, c)
	for _, bad := range []struct{ flag, value, want string }{
		{"--pids-limit", "5", "--pids-limit 5: give at least 32"},
		{"--cpus", "1000", "--cpus 1000: give a number of CPUs from 0.01 to"},
		{"--cpus", "-1", "--cpus -1: give a number of CPUs"},
		{"--memory", "1k", "--memory 1KiB: give a size of at least 16M"},
	} {
		r := nixrescue(t, "run", "--root", tg.root, "-q", bad.flag, bad.value, "--", "touch", "/ran")
		oneLine(t, r, bad.want)
	}
	if fileExists(filepath.Join(tg.root, "ran")) {
		t.Error("a refused session ran its command")
	}
	testenv.AssertHostUnchanged(t, host)
}

// withPolicy installs text as the host's policy for the test (mode, when
// not 0644, makes it unsafe) and removes it after.
func withPolicy(t *testing.T, text string, mode os.FileMode) {
	t.Helper()
	const path = "/etc/nixrescue/policy"
	if fileExists(path) {
		t.Fatalf("%s exists on this host: the test would replace an operator's policy", path)
	}
	madeDir := !fileExists("/etc/nixrescue")
	if err := os.MkdirAll("/etc/nixrescue", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(path, mode)
	t.Cleanup(func() {
		os.Remove(path)
		if madeDir {
			os.Remove("/etc/nixrescue")
		}
	})
}

// TestPolicyUnderSudo: under sudo, the policy file says which targets
// and commands a user may use; each refusal is one line naming the rule
// (or the line and column of a malformed file), and nothing runs.
// Without sudo, root may do anything.
func TestPolicyUnderSudo(t *testing.T) {
	testenv.Require(t)
	allowedDir := t.TempDir()
	img, _ := image(t, string(fixture.LayoutBIOS))
	mine := filepath.Join(allowedDir, "mine.img")
	if err := os.Rename(img, mine); err != nil {
		t.Fatal(err)
	}
	other, _ := image(t, string(fixture.LayoutBIOS))
	sum, otherSum := fileHash(t, mine), fileHash(t, other)
	host := testenv.SnapshotHost(t)
	withPolicy(t, "# the rescue team\nuser nobody targets "+allowedDir+"/ serial:NOPE-* commands inspect ps\n", 0o644)
	if r := asSudoUser(t, "inspect", mine); r.code != 0 || !strings.Contains(r.stdout, "NixOS root:") {
		t.Errorf("inspect of an allowed image: exit %d %s", r.code, r.stderr)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"inspect", other}, "policy /etc/nixrescue/policy: nobody may not open " + other + " with inspect (the rules at line 2 name other targets); ask the host's operator"},
		{[]string{"run", mine, "--", "true"}, "policy /etc/nixrescue/policy: nobody may not use nixrescue run (the rules at line 2 allow other commands)"},
		{[]string{"inspect", mine, "--audit-log", "/tmp/x.log"}, "--audit-log names a file of the host"},
		{[]string{"inspect", mine, "--key-file", "/etc/shadow"}, "--key-file names a file of the host"},
		{[]string{"inspect", mine, "--dev", "host"}, "--dev host would give the container every disk of this host"},
		{[]string{"ps", "--state-dir", allowedDir}, "--state-dir names a file of the host"},
		{[]string{"cleanup"}, "nobody may not use nixrescue cleanup"},
	} {
		oneLine(t, asSudoUser(t, c.args...), c.want)
	}
	// A link into the allowed directory leads to what it leads to.
	link := filepath.Join(allowedDir, "link.img")
	os.Symlink(other, link)
	oneLine(t, asSudoUser(t, "inspect", link), "nobody may not open "+other)
	// Root without sudo: no policy.
	if r := nixrescue(t, "inspect", other); r.code != 0 {
		t.Errorf("root without sudo: exit %d %s", r.code, r.stderr)
	}
	os.Remove("/etc/nixrescue/policy")
	withPolicyAgain := func(text string, mode os.FileMode) {
		os.WriteFile("/etc/nixrescue/policy", []byte(text), 0o644)
		os.Chmod("/etc/nixrescue/policy", mode)
	}
	withPolicyAgain("user nobody targets relative/path\n", 0o644)
	oneLine(t, asSudoUser(t, "inspect", mine), "policy /etc/nixrescue/policy:1:21: \"relative/path\": give an absolute path")
	withPolicyAgain("user nobody targets "+allowedDir+"/\n", 0o666)
	oneLine(t, asSudoUser(t, "inspect", mine), "policy /etc/nixrescue/policy: must be a file of root's that only root can write")
	if fileHash(t, mine) != sum || fileHash(t, other) != otherSum {
		t.Error("a refused session changed an image")
	}
	testenv.AssertHostUnchanged(t, host)
}

// TestRefusesSetUID: with a set-uid bit, whoever runs nixrescue would be
// root without sudo's checks: it refuses, before anything runs.
// asNobody is a copy of the binary that user nobody can run (in a
// directory of /var/tmp removed at the test's end), and a way to run it as
// nobody.
func asNobody(t *testing.T) (bin string, run func(args ...string) result) {
	t.Helper()
	dir, err := os.MkdirTemp("/var/tmp", "nixrescue-nobody-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	bin = filepath.Join(dir, "nixrescue")
	if out, err := exec.Command("cp", binary, bin).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	return bin, func(args ...string) result {
		return resultOf(t, exec.Command("setpriv", append([]string{"--reuid=65534", "--regid=65534", "--clear-groups", bin}, args...)...))
	}
}

func TestRefusesSetUID(t *testing.T) {
	testenv.Require(t)
	bin, run := asNobody(t)
	if r := run("version"); r.code != 0 {
		t.Fatalf("as nobody, without the bit: exit %d %s", r.code, r.stderr)
	}
	os.Chmod(bin, os.ModeSetuid|0o755)
	for _, args := range [][]string{{"version"}, {"run", "--root", "/", "--", "true"}, {"init"}} {
		r := run(args...)
		if r.code != 125 || strings.TrimSpace(r.stderr) != "nixrescue: refusing to run set-uid or set-gid: remove the bit (chmod u-s,g-s) and run nixrescue as root, e.g. through sudo" || r.stdout != "" {
			t.Errorf("set-uid %v: exit %d %q %q", args, r.code, r.stdout, r.stderr)
		}
	}
}

// TestOrphanOverlaysAreSwept: an overlay in /var/tmp whose session is gone
// (its journal went with /run in a reboot) is removed by cleanup, which
// says so, and by the next session's start.
func TestOrphanOverlaysAreSwept(t *testing.T) {
	testenv.Require(t)
	host := testenv.SnapshotHost(t)
	orphan := func(id string) string {
		p := "/var/tmp/nixrescue-" + id + "-boot-test.qcow2"
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Remove(p) })
		return p
	}
	p := orphan("0000deadbeef")
	r := nixrescue(t, "cleanup", "--json")
	var rep commands.CleanupReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil || r.code != 0 || len(rep.Overlays) != 1 || rep.Overlays[0] != p || fileExists(p) {
		t.Errorf("cleanup of an orphan overlay: exit %d %v %s %s", r.code, err, r.stdout, r.stderr)
	}
	p = orphan("0000deadbee2")
	if r := nixrescue(t, "cleanup"); !strings.Contains(r.stdout, "removed overlay "+p+" (its session is gone)") {
		t.Errorf("cleanup's text: %q", r.stdout)
	}
	p = orphan("0000deadbee3")
	tg := newTarget(t, fixture.Options{})
	if r := nixrescue(t, "run", "--root", tg.root, "-q", "--no-activate", "--", "true"); r.code != 0 || fileExists(p) {
		t.Errorf("a session's start left the orphan overlay %s: exit %d %s", p, r.code, r.stderr)
	}
	testenv.AssertHostUnchanged(t, host)
}

package guard

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/nixrescue/nixrescue/hack/testenv"
)

// cgroupWith makes a cgroup of its own in every hierarchy that can hold a
// process (cgroup v2's unified one; v1's freezer and pids) and starts a
// process in it that ignores SIGTERM and has a child of its own, as a
// container's command that left a process in the background. It returns
// the cgroup's path and the two processes.
func cgroupWith(t *testing.T) (string, *exec.Cmd) {
	t.Helper()
	path := fmt.Sprintf("/nixrescue-guard-test-%d", os.Getpid())
	var dirs []string
	for _, h := range []string{"", "/freezer", "/pids"} {
		d := CgroupRoot + h + path
		if _, err := os.Stat(filepath.Dir(d) + "/cgroup.procs"); err != nil {
			continue
		}
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		dirs = append(dirs, d)
	}
	t.Cleanup(func() {
		for _, d := range dirs {
			os.Remove(d)
		}
	})
	// The shell waits for a line before it starts its child: it is moved
	// into the cgroup first, so that the child is born there.
	cmd := exec.Command("sh", "-c", `read go; trap "" TERM; sleep 300 & echo started; wait`)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); cmd.Wait() })
	for _, d := range dirs {
		if err := os.WriteFile(d+"/cgroup.procs", []byte(fmt.Sprint(cmd.Process.Pid)), 0); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := in.Write([]byte("go\n")); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 8)
	if _, err := out.Read(b); err != nil {
		t.Fatal(err)
	}
	return path, cmd
}

// running tells whether the cgroup still has processes (the shell and
// its child, both in it).
func running(path string) bool {
	for _, h := range []string{"", "/freezer", "/pids"} {
		if b, err := os.ReadFile(CgroupRoot + h + path + "/cgroup.procs"); err == nil && len(b) > 0 {
			return true
		}
	}
	return false
}

// TestGuardKillsTheCgroupWhenNixrescueDies: the guard's pipe closed
// without a word (its owner died) kills everything in the cgroup, the
// process that ignores SIGTERM and its child; disarmed, it kills nothing.
func TestGuardKillsTheCgroupWhenNixrescueDies(t *testing.T) {
	testenv.Require(t)
	path, cmd := cgroupWith(t)
	g, err := Start(path)
	if err != nil {
		t.Fatal(err)
	}
	g.Disarm()
	time.Sleep(200 * time.Millisecond)
	if !running(path) {
		t.Fatal("a disarmed guard killed the cgroup's processes")
	}
	g, err = Start(path)
	if err != nil {
		t.Fatal(err)
	}
	g.pipe.Close() // as the kernel does when nixrescue dies
	deadline := time.Now().Add(5 * time.Second)
	for running(path) {
		if time.Now().After(deadline) {
			t.Fatal("the cgroup's processes still run 5 s after the guard's owner went")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := cmd.Wait(); err == nil {
		t.Error("the shell exited normally; it should have been killed")
	}
}

// TestKillCgroup: what cleanup uses, the guard's own routine.
func TestKillCgroup(t *testing.T) {
	testenv.Require(t)
	path, _ := cgroupWith(t)
	if err := KillCgroup(path); err != nil {
		t.Fatal(err)
	}
	if running(path) {
		t.Error("processes left in the cgroup")
	}
	if err := KillCgroup("/nixrescue-no-such-cgroup"); err != nil {
		t.Errorf("a cgroup that is not there: %v", err)
	}
}

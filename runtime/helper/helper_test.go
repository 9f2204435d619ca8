package helper

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nixrescue/nixrescue/specs"
)

// startHold starts hold in a child with only stdin, stdout and stderr open,
// as a container runtime starts a container's first process, plus extra:
// the test binary, named as the hold is (hold.c's constructor takes it).
func startHold(t *testing.T, env []string, extra ...*os.File) (*exec.Cmd, <-chan error) {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Args = []string{specs.HelperPath, "hold"}
	cmd.Env = append(os.Environ(), env...)
	cmd.ExtraFiles = extra
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	return cmd, done
}

// hold.h's copies of the Go constants agree with them.
func TestCConstants(t *testing.T) {
	path, env, max := cConstants()
	if path != specs.HelperPath || env != SessionFDEnv || max != MaxMessage {
		t.Fatalf("hold.h has %q, %q, %d; Go has %q, %q, %d", path, env, max, specs.HelperPath, SessionFDEnv, MaxMessage)
	}
}

// Without a pipe named, hold stays until it is told to go, whatever Go's
// runtime opened at fd 3 (the cgroup's cpu.cfs_quota_us on this host: hold
// read it to its end and exited at once, and containerd's next exec found
// "a stopped container").
func TestHoldWithoutSocketWaitsForSIGTERM(t *testing.T) {
	cmd, done := startHold(t, nil)
	select {
	case err := <-done:
		t.Fatalf("hold ended by itself (%v); it must wait for SIGTERM", err)
	case <-time.After(500 * time.Millisecond):
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("after SIGTERM: %v, want exit 0", err)
	}
}

// With a socket named, hold ends when nixrescue's end closes.
func TestHoldEndsWithItsSocket(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	ours, theirs := os.NewFile(uintptr(fds[0]), "ours"), os.NewFile(uintptr(fds[1]), "theirs")
	_, done := startHold(t, []string{SessionFDEnv + "=3"}, theirs)
	theirs.Close()
	select {
	case err := <-done:
		t.Fatalf("hold ended while the socket was open (%v)", err)
	case <-time.After(300 * time.Millisecond):
	}
	ours.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("after EOF: %v, want exit 0", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("hold did not end 10 s after its socket closed")
	}
}

// A variable naming something other than a socket is not taken for one.
func TestHoldIgnoresANonSocket(t *testing.T) {
	for _, kind := range []string{"regular file", "pipe"} {
		t.Run(kind, func(t *testing.T) {
			var f *os.File
			if kind == "pipe" {
				r, w, err := os.Pipe()
				if err != nil {
					t.Fatal(err)
				}
				defer w.Close()
				f = r
			} else {
				var err error
				if f, err = os.Open(os.Args[0]); err != nil {
					t.Fatal(err)
				}
			}
			defer f.Close()
			cmd, done := startHold(t, []string{SessionFDEnv + "=3"}, f)
			select {
			case err := <-done:
				t.Fatalf("hold ended by itself (%v) on a %s", err, kind)
			case <-time.After(500 * time.Millisecond):
			}
			_ = cmd.Process.Signal(syscall.SIGTERM)
			var ee *exec.ExitError
			if err := <-done; err != nil && !errors.As(err, &ee) {
				t.Fatal(err)
			}
		})
	}
}

// connectedHold starts a hold on one end of a new socket pair and returns
// a connection on the other, and the hold's end.
func connectedHold(t *testing.T) (*net.UnixConn, <-chan error) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	ours, theirs := os.NewFile(uintptr(fds[0]), "ours"), os.NewFile(uintptr(fds[1]), "theirs")
	defer ours.Close()
	_, done := startHold(t, []string{SessionFDEnv + "=3"}, theirs)
	theirs.Close()
	c, err := UnixConn(ours)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, done
}

// startOn asks the hold on c to start args on /dev/null and returns its
// reply.
func startOn(t *testing.T, c *net.UnixConn, args ...string) Reply {
	t.Helper()
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	if err := Send(c, Request{Start: &Start{Args: args, Env: []string{"PATH=/usr/bin:/bin"}, Cwd: "/"}}, null, null, null); err != nil {
		t.Fatal(err)
	}
	r, files, err := Receive(c)
	if err != nil {
		t.Fatal(err)
	}
	closeAll(files)
	return r
}

// When nixrescue's end closes while a process runs, the hold kills it
// before it ends.
func TestHoldKillsItsProcessWhenTheConnectionEnds(t *testing.T) {
	c, done := connectedHold(t)
	r := startOn(t, c, "sleep", "60")
	if r.Started <= 0 {
		t.Fatalf("reply %+v, want started", r)
	}
	c.Close()
	if err := <-done; err != nil {
		t.Fatalf("hold: %v, want exit 0", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", r.Started))
		// Gone, or a zombie waiting for the reaper it was given to.
		if err != nil || strings.Contains(string(b), ") Z ") {
			return
		}
		if time.Now().After(deadline) {
			unix.Kill(r.Started, unix.SIGKILL)
			t.Fatalf("the process %d still runs after the hold ended", r.Started)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A request the hold cannot read, or a start while a process runs, gets an
// error, and the hold goes on serving.
func TestHoldAnswersBadRequests(t *testing.T) {
	c, _ := connectedHold(t)
	if _, _, err := c.WriteMsgUnix([]byte("start\x00x\x00"), nil, nil); err != nil {
		t.Fatal(err)
	}
	r, _, err := Receive(c)
	if err != nil || r.Error != "bad start request" {
		t.Fatalf("reply %+v, err %v; want the error \"bad start request\"", r, err)
	}
	if r := startOn(t, c, "sleep", "60"); r.Started <= 0 {
		t.Fatalf("reply %+v, want started", r)
	}
	if r := startOn(t, c, "true"); r.Error != "a process is running already" {
		t.Fatalf("reply %+v, want the error \"a process is running already\"", r)
	}
}

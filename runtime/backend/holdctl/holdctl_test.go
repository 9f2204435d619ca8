package holdctl

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nixrescue/nixrescue/runtime/backend"
	"github.com/nixrescue/nixrescue/runtime/helper"
	"github.com/nixrescue/nixrescue/specs"
)

// runHold starts the test binary as a hold, named as the hold is (the
// helper package's C constructor, linked in, takes it): the protocol is
// tested on the host, no container needed. how is "listen:PATH" for a
// hold that listens at PATH; it runs on extra's socket when given. Its
// cleanup, which runs after the caller's (which closes the connection),
// checks the hold then ended by itself with exit 0. alive tells whether
// it still runs.
func runHold(t *testing.T, how string, extra ...*os.File) (alive func() bool) {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Args = []string{specs.HelperPath, "hold"}
	if path, ok := strings.CutPrefix(how, "listen:"); ok {
		cmd.Args = append(cmd.Args, "--listen", path)
	}
	cmd.Env = os.Environ()
	if len(extra) > 0 {
		cmd.Env = append(cmd.Env, helper.SessionFDEnv+"=3")
	}
	cmd.ExtraFiles = extra
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var ended atomic.Bool
	done := make(chan error, 1)
	go func() {
		err := cmd.Wait()
		ended.Store(true)
		done <- err
	}()
	t.Cleanup(func() {
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("hold: %v, want exit 0 when the connection closes", err)
			}
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			t.Error("hold did not end when the connection closed")
		}
	})
	return func() bool { return !ended.Load() }
}

// startHold starts a hold on the other end of a new connection, closed at
// cleanup.
func startHold(t *testing.T) *Conn {
	t.Helper()
	conn, theirs, err := Pair()
	if err != nil {
		t.Fatal(err)
	}
	runHold(t, "1", theirs)
	theirs.Close()
	t.Cleanup(func() { conn.Close() })
	return conn
}

var env = []string{"PATH=/usr/bin:/bin"}

func TestExecStatusesAndOutput(t *testing.T) {
	conn := startHold(t)
	var out bytes.Buffer
	cases := []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"true"}, 0, ""},
		{[]string{"sh", "-c", "echo out; echo err >&2; exit 3"}, 3, "out\nerr\n"},
		{[]string{"sh", "-c", "kill -TERM $$"}, 128 + 15, ""},
	}
	for _, c := range cases {
		out.Reset()
		// One writer for both: one pipe, the order kept.
		code, err := conn.Exec(context.Background(), backend.Process{Args: c.args, Env: env, Cwd: "/", Stdout: &out, Stderr: &out})
		if err != nil || code != c.code || out.String() != c.out {
			t.Errorf("%v: code %d, err %v, output %q; want %d, %q", c.args, code, err, out.String(), c.code, c.out)
		}
	}
}

func TestExecStdin(t *testing.T) {
	conn := startHold(t)
	var out bytes.Buffer
	code, err := conn.Exec(context.Background(), backend.Process{Args: []string{"cat"}, Env: env, Cwd: "/", Stdin: strings.NewReader("hello\n"), Stdout: &out})
	if err != nil || code != 0 || out.String() != "hello\n" {
		t.Errorf("code %d, err %v, output %q", code, err, out.String())
	}
	// No stdin: /dev/null, so cat ends.
	code, err = conn.Exec(context.Background(), backend.Process{Args: []string{"cat"}, Env: env, Cwd: "/"})
	if err != nil || code != 0 {
		t.Errorf("no stdin: code %d, err %v", code, err)
	}
}

func TestExecStartErrors(t *testing.T) {
	conn := startHold(t)
	for _, c := range []struct {
		prog     string
		notFound bool
	}{{"no-such-command", true}, {"/no/such/file", true}, {"/etc/hostname", false}} {
		_, err := conn.Exec(context.Background(), backend.Process{Args: []string{c.prog}, Env: env, Cwd: "/"})
		var se *backend.StartError
		if !errors.As(err, &se) || se.NotFound() != c.notFound {
			t.Errorf("%s: %v, want a StartError, not found %v", c.prog, err, c.notFound)
		}
	}
	// A working directory that is not there is no missing program (its
	// chdir fails with ENOENT too): the hold's own failure.
	_, err := conn.Exec(context.Background(), backend.Process{Args: []string{"true"}, Env: env, Cwd: "/no/such/dir"})
	var se *backend.StartError
	if err == nil || errors.As(err, &se) || !strings.Contains(err.Error(), "no such file or directory") {
		t.Errorf("a missing working directory: %v, want the hold's error", err)
	}
	// The hold still serves after a failed start.
	if code, err := conn.Exec(context.Background(), backend.Process{Args: []string{"true"}, Env: env, Cwd: "/"}); err != nil || code != 0 {
		t.Errorf("after the errors: code %d, err %v", code, err)
	}
}

func TestExecSignalsAndCancel(t *testing.T) {
	conn := startHold(t)
	sigs := make(chan os.Signal, 1)
	sigs <- syscall.SIGINT
	code, err := conn.Exec(context.Background(), backend.Process{Args: []string{"sleep", "60"}, Env: env, Cwd: "/", Signals: sigs})
	if err != nil || code != 128+int(syscall.SIGINT) {
		t.Errorf("SIGINT: code %d, err %v", code, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	code, err = conn.Exec(ctx, backend.Process{Args: []string{"sleep", "60"}, Env: env, Cwd: "/"})
	if err != nil || code != 128+int(syscall.SIGKILL) {
		t.Errorf("cancelled: code %d, err %v", code, err)
	}
}

// A background process that keeps the output pipe open does not hold
// Exec for ever.
func TestExecDoesNotWaitForeverForOutput(t *testing.T) {
	conn := startHold(t)
	var out bytes.Buffer
	done := make(chan struct{})
	go func() {
		defer close(done)
		code, err := conn.Exec(context.Background(), backend.Process{Args: []string{"sh", "-c", "echo started; sleep 30 &"}, Env: env, Cwd: "/", Stdout: &out})
		if err != nil || code != 0 {
			t.Errorf("code %d, err %v", code, err)
		}
	}()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("Exec still waits for the background process's output")
	}
	exec.Command("pkill", "-f", "^sleep 30$").Run()
	if out.String() != "started\n" {
		t.Errorf("output %q", out.String())
	}
}

// A hold that listens (containerd's way): Dial waits for it, and the
// socket is gone once the one connection is made.
func TestDialAListeningHold(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "control.sock")
	alive := runHold(t, "listen:"+sock)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := Dial(ctx, sock, alive)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if code, err := conn.Exec(ctx, backend.Process{Args: []string{"true"}, Env: env, Cwd: "/"}); err != nil || code != 0 {
		t.Errorf("code %d, err %v", code, err)
	}
	if _, err := os.Lstat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the socket is still there after the connection: %v", err)
	}
}

// slowWriter takes its time over each write, as a slow pipe reader would.
type slowWriter struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *slowWriter) Write(p []byte) (int, error) {
	time.Sleep(1100 * time.Millisecond)
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// Output still flowing to a slow reader when the process ends is all
// delivered, however long that takes past the idle limit.
func TestExecWaitsForOutputThatStillFlows(t *testing.T) {
	conn := startHold(t)
	w := &slowWriter{}
	// 96 KiB: head ends at once (64 KiB in the pipe, 32 KiB read), and
	// the three writes of 32 KiB take 3.3 s, past the 2 s idle limit.
	code, err := conn.Exec(context.Background(), backend.Process{Args: []string{"head", "-c", "98304", "/dev/zero"}, Env: env, Cwd: "/", Stdout: w})
	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil || code != 0 || w.b.Len() != 98304 {
		t.Errorf("code %d, err %v, %d bytes of 98304", code, err, w.b.Len())
	}
}

// Package backend defines how a recovery session drives a container
// runtime: a Runner creates a container from an OCI spec, processes run in
// it one after another, and Destroy removes every trace of it. The
// container's first process is the hold (runtime/helper), which starts the
// processes on request (runtime/backend/holdctl); when a session runs one
// program and nothing before it, that program is the container's first
// process instead (`runc run`, `ctr run`): one process started instead of
// two. The engines live in subpackages: embedded (runc's libcontainer,
// linked in) and containerd (a host's containerd daemon).
package backend

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"strings"

	rspec "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Runner creates recovery containers.
type Runner interface {
	// Name is the backend's name as users choose it (--backend).
	Name() string
	// Create starts a container from spec, with the spec's process as its
	// first process, and returns once it runs.
	Create(ctx context.Context, id string, spec *rspec.Spec) (Container, error)
	// CreateFirst creates a container from spec whose first process is p:
	// the spec's process settings (user, capabilities, rlimits) with p's
	// program, environment, working directory and I/O. It returns once the
	// container is set up, just before p's program is executed; a program
	// that is not there is a *StartError.
	CreateFirst(ctx context.Context, id string, spec *rspec.Spec, p Process) (First, error)
}

// First is a container created around its first process, which waits to
// be executed (`runc create`).
type First interface {
	// Root is as Container's: the container's own view of its root.
	Root() string
	// Run executes the first process and waits for it; it returns the
	// process's exit status (128+N when killed by signal N).
	Run(ctx context.Context) (int, error)
	// Destroy is as Container's.
	Destroy() error
}

// Container is a running recovery container.
type Container interface {
	// Exec runs p in the container and waits for it; it returns the
	// process's exit status (128+N when killed by signal N).
	Exec(ctx context.Context, p Process) (int, error)
	// Root is the container's root as the host sees it through the
	// container's first process (/proc/PID/root): with the container's own
	// mounts, its /run and /tmp.
	Root() string
	// Destroy stops every process of the container and removes its state
	// and cgroups. It is safe to call more than once.
	Destroy() error
}

// Process is one process to run in a container.
type Process struct {
	Args []string
	Env  []string
	Cwd  string

	Stdin          io.Reader
	Stdout, Stderr io.Writer

	// TTY, when set, runs the process on a pty wired to the user's
	// terminal instead of Stdin, Stdout and Stderr.
	TTY TTY

	// Signals are forwarded to the process while it runs.
	Signals <-chan os.Signal
}

// StartError says a process's program could not be executed in the
// container. Err is execve's errno where the hold reports it (ENOENT: the
// program is not there); runtimes report theirs as text (it crosses runc's
// sync pipe, or containerd's API), which is only shown.
type StartError struct {
	Program string
	Err     error
}

func (e *StartError) Error() string { return fmt.Sprintf("start %s: %v", e.Program, e.Err) }
func (e *StartError) Unwrap() error { return e.Err }

// NotFound tells whether the program does not exist in the container (a
// shell's 127, not 126).
func (e *StartError) NotFound() bool { return errors.Is(e.Err, unix.ENOENT) }

// SameWriter tells whether a process's stdout and stderr are one writer,
// which then takes both in order (exec.Cmd shares one pipe), without
// comparing values of types that cannot be compared (== would panic).
func SameWriter(a, b io.Writer) bool {
	if a == nil || b == nil {
		return false
	}
	ta, tb := reflect.TypeOf(a), reflect.TypeOf(b)
	return ta == tb && ta.Comparable() && a == b
}

// Reason is the last part of the runtime's message: "permission denied",
// "exec format error" …
func (e *StartError) Reason() string {
	s := strings.TrimSpace(e.Err.Error())
	s = strings.TrimSuffix(s, ": unknown") // containerd's error kind
	if i := strings.LastIndex(s, ": "); i >= 0 {
		s = s[i+2:]
	}
	return s
}

// TTY is the user's terminal, as a backend needs it to run a process on a
// pty: input and output, the window size and its changes, raw mode.
type TTY interface {
	In() io.Reader
	Out() io.Writer
	Size() (width, height uint16)
	// Resized signals each change of the window's size.
	Resized() <-chan struct{}
	// Raw puts the terminal in raw mode; the result restores it.
	Raw() (restore func())
}

// Package backend defines how a recovery session drives a container
// runtime: a Runner creates a container from an OCI spec, processes run in
// it one after another (containerd's task-and-exec model, which
// libcontainer offers too), and Destroy removes every trace of it.
// The engines live in subpackages: embedded (runc's libcontainer, linked
// in) and containerd (a host's containerd daemon).
package backend

import (
	"context"
	"io"
	"os"

	rspec "github.com/opencontainers/runtime-spec/specs-go"
)

// Runner creates recovery containers.
type Runner interface {
	// Name is the backend's name as users choose it (--backend).
	Name() string
	// Create starts a container from spec, with the spec's process as its
	// first process, and returns once it runs.
	Create(ctx context.Context, id string, spec *rspec.Spec) (Container, error)
}

// Container is a running recovery container.
type Container interface {
	// Exec runs p in the container and waits for it; it returns the
	// process's exit status (128+N when killed by signal N).
	Exec(ctx context.Context, p Process) (int, error)
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

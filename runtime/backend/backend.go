// Package backend defines how a recovery session drives a container
// runtime: a Runner creates a container from an OCI spec, processes run in
// it one after another (containerd's task-and-exec model, which
// libcontainer offers too), and Destroy removes every trace of it.
// The engines live in subpackages: embedded (runc's libcontainer, linked
// in) and, later, containerd.
package backend

import (
	"context"
	"io"
	"os"

	"github.com/containerd/console"
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

	// Terminal asks for a pty. The backend hands the pty's console to
	// Attach once the process runs; Attach wires it to the user's
	// terminal and returns a function that undoes that.
	Terminal bool
	Width    uint16
	Height   uint16
	Attach   func(c console.Console) (detach func())

	// Signals are forwarded to the process while it runs.
	Signals <-chan os.Signal
}

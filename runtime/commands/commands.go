// Package commands is what nixrescue does, one command to a file, each
// built on the engine (runtime/engine): open the target, shape and start
// the container, run processes in it, close. A command returns data (a
// report, an exit status) and errors; writing them for people or as JSON
// is the front end's (cmd/nixrescue), and so is the wording of the
// options its messages mention (runtime/hint). What a command says while
// it runs (warnings, hints, notes) goes to the logger it is given.
package commands

import (
	"context"
	"io"
	"log/slog"
	"os"

	"github.com/nixrescue/nixrescue/runtime/engine"
	"github.com/nixrescue/nixrescue/runtime/nixos"
)

// Options are what every command that opens a target takes.
type Options struct {
	engine.Options
	// Container is the shape of the container, for commands that start
	// one.
	Container engine.ContainerOptions
	// Stdin, Stdout and Stderr are the command's; nil are nixrescue's.
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// Terminal gives the command's process the user's terminal (a pty
	// that follows its size), when there is one.
	Terminal bool
}

func (o *Options) defaults() {
	if o.Stdin == nil {
		o.Stdin = os.Stdin
	}
	if o.Stdout == nil {
		o.Stdout = os.Stdout
	}
	if o.Stderr == nil {
		o.Stderr = os.Stderr
	}
	if o.Log == nil {
		o.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
}

// open opens a session for o; container says it will run a container.
// What opening found amiss is logged as warnings.
func open(ctx context.Context, o *Options, container bool) (*engine.Session, error) {
	o.defaults()
	if err := o.checkPolicy(); err != nil {
		return nil, err
	}
	eo := o.Options
	eo.Container = container
	s, err := engine.Open(ctx, eo)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// prepare shapes the container of session s, and logs what it found
// amiss in opening and shaping. runsHere says whether the container's
// programs run on this host (not for a spec): a system this host cannot
// run is then refused.
func prepare(s *engine.Session, o *Options, runsHere bool) (*engine.Prepared, error) {
	warn(o.Log, s.Warnings())
	p, err := s.Prepare(o.Container)
	if err != nil {
		return nil, err
	}
	if err := p.CheckArch(runsHere); err != nil {
		return nil, err
	}
	warn(o.Log, p.Warnings)
	for _, n := range p.Notes {
		o.Log.Info(n)
	}
	return p, nil
}

func warn(log *slog.Logger, warnings []string) {
	for _, w := range warnings {
		log.Warn(w)
	}
}

// newProcess is a process of the command: its I/O (or the user's
// terminal).
func newProcess(o *Options, args, env []string) engine.Process {
	p := engine.Process{Args: args, Env: env, Cwd: "/", Stdin: o.Stdin, Stdout: o.Stdout, Stderr: o.Stderr}
	if o.Terminal {
		p.TTY = engine.UserTerminal(o.Stdin, o.Stdout)
	}
	return p
}

// currentGeneration reads the system profile of root.
func currentGeneration(root string) (string, int) {
	s, err := nixos.ResolveSystem(root, nixos.SystemChoice{})
	if err != nil {
		return "", 0
	}
	return s.StorePath, s.Generation
}

// currentRef is the generation the system profile of root points at, nil
// when it points at none.
func currentRef(root string) *GenerationRef {
	sys, gen := currentGeneration(root)
	if sys == "" {
		return nil
	}
	return &GenerationRef{Generation: gen, System: sys}
}

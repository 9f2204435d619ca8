package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/nixrescue/nixrescue/runtime/backend"
	"github.com/nixrescue/nixrescue/runtime/guard"
	"github.com/nixrescue/nixrescue/runtime/helper"
	"github.com/nixrescue/nixrescue/runtime/rootfs"
	rspec "github.com/opencontainers/runtime-spec/specs-go"
)

// Process is one process to run in a session's container.
type Process = backend.Process

// InterruptedError says a signal ended the session before its command
// ran; the session was torn down all the same.
type InterruptedError struct{}

func (InterruptedError) Error() string { return "interrupted: the session was torn down" }

// ExitCode is a shell's status for a command ended by SIGINT.
func (InterruptedError) ExitCode() int { return 128 + int(unix.SIGINT) }

// ErrInterrupted is the InterruptedError.
var ErrInterrupted error = InterruptedError{}

// Container is a session's running container, its hold its first
// process: processes run in it one after another (Exec).
type Container struct {
	s *Session
	c backend.Container
}

// Start starts the session's container, shaped as p, with the hold as its
// first process.
func (s *Session) Start(ctx context.Context, p *Prepared) (*Container, error) {
	ctx, cancel := s.with(ctx)
	defer cancel()
	spec, runner, err := s.create(ctx, p, nil)
	if err != nil {
		return nil, err
	}
	done := s.timer.start("container create")
	c, err := runner.Create(ctx, s.st.ID, spec)
	done()
	if err != nil {
		return nil, fmt.Errorf("start the recovery container: %w", err)
	}
	s.container = c
	return &Container{s: s, c: c}, nil
}

// RunFirst runs proc as the first process of the session's container,
// made around it, shaped as p (one process started instead of two: no
// hold), and returns its exit status. A program the host does not see as
// runnable in the root goes through the hold instead (Start, then Exec).
func (s *Session) RunFirst(ctx context.Context, p *Prepared, proc Process) (int, error) {
	if len(proc.Args) > 0 && !rootfs.Runnable(p.Root, proc.Args[0], proc.Env) {
		// A runtime would say why as text only: the hold says it as data
		// (and finds what only the container has, such as /run's).
		c, err := s.Start(ctx, p)
		if err != nil {
			return 0, err
		}
		return c.Exec(ctx, proc)
	}
	ctx, cancel := s.with(ctx)
	defer cancel()
	ch := make(chan os.Signal, 4)
	proc.Signals = ch
	spec, runner, err := s.create(ctx, p, nil)
	if err != nil {
		return 0, err
	}
	done := s.timer.start("container create")
	c, err := runner.CreateFirst(ctx, s.st.ID, spec, proc)
	done()
	if err != nil {
		return 0, fmt.Errorf("start the recovery container: %w", err)
	}
	s.container = c
	done = s.timer.start("command")
	defer done()
	return s.fwd.start(ctx, ch, c.Root(), proc, c.Run)
}

// create readies what a container of the session needs: resolv.conf in
// place, the spec, the backend, and the guard that kills the container's
// processes should this process die.
func (s *Session) create(ctx context.Context, p *Prepared, args []string) (spec *rspec.Spec, runner backend.Runner, err error) {
	helperSrc, err := helper.Binary()
	if err != nil {
		return nil, nil, err
	}
	resolvSrc, err := s.placeResolv(p)
	if err != nil {
		return nil, nil, err
	}
	spec, err = p.Spec(args, resolvSrc, helperSrc, "/"+s.st.ID)
	if err != nil {
		return nil, nil, err
	}
	// A rescue system running from its initramfs has no root to pivot
	// away from: runc's no-pivot mode (MS_MOVE and chroot) works there.
	if runner, err = s.runner(p.options.NoPivot || p.Host.InitramfsRoot); err != nil {
		return nil, nil, err
	}
	if p.Host.InitramfsRoot {
		s.log.Info("this host's / is its initramfs: the container's root is entered with MS_MOVE and chroot (runc's no-pivot mode)", "verbose", true)
	}
	if ctx.Err() != nil || s.fwd.interrupted() {
		return nil, nil, ErrInterrupted
	}
	started := s.timer.guard(GuardProcess)
	s.guard, err = guard.Start("/" + s.st.ID)
	started()
	if err != nil {
		// The session works without; only a killed nixrescue would then
		// leave the container's processes to the next session's sweep.
		s.log.Warn(err.Error())
	}
	return spec, runner, nil
}

// Root is the container's own view of its root (backend.Container.Root).
func (c *Container) Root() string { return c.c.Root() }

// Exec runs proc in the container and returns its exit status (128+N
// when a signal N ended it). A program that cannot be started is said on
// proc's error output, with a shell's status (126, 127).
func (c *Container) Exec(ctx context.Context, proc Process) (int, error) {
	ctx, cancel := c.s.with(ctx)
	defer cancel()
	ch := make(chan os.Signal, 4)
	proc.Signals = ch
	return c.s.fwd.start(ctx, ch, c.c.Root(), proc, func(ctx context.Context) (int, error) { return c.c.Exec(ctx, proc) })
}

// with is ctx, ended too when a signal ends the session.
func (s *Session) with(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(s.ctx, cancel)
	return ctx, func() { stop(); cancel() }
}

// Interrupted tells whether a signal came to nixrescue during the
// session (it was passed on to the process that ran then, if any).
func (s *Session) Interrupted() bool { return s.fwd.interrupted() }

// Time times a step of the session's own (activation, the command) among
// its phases; call the result when it ends.
func (s *Session) Time(phase string) func() { return s.timer.start(phase) }

// forwarder passes the signals a user sends nixrescue (SIGINT, SIGTERM,
// SIGHUP) to the process that runs in the container, and cancels the
// session when none does.
type forwarder struct {
	sigs    chan os.Signal
	cancel  context.CancelFunc
	mu      sync.Mutex
	current chan os.Signal
	intr    atomic.Bool
}

// watchSignals starts passing signals on, for a session whose context
// cancel ends.
func watchSignals(cancel context.CancelFunc) *forwarder {
	f := &forwarder{sigs: make(chan os.Signal, 8), cancel: cancel}
	signal.Notify(f.sigs, unix.SIGINT, unix.SIGTERM, unix.SIGHUP)
	go f.loop()
	return f
}

// stop lets signals go as before.
func (f *forwarder) stop() {
	signal.Stop(f.sigs)
	close(f.sigs)
}

func (f *forwarder) loop() {
	for s := range f.sigs {
		f.mu.Lock()
		cur := f.current
		f.mu.Unlock()
		f.intr.Store(true)
		if cur == nil {
			f.cancel()
			continue
		}
		select {
		case cur <- s:
		default:
		}
	}
}

func (f *forwarder) interrupted() bool { return f.intr.Load() }

// start starts p (whose Signals are ch) with run in a container whose root
// is at root, forwarding signals to it until it ends: unless the session
// was interrupted, or its program cannot run for want of an interpreter.
// Programs run directly, with no launcher of ours, so why one cannot run
// is said here, with a shell's status.
func (f *forwarder) start(ctx context.Context, ch chan os.Signal, root string, p Process, run func(context.Context) (int, error)) (int, error) {
	f.mu.Lock()
	f.current = ch
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.current = nil
		f.mu.Unlock()
	}()
	if ctx.Err() != nil {
		return 0, ErrInterrupted
	}
	if interp := rootfs.MissingInterpreter(root, p.Args[0], p.Env); interp != "" {
		fmt.Fprintf(errorWriter(p), "nixrescue: %s: cannot be run: its interpreter %s is missing in the target\n", p.Args[0], interp)
		return helper.ExitNotFound, nil
	}
	code, err := run(ctx)
	var se *backend.StartError
	if errors.As(err, &se) {
		return cannotRun(se, errorWriter(p)), nil
	}
	return code, err
}

// errorWriter is where p's errors go: its terminal, or its stderr.
func errorWriter(p Process) io.Writer {
	switch {
	case p.TTY != nil:
		return p.TTY.Out()
	case p.Stderr != nil:
		return p.Stderr
	}
	return os.Stderr
}

// cannotRun says to w why a program could not be started, and returns the
// status a shell gives for it: 127 when it is not there, 126 otherwise.
// (The process's own output, not the session's log: it is what the
// program would have said.)
func cannotRun(se *backend.StartError, w io.Writer) int {
	if se.NotFound() {
		where := "on the target's PATH"
		if strings.Contains(se.Program, "/") {
			where = "in the target"
		}
		fmt.Fprintf(w, "nixrescue: %s: command not found %s; check the name, or give its full path\n", se.Program, where)
		return helper.ExitNotFound
	}
	fmt.Fprintf(w, "nixrescue: %s: cannot be run: %s\n", se.Program, se.Reason())
	return helper.ExitCannotExecute
}

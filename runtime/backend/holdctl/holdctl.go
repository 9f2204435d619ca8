// Package holdctl is nixrescue's end of the hold's control connection: the
// hold (runtime/helper), the first process of every recovery container
// that outlives one command, starts the session's processes in the
// container when asked. A fork and an exec from a process that is already
// in the container's namespaces, cgroup and limits cost a millisecond; a
// runtime's exec (runc exec, a containerd exec) sets a process up from
// scratch with a re-executed runc init, many times that, and a session
// runs two to four of them (activation, systemd-tmpfiles, the sandbox
// probe, the command).
//
// Both backends use it: the embedded one hands the hold one end of a
// socket pair; containerd, which cannot pass descriptors to a task, has
// the hold listen on its own /run, and nixrescue connects through
// /proc/PID/root before any program of the target has run.
package holdctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/containerd/console"
	"golang.org/x/sys/unix"

	"github.com/nixrescue/nixrescue/runtime/backend"
	"github.com/nixrescue/nixrescue/runtime/helper"
)

// Conn is a control connection to a hold.
type Conn struct {
	mu sync.Mutex
	c  *net.UnixConn
}

// Pair makes a connection and the socket the hold inherits for it
// (helper.SessionFDEnv names its descriptor); the caller closes that
// socket once the hold has it.
func Pair() (*Conn, *os.File, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("create the hold's socket: %w", err)
	}
	ours := os.NewFile(uintptr(fds[0]), "hold")
	defer ours.Close()
	theirs := os.NewFile(uintptr(fds[1]), "hold")
	c, err := helper.UnixConn(ours)
	if err != nil {
		theirs.Close()
		return nil, nil, err
	}
	return &Conn{c: c}, theirs, nil
}

// Dial connects to a hold listening at path, trying until it listens;
// alive tells whether the hold still runs (no point waiting otherwise).
func Dial(ctx context.Context, path string, alive func() bool) (*Conn, error) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: path, Net: "unixpacket"})
		if err == nil {
			return &Conn{c: c}, nil
		}
		if !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ECONNREFUSED) {
			return nil, fmt.Errorf("connect to the hold: %w", err)
		}
		if time.Now().After(deadline) || !alive() {
			return nil, fmt.Errorf("connect to the hold: it did not listen at %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
}

// Close ends the connection; the hold then exits, and the container with
// it.
func (c *Conn) Close() error { return c.c.Close() }

// Exec has the hold start p and waits for it: its exit status (128+N when
// killed by signal N), or a *backend.StartError when it could not start.
// Signals on p.Signals are passed on; ctx's end kills it.
func (c *Conn) Exec(ctx context.Context, p backend.Process) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	std, files, err := c.start(p)
	if err != nil {
		return -1, err
	}
	if p.TTY != nil {
		if len(files) != 1 {
			closeAll(files)
			c.signal(unix.SIGKILL)
			return -1, errors.New("the hold sent no pty for the terminal")
		}
		cons, err := console.ConsoleFromFile(files[0])
		if err != nil {
			files[0].Close()
			c.signal(unix.SIGKILL)
			return -1, fmt.Errorf("use the pty: %w", err)
		}
		defer cons.Close()
		// Runs before the Close above: the output is drained first.
		defer backend.AttachTTY(cons, p.TTY)()
	} else {
		closeAll(files)
	}
	return c.wait(ctx, p, std)
}

// start has the hold start p; it returns p's standard I/O (nil on a
// terminal) and the files of the hold's answer (the pty's master).
func (c *Conn) start(p backend.Process) (*stdio, []*os.File, error) {
	start := helper.Start{Args: p.Args, Env: p.Env, Cwd: p.Cwd}
	var std *stdio
	if p.TTY != nil {
		start.TTY = true
		start.Width, start.Height = p.TTY.Size()
	} else {
		var err error
		if std, err = newStdio(p); err != nil {
			return nil, nil, err
		}
	}
	err := helper.Send(c.c, helper.Request{Start: &start}, std.childFiles()...)
	std.sent()
	if err != nil {
		std.stop()
		return nil, nil, lost(err)
	}
	r, files, err := helper.Receive(c.c)
	if err != nil {
		std.stop()
		return nil, nil, lost(err)
	}
	if r.NoExec != 0 || r.Error != "" {
		closeAll(files)
		std.stop()
		if r.NoExec != 0 {
			return nil, nil, &backend.StartError{Program: p.Args[0], Err: r.NoExec}
		}
		return nil, nil, fmt.Errorf("start %s: %s", p.Args[0], r.Error)
	}
	return std, files, nil
}

// wait waits for the process p the hold started to exit, passing
// p.Signals on and killing it when ctx ends; then for its output (std).
func (c *Conn) wait(ctx context.Context, p backend.Process, std *stdio) (int, error) {
	type result struct {
		code int
		err  error
	}
	exited := make(chan result, 1)
	go func() {
		for {
			r, files, err := helper.Receive(c.c)
			closeAll(files)
			if err != nil {
				exited <- result{err: err}
				return
			}
			if r.Exited != nil {
				exited <- result{code: *r.Exited}
				return
			}
		}
	}()
	done := ctx.Done()
	for {
		select {
		case res := <-exited:
			std.wait(2 * time.Second)
			if res.err != nil {
				return -1, lost(res.err)
			}
			return res.code, nil
		case <-done:
			c.signal(unix.SIGKILL)
			done = nil
		case s, ok := <-p.Signals:
			if !ok {
				p.Signals = nil
				continue
			}
			if sig, ok := s.(syscall.Signal); ok {
				c.signal(sig)
			}
		}
	}
}

func (c *Conn) signal(sig syscall.Signal) {
	_ = helper.Send(c.c, helper.Request{Signal: int(sig)})
}

func lost(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, unix.EPIPE) || errors.Is(err, unix.ECONNRESET) {
		return errors.New("the container's first process (the hold) is gone: the container has ended")
	}
	return fmt.Errorf("talk to the container's hold: %w", err)
}

// stdio is a process's stdin, stdout and stderr as the hold gets them:
// the caller's files as they are, pipes copied to and from anything else
// (one pipe when stdout and stderr are one writer, so that their order
// holds, as exec.Cmd does).
type stdio struct {
	child   [3]*os.File
	ourEnds []*os.File // closed once sent: the child's copies remain
	readers []*os.File // read ends of the output pipes
	copies  sync.WaitGroup
	// When output last moved (unix nanoseconds), and how many copies are
	// writing it on: see wait.
	moved   atomic.Int64
	writing atomic.Int32
}

func newStdio(p backend.Process) (*stdio, error) {
	s := &stdio{}
	s.moved.Store(time.Now().UnixNano())
	fail := func(err error) (*stdio, error) {
		s.sent()
		s.stop()
		return nil, err
	}
	switch in := p.Stdin.(type) {
	case *os.File:
		s.child[0] = in
	case nil:
		f, err := os.Open(os.DevNull)
		if err != nil {
			return fail(err)
		}
		s.child[0] = f
		s.ourEnds = append(s.ourEnds, f)
	default:
		r, w, err := os.Pipe()
		if err != nil {
			return fail(err)
		}
		s.child[0] = r
		s.ourEnds = append(s.ourEnds, r)
		// Not waited for: a reader that never ends (a terminal) must not
		// hold the session; the write fails once the process is gone.
		go func() {
			_, _ = io.Copy(w, in)
			w.Close()
		}()
	}
	out := func(w io.Writer) (*os.File, error) {
		switch w := w.(type) {
		case *os.File:
			return w, nil
		case nil:
			f, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
			if err == nil {
				s.ourEnds = append(s.ourEnds, f)
			}
			return f, err
		}
		r, pw, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		s.ourEnds = append(s.ourEnds, pw)
		s.readers = append(s.readers, r)
		s.copies.Add(1)
		go func() {
			defer s.copies.Done()
			s.copy(w, r)
		}()
		return pw, nil
	}
	var err error
	if s.child[1], err = out(p.Stdout); err != nil {
		return fail(err)
	}
	if backend.SameWriter(p.Stdout, p.Stderr) {
		s.child[2] = s.child[1]
	} else if s.child[2], err = out(p.Stderr); err != nil {
		return fail(err)
	}
	return s, nil
}

func (s *stdio) childFiles() []*os.File {
	if s == nil {
		return nil
	}
	return s.child[:]
}

// sent closes our copies of what the child got.
func (s *stdio) sent() {
	if s == nil {
		return
	}
	closeAll(s.ourEnds)
	s.ourEnds = nil
}

// copy copies r to w as io.Copy does, keeping track of when output last
// moved.
func (s *stdio) copy(w io.Writer, r io.Reader) {
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		s.moved.Store(time.Now().UnixNano())
		if n > 0 {
			s.writing.Add(1)
			_, werr := w.Write(buf[:n])
			s.writing.Add(-1)
			s.moved.Store(time.Now().UnixNano())
			if werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// wait waits, once the process has ended, for its output to be copied to
// its end. A program it left in the background may keep a pipe open and
// silent: after idle without output (none read, none being written) the
// copies stop, and teardown kills that program. Output that still flows to
// a slow reader is waited for.
func (s *stdio) wait(idle time.Duration) {
	if s == nil {
		return
	}
	s.moved.Store(time.Now().UnixNano()) // the idle time counts from the end
	done := make(chan struct{})
	go func() {
		s.copies.Wait()
		close(done)
	}()
	tick := time.NewTicker(idle / 10)
	defer tick.Stop()
	for {
		select {
		case <-done:
			s.stop()
			return
		case <-tick.C:
			if s.writing.Load() == 0 && time.Since(time.Unix(0, s.moved.Load())) > idle {
				s.stop()
				return
			}
		}
	}
}

// stop ends the copies and waits for them to return, so that nothing
// writes to the caller's writers afterwards (closing a pipe's read end
// wakes its reader).
func (s *stdio) stop() {
	if s == nil {
		return
	}
	closeAll(s.readers)
	s.readers = nil
	s.copies.Wait()
}

func closeAll(files []*os.File) {
	for _, f := range files {
		if f != nil {
			f.Close()
		}
	}
}

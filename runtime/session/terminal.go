package session

import (
	"io"
	"os"
	"os/signal"
	"time"

	"github.com/containerd/console"
	"golang.org/x/sys/unix"
)

// terminal wires a container's pty to the user's terminal: raw mode, both
// directions copied, and the pty resized whenever the window is.
type terminal struct {
	current console.Console
	out     io.Writer
}

// newTerminal returns nil when stdin is not a terminal: the command then
// runs with plain pipes, as `docker run` without -t does.
func newTerminal(stdin io.Reader, stdout io.Writer) *terminal {
	f, ok := stdin.(*os.File)
	if !ok {
		return nil
	}
	c, err := console.ConsoleFromFile(f)
	if err != nil {
		return nil
	}
	return &terminal{current: c, out: stdout}
}

func (t *terminal) size() (uint16, uint16) {
	ws, err := t.current.Size()
	if err != nil {
		return 80, 24
	}
	return ws.Width, ws.Height
}

// attach starts copying between the user's terminal and the container's
// pty; the returned function stops it and restores the terminal.
func (t *terminal) attach(pty console.Console) func() {
	_ = t.current.SetRaw()
	winch := make(chan os.Signal, 1)
	signal.Notify(winch, unix.SIGWINCH)
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-winch:
				_ = pty.ResizeFrom(t.current)
			}
		}
	}()
	go func() { _, _ = io.Copy(pty, t.current) }()
	outDone := make(chan struct{})
	go func() {
		// Ends with EIO once the last process holding the pty exits.
		_, _ = io.Copy(t.out, pty)
		close(outDone)
	}()
	return func() {
		select {
		case <-outDone:
		case <-time.After(2 * time.Second):
		}
		signal.Stop(winch)
		close(stop)
		_ = t.current.Reset()
	}
}

package backend

import (
	"io"
	"os"
	"os/signal"

	"github.com/containerd/console"
	"golang.org/x/sys/unix"
)

// terminal is the user's terminal as a TTY: raw mode, its size, and
// SIGWINCH for its changes.
type terminal struct {
	current console.Console
	in      io.Reader
	out     io.Writer
	resized chan struct{}
}

// UserTerminal is the user's terminal as a TTY, or nil when stdin is not
// a terminal: the command then runs with plain pipes, as `docker run`
// without -t does.
func UserTerminal(stdin io.Reader, stdout io.Writer) TTY {
	f, ok := stdin.(*os.File)
	if !ok {
		return nil
	}
	c, err := console.ConsoleFromFile(f)
	if err != nil {
		return nil
	}
	t := &terminal{current: c, in: c, out: stdout, resized: make(chan struct{}, 1)}
	winch := make(chan os.Signal, 1)
	signal.Notify(winch, unix.SIGWINCH)
	go func() {
		for range winch {
			select {
			case t.resized <- struct{}{}:
			default:
			}
		}
	}()
	return t
}

func (t *terminal) In() io.Reader            { return t.in }
func (t *terminal) Out() io.Writer           { return t.out }
func (t *terminal) Resized() <-chan struct{} { return t.resized }

func (t *terminal) Size() (uint16, uint16) {
	ws, err := t.current.Size()
	if err != nil {
		return 80, 24
	}
	return ws.Width, ws.Height
}

func (t *terminal) Raw() func() {
	_ = t.current.SetRaw()
	return func() { _ = t.current.Reset() }
}

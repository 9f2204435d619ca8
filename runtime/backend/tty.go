package backend

import (
	"io"
	"time"

	"github.com/containerd/console"
)

// AttachTTY wires the container's pty to the user's terminal: raw mode, both
// directions copied, the pty resized with the window. The result waits
// for the output to drain (it ends with EIO once the process holding the
// pty exits) and restores the terminal.
func AttachTTY(pty console.Console, tty TTY) func() {
	restore := tty.Raw()
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-tty.Resized():
				w, h := tty.Size()
				_ = pty.Resize(console.WinSize{Width: w, Height: h})
			}
		}
	}()
	go func() { _, _ = io.Copy(pty, tty.In()) }()
	outDone := make(chan struct{})
	go func() {
		_, _ = io.Copy(tty.Out(), pty)
		close(outDone)
	}()
	return func() {
		select {
		case <-outDone:
		case <-time.After(2 * time.Second):
		}
		close(stop)
		restore()
	}
}

package image

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nixrescue/nixrescue/runtime/nbd"
)

// An NBD export is qemu-storage-daemon's NBD server on a unix socket
// nixrescue makes (in the session's directory, which only root reaches),
// attached by the kernel's nbd driver: the session then has a block
// device, /dev/nbdN, where the FUSE export needs a loop device on a FUSE
// file. It reads as fast as the image's format allows, and has none of
// the FUSE export's hazards (serialize.go).

// listen makes the NBD export's listening socket at path, for the daemon
// (its descriptor 3). The path may be longer than a socket address takes:
// it is bound through its directory's descriptor.
func listen(path string) (*os.File, error) {
	var f *os.File
	err := viaDir(path, func(short string) error {
		l, err := net.ListenUnix("unix", &net.UnixAddr{Name: short, Net: "unix"})
		if err != nil {
			return err
		}
		defer l.Close()
		l.SetUnlinkOnClose(false)
		f, err = l.File()
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("make the NBD export's socket %s: %w", path, err)
	}
	return f, nil
}

// viaDir calls fn with a short name of path, through a descriptor of
// its directory (/proc/self/fd/N/base): a unix socket's address is at
// most 107 bytes, and a state directory may be deeper.
func viaDir(path string, fn func(short string) error) error {
	dir, err := unix.Open(filepath.Dir(path), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(dir)
	return fn(fmt.Sprintf("/proc/self/fd/%d/%s", dir, filepath.Base(path)))
}

// handshake connects to the daemon's NBD export, waiting for the daemon
// to serve it: the connection waits in the socket's queue until then, or
// fails once the daemon, which holds the only listening copy, is gone.
func (e *Export) handshake(ctx context.Context, o ExportOptions) error {
	type dialed struct {
		c   *nbd.Conn
		err error
	}
	ch := make(chan dialed, 1)
	go func() {
		var d dialed
		d.err = viaDir(o.Socket, func(short string) error {
			d.c, d.err = nbd.Dial(short, o.Socket)
			return d.err
		})
		ch <- d
	}()
	var d dialed
	select {
	case d = <-ch:
	case <-ctx.Done():
		e.Stop()
		return ctx.Err()
	}
	if d.err == nil {
		e.conn = d.c
		return nil
	}
	// A daemon that could not open the image ends at once, and says why.
	select {
	case <-e.done:
		e.p = nil
		msg, _ := os.ReadFile(o.Log)
		os.Remove(o.Socket)
		return interpret(o.Image, strings.TrimSpace(string(msg)))
	case <-time.After(2 * time.Second):
		e.Stop()
		return fmt.Errorf("qemu-storage-daemon's NBD export of %s: %w", o.Image, d.err)
	}
}

// Via is how the export is reached: ViaNBD or ViaFUSE.
func (e *Export) Via() string {
	if e.Socket != "" {
		return ViaNBD
	}
	return ViaFUSE
}

// ReaderAt reads an NBD export before it is attached (a partition table,
// to tell the block size to attach it with); nil for a FUSE export.
func (e *Export) ReaderAt() io.ReaderAt {
	if e.conn == nil {
		return nil
	}
	return e.conn
}

// Size is an NBD export's size in bytes.
func (e *Export) Size() int64 {
	if e.conn == nil {
		return 0
	}
	return int64(e.conn.Size)
}

// Attach hands an NBD export's connection to the kernel, with the
// logical block size given (512 or 4096), and returns the device
// (/dev/nbdN), which Stop disconnects.
func (e *Export) Attach(blockSize int) (string, error) {
	if e.conn == nil {
		return "", errors.New("the export is not an NBD export waiting to be attached")
	}
	dev, err := e.conn.Attach(nbd.AttachOptions{BlockSize: blockSize, Backend: e.Socket})
	// The kernel holds the connection now (or it failed): nixrescue's
	// copy of it goes either way.
	e.conn.Close()
	e.conn = nil
	if err != nil {
		return "", err
	}
	e.Device = dev
	return dev, nil
}

// detachRecorded disconnects the nbd devices a killed session left on its
// export: those whose backend the kernel records as its socket, and the
// device recorded where the kernel records none (before Linux 5.17).
func detachRecorded(r Recorded) error {
	if r.Socket == "" {
		return nil
	}
	devs := nbd.Serving(r.Socket)
	if r.Device != "" && len(devs) == 0 && !nbd.RecordsBackend(r.Device) && nbd.Connected(r.Device) {
		devs = append(devs, r.Device)
	}
	for _, d := range devs {
		if err := nbd.Detach(d); err != nil {
			return err
		}
	}
	return nil
}

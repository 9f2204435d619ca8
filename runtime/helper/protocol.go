package helper

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// The hold starts the session's processes in the container on request,
// over a SOCK_SEQPACKET unix socket (one message per datagram, file
// descriptors alongside): a fork and an exec from a process already in the
// container's namespaces, cgroup and limits, instead of a runtime's exec
// (runc init, re-executed and set up again each time, ~20-30 ms here).
//
// nixrescue sends a Request with Start, and with it the process's stdin,
// stdout and stderr (none for a terminal: the hold makes the pty). The hold
// answers Started (with the pty's master for a terminal) or Error, later
// Exited. While the process runs nixrescue may send Signal requests. One
// process runs at a time.

// Request is a message from nixrescue to the hold.
type Request struct {
	Start  *Start `json:"start,omitempty"`
	Signal int    `json:"signal,omitempty"`
}

// Start asks for a process.
type Start struct {
	Args []string `json:"args"`
	Env  []string `json:"env"`
	Cwd  string   `json:"cwd"`
	// TTY runs the process on a new pty of the container's, of this size.
	TTY    bool   `json:"tty,omitempty"`
	Width  uint16 `json:"width,omitempty"`
	Height uint16 `json:"height,omitempty"`
}

// Reply is a message from the hold to nixrescue.
type Reply struct {
	Started int    `json:"started,omitempty"` // the process's PID
	Error   string `json:"error,omitempty"`   // the process could not be started
	Exited  *int   `json:"exited,omitempty"`  // its status, 128+N when killed by signal N
}

// MaxMessage bounds a message (the arguments and environment of a
// process).
const MaxMessage = 256 << 10

// UnixConn is a connection on the unix socket f (a duplicate: the caller
// closes f).
func UnixConn(f *os.File) (*net.UnixConn, error) {
	c, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("use the control socket: %w", err)
	}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		c.Close()
		return nil, errors.New("the control socket is not a unix socket")
	}
	return uc, nil
}

// Send writes v as one message, with files.
func Send(c *net.UnixConn, v any, files ...*os.File) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if len(b) > MaxMessage {
		return fmt.Errorf("message of %d bytes is over the limit of %d (arguments and environment too long)", len(b), MaxMessage)
	}
	var oob []byte
	if len(files) > 0 {
		fds := make([]int, len(files))
		for i, f := range files {
			fds[i] = int(f.Fd())
		}
		oob = unix.UnixRights(fds...)
	}
	_, _, err = c.WriteMsgUnix(b, oob, nil)
	return err
}

// Receive reads one message into v, with the files that came with it.
// The end of the connection is io.EOF.
func Receive(c *net.UnixConn, v any) ([]*os.File, error) {
	b := make([]byte, MaxMessage+1)
	oob := make([]byte, unix.CmsgSpace(3*4))
	n, oobn, flags, _, err := c.ReadMsgUnix(b, oob)
	if err != nil {
		return nil, err
	}
	if n == 0 && oobn == 0 {
		return nil, io.EOF
	}
	files, ferr := filesOf(oob[:oobn])
	if flags&(unix.MSG_TRUNC|unix.MSG_CTRUNC) != 0 {
		closeAll(files)
		return nil, errors.New("message truncated")
	}
	if ferr != nil {
		return nil, ferr
	}
	if err := json.Unmarshal(b[:n], v); err != nil {
		closeAll(files)
		return nil, fmt.Errorf("bad message: %w", err)
	}
	return files, nil
}

func filesOf(oob []byte) ([]*os.File, error) {
	if len(oob) == 0 {
		return nil, nil
	}
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, err
	}
	var files []*os.File
	for i := range msgs {
		fds, err := unix.ParseUnixRights(&msgs[i])
		if err != nil {
			continue
		}
		for _, fd := range fds {
			unix.CloseOnExec(fd)
			files = append(files, os.NewFile(uintptr(fd), "received"))
		}
	}
	return files, nil
}

func closeAll(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}

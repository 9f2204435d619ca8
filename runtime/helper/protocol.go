package helper

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// The hold starts the session's processes in the container on request,
// over a SOCK_SEQPACKET unix socket (one message per datagram, file
// descriptors alongside): a fork and an exec from a process already in the
// container's namespaces, cgroup and limits, instead of a runtime's exec
// (runc init, re-executed and set up again each time).
//
// nixrescue sends a Request with Start, and with it the process's stdin,
// stdout and stderr (none for a terminal: the hold makes the pty). The hold
// answers Started (with the pty's master for a terminal) or Error, later
// Exited. While the process runs nixrescue may send Signal requests. One
// process runs at a time.
//
// A message is a list of strings, each ended by a NUL byte (what C, which
// the hold is written in, reads without a parser; no argument or variable
// of a process can hold a NUL): its kind, then its fields.
//
//	start NUL tty(0|1) NUL width NUL height NUL cwd NUL
//	      len(args) NUL args… len(env) NUL env…
//	signal NUL number NUL
//	started NUL pid NUL | noexec NUL errno NUL | error NUL text NUL |
//	exited NUL status NUL
//
// noexec says the program is not there, or execve refused it (its errno);
// error, that the hold could not get as far as trying.

// Request is a message from nixrescue to the hold.
type Request struct {
	Start  *Start
	Signal int
}

// Start asks for a process.
type Start struct {
	Args []string
	Env  []string
	Cwd  string
	// TTY runs the process on a new pty of the container's, of this size.
	TTY    bool
	Width  uint16
	Height uint16
}

// Reply is a message from the hold to nixrescue.
type Reply struct {
	Started int    // the process's PID
	Error   string // the hold could not start the process
	// NoExec is why the program could not be executed: ENOENT when it is
	// not there, execve's errno otherwise.
	NoExec unix.Errno
	Exited *int // its status, 128+N when killed by signal N
}

// MaxMessage bounds a message (the arguments and environment of a
// process); hold.h has the same.
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

// Encode is r as a message.
func (r Request) Encode() ([]byte, error) {
	var b bytes.Buffer
	field := func(s string) error {
		if strings.IndexByte(s, 0) >= 0 {
			return fmt.Errorf("%q holds a NUL byte, which no process can be given", s)
		}
		b.WriteString(s)
		b.WriteByte(0)
		return nil
	}
	list := func(v []string) error {
		_ = field(strconv.Itoa(len(v)))
		for _, s := range v {
			if err := field(s); err != nil {
				return err
			}
		}
		return nil
	}
	switch {
	case r.Start != nil:
		s := r.Start
		tty := "0"
		if s.TTY {
			tty = "1"
		}
		for _, f := range []string{"start", tty, strconv.Itoa(int(s.Width)), strconv.Itoa(int(s.Height))} {
			_ = field(f)
		}
		if err := field(s.Cwd); err != nil {
			return nil, err
		}
		if err := list(s.Args); err != nil {
			return nil, err
		}
		if err := list(s.Env); err != nil {
			return nil, err
		}
	case r.Signal > 0:
		_ = field("signal")
		_ = field(strconv.Itoa(r.Signal))
	default:
		return nil, errors.New("empty request")
	}
	if b.Len() > MaxMessage {
		return nil, fmt.Errorf("message of %d bytes is over the limit of %d (arguments and environment too long)", b.Len(), MaxMessage)
	}
	return b.Bytes(), nil
}

// DecodeReply reads a reply message.
func DecodeReply(b []byte) (Reply, error) {
	var r Reply
	fields := strings.Split(string(b), "\x00")
	if len(fields) != 3 || fields[2] != "" {
		return r, fmt.Errorf("bad reply %q", b)
	}
	kind, value := fields[0], fields[1]
	if kind == "error" {
		r.Error = value
		return r, nil
	}
	n, err := strconv.Atoi(value)
	if err != nil {
		return r, fmt.Errorf("bad reply %q", b)
	}
	switch kind {
	case "started":
		r.Started = n
	case "exited":
		r.Exited = &n
	case "noexec":
		r.NoExec = unix.Errno(n)
	default:
		return r, fmt.Errorf("bad reply %q", b)
	}
	return r, nil
}

// Send sends r as one message, with files.
func Send(c *net.UnixConn, r Request, files ...*os.File) error {
	b, err := r.Encode()
	if err != nil {
		return err
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

// Receive reads one reply, with the files that came with it. The end of
// the connection is io.EOF.
func Receive(c *net.UnixConn) (Reply, []*os.File, error) {
	b := make([]byte, 4096+1) // replies are short: a number or a message
	oob := make([]byte, unix.CmsgSpace(3*4))
	n, oobn, flags, _, err := c.ReadMsgUnix(b, oob)
	if err != nil {
		return Reply{}, nil, err
	}
	if n == 0 && oobn == 0 {
		return Reply{}, nil, io.EOF
	}
	files, ferr := filesOf(oob[:oobn])
	if flags&(unix.MSG_TRUNC|unix.MSG_CTRUNC) != 0 {
		closeAll(files)
		return Reply{}, nil, errors.New("message truncated")
	}
	if ferr != nil {
		return Reply{}, nil, ferr
	}
	r, err := DecodeReply(b[:n])
	if err != nil {
		closeAll(files)
		return Reply{}, nil, err
	}
	return r, files, nil
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

// Package nbd is the client side of the Network Block Device protocol, as
// far as nixrescue needs it: the fixed-newstyle handshake with a server
// on a unix socket (qemu-storage-daemon's NBD export), reads before the
// kernel takes the connection over, and the kernel's nbd driver driven
// through its generic-netlink interface (connect, disconnect, and which
// devices serve which backend), which is what makes the export a block
// device (/dev/nbdN).
//
// The protocol is the one of the NBD project's doc/proto.md; only what
// the kernel's driver speaks after the handshake is negotiated (simple
// replies, no structured replies or metadata contexts), so that the
// connection can be handed to it as it is.
package nbd

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// Handshake and transmission constants of the protocol (doc/proto.md).
const (
	magicNBD       = 0x4e42444d41474943 // "NBDMAGIC"
	magicOption    = 0x49484156454f5054 // "IHAVEOPT"
	magicReply     = 0x0003e889045565a9 // an option's reply
	magicRequest   = 0x25609513
	magicSimpleRep = 0x67446698

	flagFixedNewstyle = 1 << 0 // handshake flags, and the client's
	flagNoZeroes      = 1 << 1

	optGo      = 7
	repAck     = 1
	repInfo    = 3
	repErrBit  = 1 << 31
	infoExport = 0

	cmdRead = 0
)

// FlagReadOnly is the transmission flag of a read-only export.
const FlagReadOnly = 1 << 1

// Conn is a connection to an export, past the handshake: ready for the
// transmission phase, which ReadAt speaks until the connection is handed
// to the kernel (Attach).
type Conn struct {
	// Size is the export's size in bytes, Flags its transmission flags.
	Size  uint64
	Flags uint16
	c     *net.UnixConn
	mu    sync.Mutex
	next  uint64
}

// Dial connects to the server on the unix socket path and asks for the
// export name (NBD_OPT_GO).
func Dial(path, name string) (*Conn, error) {
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, err
	}
	conn := &Conn{c: c}
	// A server that hangs in the handshake is not waited for forever.
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	if err := conn.handshake(name); err != nil {
		c.Close()
		return nil, fmt.Errorf("NBD handshake with %s: %w", path, err)
	}
	_ = c.SetDeadline(time.Time{})
	return conn, nil
}

// handshake greets the server, and asks for the export with NBD_OPT_GO,
// taking its size and flags from the NBD_INFO_EXPORT reply.
func (c *Conn) handshake(name string) error {
	var greeting struct {
		Magic, Option uint64
		Flags         uint16
	}
	if err := binary.Read(c.c, binary.BigEndian, &greeting); err != nil {
		return err
	}
	if greeting.Magic != magicNBD || greeting.Option != magicOption {
		return errors.New("not a newstyle NBD server")
	}
	if greeting.Flags&flagFixedNewstyle == 0 {
		return errors.New("the server does not speak fixed newstyle")
	}
	client := uint32(flagFixedNewstyle)
	if greeting.Flags&flagNoZeroes != 0 {
		client |= flagNoZeroes
	}
	var req bytes.Buffer
	w := func(v any) { _ = binary.Write(&req, binary.BigEndian, v) }
	w(client)
	w(uint64(magicOption))
	w(uint32(optGo))
	w(uint32(4 + len(name) + 2))
	w(uint32(len(name)))
	req.WriteString(name)
	w(uint16(0)) // no information requests: NBD_INFO_EXPORT comes anyway
	if _, err := c.c.Write(req.Bytes()); err != nil {
		return err
	}
	return c.goReplies()
}

// goReplies reads the replies to NBD_OPT_GO up to its acknowledgement.
func (c *Conn) goReplies() error {
	sized := false
	for {
		var rep struct {
			Magic        uint64
			Option, Type uint32
			Length       uint32
		}
		if err := binary.Read(c.c, binary.BigEndian, &rep); err != nil {
			return err
		}
		if rep.Magic != magicReply || rep.Length > 1<<16 {
			return errors.New("malformed option reply")
		}
		data := make([]byte, rep.Length)
		if _, err := io.ReadFull(c.c, data); err != nil {
			return err
		}
		switch {
		case rep.Type&repErrBit != 0:
			return fmt.Errorf("the server refused the export (error %#x: %s)", rep.Type, data)
		case rep.Type == repInfo && len(data) >= 12 && binary.BigEndian.Uint16(data) == infoExport:
			c.Size = binary.BigEndian.Uint64(data[2:])
			c.Flags = binary.BigEndian.Uint16(data[10:])
			sized = true
		case rep.Type == repAck:
			if !sized {
				return errors.New("the server did not say the export's size")
			}
			return nil
		}
	}
}

// ReadAt reads the export with NBD_CMD_READ, one request at a time.
func (c *Conn) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || uint64(off) >= c.Size {
		return 0, io.EOF
	}
	want := p
	if uint64(off)+uint64(len(p)) > c.Size {
		want = p[:c.Size-uint64(off)]
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.next++
	req := make([]byte, 28)
	binary.BigEndian.PutUint32(req, magicRequest)
	binary.BigEndian.PutUint16(req[6:], cmdRead)
	binary.BigEndian.PutUint64(req[8:], c.next)
	binary.BigEndian.PutUint64(req[16:], uint64(off))
	binary.BigEndian.PutUint32(req[24:], uint32(len(want)))
	if _, err := c.c.Write(req); err != nil {
		return 0, err
	}
	rep := make([]byte, 16)
	if _, err := io.ReadFull(c.c, rep); err != nil {
		return 0, err
	}
	if binary.BigEndian.Uint32(rep) != magicSimpleRep || binary.BigEndian.Uint64(rep[8:]) != c.next {
		return 0, errors.New("NBD: malformed reply to a read")
	}
	if e := binary.BigEndian.Uint32(rep[4:]); e != 0 {
		return 0, fmt.Errorf("NBD: the server failed a read at %d (error %d)", off, e)
	}
	if _, err := io.ReadFull(c.c, want); err != nil {
		return 0, err
	}
	if len(want) < len(p) {
		return len(want), io.EOF
	}
	return len(p), nil
}

// Close closes the connection (a connection the kernel took stays
// open in the kernel).
func (c *Conn) Close() error { return c.c.Close() }

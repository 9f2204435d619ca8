package nbd

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// The kernel's nbd generic-netlink interface (linux/nbd-netlink.h, and
// the client flags of linux/nbd.h).
const (
	familyName = "nbd"

	cmdConnect    = 1
	cmdDisconnect = 2

	attrIndex      = 1
	attrSizeBytes  = 2
	attrBlockSize  = 3
	attrServerFlag = 5
	attrClientFlag = 6
	attrSockets    = 7
	attrBackend    = 10 // NBD_ATTR_BACKEND_IDENTIFIER, Linux 5.17 on
	sockItem       = 1
	sockFD         = 1

	clientDestroyOnDisconnect = 1 << 0
)

// ErrNoKernelNBD says the running kernel has no nbd driver loaded.
var ErrNoKernelNBD = errors.New("the kernel's nbd driver is not loaded (modprobe nbd)")

// Available tells whether the kernel's nbd driver is there to connect
// to: its generic-netlink family.
func Available() error {
	c, err := genetlink.Dial(nil)
	if err != nil {
		return fmt.Errorf("generic netlink: %w", err)
	}
	defer c.Close()
	if _, err := c.GetFamily(familyName); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return ErrNoKernelNBD
		}
		return fmt.Errorf("generic netlink family nbd: %w", err)
	}
	return nil
}

// AttachOptions say how the kernel takes a connection over.
type AttachOptions struct {
	// BlockSize is the device's logical block size: 512 (the default)
	// or 4096, as the disk's partition table was written for.
	BlockSize int
	// Backend names the server, for the kernel's record of it
	// (/sys/block/nbdN/backend): Connected finds the device by it.
	Backend string
}

// Attach hands the connection to the kernel, which makes it a block
// device, and returns that device (/dev/nbdN). A device that existed and
// was free is taken and left after (Detach); when none is free the
// kernel adds one, removed again at Detach.
func (c *Conn) Attach(o AttachOptions) (string, error) {
	if o.BlockSize == 0 {
		o.BlockSize = 512
	}
	gc, err := genetlink.Dial(nil)
	if err != nil {
		return "", fmt.Errorf("generic netlink: %w", err)
	}
	defer gc.Close()
	fam, err := gc.GetFamily(familyName)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", ErrNoKernelNBD
		}
		return "", err
	}
	f, err := c.c.File()
	if err != nil {
		return "", err
	}
	defer f.Close()
	for _, idx := range append(freeDevices(), -1) {
		dev, err := c.connect(gc, fam, o, int(f.Fd()), idx)
		if errors.Is(err, unix.EBUSY) {
			continue // taken meanwhile by another client
		}
		return dev, err
	}
	return "", errors.New("unreachable")
}

// connect is one NBD_CMD_CONNECT: on device idx, or (-1) one the kernel
// chooses, adding a device it removes on disconnect.
func (c *Conn) connect(gc *genetlink.Conn, fam genetlink.Family, o AttachOptions, fd, idx int) (string, error) {
	ae := netlink.NewAttributeEncoder()
	client := uint64(0)
	if idx >= 0 {
		ae.Uint32(attrIndex, uint32(idx))
	} else {
		client |= clientDestroyOnDisconnect
	}
	ae.Uint64(attrSizeBytes, c.Size)
	ae.Uint64(attrBlockSize, uint64(o.BlockSize))
	ae.Uint64(attrServerFlag, uint64(c.Flags))
	ae.Uint64(attrClientFlag, client)
	ae.Nested(attrSockets, func(n *netlink.AttributeEncoder) error {
		n.Nested(sockItem, func(s *netlink.AttributeEncoder) error {
			s.Uint32(sockFD, uint32(fd))
			return nil
		})
		return nil
	})
	if o.Backend != "" {
		ae.String(attrBackend, o.Backend)
	}
	data, err := ae.Encode()
	if err != nil {
		return "", err
	}
	msgs, err := gc.Execute(genetlink.Message{Header: genetlink.Header{Command: cmdConnect, Version: fam.Version}, Data: data}, fam.ID, netlink.Request)
	if err != nil {
		return "", fmt.Errorf("connect an nbd device: %w", err)
	}
	for _, m := range msgs {
		ad, err := netlink.NewAttributeDecoder(m.Data)
		if err != nil {
			return "", err
		}
		for ad.Next() {
			if ad.Type() == attrIndex {
				return DevicePath(int(ad.Uint32())), nil
			}
		}
	}
	if idx >= 0 {
		return DevicePath(idx), nil
	}
	return "", errors.New("the kernel connected an nbd device without saying which")
}

// DevicePath is nbd device idx's path.
func DevicePath(idx int) string { return "/dev/nbd" + strconv.Itoa(idx) }

// Index is the index of an nbd device's path, or -1.
func Index(dev string) int {
	n, err := strconv.Atoi(strings.TrimPrefix(filepath.Base(dev), "nbd"))
	if err != nil || !strings.HasPrefix(filepath.Base(dev), "nbd") {
		return -1
	}
	return n
}

// sysBlock is where the kernel lists nbd devices.
var sysBlock = "/sys/block"

// devices are the kernel's nbd devices by index, lowest first.
func devices() []int {
	ms, _ := filepath.Glob(filepath.Join(sysBlock, "nbd*"))
	var out []int
	for _, m := range ms {
		if i := Index(m); i >= 0 {
			out = append(out, i)
		}
	}
	sort.Ints(out)
	return out
}

// connected tells whether device idx serves a connection: the kernel
// shows its pid only then.
func connected(idx int) bool {
	_, err := os.Stat(filepath.Join(sysBlock, "nbd"+strconv.Itoa(idx), "pid"))
	return err == nil
}

// freeDevices are the devices that exist and serve nothing.
func freeDevices() []int {
	var out []int
	for _, i := range devices() {
		if !connected(i) {
			out = append(out, i)
		}
	}
	return out
}

// Connected tells whether nbd device dev serves a connection.
func Connected(dev string) bool { return Index(dev) >= 0 && connected(Index(dev)) }

// RecordsBackend tells whether the kernel records nbd device dev's
// backend (Linux 5.17 on; while it is connected).
func RecordsBackend(dev string) bool {
	_, err := os.Stat(filepath.Join(sysBlock, filepath.Base(dev), "backend"))
	return err == nil
}

// Serving are the connected devices whose backend is backend (on
// kernels before 5.17, which record none, no device is found so).
func Serving(backend string) []string {
	var out []string
	for _, i := range devices() {
		b, err := os.ReadFile(filepath.Join(sysBlock, "nbd"+strconv.Itoa(i), "backend"))
		if err == nil && strings.TrimSpace(string(b)) == backend && connected(i) {
			out = append(out, DevicePath(i))
		}
	}
	return out
}

// Detach disconnects device dev (NBD_CMD_DISCONNECT): the kernel ends
// the connection and fails what is still queued; whoever detaches has
// flushed and closed the device first.
func Detach(dev string) error {
	idx := Index(dev)
	if idx < 0 {
		return fmt.Errorf("%s is not an nbd device", dev)
	}
	gc, err := genetlink.Dial(nil)
	if err != nil {
		return fmt.Errorf("generic netlink: %w", err)
	}
	defer gc.Close()
	fam, err := gc.GetFamily(familyName)
	if err != nil {
		return fmt.Errorf("disconnect %s: %w", dev, err)
	}
	ae := netlink.NewAttributeEncoder()
	ae.Uint32(attrIndex, uint32(idx))
	data, err := ae.Encode()
	if err != nil {
		return err
	}
	if _, err := gc.Execute(genetlink.Message{Header: genetlink.Header{Command: cmdDisconnect, Version: fam.Version}, Data: data}, fam.ID, netlink.Request|netlink.Acknowledge); err != nil {
		return fmt.Errorf("disconnect %s: %w", dev, err)
	}
	return nil
}

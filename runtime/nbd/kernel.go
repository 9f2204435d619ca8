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
	gc, _, err := family()
	if err != nil {
		return err
	}
	return gc.Close()
}

// family dials generic netlink and finds the nbd family in it
// (ErrNoKernelNBD when the driver is not loaded).
func family() (*genetlink.Conn, genetlink.Family, error) {
	gc, err := genetlink.Dial(nil)
	if err != nil {
		return nil, genetlink.Family{}, fmt.Errorf("generic netlink: %w", err)
	}
	fam, err := gc.GetFamily(familyName)
	if err != nil {
		gc.Close()
		if errors.Is(err, os.ErrNotExist) {
			return nil, genetlink.Family{}, ErrNoKernelNBD
		}
		return nil, genetlink.Family{}, fmt.Errorf("generic netlink family nbd: %w", err)
	}
	return gc, fam, nil
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
// device, and returns that device (/dev/nbdN). The device is a new one,
// at the lowest index no device has, which the kernel removes again at
// Detach (NBD_CFLAG_DESTROY_ON_DISCONNECT): the host's own nbd devices
// are left alone, and what is set on the device goes with it. A kernel
// that cannot add a device at an index gives a free one of its own,
// left after as it was.
func (c *Conn) Attach(o AttachOptions) (string, error) {
	if o.BlockSize == 0 {
		o.BlockSize = 512
	}
	gc, fam, err := family()
	if err != nil {
		return "", err
	}
	defer gc.Close()
	f, err := c.c.File()
	if err != nil {
		return "", err
	}
	defer f.Close()
	dev, err := chooseDevice(func(idx int, destroy bool) (string, error) {
		return c.connect(gc, fam, o, int(f.Fd()), idx, destroy)
	})
	if err == nil {
		largerRequests(Index(dev))
	}
	return dev, err
}

// chooseDevice connects (through connect) a new device at the lowest
// unused index, the next one when that index was taken meanwhile (EBUSY)
// or is a device still going away (EINVAL, once), and else one of the
// kernel's free devices as it is, for a kernel that adds none at an index.
func chooseDevice(connect func(idx int, destroy bool) (string, error)) (string, error) {
	idx, refused := unusedIndex(0), 0
	for tries := 0; tries < 16; tries++ {
		dev, err := connect(idx, true)
		switch {
		case err == nil:
			return dev, nil
		case errors.Is(err, unix.EBUSY) || errors.Is(err, unix.EEXIST):
			idx = unusedIndex(idx + 1)
			continue
		case errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENODEV):
			if refused++; refused < 2 {
				idx = unusedIndex(idx + 1)
				continue
			}
			return connectFree(connect)
		}
		return "", err
	}
	return "", errors.New("connect an nbd device: every index tried was taken meanwhile")
}

// connectFree connects one of the kernel's free devices, as it is.
func connectFree(connect func(idx int, destroy bool) (string, error)) (string, error) {
	for _, idx := range freeDevices() {
		dev, err := connect(idx, false)
		if errors.Is(err, unix.EBUSY) {
			continue
		}
		return dev, err
	}
	return "", errors.New("connect an nbd device: none is free (the nbd module's nbds_max)")
}

// maxRequestKB is the largest request a new device sends. The kernel's
// nbd driver defaults to 128 KiB (max_sectors 256), so that a 1 MiB read
// is eight round trips to the server; at 4 MiB the export reads 1.8
// times as fast in the VM lane. The server (qemu-storage-daemon) takes
// up to 32 MiB.
const maxRequestKB = 4096

// largerRequests lets device idx send requests up to maxRequestKB (or
// what the device allows, if less). Best effort: the device works
// without it.
func largerRequests(idx int) {
	q := filepath.Join(sysBlock, "nbd"+strconv.Itoa(idx), "queue")
	hw, err := os.ReadFile(filepath.Join(q, "max_hw_sectors_kb"))
	if err != nil {
		return
	}
	kb := maxRequestKB
	if n, err := strconv.Atoi(strings.TrimSpace(string(hw))); err == nil && n < kb {
		kb = n
	}
	_ = os.WriteFile(filepath.Join(q, "max_sectors_kb"), []byte(strconv.Itoa(kb)), 0)
}

// unusedIndex is the lowest index from on that no nbd device has.
func unusedIndex(from int) int {
	have := map[int]bool{}
	for _, i := range devices() {
		have[i] = true
	}
	for have[from] {
		from++
	}
	return from
}

// connect is one NBD_CMD_CONNECT on device idx, which the kernel adds
// if there is none, and removes on disconnect when destroy.
func (c *Conn) connect(gc *genetlink.Conn, fam genetlink.Family, o AttachOptions, fd, idx int, destroy bool) (string, error) {
	ae := netlink.NewAttributeEncoder()
	ae.Uint32(attrIndex, uint32(idx))
	client := uint64(0)
	if destroy {
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
	return DevicePath(idx), nil
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
	gc, fam, err := family()
	if err != nil {
		return fmt.Errorf("disconnect %s: %w", dev, err)
	}
	defer gc.Close()
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

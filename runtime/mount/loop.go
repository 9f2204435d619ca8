// Package mount attaches disk images and mounts a NixOS target as its own
// fstab says, with x/sys/unix: loop devices (LOOP_CONFIGURE, autoclear),
// partitions added to a whole-disk device with the BLKPG ioctl (what
// `partx -a` does, for kernels and containers that scan no partition
// tables), the mount plan and its execution, and teardown in reverse.
//
// Loop devices are configured with LO_FLAGS_AUTOCLEAR and LO_FLAGS_PARTSCAN:
// autoclear detaches the device once the last user (our file descriptor,
// the mounts) is gone, even when nixrescue was killed, and with partscan
// set the kernel drops the partitions we added when it detaches; without
// it they would outlive the loop device as loopNpM nodes that lead nowhere.
package mount

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Loop is an attached loop device.
type Loop struct {
	// Path is the device, /dev/loopN.
	Path string
	// Name is loopN.
	Name string
	dev  *os.File
}

// LoopOption configures a loop device as AttachLoop attaches it.
type LoopOption func(*unix.LoopConfig)

// WithDirectIO has the loop device read and write its file with direct
// I/O (LO_FLAGS_DIRECT_IO), not through the file's page cache. For an
// export (runtime/image's Export.LoopOptions): sequential reads of the
// fixture's export so take 30-32 ms against 91-98 buffered (the raw
// image's loop device 23-33). Where the file takes no direct I/O the
// kernel stays buffered.
func WithDirectIO() LoopOption {
	return func(c *unix.LoopConfig) { c.Info.Flags |= unix.LO_FLAGS_DIRECT_IO }
}

// AttachLoop attaches file to a free loop device, read-only if asked,
// with the logical sector size the image's partition table was written
// for (0 or 512: the default; 4096 for a 4Kn disk's image). The device
// detaches itself once Close is called and nothing else (a mount, a
// partition in use) holds it.
func AttachLoop(file string, readOnly bool, sectorSize int, opts ...LoopOption) (*Loop, error) {
	flag := os.O_RDWR
	if readOnly {
		flag = os.O_RDONLY
	}
	backing, err := os.OpenFile(file, flag|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open image: %w", err)
	}
	defer backing.Close()
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open /dev/loop-control (is the loop module loaded?): %w", err)
	}
	defer ctl.Close()
	// Another process may take the free device between our asking and our
	// configuring it: ask again then.
	for attempt := 0; attempt < 20; attempt++ {
		n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return nil, fmt.Errorf("find a free loop device: %w", err)
		}
		name := "loop" + strconv.Itoa(n)
		path := "/dev/" + name
		dev, err := openWhenPresent(path, flag)
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", path, err)
		}
		cfg := unix.LoopConfig{Fd: uint32(backing.Fd())}
		if sectorSize > 512 {
			cfg.Size = uint32(sectorSize)
		}
		cfg.Info.Flags = unix.LO_FLAGS_AUTOCLEAR | unix.LO_FLAGS_PARTSCAN
		if readOnly {
			cfg.Info.Flags |= unix.LO_FLAGS_READ_ONLY
		}
		for _, o := range opts {
			o(&cfg)
		}
		copy(cfg.Info.File_name[:], file)
		err = unix.IoctlLoopConfigure(int(dev.Fd()), &cfg)
		if errors.Is(err, unix.EBUSY) {
			dev.Close()
			continue
		}
		if err != nil {
			dev.Close()
			return nil, fmt.Errorf("configure %s: %w", path, err)
		}
		return &Loop{Path: path, Name: name, dev: dev}, nil
	}
	return nil, errors.New("find a free loop device: every one was taken first")
}

// openWhenPresent opens a device node, waiting briefly for devtmpfs to
// make it.
func openWhenPresent(path string, flag int) (*os.File, error) {
	deadline := time.Now().Add(2 * time.Second)
	for {
		f, err := os.OpenFile(path, flag|unix.O_CLOEXEC, 0)
		if err == nil || !errors.Is(err, os.ErrNotExist) || time.Now().After(deadline) {
			return f, err
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// File is the open loop device.
func (l *Loop) File() *os.File { return l.dev }

// Close releases our hold on the device: with autoclear, it detaches
// once nothing else holds it.
func (l *Loop) Close() error {
	if l.dev == nil {
		return nil
	}
	err := l.dev.Close()
	l.dev = nil
	return err
}

// Detach detaches the device now (LOOP_CLR_FD). With autoclear this only
// marks it to detach when the last user closes it, which is all that can
// be asked of a device still in use.
func Detach(path string) error {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	err = unix.IoctlSetInt(int(f.Fd()), unix.LOOP_CLR_FD, 0)
	if errors.Is(err, unix.ENXIO) {
		return nil // already detached
	}
	return err
}

// WaitReleased waits until loop device dev no longer serves backing (it
// detaches once its last user is gone), at most timeout.
func WaitReleased(dev, backing string, timeout time.Duration) error {
	name := filepath.Base(dev)
	deadline := time.Now().Add(timeout)
	for BackingFile(name) == backing {
		if time.Now().After(deadline) {
			return fmt.Errorf("%s (%s) is still in use: it will detach when its last user ends", dev, backing)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// BackingFile is the file behind loop device name (loopN), "" when it is
// not attached.
func BackingFile(name string) string {
	b, err := os.ReadFile(filepath.Join("/sys/block", name, "loop/backing_file"))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// blkpg is BLKPG, _IO(0x12, 105); x/sys/unix defines its argument types
// but not the request number.
const blkpg = 0x1269

// AddPartition makes partition number n of the whole-disk device dev, from
// start to start+length (bytes), a block device of its own, and returns its
// path once the node exists.
func AddPartition(dev *os.File, n int, start, length int64) (string, error) {
	if err := blkpgOp(dev, unix.BLKPG_ADD_PARTITION, n, start, length); err != nil {
		return "", fmt.Errorf("add partition %d to %s: %w", n, dev.Name(), err)
	}
	path := PartitionPath(dev.Name(), n)
	f, err := openWhenPresent(path, os.O_RDONLY)
	if err != nil {
		return "", fmt.Errorf("partition %d of %s was added but %s did not appear: %w", n, dev.Name(), path, err)
	}
	f.Close()
	return path, nil
}

// DeletePartition removes partition number n of dev. The kernel refuses
// while the partition is open (EBUSY); a mount namespace being set up
// elsewhere on the host (another session's container) holds a copy of
// every mount for a moment, so that is waited out for up to 2 s, as
// Unmount waits.
func DeletePartition(dev *os.File, n int) error {
	err := whileBusy(func() error { return blkpgOp(dev, unix.BLKPG_DEL_PARTITION, n, 0, 0) })
	if err == nil || errors.Is(err, unix.ENXIO) { // ENXIO: gone already
		return nil
	}
	return fmt.Errorf("remove partition %d of %s: %w", n, dev.Name(), err)
}

func blkpgOp(dev *os.File, op int32, n int, start, length int64) error {
	p := unix.BlkpgPartition{Start: start, Length: length, Pno: int32(n)}
	arg := unix.BlkpgIoctlArg{Op: op, Datalen: int32(unsafe.Sizeof(p)), Data: (*byte)(unsafe.Pointer(&p))}
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, dev.Fd(), blkpg, uintptr(unsafe.Pointer(&arg)))
	if errno != 0 {
		return errno
	}
	return nil
}

// PartitionPath is the node of partition n of disk (a /dev path): sdb →
// sdb2, loop0 and nvme0n1 → loop0p2 and nvme0n1p2, as the kernel names
// them (a 'p' when the disk's name ends in a digit).
func PartitionPath(disk string, n int) string {
	if disk != "" && disk[len(disk)-1] >= '0' && disk[len(disk)-1] <= '9' {
		return disk + "p" + strconv.Itoa(n)
	}
	return disk + strconv.Itoa(n)
}

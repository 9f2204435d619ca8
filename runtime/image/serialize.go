package image

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// The FUSE export of qemu-storage-daemon before QEMU 10.1 (Debian 12's
// 7.2, and bookworm-backports' 10.0) writes what it is asked to write from
// the buffer it reads requests into, and while a write waits for the block
// layer it may read the next request into that same buffer: a write that
// meets another request in flight writes that request's bytes instead of
// its own ("fuse: Copy write buffer content before polling", QEMU commit
// of July 2025). A loop device on the export sends it requests in
// parallel, and the filesystem on it is corrupted: seen here as inode and
// directory blocks of another place after a session on a qcow2 image, and
// at once with the reproducer of that commit (concurrent O_DIRECT writes).
//
// serialize has the kernel send the export one request at a time: the
// loop device reads and writes the export with direct I/O
// (Export.LoopOptions), which FUSE sends as background requests, and the
// connection's max_background is set to 1 (fusectl), so that the kernel
// holds every further one back until the daemon has answered. Sequential
// reads are faster so too (the loop device no longer caches what FUSE
// caches again).

// fuseMaxBackground is the connection setting serialize writes.
const fuseMaxBackground = "1"

// serialize sets the FUSE connection of the export mounted at path (as
// this process reaches it) to one background request at a time, through a
// fusectl mounted for the moment under dir (private to this process's
// mount namespace, or to the session's tree) and unmounted again.
func serialize(path, dir string) error {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return fmt.Errorf("find the export's FUSE connection: %w", err)
	}
	ctl, err := os.MkdirTemp(dir, "fusectl-")
	if err != nil {
		return err
	}
	defer os.Remove(ctl)
	if err := unix.Mount("fusectl", ctl, "fusectl", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mount fusectl to serialize the export: %w", err)
	}
	defer unix.Unmount(ctl, unix.MNT_DETACH)
	conn := filepath.Join(ctl, strconv.FormatUint(uint64(unix.Minor(st.Dev)), 10), "max_background")
	if err := os.WriteFile(conn, []byte(fuseMaxBackground), 0); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("the export's FUSE connection (%s) is not in fusectl", filepath.Base(filepath.Dir(conn)))
		}
		return fmt.Errorf("serialize the export's FUSE connection: %w", err)
	}
	return nil
}

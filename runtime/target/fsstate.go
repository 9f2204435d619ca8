package target

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nixrescue/nixrescue/runtime/mount"
)

// FSState is what a filesystem says of itself before it is mounted:
// whether its journal or log waits to be replayed (the machine was not
// shut down cleanly), and whether the kernel flagged it with errors
// (NixOS's boot would check it before mounting it).
type FSState struct {
	// Replay names what waits to be replayed ("journal", "log", "log
	// tree"); "" when nothing does.
	Replay string `json:"replay,omitempty"`
	// Errors says what the filesystem recorded of its errors; "" for
	// none.
	Errors string `json:"errors,omitempty"`
	// Check is the host's program that checks it (e2fsck, xfs_repair),
	// when Errors is set.
	Check string `json:"check,omitempty"`
}

// ext4's superblock, 1024 bytes into the filesystem (fs/ext4/ext4.h).
const (
	ext4SuperOffset   = 1024
	ext4Magic         = 0xef53
	ext4StateErrors   = 0x0002
	ext4IncompatRecov = 0x0004 // needs_recovery: the journal holds what is not on disk yet
	ext4CompatJournal = 0x0004
)

// btrfs's superblock, 64 KiB in (fs/btrfs/accessors.h): log_root is the
// tree of fsync'd changes a mount replays.
const (
	btrfsSuperOffset = 64 << 10
	btrfsMagic       = "_BHRfS_M"
)

// xfs's superblock, at the start: its NEEDSREPAIR incompatible feature
// (xfs_format.h), set by xfs_repair while it works and left by one that
// did not finish.
const xfsIncompatNeedsRepair = 1 << 4

// ReadFSState reads the state a filesystem of type fsType records in its
// superblock, from r (its device). ext2, ext3 and ext4 record both a
// journal to replay and errors; btrfs a log tree to replay; xfs an
// unfinished repair (whether its log is dirty is not in its superblock:
// XFSLogDirty). Other types say nothing.
func ReadFSState(r io.ReaderAt, fsType string) (FSState, error) {
	switch fsType {
	case "ext2", "ext3", "ext4":
		return ext4State(r)
	case "btrfs":
		sb := make([]byte, 0x68)
		if _, err := r.ReadAt(sb, btrfsSuperOffset); err != nil {
			return FSState{}, fmt.Errorf("read the btrfs superblock: %w", err)
		}
		if string(sb[0x40:0x48]) != btrfsMagic {
			return FSState{}, errors.New("no btrfs superblock")
		}
		if binary.LittleEndian.Uint64(sb[0x60:]) != 0 {
			return FSState{Replay: "log tree"}, nil
		}
	case "xfs":
		sb := make([]byte, 0xdc)
		if _, err := r.ReadAt(sb, 0); err != nil {
			return FSState{}, fmt.Errorf("read the xfs superblock: %w", err)
		}
		if string(sb[:4]) != "XFSB" {
			return FSState{}, errors.New("no xfs superblock")
		}
		if binary.BigEndian.Uint16(sb[0x64:])&0xf == 5 && binary.BigEndian.Uint32(sb[0xd8:])&xfsIncompatNeedsRepair != 0 {
			return FSState{Errors: "xfs_repair did not finish (needsrepair is set)", Check: "xfs_repair"}, nil
		}
	}
	return FSState{}, nil
}

// ext4State reads an ext2/3/4 superblock's state.
func ext4State(r io.ReaderAt) (FSState, error) {
	sb := make([]byte, 1024)
	if _, err := r.ReadAt(sb, ext4SuperOffset); err != nil {
		return FSState{}, fmt.Errorf("read the ext4 superblock: %w", err)
	}
	le := binary.LittleEndian
	if le.Uint16(sb[0x38:]) != ext4Magic {
		return FSState{}, errors.New("no ext4 superblock")
	}
	var st FSState
	if le.Uint32(sb[0x5c:])&ext4CompatJournal != 0 && le.Uint32(sb[0x60:])&ext4IncompatRecov != 0 {
		st.Replay = "journal"
	}
	count := le.Uint32(sb[0x194:])
	if le.Uint16(sb[0x3a:])&ext4StateErrors == 0 && count == 0 {
		return st, nil
	}
	st.Check = "e2fsck"
	st.Errors = "the kernel found errors in it"
	if count > 0 {
		st.Errors = fmt.Sprintf("the kernel found %d error(s) in it", count)
	}
	if when := le.Uint32(sb[0x1cc:]); when != 0 {
		fn := strings.TrimRight(string(bytes.TrimRight(sb[0x1e0:0x200], "\x00")), " ")
		st.Errors += fmt.Sprintf(", the last on %s", time.Unix(int64(when), 0).UTC().Format("2006-01-02 15:04 UTC"))
		if fn != "" {
			st.Errors += " in " + fn
		}
	}
	return st, nil
}

// DeviceFSState reads the state of the filesystem of type fsType on
// device (ReadFSState), and, for xfs, whether its log is dirty
// (XFSLogDirty). It only reads.
func DeviceFSState(device, fsType string) (FSState, error) {
	f, err := os.Open(device)
	if err != nil {
		return FSState{}, err
	}
	st, err := ReadFSState(f, fsType)
	f.Close()
	if err != nil || fsType != "xfs" || st.Errors != "" {
		return st, err
	}
	dirty, err := XFSLogDirty(device)
	if dirty {
		st.Replay = "log"
	}
	return st, err
}

// XFSLogDirty tells whether the xfs on device has a log to recover: its
// superblock does not say, and only the log's head does. The kernel
// reads it: mounted read-only through a read-only loop device over the
// device, an xfs whose log needs recovery is refused with EROFS
// ("recovery required on read-only device"), and nothing can be written.
func XFSLogDirty(device string) (bool, error) {
	l, err := mount.AttachLoop(device, true, SectorSizeOf(device))
	if err != nil {
		return false, err
	}
	defer l.Close()
	f, err := mount.Detached(l.Path, "xfs", []string{"ro"})
	if errors.Is(err, unix.EROFS) {
		return true, nil
	} else if err != nil {
		return false, err
	}
	return false, f.Close()
}

// SectorSizeOf is the logical sector size of block device path (512
// when it cannot be told).
func SectorSizeOf(path string) int {
	f, err := os.Open(path)
	if err != nil {
		return 512
	}
	defer f.Close()
	return SectorSize(f)
}

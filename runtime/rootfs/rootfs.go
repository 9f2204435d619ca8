// Package rootfs opens a target's files and directories from the host
// side. A target is not trusted: its links may lead anywhere, its files
// may be FIFOs, devices or gigabytes long. So every path is resolved
// inside the target's root (openat2 RESOLVE_IN_ROOT, through
// github.com/cyphar/filepath-securejoin's pathrs-lite, which falls back to
// a checked walk on kernels without openat2), only regular files are
// opened for reading (a FIFO would block nixrescue for ever, a device
// would read a disk), and reads are bounded.
package rootfs

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	securejoin "github.com/cyphar/filepath-securejoin"
	pathrs "github.com/cyphar/filepath-securejoin/pathrs-lite"
	"golang.org/x/sys/unix"
)

// NotRegularError says a target's path is not a regular file.
type NotRegularError struct {
	Path string
	Mode string
}

func (e *NotRegularError) Error() string {
	return fmt.Sprintf("%s is a %s in the target, not a regular file", e.Path, e.Mode)
}

// TooLargeError says a target's file is larger than nixrescue reads.
type TooLargeError struct {
	Path string
	Max  int64
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("%s is larger than %d bytes in the target", e.Path, e.Max)
}

// kind names the file type of mode for messages.
func kind(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return "directory"
	case unix.S_IFIFO:
		return "FIFO"
	case unix.S_IFCHR:
		return "character device"
	case unix.S_IFBLK:
		return "block device"
	case unix.S_IFSOCK:
		return "socket"
	case unix.S_IFLNK:
		return "link"
	}
	return "special file"
}

// Open opens the regular file p (absolute, as the target sees it) of the
// target mounted at root, for reading. Missing files give an error that
// errors.Is os.ErrNotExist.
func Open(root, p string) (*os.File, error) {
	h, err := pathrs.OpenInRoot(root, p)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(h.Fd()), &st); err != nil {
		return nil, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, &NotRegularError{Path: p, Mode: kind(st.Mode)}
	}
	// O_NONBLOCK too: the file was regular a moment ago, but a running
	// target could swap it for a FIFO.
	return pathrs.Reopen(h, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC)
}

// ReadFile reads the regular file p of the target at root. A file larger
// than max gives a *TooLargeError, along with its first max bytes.
func ReadFile(root, p string, max int64) ([]byte, error) {
	f, err := Open(root, p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return b[:max], &TooLargeError{Path: p, Max: max}
	}
	return b, nil
}

// ReadHead reads at most max bytes from the start of the regular file p:
// for files of which only the start matters (a hostname's first line).
func ReadHead(root, p string, max int64) ([]byte, error) {
	b, err := ReadFile(root, p, max)
	var tl *TooLargeError
	if errors.As(err, &tl) {
		return b, nil
	}
	return b, err
}

// OpenDir opens the directory p inside root as an O_PATH handle: good for
// mounting on (through /proc/self/fd), not for reading. When create is
// set, missing directories are made, inside root too.
func OpenDir(root, p string, create bool) (*os.File, error) {
	f, err := pathrs.OpenInRoot(root, p)
	if errors.Is(err, os.ErrNotExist) && create {
		var r *os.File
		if r, err = os.OpenFile(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err != nil {
			return nil, err
		}
		defer r.Close()
		f, err = pathrs.MkdirAllHandle(r, p, 0o755)
	}
	if err != nil {
		return nil, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		f.Close()
		return nil, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		f.Close()
		return nil, unix.ENOTDIR
	}
	return f, nil
}

// ReadDir lists the directory p inside root (links resolved inside it).
func ReadDir(root, p string) ([]os.DirEntry, error) {
	h, err := OpenDir(root, p, false)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	d, err := pathrs.Reopen(h, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return d.ReadDir(-1)
}

// Join resolves p (absolute, as the target sees it) inside root and
// returns the host path, every link on the way resolved inside root
// (securejoin.SecureJoin): for stat-like uses; to open, use Open or
// OpenDir, which resolve and open in one step.
func Join(root, p string) (string, error) {
	return securejoin.SecureJoin(root, p)
}

// Resolve resolves p inside root like Join, but returns the path as the
// target sees it (absolute, every link taken).
func Resolve(root, p string) (string, error) {
	full, err := Join(root, p)
	if err != nil {
		return "", err
	}
	rel, err := filepath.Rel(root, full)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return "", fmt.Errorf("%s resolves outside the root", p)
	}
	return path.Join("/", filepath.ToSlash(rel)), nil
}

// parentInRoot resolves the directory holding p inside root and returns
// the host path of p in it; p's last component is not followed.
func parentInRoot(root, p string) (string, error) {
	dir, err := Join(root, path.Dir(path.Clean("/"+p)))
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, path.Base(path.Clean("/"+p))), nil
}

// Lstat is os.Lstat of p in the target at root: the directories on the
// way resolved inside root, p itself not followed.
func Lstat(root, p string) (os.FileInfo, error) {
	full, err := parentInRoot(root, p)
	if err != nil {
		return nil, err
	}
	return os.Lstat(full)
}

// Readlink reads the link p of the target at root, the directories on
// the way resolved inside root.
func Readlink(root, p string) (string, error) {
	full, err := parentInRoot(root, p)
	if err != nil {
		return "", err
	}
	return os.Readlink(full)
}

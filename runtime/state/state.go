// Package state keeps what nixrescue's sessions must remember on the host,
// so that whatever a killed one left can be found and undone: the state
// directory (by default /run/nixrescue), a journal per session of what it
// attached and made, the lock that says it still runs, and the claims on
// the data of the targets sessions hold.
//
//	DIR/sessions/ID/lock         held (flock) while session ID runs
//	DIR/sessions/ID/undo.json    its journal
//	DIR/sessions/ID/…            its files: resolv.conf, /dev/disk links, mounts
//	DIR/containers/ID/           libcontainer's state of its container
//	DIR/runc/NAMESPACE/ID/       runc's, under containerd (its shim's runc --root)
//	DIR/claims/KEY               held (flock) by the session that opened the
//	                             data KEY names (target.Key)
//
// Everything a session made is removed when it ends, and the directories
// themselves when no other session uses them, so that the host's /run is
// left as it was.
package state

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nixrescue/nixrescue/runtime/mount"
)

// DefaultDir is where sessions keep their state on the host.
const DefaultDir = "/run/nixrescue"

// Dir is the state directory of all sessions.
type Dir struct{ path string }

// Open opens the state directory at path ("" is DefaultDir), making it
// when it is missing.
func Open(path string) (*Dir, error) {
	if path == "" {
		path = DefaultDir
	}
	d := &Dir{path: path}
	if err := os.MkdirAll(d.SessionsDir(), 0o700); err != nil {
		return nil, fmt.Errorf("create state directory %s: %w", path, err)
	}
	return d, nil
}

// At is the state directory at path without making anything (for a look:
// cleanup).
func At(path string) *Dir {
	if path == "" {
		path = DefaultDir
	}
	return &Dir{path: path}
}

// SessionsDir holds a directory per session.
func (d *Dir) SessionsDir() string { return filepath.Join(d.path, "sessions") }

// ContainersDir holds libcontainer's state of the sessions' containers.
func (d *Dir) ContainersDir() string { return filepath.Join(d.path, "containers") }

// RuncDir is where runc, run by containerd's shim, keeps its state of
// the sessions' containers (a directory per containerd namespace).
func (d *Dir) RuncDir() string { return filepath.Join(d.path, "runc") }

// SessionDir is session id's directory.
func (d *Dir) SessionDir(id string) string { return filepath.Join(d.SessionsDir(), id) }

func (d *Dir) claimsDir() string { return filepath.Join(d.path, "claims") }

// Live tells whether session id still runs: its lock is held (by the
// nixrescue that opened it; the kernel lets go of it when that process
// dies, however it dies).
func (d *Dir) Live(id string) bool {
	f, err := os.Open(filepath.Join(d.SessionDir(id), "lock"))
	if err != nil {
		return false
	}
	defer f.Close()
	return errors.Is(unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB), unix.EWOULDBLOCK)
}

// Sessions lists the sessions: those still running and those whose
// nixrescue was killed (stale). A directory still being made goes in
// neither, unless it was left so for over a minute (a crash while it was
// made): then it is removed.
func (d *Dir) Sessions() (live, stale []string, err error) {
	entries, err := os.ReadDir(d.SessionsDir())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, nil // removed by a session that just ended
	} else if err != nil {
		return nil, nil, fmt.Errorf("read session directory: %w", err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			if info, err := e.Info(); err == nil && time.Since(info.ModTime()) > time.Minute && !d.Live(e.Name()) {
				_ = os.RemoveAll(d.SessionDir(e.Name()))
			}
			continue
		}
		if d.Live(e.Name()) {
			live = append(live, e.Name())
		} else {
			stale = append(stale, e.Name())
		}
	}
	return live, stale, nil
}

// RemoveSession removes session id's directory, but never while anything
// is mounted under it: removing recursively would then delete a target's
// files.
func (d *Dir) RemoveSession(id string) error {
	dir := d.SessionDir(id)
	mounts, err := mount.Under(dir)
	if err != nil {
		return err
	}
	if len(mounts) > 0 {
		return fmt.Errorf("%s still has %s mounted: not removed; run nixrescue cleanup", dir, mounts[0].Mountpoint)
	}
	return os.RemoveAll(dir)
}

// RemoveIfUnused removes the state directories when no session uses
// them, so that the host's /run is left as it was.
func (d *Dir) RemoveIfUnused() {
	// runc leaves the namespace's directory when it deletes a container.
	namespaces, _ := filepath.Glob(filepath.Join(d.RuncDir(), "*"))
	for _, p := range append(namespaces, d.RuncDir(), d.ContainersDir(), d.SessionsDir(), d.claimsDir(), d.path) {
		_ = unix.Rmdir(p) // fails while other sessions use it, as it should
	}
}

// Session is one running session's share of the state: its directory,
// lock, journal and claims.
type Session struct {
	dir     *Dir
	ID      string
	lock    *os.File
	claims  []*os.File
	journal Journal
}

// Begin makes the state of a new session on target, for the process pid
// (the one the user started), and locks it.
func (d *Dir) Begin(target string, pid int) (*Session, error) {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("make a session id: %w", err)
	}
	s := &Session{dir: d, ID: "nixrescue-" + hex.EncodeToString(b[:])}
	// The directory is made under a hidden name, locked, and only then
	// renamed into place: another session's stale sweep must never see a
	// session directory whose lock is not held yet.
	tmp := filepath.Join(d.SessionsDir(), "."+s.ID)
	for {
		// Another session may remove the shared directories while it ends;
		// make them again when that happens.
		if err := os.MkdirAll(d.SessionsDir(), 0o700); err != nil {
			return nil, fmt.Errorf("create state directory: %w", err)
		}
		if err := os.Mkdir(tmp, 0o700); err == nil {
			break
		} else if !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("create session directory: %w", err)
		}
	}
	lock, err := os.OpenFile(filepath.Join(tmp, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err == nil {
		if err = unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
			lock.Close()
		}
	}
	if err == nil {
		if err = os.Rename(tmp, d.SessionDir(s.ID)); err != nil {
			lock.Close()
		}
	}
	if err != nil {
		_ = os.RemoveAll(tmp)
		d.RemoveIfUnused()
		return nil, fmt.Errorf("create the session's lock: %w", err)
	}
	s.lock = lock
	if err := s.Record(func(j *Journal) { j.PID, j.Target = pid, target }); err != nil {
		s.End()
		return nil, err
	}
	return s, nil
}

// Dir is the session's directory.
func (s *Session) Dir() string { return s.dir.SessionDir(s.ID) }

// State is the state directory the session is in.
func (s *Session) State() *Dir { return s.dir }

// End lets the session's claims and lock go and removes its directory
// (and the shared ones when no other session uses them). What it made in
// the target must be undone first.
func (s *Session) End() error {
	s.ReleaseClaims()
	if s.lock != nil {
		s.lock.Close()
		s.lock = nil
	}
	err := s.dir.RemoveSession(s.ID)
	s.dir.RemoveIfUnused()
	return err
}

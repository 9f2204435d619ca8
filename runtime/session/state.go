package session

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/nixrescue/nixrescue/runtime/backend"
	"github.com/nixrescue/nixrescue/runtime/backend/embedded"
	"github.com/nixrescue/nixrescue/runtime/nixos"
)

// state is the host-side state directory of all sessions:
//
//	DIR/sessions/ID/lock         held (flock) while session ID runs
//	DIR/sessions/ID/resolv.conf  the file bound into the container
//	DIR/sessions/ID/undo.json    what to undo in the target if it dies
//	DIR/containers/ID/           libcontainer's state of its container
//
// Everything a session made is removed when it ends, and the directories
// themselves when no other session uses them, so the host's /run is left as
// it was. What a killed session left is removed by the next one.
type state struct {
	dir string
}

func newState(dir string) (*state, error) {
	st := &state{dir: dir}
	if err := os.MkdirAll(st.sessionsDir(), 0o700); err != nil {
		return nil, fmt.Errorf("create state directory %s: %w", dir, err)
	}
	if err := st.removeStaleSessions(); err != nil {
		return nil, err
	}
	return st, nil
}

func (st *state) sessionsDir() string         { return filepath.Join(st.dir, "sessions") }
func (st *state) containerDir() string        { return filepath.Join(st.dir, "containers") }
func (st *state) sessionDir(id string) string { return filepath.Join(st.sessionsDir(), id) }

// live tells whether session id still runs: its lock is held.
func (st *state) live(id string) bool {
	f, err := os.Open(filepath.Join(st.sessionDir(id), "lock"))
	if err != nil {
		return false
	}
	defer f.Close()
	err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
	return errors.Is(err, unix.EWOULDBLOCK)
}

// removeStaleSessions undoes what killed sessions left: their containers,
// their placeholders in targets, their directories.
func (st *state) removeStaleSessions() error {
	entries, err := os.ReadDir(st.sessionsDir())
	if err != nil {
		return fmt.Errorf("read session directory: %w", err)
	}
	for _, e := range entries {
		if st.live(e.Name()) {
			continue
		}
		if err := embedded.DestroyByID(st.containerDir(), e.Name()); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("destroy the container of stale session %s: %w", e.Name(), err)
		}
		(&session{st: st, id: e.Name()}).undo()
		if err := os.RemoveAll(st.sessionDir(e.Name())); err != nil {
			return fmt.Errorf("remove stale session %s: %w", e.Name(), err)
		}
	}
	return nil
}

// session is one running session's share of the state.
type session struct {
	st        *state
	id        string
	lock      *os.File
	container backend.Container
}

// undoRecord is what must be undone in the target after the session.
type undoRecord struct {
	Root        string `json:"root"`
	Placeholder string `json:"placeholder,omitempty"`
	Inode       uint64 `json:"inode,omitempty"`
}

func (st *state) begin(root string) (*session, error) {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("make a session id: %w", err)
	}
	s := &session{st: st, id: "nixrescue-" + hex.EncodeToString(b[:])}
	for {
		// Another session may remove the shared directories while it ends;
		// make them again when that happens.
		if err := os.MkdirAll(st.sessionsDir(), 0o700); err != nil {
			return nil, fmt.Errorf("create state directory: %w", err)
		}
		if err := os.Mkdir(st.sessionDir(s.id), 0o700); err == nil {
			break
		} else if !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("create session directory: %w", err)
		}
	}
	lock, err := os.OpenFile(filepath.Join(st.sessionDir(s.id), "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		s.removeDirs()
		return nil, fmt.Errorf("create session lock: %w", err)
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		lock.Close()
		s.removeDirs()
		return nil, fmt.Errorf("lock session: %w", err)
	}
	s.lock = lock
	if err := s.writeUndo(undoRecord{Root: root}); err != nil {
		s.end()
		return nil, err
	}
	return s, nil
}

func (s *session) writeUndo(r undoRecord) error {
	b, _ := json.Marshal(r)
	tmp := filepath.Join(s.st.sessionDir(s.id), "undo.json.tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("record session: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(s.st.sessionDir(s.id), "undo.json")); err != nil {
		return fmt.Errorf("record session: %w", err)
	}
	return nil
}

func (s *session) writeResolv(content []byte) (string, error) {
	p := filepath.Join(s.st.sessionDir(s.id), "resolv.conf")
	if err := os.WriteFile(p, content, 0o644); err != nil {
		return "", fmt.Errorf("write resolv.conf: %w", err)
	}
	return p, nil
}

// createPlaceholder makes an empty file at p inside root, the mount point
// for resolv.conf where the target has none, and records it so that it is
// removed after the session, even after a crash.
func (s *session) createPlaceholder(root, p string) error {
	dir, err := openDirInRoot(root, path.Dir(p))
	if err != nil {
		return fmt.Errorf("open %s in the target: %w", path.Dir(p), err)
	}
	defer unix.Close(dir)
	// Record first: a crash between the two leaves a record of nothing,
	// which undo ignores, rather than a file nobody knows of.
	fd, err := unix.Openat(dir, path.Base(p), unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return fmt.Errorf("create mount point %s in the target: %w", p, err)
	}
	var st unix.Stat_t
	err = unix.Fstat(fd, &st)
	unix.Close(fd)
	if err == nil {
		err = s.writeUndo(undoRecord{Root: root, Placeholder: p, Inode: st.Ino})
	}
	if err != nil {
		_ = unix.Unlinkat(dir, path.Base(p), 0)
		return err
	}
	return nil
}

// openDirInRoot opens directory p, resolved inside root, without following
// a last-moment symlink.
func openDirInRoot(root, p string) (int, error) {
	full, err := nixos.InRoot(root, p)
	if err != nil {
		return -1, err
	}
	return unix.Open(full, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
}

// undo removes the placeholder this session recorded, if it is still the
// empty file we made.
func (s *session) undo() {
	b, err := os.ReadFile(filepath.Join(s.st.sessionDir(s.id), "undo.json"))
	if err != nil {
		return
	}
	var r undoRecord
	if json.Unmarshal(b, &r) != nil || r.Placeholder == "" {
		return
	}
	dir, err := openDirInRoot(r.Root, path.Dir(r.Placeholder))
	if err != nil {
		return
	}
	defer unix.Close(dir)
	var st unix.Stat_t
	if unix.Fstatat(dir, path.Base(r.Placeholder), &st, unix.AT_SYMLINK_NOFOLLOW) != nil {
		return
	}
	if st.Mode&unix.S_IFMT == unix.S_IFREG && st.Size == 0 && st.Ino == r.Inode {
		_ = unix.Unlinkat(dir, path.Base(r.Placeholder), 0)
	}
}

// end tears the session down: container, placeholder, state.
func (s *session) end() {
	if s.container != nil {
		if err := s.container.Destroy(); err != nil {
			fmt.Fprintf(os.Stderr, "nixrescue: warning: %v\n", err)
		}
		s.container = nil
	}
	s.undo()
	if s.lock != nil {
		s.lock.Close()
	}
	s.removeDirs()
}

// removeDirs removes the session's directory and the shared directories
// when they are empty.
func (s *session) removeDirs() {
	_ = os.RemoveAll(s.st.sessionDir(s.id))
	s.st.removeDirsIfUnused()
}

// removeDirsIfUnused removes the state directories when no session uses
// them, so that the host's /run is left as it was.
func (st *state) removeDirsIfUnused() {
	for _, d := range []string{st.containerDir(), st.sessionsDir(), st.dir} {
		_ = unix.Rmdir(d) // fails while other sessions use it, as it should
	}
}

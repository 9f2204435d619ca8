package session

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/moby/sys/mountinfo"

	"golang.org/x/sys/unix"

	"github.com/nixrescue/nixrescue/runtime/backend/containerd"
	"github.com/nixrescue/nixrescue/runtime/backend/embedded"
	"github.com/nixrescue/nixrescue/runtime/guard"
	"github.com/nixrescue/nixrescue/runtime/mount"
	"github.com/nixrescue/nixrescue/runtime/rootfs"
	"github.com/nixrescue/nixrescue/runtime/target"
)

// state is the host-side state directory of all sessions:
//
//	DIR/sessions/ID/lock         held (flock) while session ID runs
//	DIR/sessions/ID/resolv.conf  the file bound into the container
//	DIR/sessions/ID/undo.json    what to undo in the target if it dies
//	DIR/containers/ID/           libcontainer's state of its container
//	DIR/claims/KEY               held (flock) by the session that opened
//	                             the data KEY names (target.Key)
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
	return st, nil
}

// cleanStale removes what killed sessions left: first their containerd
// containers (when a containerd is at hand), whose processes may hold the
// rest, then everything their journals record.
func (st *state) cleanStale(ctx context.Context, cd *containerd.Runner) (sessions, containers []string, err error) {
	if cd != nil {
		if containers, err = cd.Leftovers(ctx, st.live); err != nil {
			return nil, containers, err
		}
	}
	sessions, err = st.removeStaleSessions()
	st.removeStaleClaims()
	return sessions, containers, err
}

func (st *state) sessionsDir() string         { return filepath.Join(st.dir, "sessions") }
func (st *state) claimsDir() string           { return filepath.Join(st.dir, "claims") }
func (st *state) containerDir() string        { return filepath.Join(st.dir, "containers") }
func (st *state) sessionDir(id string) string { return filepath.Join(st.sessionsDir(), id) }

// live tells whether session id still runs: its lock is held. A lock
// held while the nixrescue the user started is gone belongs to its
// re-execution in a private mount namespace, which the kernel is killing
// with it (PR_SET_PDEATHSIG): that one is given a moment to die, so that a
// cleanup right after a kill -9 does not take the session for live.
func (st *state) live(id string) bool {
	f, err := os.Open(filepath.Join(st.sessionDir(id), "lock"))
	if err != nil {
		return false
	}
	defer f.Close()
	held := func() bool {
		return errors.Is(unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB), unix.EWOULDBLOCK)
	}
	if !held() {
		return false
	}
	r, err := st.readJournal(id)
	if err != nil || r.PID <= 0 || unix.Kill(r.PID, 0) != unix.ESRCH {
		return true
	}
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if !held() {
			return false
		}
	}
	return true
}

// removeStaleSessions undoes what killed sessions left: their containers,
// their placeholders in targets, their directories.
func (st *state) removeStaleSessions() ([]string, error) {
	entries, err := os.ReadDir(st.sessionsDir())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil // removed by a session that just ended: nothing stale
	} else if err != nil {
		return nil, fmt.Errorf("read session directory: %w", err)
	}
	var removed []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			// A session being made (or a crash while it was made: an empty
			// directory with at most a lock in it).
			if info, err := e.Info(); err == nil && time.Since(info.ModTime()) > time.Minute && !st.live(e.Name()) {
				_ = os.RemoveAll(st.sessionDir(e.Name()))
			}
			continue
		}
		if st.live(e.Name()) {
			continue
		}
		if err := embedded.DestroyByID(st.containerDir(), e.Name()); err != nil && !errors.Is(err, os.ErrNotExist) {
			return removed, fmt.Errorf("destroy the container of stale session %s: %w", e.Name(), err)
		}
		if err := (&session{st: st, id: e.Name()}).undo(); err != nil {
			return removed, fmt.Errorf("undo stale session %s: %w", e.Name(), err)
		}
		if err := removeUnmounted(st.sessionDir(e.Name())); err != nil {
			return removed, fmt.Errorf("remove stale session %s: %w", e.Name(), err)
		}
		removed = append(removed, e.Name())
	}
	return removed, nil
}

// session is one running session's share of the state.
type session struct {
	st        *state
	id        string
	lock      *os.File
	claims    []*os.File
	container interface{ Destroy() error } // a backend.Container or backend.First
	// guard kills the container's processes if this process dies; it is
	// disarmed once the container is gone.
	guard   *guard.Guard
	opened  *Opened
	journal undoRecord
	timer   timer
	// prewarm, when set, readies the backend for the container's
	// creation; called early and again shortly before it, as what it
	// warms stays warm only for some milliseconds.
	prewarm func()
}

// dir is the session's directory.
func (s *session) dir() string { return s.st.sessionDir(s.id) }

// record changes the journal and writes it.
func (s *session) record(change func(*undoRecord)) error {
	change(&s.journal)
	return s.writeUndo(s.journal)
}

// readJournal reads session id's journal.
func (st *state) readJournal(id string) (undoRecord, error) {
	var r undoRecord
	b, err := os.ReadFile(filepath.Join(st.sessionDir(id), "undo.json"))
	if err != nil {
		return r, err
	}
	return r, json.Unmarshal(b, &r)
}

// undoRecord is the session's journal: what it holds and made, so that
// what a killed session left can be found and undone.
type undoRecord struct {
	PID         int          `json:"pid"`
	Target      string       `json:"target,omitempty"`
	Root        string       `json:"root,omitempty"`
	Placeholder string       `json:"placeholder,omitempty"`
	Inode       uint64       `json:"inode,omitempty"`
	Loops       []loopRecord `json:"loops,omitempty"`
	// HostTree is the session's directory when it is a private mount
	// tree of the host's mount namespace (the containerd backend).
	HostTree string `json:"host_tree,omitempty"`
}

// loopRecord is a loop device a session attached, and the partitions it
// added to it.
type loopRecord struct {
	Device     string `json:"device"`
	Backing    string `json:"backing"`
	Partitions []int  `json:"partitions,omitempty"`
}

func (st *state) begin(target string) (*session, error) {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("make a session id: %w", err)
	}
	s := &session{st: st, id: "nixrescue-" + hex.EncodeToString(b[:])}
	// The directory is made under a hidden name, locked, and only then
	// renamed into place: another session's stale sweep must never see a
	// session directory whose lock is not held yet.
	tmp := filepath.Join(st.sessionsDir(), "."+s.id)
	for {
		// Another session may remove the shared directories while it ends;
		// make them again when that happens.
		if err := os.MkdirAll(st.sessionsDir(), 0o700); err != nil {
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
		if err = os.Rename(tmp, st.sessionDir(s.id)); err != nil {
			lock.Close()
		}
	}
	if err != nil {
		_ = os.RemoveAll(tmp)
		st.removeDirsIfUnused()
		return nil, fmt.Errorf("create the session's lock: %w", err)
	}
	s.lock = lock
	// The PID the user knows: the one they started, when this process is
	// its re-execution in a private mount namespace.
	pid := os.Getpid()
	if inPrivateNS() {
		pid = os.Getppid()
	}
	if err := s.record(func(r *undoRecord) { r.PID, r.Target = pid, target }); err != nil {
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
	d, err := rootfs.OpenDir(root, path.Dir(p), false)
	if err != nil {
		return fmt.Errorf("open %s in the target: %w", path.Dir(p), err)
	}
	defer d.Close()
	dir := int(d.Fd())
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
		err = s.record(func(r *undoRecord) { r.Root, r.Placeholder, r.Inode = root, p, st.Ino })
	}
	if err != nil {
		_ = unix.Unlinkat(dir, path.Base(p), 0)
		return err
	}
	return nil
}

// undoPlaceholder removes the resolv.conf mount point the session made in
// the target, if it is still the empty file it made. For a target the
// session mounted itself this only works while it is mounted: a killed
// session's placeholder stays in the image (it is empty).
func (s *session) undoPlaceholder() {
	r, err := s.st.readJournal(s.id)
	if err != nil || r.Placeholder == "" {
		return
	}
	d, err := rootfs.OpenDir(r.Root, path.Dir(r.Placeholder), false)
	if err != nil {
		return
	}
	defer d.Close()
	dir := int(d.Fd())
	var st unix.Stat_t
	if unix.Fstatat(dir, path.Base(r.Placeholder), &st, unix.AT_SYMLINK_NOFOLLOW) != nil {
		return
	}
	if st.Mode&unix.S_IFMT == unix.S_IFREG && st.Size == 0 && st.Ino == r.Inode {
		_ = unix.Unlinkat(dir, path.Base(r.Placeholder), 0)
	}
}

// undoLoops releases the loop devices the journal records, if they are
// still attached to the same files: normally they went by themselves
// (autoclear) once nothing held them.
func (s *session) undoLoops() error {
	r, err := s.st.readJournal(s.id)
	if err != nil {
		return nil
	}
	var first error
	for _, l := range r.Loops {
		if err := releaseLoop(l); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// undo undoes what the journal of a dead session records. Processes of
// its container that its runtime did not kill (a containerd that died
// with the session) are killed through the container's cgroup first: they
// hold its mounts, and the mounts the loop devices.
func (s *session) undo() error {
	s.undoPlaceholder()
	if _, err := removeCgroups(s.id, func(string) bool { return false }); err != nil {
		return err
	}
	if r, err := s.st.readJournal(s.id); err == nil && r.HostTree != "" {
		if err := mount.UnmountUnder(r.HostTree); err != nil {
			return err
		}
	}
	return s.undoLoops()
}

// privateTree makes the session's directory a mount of its own, private:
// what is mounted under it stays there, in the host's mount namespace,
// where containerd's shim can see it, and reaches no other mount.
func (s *session) privateTree() error {
	dir := s.dir()
	if err := unix.Mount(dir, dir, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("make the session's mount tree: %w", err)
	}
	if err := s.record(func(r *undoRecord) { r.HostTree = dir }); err != nil {
		_ = unix.Unmount(dir, unix.MNT_DETACH)
		return err
	}
	if err := unix.Mount("", dir, "", unix.MS_PRIVATE|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("make the session's mount tree private: %w", err)
	}
	return nil
}

// end tears the session down in the reverse order of setup: container,
// placeholder, mounts, partitions, loop device, state.
func (s *session) end() {
	if s.container != nil {
		if err := s.container.Destroy(); err != nil {
			fmt.Fprintf(os.Stderr, "nixrescue: warning: %v\n", err)
		}
		s.container = nil
	}
	s.guard.Disarm()
	s.undoPlaceholder()
	if s.opened != nil {
		if err := s.opened.Close(); err != nil {
			fmt.Fprintf(os.Stderr, "nixrescue: warning: teardown: %v\n", err)
		}
		s.opened = nil
	}
	if s.journal.HostTree != "" {
		if err := mount.UnmountUnder(s.journal.HostTree); err != nil {
			fmt.Fprintf(os.Stderr, "nixrescue: warning: teardown: %v\n", err)
		}
	}
	if err := s.undoLoops(); err != nil {
		fmt.Fprintf(os.Stderr, "nixrescue: warning: teardown: %v\n", err)
	}
	s.releaseClaims()
	if s.lock != nil {
		s.lock.Close()
	}
	s.removeDirs()
}

// removeDirs removes the session's directory and the shared directories
// when they are empty.
func (s *session) removeDirs() {
	if err := removeUnmounted(s.st.sessionDir(s.id)); err != nil {
		fmt.Fprintf(os.Stderr, "nixrescue: warning: %v\n", err)
	}
	s.st.removeDirsIfUnused()
}

// removeUnmounted removes dir, but never while anything is mounted under
// it: removing recursively would then delete the target's files.
func removeUnmounted(dir string) error {
	mounts, err := mountinfo.GetMounts(mountinfo.PrefixFilter(dir))
	if err != nil {
		return fmt.Errorf("read the mount table: %w", err)
	}
	if len(mounts) > 0 {
		return fmt.Errorf("%s still has %s mounted: not removed; run nixrescue cleanup", dir, mounts[0].Mountpoint)
	}
	return os.RemoveAll(dir)
}

// removeDirsIfUnused removes the state directories when no session uses
// them, so that the host's /run is left as it was.
func (st *state) removeDirsIfUnused() {
	for _, d := range []string{st.containerDir(), st.sessionsDir(), st.claimsDir(), st.dir} {
		_ = unix.Rmdir(d) // fails while other sessions use it, as it should
	}
}

// releaseLoop detaches a recorded loop device if it still serves the
// recorded file, removing the partitions added to it first.
func releaseLoop(l loopRecord) error {
	name := filepath.Base(l.Device)
	if mount.BackingFile(name) != l.Backing {
		return nil
	}
	if f, err := os.Open(l.Device); err == nil {
		for _, n := range l.Partitions {
			_ = mount.DeletePartition(f, n)
		}
		f.Close()
	}
	if err := mount.Detach(l.Device); err != nil {
		return fmt.Errorf("detach %s: %w", l.Device, err)
	}
	// Detaching waits for the last user; give it a moment.
	deadline := time.Now().Add(3 * time.Second)
	for mount.BackingFile(name) == l.Backing {
		if time.Now().After(deadline) {
			return fmt.Errorf("%s (%s) is still in use: it will detach when its last user ends", l.Device, l.Backing)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// Claim is what a claim file says of its holder.
type Claim struct {
	Session string `json:"session"`
	PID     int    `json:"pid"`
	// Target is the path the holder opened.
	Target string `json:"target"`
}

// InUseError says another session holds the target's data, under
// whatever name it opened it.
type InUseError struct {
	Target string
	Holder Claim
}

func (e *InUseError) Error() string {
	if e.Holder.Session == "" {
		return fmt.Sprintf("%s: in use by another nixrescue session: wait for it to end (one session per disk or image)", e.Target)
	}
	return fmt.Sprintf("%s: in use by nixrescue (pid %d, session %s, on %s): wait for that session to end (one session per disk or image, under whatever name)",
		e.Target, e.Holder.PID, e.Holder.Session, e.Holder.Target)
}

// claim takes the session's hold on the data keys name (target.Keys): a
// file per key under the claims directory, flocked for as long as the
// session runs. A second session on the same data, whatever name it has
// for it (a hard or symbolic link to the image, a second loop device on
// it, another partition of the disk), finds a claim held and is refused
// with the first one's name. The kernel lets go of the locks when the
// session's process ends, however it ends.
func (s *session) claim(arg, path string, keys []target.Key) error {
	if err := os.MkdirAll(s.st.claimsDir(), 0o700); err != nil {
		return fmt.Errorf("create claims directory: %w", err)
	}
	me, _ := json.Marshal(Claim{Session: s.id, PID: s.journal.PID, Target: path})
	for _, k := range keys {
		f, err := s.st.lockClaim(k)
		// A lock held by no one named in the file is a session taking it
		// this very moment, or another's sweep of stale claims looking
		// at it: both let go at once.
		for try := 0; errors.Is(err, unix.EWOULDBLOCK) && try < 100; try++ {
			if holder, _ := s.st.readClaim(k); holder.Session != "" {
				return &InUseError{Target: arg, Holder: holder}
			}
			time.Sleep(10 * time.Millisecond)
			f, err = s.st.lockClaim(k)
		}
		if errors.Is(err, unix.EWOULDBLOCK) {
			return &InUseError{Target: arg}
		} else if err != nil {
			return fmt.Errorf("claim %s: %w", arg, err)
		}
		s.claims = append(s.claims, f)
		if err := f.Truncate(0); err == nil {
			_, err = f.WriteAt(me, 0)
		}
		if err != nil {
			return fmt.Errorf("claim %s: %w", arg, err)
		}
	}
	return nil
}

// lockClaim opens and locks the claim file of k. A file removed by its
// last holder between the open and the lock is not the claim any more:
// then it tries again with the new one.
func (st *state) lockClaim(k target.Key) (*os.File, error) {
	p := filepath.Join(st.claimsDir(), string(k))
	for range 100 {
		f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0o600)
		if errors.Is(err, os.ErrNotExist) {
			// The directory went with the last session: make it again.
			if err := os.MkdirAll(st.claimsDir(), 0o700); err != nil {
				return nil, err
			}
			continue
		} else if err != nil {
			return nil, err
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			f.Close()
			return nil, err
		}
		var held, now unix.Stat_t
		if unix.Fstat(int(f.Fd()), &held) == nil && unix.Stat(p, &now) == nil && held.Ino == now.Ino {
			return f, nil
		}
		f.Close()
	}
	return nil, fmt.Errorf("the claim file %s keeps being replaced", p)
}

// readClaim reads who holds k.
func (st *state) readClaim(k target.Key) (Claim, error) {
	var c Claim
	b, err := os.ReadFile(filepath.Join(st.claimsDir(), string(k)))
	if err != nil {
		return c, err
	}
	return c, json.Unmarshal(b, &c)
}

// releaseClaims removes the session's claim files and lets them go:
// removed while still locked, so that nobody takes a file that is about
// to vanish for a claim (lockClaim checks that it is still there).
func (s *session) releaseClaims() {
	for _, f := range s.claims {
		_ = os.Remove(f.Name())
		f.Close()
	}
	s.claims = nil
}

// removeStaleClaims removes the claim files nobody holds: left by a
// session that was killed (the kernel let go of its lock).
func (st *state) removeStaleClaims() {
	entries, _ := os.ReadDir(st.claimsDir())
	for _, e := range entries {
		f, err := st.lockClaim(target.Key(e.Name()))
		if err != nil {
			continue
		}
		_ = os.Remove(f.Name())
		f.Close()
	}
}

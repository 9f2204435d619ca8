package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nixrescue/nixrescue/runtime/target"
)

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

// Claim takes the session's hold on the data keys name (target.Keys): a
// file per key under the claims directory, flocked for as long as the
// session runs. A second session on the same data, whatever name it has
// for it (a hard or symbolic link to the image, a second loop device on
// it, another partition of the disk), finds a claim held and is refused
// with the first one's name (arg is the target as the user named it, path
// what it is). The kernel lets go of the locks when the session's process
// ends, however it ends.
func (s *Session) Claim(arg, path string, keys []target.Key) error {
	if err := os.MkdirAll(s.dir.claimsDir(), 0o700); err != nil {
		return fmt.Errorf("create claims directory: %w", err)
	}
	me, _ := json.Marshal(Claim{Session: s.ID, PID: s.journal.PID, Target: path})
	for _, k := range keys {
		f, err := s.dir.lockClaim(k)
		// A lock held by no one named in the file is a session taking it
		// this very moment, or another's sweep of stale claims looking
		// at it: both let go at once.
		for try := 0; errors.Is(err, unix.EWOULDBLOCK) && try < 100; try++ {
			if holder, _ := s.dir.readClaim(k); holder.Session != "" {
				return &InUseError{Target: arg, Holder: holder}
			}
			time.Sleep(10 * time.Millisecond)
			f, err = s.dir.lockClaim(k)
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
func (d *Dir) lockClaim(k target.Key) (*os.File, error) {
	p := filepath.Join(d.claimsDir(), string(k))
	for range 100 {
		f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0o600)
		if errors.Is(err, os.ErrNotExist) {
			// The directory went with the last session: make it again.
			if err := os.MkdirAll(d.claimsDir(), 0o700); err != nil {
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
func (d *Dir) readClaim(k target.Key) (Claim, error) {
	var c Claim
	b, err := os.ReadFile(filepath.Join(d.claimsDir(), string(k)))
	if err != nil {
		return c, err
	}
	return c, json.Unmarshal(b, &c)
}

// ReleaseClaims removes the session's claim files and lets them go:
// removed while still locked, so that nobody takes a file that is about
// to vanish for a claim (lockClaim checks that it is still there). End
// does it too; safe to call more than once.
func (s *Session) ReleaseClaims() {
	for _, f := range s.claims {
		_ = os.Remove(f.Name())
		f.Close()
	}
	s.claims = nil
}

// RemoveStaleClaims removes the claim files nobody holds: left by a
// session that was killed (the kernel let go of its lock).
func (d *Dir) RemoveStaleClaims() {
	entries, _ := os.ReadDir(d.claimsDir())
	for _, e := range entries {
		f, err := d.lockClaim(target.Key(e.Name()))
		if err != nil {
			continue
		}
		_ = os.Remove(f.Name())
		f.Close()
	}
}

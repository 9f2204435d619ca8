package state

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nixrescue/nixrescue/runtime/layers"
)

// Journal is what a session holds and made, written as it goes, so that
// what a killed session left can be found and undone. Its field names are
// what undo.json holds: a newer nixrescue reads an older one's.
type Journal struct {
	// PID is the nixrescue process the user started.
	PID int `json:"pid"`
	// Target is the target's path; TargetArg as the user named it, and
	// TargetKind what it is (disk, partition, image, directory).
	Target     string `json:"target,omitempty"`
	TargetArg  string `json:"target_arg,omitempty"`
	TargetKind string `json:"target_kind,omitempty"`
	// Who started the session, how and when, and where it is: what
	// nixrescue ps shows and the audit record says.
	Caller
	// Disk names what the target is on: its disk and that disk's serial
	// number, or the image file.
	Disk string `json:"disk,omitempty"`
	// Phase is what the session does now: attaching, mounting, running,
	// booting, tearing down.
	Phase string `json:"phase,omitempty"`
	// Backend runs the session's container (none: no container).
	Backend string `json:"backend,omitempty"`
	// Audit is where the session's audit record went (audit.Log.Dest),
	// so that cleanup can close the record of a killed session.
	Audit string `json:"audit,omitempty"`
	// Root, Placeholder and Inode name the empty file the session made
	// in the target as the mount point of resolv.conf.
	Root        string `json:"root,omitempty"`
	Placeholder string `json:"placeholder,omitempty"`
	Inode       uint64 `json:"inode,omitempty"`
	Loops       []Loop `json:"loops,omitempty"`
	// HostTree is the session's directory when it is a private mount
	// tree of the host's mount namespace (the containerd backend).
	HostTree string `json:"host_tree,omitempty"`
	// Layers are the LUKS volumes, volume groups and arrays opened, in
	// order, each recorded before it is opened.
	Layers []layers.Opened `json:"layers,omitempty"`
	// Export is qemu-storage-daemon's export of an image, or of a
	// snapshot.
	Export *Export `json:"export,omitempty"`
	// VM is a boot test's machine: its qemu, its disk (an overlay on the
	// target) and its directory, all gone after it.
	VM *VM `json:"vm,omitempty"`
}

// Caller is who started a session, how and when.
type Caller struct {
	// Started is when the session began.
	Started time.Time `json:"started"`
	// UID is the real user ID nixrescue ran as; under sudo, SudoUID and
	// SudoUser are who called sudo.
	UID      int    `json:"uid"`
	SudoUID  int    `json:"sudo_uid,omitempty"`
	SudoUser string `json:"sudo_user,omitempty"`
	// Command is nixrescue's command line.
	Command []string `json:"command,omitempty"`
}

// ThisCaller is the caller of this process, with its command line.
func ThisCaller(command []string) Caller {
	c := Caller{Started: time.Now(), UID: os.Getuid(), SudoUser: os.Getenv("SUDO_USER"), Command: command}
	if c.SudoUser != "" {
		c.SudoUID, _ = strconv.Atoi(os.Getenv("SUDO_UID"))
	}
	return c
}

// VM is a boot test's qemu (its PID, 0 until it runs), the overlay it
// boots and the directory of its files.
type VM struct {
	PID     int    `json:"pid,omitempty"`
	Overlay string `json:"overlay"`
	Dir     string `json:"dir"`
}

// Export is a session's qemu-storage-daemon: its PID (0 until it runs),
// the file its FUSE export is mounted on or the socket of its NBD export
// (both named before it starts, which one it is after: Via), the kernel's
// nbd device on the NBD export, and the snapshot's overlay, removed after
// a crash unless kept (--snapshot-out).
type Export struct {
	PID         int    `json:"pid,omitempty"`
	File        string `json:"file"`
	Socket      string `json:"socket,omitempty"`
	Via         string `json:"via,omitempty"`
	Device      string `json:"device,omitempty"`
	Overlay     string `json:"overlay,omitempty"`
	KeepOverlay bool   `json:"keep_overlay,omitempty"`
}

// Loop is a loop device a session attached, and the partitions it added
// to it.
type Loop struct {
	Device     string `json:"device"`
	Backing    string `json:"backing"`
	Partitions []int  `json:"partitions,omitempty"`
}

// Journal is the session's journal as recorded so far.
func (s *Session) Journal() Journal { return s.journal }

// Record changes the journal and writes it (a temporary file renamed over
// the old: a crash leaves the one or the other).
func (s *Session) Record(change func(*Journal)) error {
	change(&s.journal)
	b, _ := json.Marshal(s.journal)
	tmp := filepath.Join(s.Dir(), "undo.json.tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("record session: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(s.Dir(), "undo.json")); err != nil {
		return fmt.Errorf("record session: %w", err)
	}
	return nil
}

// ReadJournal reads session id's journal.
func (d *Dir) ReadJournal(id string) (Journal, error) {
	var j Journal
	b, err := os.ReadFile(filepath.Join(d.SessionDir(id), "undo.json"))
	if err != nil {
		return j, err
	}
	return j, json.Unmarshal(b, &j)
}

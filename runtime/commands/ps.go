package commands

import (
	"cmp"
	"errors"
	"os"
	"sort"
	"time"

	"github.com/nixrescue/nixrescue/runtime/engine"
	"github.com/nixrescue/nixrescue/runtime/hint"
	"github.com/nixrescue/nixrescue/runtime/policy"
	"github.com/nixrescue/nixrescue/runtime/state"
	"github.com/nixrescue/nixrescue/runtime/target"
)

// PSReport lists the sessions running on this host. Its JSON field names
// are stable (docs/json.md).
type PSReport struct {
	Sessions []SessionInfo `json:"sessions"`
}

// SessionInfo is one running session, as its journal says.
type SessionInfo struct {
	ID  string `json:"id"`
	PID int    `json:"pid"`
	// Target is the target, as other reports name it; Disk what it is on
	// (the disk and its serial number, the image file).
	Target  target.Target `json:"target"`
	Disk    string        `json:"disk,omitempty"`
	Backend string        `json:"backend,omitempty"`
	// UID is who ran nixrescue; SudoUser and SudoUID who called sudo.
	UID      int       `json:"uid"`
	SudoUser string    `json:"sudo_user,omitempty"`
	SudoUID  int       `json:"sudo_uid,omitempty"`
	Command  []string  `json:"command"`
	Started  time.Time `json:"started"`
	// Phase is attaching, mounting, running, booting or tearing down.
	Phase string `json:"phase"`
	// Export is qemu-storage-daemon's export of an image (or snapshot)
	// the session reads.
	Export *ExportInfo `json:"export,omitempty"`
}

// ExportInfo is a session's export: how it is reached (nbd, fuse; empty
// while it starts), its daemon's PID and the kernel's nbd device.
type ExportInfo struct {
	Via    string `json:"via,omitempty"`
	PID    int    `json:"pid,omitempty"`
	Device string `json:"device,omitempty"`
}

// PS lists the running sessions of the state directory stateDir ("" is
// the default), oldest first; g is what a sudo caller may do (nil:
// anything).
func PS(stateDir string, g *policy.Grant) (*PSReport, error) {
	r := &PSReport{Sessions: []SessionInfo{}}
	if os.Geteuid() != 0 {
		return r, &hint.Error{Err: errors.New("ps needs root, as the sessions it lists"), Fix: engine.RootFix}
	}
	if err := refuseHostFiles(g, hostFile{stateDirGiven(stateDir), hint.StateDir}); err != nil {
		return r, err
	}
	dir := state.At(stateDir)
	live, _, err := dir.Sessions()
	if err != nil {
		return r, err
	}
	for _, id := range live {
		j, err := dir.ReadJournal(id)
		if err != nil {
			continue // ended meanwhile
		}
		cmd := j.Command
		if cmd == nil {
			cmd = []string{}
		}
		t := target.Target{Arg: cmp.Or(j.TargetArg, j.Target), Path: j.Target, Kind: target.Kind(j.TargetKind)}
		info := SessionInfo{ID: id, PID: j.PID, Target: t, Disk: j.Disk, Backend: j.Backend,
			UID: j.UID, SudoUser: j.SudoUser, SudoUID: j.SudoUID, Command: cmd, Started: j.Started, Phase: j.Phase}
		if e := j.Export; e != nil {
			info.Export = &ExportInfo{Via: e.Via, PID: e.PID, Device: e.Device}
		}
		r.Sessions = append(r.Sessions, info)
	}
	sort.Slice(r.Sessions, func(a, b int) bool { return r.Sessions[a].Started.Before(r.Sessions[b].Started) })
	return r, nil
}

package state

import (
	"os"
	"path/filepath"
	"strings"
)

// OverlayDir is where a session's throwaway overlays (a snapshot's, a
// boot test's) are made: on a disk (a rebuild writes hundreds of
// megabytes there), not /run. Unlike /run, it outlives a reboot of the
// rescue host, so what a killed session left there is swept by name.
const OverlayDir = "/var/tmp"

// overlayKinds are the overlays a session makes, by the suffix of their
// names.
var overlayKinds = []string{"snapshot", "boot-test"}

// OverlayPath is where session id's overlay of kind ("snapshot",
// "boot-test") is made.
func OverlayPath(id, kind string) string {
	return filepath.Join(OverlayDir, id+"-"+kind+".qcow2")
}

// RemoveOrphanOverlays removes the overlays in OverlayDir whose session
// has no directory here any more (its journal was lost with /run in a
// reboot, or the session was killed before it recorded the overlay) and
// that no process holds open (a session of another state directory).
func (d *Dir) RemoveOrphanOverlays() []string {
	var removed []string
	for _, kind := range overlayKinds {
		paths, _ := filepath.Glob(filepath.Join(OverlayDir, "nixrescue-*-"+kind+".qcow2"))
		for _, p := range paths {
			id := strings.TrimSuffix(filepath.Base(p), "-"+kind+".qcow2")
			if _, err := os.Lstat(d.SessionDir(id)); !os.IsNotExist(err) {
				continue
			}
			if _, err := os.Lstat(filepath.Join(d.SessionsDir(), "."+id)); !os.IsNotExist(err) {
				continue // a session being made
			}
			if openByAnyProcess(p) {
				continue
			}
			if os.Remove(p) == nil {
				removed = append(removed, p)
			}
		}
	}
	return removed
}

// openByAnyProcess tells whether a process has file p open.
func openByAnyProcess(p string) bool {
	want, err := os.Stat(p)
	if err != nil {
		return false
	}
	fds, _ := filepath.Glob("/proc/[0-9]*/fd/*")
	for _, fd := range fds {
		if st, err := os.Stat(fd); err == nil && os.SameFile(st, want) {
			return true
		}
	}
	return false
}

package engine

import (
	"sort"

	"golang.org/x/sys/unix"

	"github.com/nixrescue/nixrescue/runtime/mount"
)

// detachOtherSessions detaches, from this process's own mount namespace,
// the mount trees of other sessions under sessionsDir: a containerd
// session mounts its target in the host's namespace, there, and the copy
// of the host's table this namespace got when it was made would keep
// those filesystems mounted for as long as this session lives (an enter
// may last hours): the other session's read-write mount refused, its loop
// device still attached after it ended. Nothing of this session is
// mounted yet. Best effort: what cannot be detached stays as it was.
func detachOtherSessions(sessionsDir string) {
	ms, err := mount.Under(sessionsDir)
	if err != nil {
		return
	}
	// Outermost first: detaching a tree takes what is mounted in it along.
	sort.Slice(ms, func(i, j int) bool { return len(ms[i].Mountpoint) < len(ms[j].Mountpoint) })
	for _, m := range ms {
		if m.Mountpoint != sessionsDir {
			_ = unix.Unmount(m.Mountpoint, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW)
		}
	}
}

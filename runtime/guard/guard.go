// Package guard kills what runs in a session's container when nixrescue
// itself is killed.
//
// A session's container shares the host's PID namespace (systemd takes a
// new one for a container: see specs), so nothing the kernel does ends its
// processes when nixrescue dies: a command that ignores SIGTERM, or one it
// left in the background, would go on running, and keep the target's
// filesystems mounted read-write in the session's mount namespace, until
// the next session or `nixrescue cleanup` found them. The hold kills the
// process it started when its connection to nixrescue ends, but no more,
// and a container made around its first process has no hold at all.
//
// So every session that starts a container has a guard: a small process
// of its own (this binary, started as "nixrescue guard CGROUP", taken by a
// C constructor before Go starts, as the hold is), in a session of its own
// so that a Ctrl-C or a kill of nixrescue's process group leaves it be. It
// waits on a pipe whose other end only nixrescue holds. When the session
// ends well, nixrescue disarms it (a byte on the pipe) once the container
// is gone; when nixrescue dies, the kernel closes the pipe and the guard
// kills everything in the container's cgroup: cgroup v2's cgroup.kill, or
// frozen first (v1's freezer, v2's cgroup.freeze) so that nothing forks
// away, then SIGKILL. The same routine serves cleanup (KillCgroup).
package guard

/*
#include <stdlib.h>
#include "guard.h"

*/
import "C"

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"unsafe"

	"github.com/nixrescue/nixrescue/runtime/roles"
)

// CgroupRoot is where the cgroup hierarchies are mounted.
const CgroupRoot = "/sys/fs/cgroup"

// Guard is a running guard.
type Guard struct {
	pipe *os.File
	cmd  *exec.Cmd
}

// Start starts the guard of the container whose cgroup is cgroupPath (as
// the spec names it: /nixrescue-ID). It does not wait for the guard to
// start: it is on its own from the moment it runs.
func Start(cgroupPath string) (*Guard, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("start the session's guard: %w", err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("start the session's guard: %w", err)
	}
	defer r.Close()
	cmd := exec.Command(exe, "guard", cgroupPath)
	cmd.Args[0] = "nixrescue"
	cmd.Env = []string{roles.GuardFDEnv + "=3"}
	cmd.ExtraFiles = []*os.File{r}
	cmd.Dir = "/"
	if err := cmd.Start(); err != nil {
		w.Close()
		return nil, fmt.Errorf("start the session's guard: %w", err)
	}
	g := &Guard{pipe: w, cmd: cmd}
	// Reaped when it exits, so that it never lingers as a zombie.
	go func() { _ = cmd.Wait() }()
	return g, nil
}

// Disarm tells the guard that the session ended well: it exits and kills
// nothing. Safe on nil and more than once.
func (g *Guard) Disarm() {
	if g == nil || g.pipe == nil {
		return
	}
	_, _ = g.pipe.Write([]byte{'d'})
	g.pipe.Close()
	g.pipe = nil
}

// KillCgroup kills every process of the cgroup at path (as a spec names
// it) in every hierarchy under CgroupRoot, as the guard does.
func KillCgroup(path string) error {
	cr, cp := C.CString(CgroupRoot), C.CString(path)
	defer C.free(unsafe.Pointer(cr))
	defer C.free(unsafe.Pointer(cp))
	if C.nixrescue_kill_cgroup(cr, cp) != 0 {
		return fmt.Errorf("kill the processes of cgroup %s: %w", path, syscall.EBUSY)
	}
	return nil
}

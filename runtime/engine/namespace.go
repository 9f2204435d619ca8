package engine

import (
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"sort"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/nixrescue/nixrescue/runtime/helper"
	"github.com/nixrescue/nixrescue/runtime/mount"
	"github.com/nixrescue/nixrescue/runtime/roles"
)

// inPrivateNS tells whether this process is the re-executed one, in the
// session's own mount namespace (runtime/roles: Reexec).
func inPrivateNS() bool { return os.Getenv(roles.ReexecEnv) == "1" }

// reexecInPrivateNS runs this same command again in a new mount
// namespace and returns its exit status. Every mount a session makes (the
// target's filesystems, probes) lives in that namespace and vanishes with
// it, even when nixrescue is killed: the child dies with its parent
// (PR_SET_PDEATHSIG), and nothing it mounts propagates back (its tree is
// made rslave before anything is mounted).
func reexecInPrivateNS(env ...string) (int, error) {
	// Pdeathsig follows the thread that started the child: keep it.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cmd := exec.Command("/proc/self/exe", os.Args[1:]...)
	cmd.Args[0] = os.Args[0]
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(append(os.Environ(), roles.ReexecEnv+"=1"), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: unix.CLONE_NEWNS, Pdeathsig: unix.SIGKILL}
	// The child handles signals; a terminal's reach it directly (same
	// process group), others sent to us are passed on.
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, unix.SIGINT, unix.SIGTERM, unix.SIGHUP, unix.SIGQUIT)
	defer signal.Stop(sigs)
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start nixrescue in a private mount namespace: %w", err)
	}
	done := make(chan struct{})
	go func() {
		for {
			select {
			case s := <-sigs:
				_ = cmd.Process.Signal(s)
			case <-done:
				return
			}
		}
	}()
	err := cmd.Wait()
	close(done)
	if cmd.ProcessState == nil {
		return 0, fmt.Errorf("wait for nixrescue: %w", err)
	}
	return helper.ExitStatus(cmd.ProcessState.Sys().(syscall.WaitStatus)), nil
}

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

package embedded

import (
	"os"
	"path/filepath"

	"github.com/opencontainers/cgroups"
)

// warmCgroupAttach starts, on a goroutine of its own, the kernel's wait
// that the container's first move into its cgroups would otherwise pay
// on the way of the container.
//
// Moving a process into a cgroup (a write to cgroup.procs, which
// libcontainer does for the container's init before the init may go on)
// takes the kernel's cgroup_threadgroup_rwsem for writing. The first
// writer after a quiet spell waits for an RCU grace period (the rwsem's
// rcu_sync); writers within about one grace period of the last do not.
// Here that wait is 5-16 ms, the largest single item of a container's
// start (runc and systemd-nspawn pay it too). Moving ourselves into the
// cgroup we are already in changes nothing, takes the same lock, and
// pays that wait off the critical path, while the session does other
// work; libcontainer's writes then find the lock warm.
//
// Best effort: any error means the container pays the wait itself.
func warmCgroupAttach() {
	go func() { _ = moveToOwnCgroup() }()
}

// moveToOwnCgroup moves this process into the cgroup it is in.
func moveToOwnCgroup() error {
	dir, err := ownCgroupDir()
	if err != nil {
		return err
	}
	return cgroups.WriteCgroupProc(dir, os.Getpid())
}

// ownCgroupDir is the directory of the cgroup this process is in: on
// cgroup v1, in the pids hierarchy (any would do, the lock is global;
// pids is one libcontainer uses), on v2 in the unified one.
func ownCgroupDir() (string, error) {
	if !cgroups.IsCgroup2UnifiedMode() {
		return cgroups.GetOwnCgroupPath("pids")
	}
	own, err := cgroups.ParseCgroupFile("/proc/self/cgroup")
	if err != nil {
		return "", err
	}
	return filepath.Join("/sys/fs/cgroup", own[""]), nil
}

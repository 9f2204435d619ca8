package mount

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/moby/sys/mountinfo"
)

// Info is a mount as a mount table lists it (moby/sys/mountinfo's).
type Info = mountinfo.Info

// NamespaceMount is a mount of some mount namespace of this host.
type NamespaceMount struct {
	*mountinfo.Info
	// Namespace names the mount namespace (mnt:[inode]); PID is a
	// process in it.
	Namespace string
	PID       int
}

// Everywhere lists the mounts of every mount namespace of this host that
// filter keeps: a mount namespace of its own (a container's, a service's
// private /tmp, a nixrescue session's) hides its mounts from every other
// mount table, so /proc/self/mountinfo alone cannot tell whether a
// filesystem is mounted. Each namespace is read once, through one of its
// processes; processes that end meanwhile are passed over.
func Everywhere(keep func(*Info) bool) ([]NamespaceMount, error) {
	filter := func(m *Info) (skip, stop bool) { return !keep(m), false }
	procs, err := filepath.Glob("/proc/[0-9]*")
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var out []NamespaceMount
	for _, p := range procs {
		ns, err := os.Readlink(filepath.Join(p, "ns/mnt"))
		if err != nil || seen[ns] || kernelThread(p) {
			continue
		}
		f, err := os.Open(filepath.Join(p, "mountinfo"))
		if err != nil {
			continue
		}
		mounts, err := mountinfo.GetMountsFromReader(f, filter)
		f.Close()
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			return nil, err
		}
		seen[ns] = true
		pid, _ := strconv.Atoi(filepath.Base(p))
		for _, m := range mounts {
			out = append(out, NamespaceMount{Info: m, Namespace: ns, PID: pid})
		}
	}
	return out, nil
}

// RootOf is the mount on / in the mount table at path (a
// /proc/PID/mountinfo): the last one mounted there, nil when none is.
func RootOf(path string) (*Info, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	ms, err := mountinfo.GetMountsFromReader(f, mountinfo.SingleEntryFilter("/"))
	if err != nil || len(ms) == 0 {
		return nil, err
	}
	return ms[len(ms)-1], nil
}

// ReadWrite tells whether a mount is read-write.
func ReadWrite(m *mountinfo.Info) bool {
	return !slices.Contains(strings.Split(m.Options, ","), "ro")
}

// At is the mount in effect at dir in this mount namespace (the last one
// mounted there), or nil when dir is no mount point.
func At(dir string) (*mountinfo.Info, error) {
	ms, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(dir))
	if err != nil {
		return nil, fmt.Errorf("read the mount table: %w", err)
	}
	if len(ms) == 0 {
		return nil, nil
	}
	return ms[len(ms)-1], nil
}

// Under lists the mounts at dir and under it in this mount namespace.
func Under(dir string) ([]*mountinfo.Info, error) {
	ms, err := mountinfo.GetMounts(mountinfo.PrefixFilter(dir))
	if err != nil {
		return nil, fmt.Errorf("read the mount table: %w", err)
	}
	return ms, nil
}

// RootIsInitramfs reads a mountinfo file and tells whether / is the
// kernel's rootfs (an initramfs never switched away from).
func RootIsInitramfs(r io.Reader) (bool, error) {
	mounts, err := mountinfo.GetMountsFromReader(r, func(m *mountinfo.Info) (skip, stop bool) {
		return m.Mountpoint != "/", false
	})
	if err != nil {
		return false, fmt.Errorf("read mount table: %w", err)
	}
	// With several mounts on /, the last one is in effect.
	return len(mounts) > 0 && mounts[len(mounts)-1].FSType == "rootfs", nil
}

// pfKthread is the kernel's PF_KTHREAD flag of a task.
const pfKthread = 0x00200000

// kernelThread tells whether the process at p (/proc/PID) is a kernel
// thread: kernel threads live in the kernel's first mount namespace,
// which is not the host's after an initramfs handed over, and no user
// mounted anything there for them.
func kernelThread(p string) bool {
	b, err := os.ReadFile(filepath.Join(p, "stat"))
	return err == nil && kernelThreadStat(string(b))
}

// kernelThreadStat tells whether a /proc/PID/stat line is a kernel
// thread's (PF_KTHREAD in its flags).
func kernelThreadStat(b string) bool {
	// pid (comm) state ppid pgrp session tty_nr tpgid flags …; comm may
	// hold spaces and parentheses.
	i := strings.LastIndexByte(b, ')')
	if i < 0 {
		return false
	}
	f := strings.Fields(b[i+1:])
	if len(f) < 7 {
		return false
	}
	flags, err := strconv.ParseUint(f[6], 10, 64)
	return err == nil && flags&pfKthread != 0
}

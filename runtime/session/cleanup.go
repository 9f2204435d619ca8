package session

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// CleanupReport says what cleanup removed and what it left alone. Its
// JSON field names are stable.
type CleanupReport struct {
	// Removed are the sessions whose leftovers were removed.
	Removed []string `json:"removed"`
	// Cgroups are stray nixrescue cgroups removed by --all.
	Cgroups []string `json:"cgroups"`
	// Live are sessions still running, left alone.
	Live []string `json:"live"`
}

// Cleanup undoes what killed sessions left: their containers and
// processes, cgroups, loop devices and partitions, mount points made in
// targets, state. Sessions still running are left alone. With all, it
// also removes nixrescue cgroups that no session's state names (left by
// a crash while the state was being written).
func Cleanup(ctx context.Context, stateDir string, all bool) (CleanupReport, error) {
	r := CleanupReport{Removed: []string{}, Cgroups: []string{}, Live: []string{}}
	if os.Geteuid() != 0 {
		return r, errors.New("cleanup needs root: run it as root, e.g. with sudo")
	}
	if stateDir == "" {
		stateDir = DefaultStateDir
	}
	st := &state{dir: stateDir}
	if _, err := os.Stat(st.sessionsDir()); err == nil {
		entries, err := os.ReadDir(st.sessionsDir())
		if err != nil {
			return r, err
		}
		for _, e := range entries {
			if st.live(e.Name()) {
				r.Live = append(r.Live, e.Name())
			}
		}
		removed, err := st.removeStaleSessions()
		if err != nil {
			return r, err
		}
		r.Removed = append(r.Removed, removed...)
	}
	if all {
		cgs, err := removeStrayCgroups(func(id string) bool { return st.live(id) })
		r.Cgroups = append(r.Cgroups, cgs...)
		if err != nil {
			return r, err
		}
	}
	st.removeDirsIfUnused()
	return r, nil
}

// removeStrayCgroups kills the processes of nixrescue-* cgroups whose
// session is not live, and removes the cgroups.
func removeStrayCgroups(live func(string) bool) ([]string, error) {
	var removed []string
	var dirs []string
	for _, pat := range []string{"/sys/fs/cgroup/nixrescue-*", "/sys/fs/cgroup/*/nixrescue-*"} {
		m, _ := filepath.Glob(pat)
		dirs = append(dirs, m...)
	}
	for _, d := range dirs {
		id := filepath.Base(d)
		if live(id) {
			continue
		}
		if b, err := os.ReadFile(filepath.Join(d, "cgroup.procs")); err == nil {
			for _, f := range strings.Fields(string(b)) {
				var pid int
				if _, err := fmt.Sscan(f, &pid); err == nil && pid > 0 {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		}
		deadline := time.Now().Add(3 * time.Second)
		for {
			err := syscall.Rmdir(d)
			if err == nil || errors.Is(err, os.ErrNotExist) {
				removed = append(removed, d)
				break
			}
			if time.Now().After(deadline) {
				return removed, fmt.Errorf("remove cgroup %s: %w", d, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return removed, nil
}

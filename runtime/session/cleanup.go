package session

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/nixrescue/nixrescue/runtime/guard"
	"github.com/nixrescue/nixrescue/runtime/host"
)

// CleanupReport says what cleanup removed and what it left alone. Its
// JSON field names are stable.
type CleanupReport struct {
	// Removed are the sessions whose leftovers were removed.
	Removed []string `json:"removed"`
	// Containers are containerd containers of dead sessions, deleted
	// (namespace/id).
	Containers []string `json:"containers"`
	// Cgroups are stray nixrescue cgroups removed by --all.
	Cgroups []string `json:"cgroups"`
	// Live are sessions still running, left alone.
	Live []string `json:"live"`
}

// Empty tells whether cleanup found nothing to remove.
func (r *CleanupReport) Empty() bool { return len(r.Removed)+len(r.Containers)+len(r.Cgroups) == 0 }

// WriteText says for people what was removed and what was left alone.
func (r *CleanupReport) WriteText(w io.Writer) error {
	for _, id := range r.Removed {
		fmt.Fprintf(w, "removed what session %s left\n", id)
	}
	for _, c := range r.Containers {
		fmt.Fprintf(w, "deleted containerd container %s\n", c)
	}
	for _, c := range r.Cgroups {
		fmt.Fprintf(w, "removed cgroup %s\n", c)
	}
	for _, id := range r.Live {
		fmt.Fprintf(w, "left session %s alone: it is still running\n", id)
	}
	if r.Empty() {
		fmt.Fprintln(w, "nothing to clean up")
	}
	return nil
}

// CleanupOptions are cleanup's.
type CleanupOptions struct {
	StateDir string
	All      bool
	// Backend, Address and Namespace say where to look for containerd
	// containers: auto looks at the default socket.
	Backend, Address, Namespace string
}

// Cleanup undoes what killed sessions left: their containers and
// processes, cgroups, loop devices and partitions, mount points made in
// targets, state. Sessions still running are left alone. With all, it
// also removes nixrescue cgroups that no session's state names (left by
// a crash while the state was being written).
func Cleanup(ctx context.Context, co CleanupOptions) (CleanupReport, error) {
	stateDir, all := co.StateDir, co.All
	r := CleanupReport{Removed: []string{}, Containers: []string{}, Cgroups: []string{}, Live: []string{}}
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
			if !strings.HasPrefix(e.Name(), ".") && st.live(e.Name()) {
				r.Live = append(r.Live, e.Name())
			}
		}
	}
	// containerd's leftovers, when a containerd answers (quietly skipped
	// when none does, unless one was named).
	be, err := chooseBackend(ctx, Options{Backend: co.Backend, Address: co.Address, Namespace: co.Namespace})
	if err != nil && co.Backend == BackendContainerd {
		return r, err
	}
	if _, err := os.Stat(st.sessionsDir()); err == nil || be.containerd != nil {
		if err := os.MkdirAll(st.sessionsDir(), 0o700); err != nil {
			return r, err
		}
		removed, containers, err := st.cleanStale(ctx, be.containerd)
		r.Removed = append(r.Removed, removed...)
		r.Containers = append(r.Containers, containers...)
		if err != nil {
			return r, err
		}
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
	return removeCgroups("nixrescue-*", live)
}

// removeCgroups kills the processes of the cgroups named like pattern (in
// every hierarchy) whose session is not live (guard.KillCgroup, as a
// session's guard does), and removes the cgroups: what a container whose
// runtime is gone (a containerd that died) leaves.
func removeCgroups(pattern string, live func(string) bool) ([]string, error) {
	var removed []string
	killed := map[string]bool{}
	for _, d := range host.CgroupDirs(pattern) {
		id := filepath.Base(d)
		if live(id) {
			continue
		}
		if !killed[id] {
			killed[id] = true
			if err := guard.KillCgroup("/" + id); err != nil {
				return removed, err
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

package commands

import (
	"context"
	"errors"
	"os"

	"github.com/nixrescue/nixrescue/runtime/engine"
	"github.com/nixrescue/nixrescue/runtime/hint"
	"github.com/nixrescue/nixrescue/runtime/policy"
	"github.com/nixrescue/nixrescue/runtime/recovery"
)

// CleanupReport says what cleanup removed and what it left alone. Its
// JSON field names are stable (docs/json.md).
type CleanupReport struct {
	// Removed are the sessions whose leftovers were removed.
	Removed []string `json:"removed"`
	// Containers are containerd containers of dead sessions, deleted
	// (namespace/id).
	Containers []string `json:"containers"`
	// Cgroups are stray nixrescue cgroups removed by --all.
	Cgroups []string `json:"cgroups"`
	// Overlays are throwaway overlays (--snapshot's, boot-test's) of
	// sessions gone, removed.
	Overlays []string `json:"overlays"`
	// Live are sessions still running, left alone.
	Live []string `json:"live"`
}

// Empty tells whether cleanup found nothing to remove.
func (r *CleanupReport) Empty() bool {
	return len(r.Removed)+len(r.Containers)+len(r.Cgroups)+len(r.Overlays) == 0
}

// CleanupOptions are cleanup's.
type CleanupOptions struct {
	StateDir string
	// All also removes nixrescue cgroups no session's state names.
	All bool
	// Backend, Address and Namespace say where to look for containerd
	// containers: auto looks at the default socket, and no containerd
	// answering there is no error.
	Backend, Address, Namespace string
	// Policy is what a sudo caller may do (nil: anything).
	Policy *policy.Grant
}

// Cleanup undoes what killed sessions left (runtime/recovery) and reports
// it, even when it fails midway.
func Cleanup(ctx context.Context, o CleanupOptions) (*CleanupReport, error) {
	r := &CleanupReport{Removed: []string{}, Containers: []string{}, Cgroups: []string{}, Overlays: []string{}, Live: []string{}}
	if os.Geteuid() != 0 {
		return r, &hint.Error{Err: errors.New("cleanup needs root, as the sessions it cleans up after"), Fix: engine.RootFix}
	}
	if err := refuseHostFiles(o.Policy, hostFile{stateDirGiven(o.StateDir), hint.StateDir}, hostFile{addressGiven(o.Address), hint.Address}); err != nil {
		return r, err
	}
	cd, err := engine.Containerd(ctx, o.Backend, o.Address, o.Namespace)
	if err != nil {
		return r, err
	}
	rec, err := recovery.Recover(ctx, recovery.Options{StateDir: o.StateDir, All: o.All, Containerd: cd})
	r.Removed = append(r.Removed, rec.Removed...)
	r.Containers = append(r.Containers, rec.Containers...)
	r.Cgroups = append(r.Cgroups, rec.Cgroups...)
	r.Overlays = append(r.Overlays, rec.Overlays...)
	r.Live = append(r.Live, rec.Live...)
	return r, err
}

package commands

import (
	"slices"

	"github.com/nixrescue/nixrescue/runtime/engine"
	"github.com/nixrescue/nixrescue/runtime/hint"
	"github.com/nixrescue/nixrescue/runtime/policy"
	"github.com/nixrescue/nixrescue/runtime/state"
)

// Authorize checks command against the host's policy (policy.DefaultPath)
// when nixrescue runs under sudo: it returns what the caller may do with
// it (each command checks its options, the engine each target), or the
// refusal. Without sudo or without a policy file it returns nil: root may
// do anything. known are the command names a policy may list.
func Authorize(command string, known []string) (*policy.Grant, error) {
	caller, sudo, err := policy.SudoCaller()
	if !sudo {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	p, err := policy.Load(policy.DefaultPath, known)
	if err != nil || p == nil {
		return nil, err
	}
	return p.Allow(caller, command)
}

// hostFile is an option that names a file or a socket of the host, and
// whether it was given.
type hostFile struct {
	given  bool
	option hint.Option
}

// refuseHostFiles refuses, under a grant, the options given that would
// have root open a file or socket of the host for the caller: under sudo
// those are the operator's to set.
func refuseHostFiles(g *policy.Grant, files ...hostFile) error {
	if g == nil {
		return nil
	}
	for _, f := range files {
		if f.given {
			return hint.Errorf("policy %s: {%s} names a file of the host, which root would open for you: under sudo it is the operator's to set; leave it out ({KeyFile -} reads a passphrase from standard input)", g.Path, f.option)
		}
	}
	return nil
}

// stateDirGiven tells whether dir is another state directory than the
// default.
func stateDirGiven(dir string) bool { return dir != "" && dir != state.DefaultDir }

// addressGiven tells whether address is another containerd socket than
// the default.
func addressGiven(address string) bool {
	return address != "" && address != engine.DefaultContainerdAddress
}

// checkPolicy refuses, under o's grant, the options of a session that
// reach beyond its target: files of the host, and the host's /dev.
func (o *Options) checkPolicy(more ...hostFile) error {
	if o.Policy == nil {
		return nil
	}
	err := refuseHostFiles(o.Policy, append([]hostFile{
		{o.AuditLog != "", hint.AuditLog},
		{stateDirGiven(o.StateDir), hint.StateDir},
		{o.SnapshotOut != "", hint.SnapshotOut},
		{slices.ContainsFunc(o.KeyFiles, func(f string) bool { return f != "-" }), hint.KeyFile},
		{addressGiven(o.Address), hint.Address},
	}, more...)...)
	if err == nil && o.Container.HostDev {
		err = hint.Errorf("policy %s: {HostDev} would give the container every disk of this host; under sudo the container's /dev is curated", o.Policy.Path)
	}
	return err
}

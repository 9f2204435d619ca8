package commands

import (
	"github.com/nixrescue/nixrescue/runtime/policy"
)

// Authorize checks command against the host's policy (policy.DefaultPath)
// when nixrescue runs under sudo: it returns what the caller may do with
// it (the engine checks each target against it), or the refusal. Without
// sudo or without a policy file it returns nil: root may do anything.
// known are the command names a policy may list.
func Authorize(command string, known []string) (*policy.Grant, error) {
	return authorizeAt(policy.DefaultPath, command, known)
}

func authorizeAt(path, command string, known []string) (*policy.Grant, error) {
	caller, sudo, err := policy.SudoCaller()
	if !sudo {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	p, err := policy.Load(path, known)
	if err != nil || p == nil {
		return nil, err
	}
	return p.Allow(caller, command)
}

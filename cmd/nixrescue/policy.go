package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/nixrescue/nixrescue/runtime/commands"
	"github.com/nixrescue/nixrescue/runtime/policy"
)

// grant is what the host's policy lets a sudo caller do with this
// command; nil when no policy applies (root may do anything).
var grant *policy.Grant

// alwaysAllowed are the commands that touch nothing: no policy names them.
var alwaysAllowed = map[string]bool{"help": true, "version": true, "completion": true, "__complete": true, "__completeNoDesc": true}

// hostPathFlags name files or sockets of the host that root would write
// or read for the caller: under a policy they are the operator's to set.
var hostPathFlags = []string{"audit-log", "state-dir", "snapshot-out", "console", "bundle", "address", "key-file"}

// authorize checks cmd against the policy (under sudo) and keeps the
// grant for the options.
func authorize(cmd *cobra.Command) error {
	if alwaysAllowed[cmd.Name()] {
		return nil
	}
	var known []string
	for _, c := range cmd.Root().Commands() {
		if !alwaysAllowed[c.Name()] && !c.Hidden {
			known = append(known, c.Name())
		}
	}
	g, err := commands.Authorize(cmd.Name(), known)
	if err != nil || g == nil {
		return err
	}
	if cmd.Hidden {
		// generate-docs writes where it is told: a packager's tool.
		return fmt.Errorf("policy %s: %s is not for use under sudo; run it as root", g.Path, cmd.Name())
	}
	for _, name := range hostPathFlags {
		f := cmd.Flags().Lookup(name)
		if f == nil || !f.Changed || name == "key-file" && f.Value.String() == "[-]" {
			continue
		}
		return fmt.Errorf("policy %s: --%s names a file of the host, which root would open for you: under sudo it is the operator's to set; leave it out (--key-file - reads a passphrase from standard input)", g.Path, name)
	}
	if f := cmd.Flags().Lookup("dev"); f != nil && f.Value.String() == "host" {
		return fmt.Errorf("policy %s: --dev host would give the container every disk of this host; under sudo the container's /dev is curated", g.Path)
	}
	grant = g
	return nil
}

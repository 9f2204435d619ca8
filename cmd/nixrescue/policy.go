package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/nixrescue/nixrescue/runtime/commands"
)

// grant is what the host's policy lets a sudo caller do with this
// command; nil when no policy applies (root may do anything).
var grant *commands.Grant

// alwaysAllowed are the commands that touch nothing: no policy names them.
var alwaysAllowed = map[string]bool{"help": true, "version": true, "completion": true, "__complete": true, "__completeNoDesc": true}

// authorize checks cmd against the policy (under sudo) and keeps the
// grant for the options: each command checks its own against it.
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
	grant = g
	return nil
}

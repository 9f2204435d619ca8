package main

// Mistakes on the command line: an unknown flag (with the flag meant,
// when one is close), too many arguments, each said in one line with
// what to do.

import (
	"errors"
	"fmt"
	"strings"

	"github.com/agnivade/levenshtein"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/nixrescue/nixrescue/runtime/hint"
)

// flagError words a flag cobra could not parse, with the fix: the flag
// meant (a typo of one of cmd's), or where the flags are listed.
func flagError(cmd *cobra.Command, err error) error {
	fix := fmt.Sprintf("%s --help lists its flags", cmd.CommandPath())
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "unknown flag: --"); ok {
		if near := nearestFlag(cmd, name); near != "" {
			fix = fmt.Sprintf("did you mean --%s? (%s)", near, fix)
		}
	}
	return &hint.Error{Err: errors.New(msg), Fix: fix}
}

// nearestFlag is the flag of cmd closest to name: within two edits, or
// the one flag it begins, "" when none is.
func nearestFlag(cmd *cobra.Command, name string) string {
	best, bestDist := "", 3
	var prefixed []string
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if f.Hidden {
			return
		}
		if strings.HasPrefix(f.Name, name) {
			prefixed = append(prefixed, f.Name)
		}
		if d := levenshtein.ComputeDistance(name, f.Name); d < bestDist {
			best, bestDist = f.Name, d
		}
	})
	if best == "" && len(prefixed) == 1 {
		return prefixed[0]
	}
	return best
}

// targetArgs lets a command take one TARGET at most (before "--").
func targetArgs(cmd *cobra.Command, args []string) error {
	if dash := cmd.ArgsLenAtDash(); dash >= 0 {
		args = args[:dash]
	}
	if len(args) <= 1 {
		return nil
	}
	return &hint.Error{Err: fmt.Errorf("one TARGET at most, got %d (%s)", len(args), strings.Join(args, " ")),
		Fix: fmt.Sprintf("name one disk, partition, image or directory: %s", cmd.UseLine())}
}

// noArgs refuses any argument.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	return &hint.Error{Err: fmt.Errorf("%s takes no argument, got %q", cmd.CommandPath(), args[0]),
		Fix: "usage: " + cmd.UseLine()}
}

// commandArgs refuses what is not a command of nixrescue's, with the one
// meant when one is close.
func commandArgs(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	fix := "nixrescue --help lists the commands"
	if near := cmd.SuggestionsFor(args[0]); len(near) > 0 {
		fix = fmt.Sprintf("did you mean %s? (%s)", strings.Join(near, " or "), fix)
	}
	return &hint.Error{Err: fmt.Errorf("unknown command %q", args[0]), Fix: fix}
}

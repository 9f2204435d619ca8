package policy

import (
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Caller is who called sudo: the user and the groups they are in.
type Caller struct {
	User   string
	UID    int
	Groups []string
}

// Grant is what the policy lets a caller do with one command: the rules
// that name the caller and allow the command.
type Grant struct {
	Path    string
	Caller  Caller
	Command string
	Rules   []Rule
}

// TargetInfo is what a target is, as a grant matches it: its path (links
// resolved), its whole disk and that disk's serial number when it is on
// one.
type TargetInfo struct {
	Arg, Path, Disk, Serial string
}

// Allow returns what p grants c for command, or an error naming why
// nothing is granted.
func (p *Policy) Allow(c Caller, command string) (*Grant, error) {
	g := &Grant{Path: p.Path, Caller: c, Command: command}
	var theirs []int
	for _, r := range p.Rules {
		if !(r.Who == "user" && r.Name == c.User || r.Who == "group" && slices.Contains(c.Groups, r.Name)) {
			continue
		}
		theirs = append(theirs, r.Line)
		if len(r.Commands) == 0 || slices.Contains(r.Commands, "all") || slices.Contains(r.Commands, command) {
			g.Rules = append(g.Rules, r)
		}
	}
	switch {
	case len(theirs) == 0:
		return nil, fmt.Errorf("policy %s: no rule names user %s or a group of theirs: nothing is allowed; ask the host's operator for a rule", p.Path, c.User)
	case len(g.Rules) == 0:
		return nil, fmt.Errorf("policy %s: %s may not use nixrescue %s (the rules at line %s allow other commands); ask the host's operator", p.Path, c.User, command, lines(theirs))
	}
	return g, nil
}

// AllowTarget returns nil when a rule of g allows t, or the refusal.
func (g *Grant) AllowTarget(t TargetInfo) error {
	var tried []int
	for _, r := range g.Rules {
		for _, pat := range r.Targets {
			if pat.Matches(t) {
				return nil
			}
		}
		tried = append(tried, r.Line)
	}
	what := t.Path
	if t.Serial != "" {
		what += " (serial " + t.Serial + ")"
	}
	return fmt.Errorf("policy %s: %s may not open %s with %s (the rules at line %s name other targets); ask the host's operator", g.Path, g.Caller.User, what, g.Command, lines(tried))
}

func lines(ns []int) string {
	s := make([]string, len(ns))
	for i, n := range ns {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ", ")
}

// Matches tells whether the pattern names t: serial:GLOB its disk's
// serial number; DIR/ anything under the directory (links resolved); a
// path or glob the target itself or its whole disk, links resolved on
// both sides (a pattern under /dev/disk/by-id names the device it leads
// to, and a link the caller made leads nowhere else).
func (p Pattern) Matches(t TargetInfo) bool {
	if glob, ok := strings.CutPrefix(p.Text, "serial:"); ok {
		m, _ := filepath.Match(glob, t.Serial)
		return t.Serial != "" && m
	}
	if strings.HasSuffix(p.Text, "/") {
		dir := filepath.Clean(p.Text)
		if real, err := filepath.EvalSymlinks(dir); err == nil {
			dir = real
		}
		return t.Path == dir || strings.HasPrefix(t.Path, dir+"/")
	}
	matches, _ := filepath.Glob(p.Text)
	for _, m := range matches {
		real, err := filepath.EvalSymlinks(m)
		if err != nil {
			continue
		}
		if real == t.Path || t.Disk != "" && real == t.Disk {
			return true
		}
	}
	return false
}

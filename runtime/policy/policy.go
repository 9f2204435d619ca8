// Package policy says what a caller of nixrescue through sudo may do on a
// shared rescue host. An operator writes /etc/nixrescue/policy: each line
// maps a Unix user or group to the targets it may open (device paths or
// globs, disk serial numbers, directories of images) and the commands it
// may run with them. Without the file, or without sudo, nothing is
// checked: root may do anything. docs/policy.md documents the format.
//
//	# who    name    targets ...                          commands ...
//	user    alice   targets /dev/disk/by-id/ata-WDC_* serial:S3Z9* commands inspect run rebuild
//	group   rescue  targets /srv/images/                  commands all
package policy

import (
	"bufio"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"unicode"
)

// DefaultPath is the policy's file.
const DefaultPath = "/etc/nixrescue/policy"

// Policy is a parsed policy file.
type Policy struct {
	// Path is the file it was read from, for messages.
	Path  string
	Rules []Rule
}

// Rule is one line: who, which targets, which commands.
type Rule struct {
	Line int
	// Who is "user" or "group"; Name is the user's or group's name.
	Who, Name string
	Targets   []Pattern
	// Commands are the commands allowed; "all" allows every one.
	Commands []string
}

// Pattern is one target of a rule: a path or glob (a device, an image),
// a directory (ends in /: anything under it), or serial:GLOB (the
// serial number of the target's disk).
type Pattern struct {
	Text string
	Col  int
}

// SyntaxError is a line of the policy that cannot be read.
type SyntaxError struct {
	Path      string
	Line, Col int
	Msg       string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("policy %s:%d:%d: %s", e.Path, e.Line, e.Col, e.Msg)
}

// token is a word of a line and the column it starts at (from 1).
type token struct {
	text string
	col  int
}

func tokens(line string) []token {
	var out []token
	start := -1
	for i, r := range line + " " {
		switch {
		case unicode.IsSpace(r) && start >= 0:
			out = append(out, token{line[start:i], start + 1})
			start = -1
		case !unicode.IsSpace(r) && start < 0:
			start = i
		}
	}
	return out
}

// Parse reads a policy from r (path names it in messages); commands are
// the command names a rule may list.
func Parse(r io.Reader, path string, commands []string) (*Policy, error) {
	p := &Policy{Path: path}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line, _, _ := strings.Cut(sc.Text(), "#")
		toks := tokens(line)
		if len(toks) == 0 {
			continue
		}
		rule, err := parseRule(toks, commands)
		if err != nil {
			err.Path, err.Line = path, n
			return nil, err
		}
		rule.Line = n
		p.Rules = append(p.Rules, rule)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("policy %s: %w", path, err)
	}
	return p, nil
}

func parseRule(toks []token, commands []string) (Rule, *SyntaxError) {
	bad := func(t token, format string, a ...any) *SyntaxError {
		return &SyntaxError{Col: t.col, Msg: fmt.Sprintf(format, a...)}
	}
	end := token{col: toks[len(toks)-1].col + len(toks[len(toks)-1].text)}
	var r Rule
	if w := toks[0].text; w != "user" && w != "group" {
		return r, bad(toks[0], "%q: a rule begins with user NAME or group NAME", w)
	}
	r.Who = toks[0].text
	if len(toks) < 2 {
		return r, bad(end, "%s with no name: write %s NAME targets ...", r.Who, r.Who)
	}
	r.Name = toks[1].text
	if len(toks) < 3 || toks[2].text != "targets" {
		at := end
		if len(toks) >= 3 {
			at = toks[2]
		}
		return r, bad(at, "after %s %s comes targets, then what it may open", r.Who, r.Name)
	}
	i := 3
	for ; i < len(toks) && toks[i].text != "commands"; i++ {
		t := toks[i]
		if err := checkPattern(t.text); err != "" {
			return r, bad(t, "%q: %s", t.text, err)
		}
		r.Targets = append(r.Targets, Pattern{Text: t.text, Col: t.col})
	}
	if len(r.Targets) == 0 {
		at := end
		if i < len(toks) {
			at = toks[i]
		}
		return r, bad(at, "no targets: name a device, a glob, a directory ending in /, or serial:NUMBER")
	}
	if i == len(toks) {
		return r, nil // every command
	}
	if i+1 == len(toks) {
		return r, bad(end, "commands with none after it: name them, or all")
	}
	for _, t := range toks[i+1:] {
		if t.text != "all" && !slices.Contains(commands, t.text) {
			return r, bad(t, "%q is no nixrescue command: use all or some of %s", t.text, strings.Join(commands, ", "))
		}
		r.Commands = append(r.Commands, t.text)
	}
	return r, nil
}

// checkPattern says what is wrong with a target pattern, or "".
func checkPattern(p string) string {
	if v, ok := strings.CutPrefix(p, "serial:"); ok {
		if v == "" {
			return "serial: with no number"
		}
		if _, err := filepath.Match(v, ""); err != nil {
			return "a bad glob"
		}
		return ""
	}
	if !filepath.IsAbs(p) {
		return "give an absolute path, a directory ending in /, or serial:NUMBER"
	}
	if _, err := filepath.Match(p, ""); err != nil {
		return "a bad glob"
	}
	return ""
}

// Package grubcfg reads a grub.cfg as GRUB reads its menu: the entries,
// inside submenus too, the top-level items in order, and the one `set
// default` names. It is the one grub.cfg parser: generations reads the
// default from it, boot-test aims it.
package grubcfg

import (
	"strconv"
	"strings"

	"github.com/nixrescue/nixrescue/runtime/internal/lazyre"
)

var (
	entryRE   = lazyre.New(`^\s*(menuentry|submenu)\s+(?:'([^']*)'|"([^"]*)")`)
	defaultRE = lazyre.New(`^\s*set\s+default=(?:"([^"]*)"|'([^']*)'|(\S*))`)
)

// Config is a grub.cfg, line by line, and its menu.
type Config struct {
	Lines []string
	// Entries are the menu entries, in order, inside submenus too.
	Entries []Entry
	// Top are the titles of the top-level items (entries and submenus),
	// in order: what a numeric default counts.
	Top []string
	// Default is the value of the last `set default`, "" when none.
	Default string
}

// Entry is a menu entry: its path as GRUB's default names it
// (submenu>entry), its title, and its lines From to To (the closing
// brace).
type Entry struct {
	Path, Title string
	From, To    int
}

// Body is the lines of e, its menuentry line and closing brace included.
func (c *Config) Body(e Entry) []string { return c.Lines[e.From : e.To+1] }

// IsEntry tells whether line opens a menu entry or a submenu.
func IsEntry(line string) bool { return entryRE().MatchString(line) }

// Parse reads text.
func Parse(text string) *Config {
	c := &Config{Lines: strings.Split(text, "\n")}
	type open struct {
		title   string
		depth   int
		submenu bool
		from    int
	}
	var stack []open
	depth := 0
	for i, l := range c.Lines {
		if m := defaultRE().FindStringSubmatch(l); m != nil {
			c.Default = m[1] + m[2] + m[3]
		}
		if m := entryRE().FindStringSubmatch(l); m != nil {
			title := m[2] + m[3]
			if depth == 0 {
				c.Top = append(c.Top, title)
			}
			stack = append(stack, open{title: title, depth: depth, submenu: m[1] == "submenu", from: i})
		}
		depth += strings.Count(l, "{") - strings.Count(l, "}")
		for len(stack) > 0 && depth <= stack[len(stack)-1].depth {
			o := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if o.submenu {
				continue
			}
			path := o.title
			for j := len(stack) - 1; j >= 0; j-- {
				if stack[j].submenu {
					path = stack[j].title + ">" + path
				}
			}
			c.Entries = append(c.Entries, Entry{Path: path, Title: o.title, From: o.from, To: i})
		}
	}
	return c
}

// DefaultEntry is the entry `set default` names: a number (a top-level
// item; a submenu's first entry) or a path or title; else the first, as
// GRUB boots. nil when the menu has no entry.
func (c *Config) DefaultEntry() *Entry {
	if len(c.Entries) == 0 {
		return nil
	}
	want := c.Default
	if n, err := strconv.Atoi(want); err == nil && n >= 0 && n < len(c.Top) {
		want = c.Top[n]
	}
	for i, e := range c.Entries {
		if e.Path == want || e.Title == want || strings.HasPrefix(e.Path, want+">") {
			return &c.Entries[i]
		}
	}
	return &c.Entries[0]
}

package boottest

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// SerialParam is what the booted kernel gets on its command line, so
// that the kernel, stage 1 and stage 2 speak on the serial console.
const SerialParam = "console=ttyS0"

var (
	grubEntryRE   = regexp.MustCompile(`^\s*(menuentry|submenu)\s+(?:'([^']*)'|"([^"]*)")`)
	grubDefaultRE = regexp.MustCompile(`^\s*set\s+default=["']?([^"'\s]*)["']?`)
	grubTimeoutRE = regexp.MustCompile(`^(\s*set\s+timeout=)\S*`)
	grubLinuxRE   = regexp.MustCompile(`^\s*(linux|linux16|linuxefi)\s`)
)

// grubEntry is a menu entry of a grub.cfg: its path as GRUB's default
// names it (submenu>entry), its title, its lines.
type grubEntry struct {
	path, title string
	from, to    int
}

// grubEntries lists a grub.cfg's menu entries, inside submenus too, and
// the top-level ones (entries and submenus) in order, for a numeric
// default.
func grubEntries(lines []string) (entries []grubEntry, top []string) {
	type open struct {
		title   string
		depth   int
		submenu bool
		from    int
	}
	var stack []open
	depth := 0
	for i, l := range lines {
		if m := grubEntryRE.FindStringSubmatch(l); m != nil {
			title := m[2] + m[3]
			if depth == 0 {
				top = append(top, title)
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
			entries = append(entries, grubEntry{path: path, title: o.title, from: o.from, to: i})
		}
	}
	return entries, top
}

// ErrNoEntry says the bootloader has no entry for the generation asked.
var ErrNoEntry = errors.New("no entry")

// PatchGrub gives a grub.cfg a serial terminal (unless it has one), no
// timeout, the entry of generation (0: its default) as the default, and
// SerialParam on that entry's kernel line. It returns the new text and the
// entry's path.
func PatchGrub(cfg string, generation int) (string, string, error) {
	lines := strings.Split(cfg, "\n")
	entries, top := grubEntries(lines)
	if len(entries) == 0 {
		return "", "", fmt.Errorf("grub.cfg has no menu entry: %w", ErrNoEntry)
	}
	var chosen *grubEntry
	if generation > 0 {
		for i, e := range entries {
			if GenerationOf(e.title) == generation {
				chosen = &entries[i]
				break
			}
		}
		if chosen == nil {
			return "", "", fmt.Errorf("grub.cfg has no entry for generation %d: %w", generation, ErrNoEntry)
		}
	} else {
		chosen = grubDefault(lines, entries, top)
	}
	for i := chosen.from; i <= chosen.to; i++ {
		if grubLinuxRE.MatchString(lines[i]) && !strings.Contains(lines[i], SerialParam) {
			lines[i] += " " + SerialParam
		}
	}
	for i, l := range lines {
		lines[i] = grubTimeoutRE.ReplaceAllString(l, "${1}0")
	}
	head := []string{}
	if !strings.Contains(cfg, "terminal_output serial") && !strings.Contains(cfg, "terminal_output --append serial") {
		head = append(head, "serial --unit=0 --speed=115200", "terminal_input --append serial", "terminal_output --append serial")
	}
	// The default, set after the configuration's own (the last one set
	// before the first entry counts), and a timeout of none.
	first := len(lines)
	for _, e := range entries {
		first = min(first, e.from)
	}
	for i := 0; i < first; i++ {
		if grubEntryRE.MatchString(lines[i]) {
			first = i
			break
		}
	}
	out := append(append([]string{}, head...), lines[:first]...)
	out = append(out, fmt.Sprintf("set default=%q", chosen.path), "set timeout=0")
	out = append(out, lines[first:]...)
	return strings.Join(out, "\n"), chosen.path, nil
}

// grubDefault is the entry a grub.cfg's `set default` names: a number (a
// top-level item; a submenu's first entry) or a path; else the first.
func grubDefault(lines []string, entries []grubEntry, top []string) *grubEntry {
	def := ""
	for _, l := range lines {
		if m := grubDefaultRE.FindStringSubmatch(l); m != nil {
			def = m[1]
		}
	}
	want := def
	if n, err := strconv.Atoi(def); err == nil && n >= 0 && n < len(top) {
		want = top[n]
	}
	for i, e := range entries {
		if e.path == want || e.title == want || strings.HasPrefix(e.path, want+">") {
			return &entries[i]
		}
	}
	return &entries[0]
}

// PatchLoaderConf makes a systemd-boot loader.conf boot entry (a file name
// in loader/entries) at once.
func PatchLoaderConf(conf, entry string) string {
	var out []string
	for _, l := range strings.Split(strings.TrimRight(conf, "\n"), "\n") {
		f := strings.Fields(l)
		if len(f) > 0 && (f[0] == "default" || f[0] == "timeout") {
			continue
		}
		out = append(out, l)
	}
	return strings.Join(append([]string{"default " + entry, "timeout 0"}, out...), "\n") + "\n"
}

// LoaderDefault is the entry a loader.conf names by default ("" when it
// names none).
func LoaderDefault(conf string) string {
	for _, l := range strings.Split(conf, "\n") {
		if f := strings.Fields(l); len(f) == 2 && f[0] == "default" {
			return f[1]
		}
	}
	return ""
}

// PatchLoaderEntry puts SerialParam on a systemd-boot entry's options.
func PatchLoaderEntry(entry string) string {
	lines := strings.Split(strings.TrimRight(entry, "\n"), "\n")
	for i, l := range lines {
		if f := strings.Fields(l); len(f) > 0 && f[0] == "options" {
			if !strings.Contains(l, SerialParam) {
				lines[i] = l + " " + SerialParam
			}
			return strings.Join(lines, "\n") + "\n"
		}
	}
	return strings.Join(append(lines, "options "+SerialParam), "\n") + "\n"
}

package boottest

import (
	"errors"
	"fmt"
	"strings"

	"github.com/nixrescue/nixrescue/runtime/internal/lazyre"

	"github.com/nixrescue/nixrescue/runtime/grubcfg"
)

var (
	grubTimeoutRE = lazyre.New(`^(\s*set\s+timeout=)\S*`)
	grubLinuxRE   = lazyre.New(`^\s*(linux|linux16|linuxefi)\s`)
)

// ErrNoEntry says the bootloader has no entry for the generation asked.
var ErrNoEntry = errors.New("no entry")

// PatchGrub gives a grub.cfg the serial terminal of serial (unless it
// has one), no timeout, the entry of generation (0: its default) as the
// default, and serial's kernel parameter on that entry's kernel line. It
// returns the new text and the entry's path.
func PatchGrub(cfg string, generation int, serial Serial) (string, string, error) {
	c := grubcfg.Parse(cfg)
	lines := c.Lines
	chosen := c.DefaultEntry()
	if chosen == nil {
		return "", "", fmt.Errorf("grub.cfg has no menu entry: %w", ErrNoEntry)
	}
	if generation > 0 {
		chosen = nil
		for i, e := range c.Entries {
			if GenerationOf(e.Title) == generation {
				chosen = &c.Entries[i]
				break
			}
		}
		if chosen == nil {
			return "", "", fmt.Errorf("grub.cfg has no entry for generation %d: %w", generation, ErrNoEntry)
		}
	}
	for i := chosen.From; i <= chosen.To; i++ {
		if grubLinuxRE().MatchString(lines[i]) && !strings.Contains(lines[i], serial.Param) {
			lines[i] += " " + serial.Param
		}
	}
	for i, l := range lines {
		lines[i] = grubTimeoutRE().ReplaceAllString(l, "${1}0")
	}
	head := []string{}
	if !strings.Contains(cfg, "terminal_output serial") && !strings.Contains(cfg, "terminal_output --append serial") {
		head = append(head, serial.GRUB...)
	}
	// The default, set after the configuration's own (the last one set
	// before the first entry counts), and a timeout of none.
	first := len(lines)
	for _, e := range c.Entries {
		first = min(first, e.From)
	}
	for i := 0; i < first; i++ {
		if grubcfg.IsEntry(lines[i]) {
			first = i
			break
		}
	}
	out := append(append([]string{}, head...), lines[:first]...)
	out = append(out, fmt.Sprintf("set default=%q", chosen.Path), "set timeout=0")
	out = append(out, lines[first:]...)
	return strings.Join(out, "\n"), chosen.Path, nil
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

// PatchLoaderEntry puts serial's kernel parameter on a systemd-boot
// entry's options.
func PatchLoaderEntry(entry string, s Serial) string {
	serial := s.Param
	lines := strings.Split(strings.TrimRight(entry, "\n"), "\n")
	for i, l := range lines {
		if f := strings.Fields(l); len(f) > 0 && f[0] == "options" {
			if !strings.Contains(l, serial) {
				lines[i] = l + " " + serial
			}
			return strings.Join(lines, "\n") + "\n"
		}
	}
	return strings.Join(append(lines, "options "+serial), "\n") + "\n"
}

// PatchExtlinux aims an extlinux.conf (U-Boot's menu) at the entry
// label: DEFAULT label, the shortest TIMEOUT (U-Boot counts tenths of a
// second; 0 would wait for ever), and the serial console on that entry's
// APPEND line. It fails when no entry has that label.
func PatchExtlinux(conf, label string, s Serial) (string, error) {
	lines := strings.Split(strings.TrimRight(conf, "\n"), "\n")
	in, found := false, false
	for i, l := range lines {
		f := strings.Fields(l)
		if len(f) == 0 {
			continue
		}
		switch strings.ToUpper(f[0]) {
		case "DEFAULT":
			lines[i] = "DEFAULT " + label
		case "TIMEOUT":
			lines[i] = "TIMEOUT 1"
		case "LABEL":
			in = len(f) > 1 && strings.TrimSpace(strings.TrimSpace(l)[len(f[0]):]) == label
			found = found || in
		case "APPEND":
			if in && !strings.Contains(l, s.Param) {
				lines[i] = l + " " + s.Param
			}
		}
	}
	if !found {
		return "", fmt.Errorf("extlinux.conf has no entry %s", label)
	}
	return strings.Join(lines, "\n") + "\n", nil
}

package target

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/nixrescue/nixrescue/runtime/nixos"
	"github.com/nixrescue/nixrescue/runtime/rootfs"
)

// FstabEntry is one line of an fstab(5).
type FstabEntry struct {
	Spec       string   `json:"spec"`
	Mountpoint string   `json:"mountpoint"`
	Type       string   `json:"fstype"`
	Options    []string `json:"options"`
	Line       int      `json:"line"`
}

// Bounds on what is read: an fstab is a few lines; a hostile target's may
// be anything.
const (
	maxFstabBytes = 1 << 20
	maxFstabLines = 10000
	maxFstabLine  = 4096
)

// ParseFstab reads an fstab. Fields are separated by blanks; \040, \011,
// \012 and \134 stand for space, tab, newline and backslash (getmntent(3)).
// A line that is not text, or has fewer than three fields, is an error
// naming its number.
func ParseFstab(r io.Reader) ([]FstabEntry, error) {
	var entries []FstabEntry
	sc := bufio.NewScanner(io.LimitReader(r, maxFstabBytes+1))
	sc.Buffer(make([]byte, 0, 4096), maxFstabLine)
	n, total := 0, 0
	for sc.Scan() {
		n++
		total += len(sc.Bytes()) + 1
		if total > maxFstabBytes {
			return nil, fmt.Errorf("fstab is larger than %d bytes", maxFstabBytes)
		}
		if n > maxFstabLines {
			return nil, fmt.Errorf("fstab has more than %d lines", maxFstabLines)
		}
		line := sc.Text()
		if !utf8.ValidString(line) || strings.ContainsRune(line, 0) {
			return nil, fmt.Errorf("fstab line %d is not text", n)
		}
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 3 {
			return nil, fmt.Errorf("fstab line %d has %d fields, not the 3 to 6 of spec, mount point, type, options, dump, pass", n, len(f))
		}
		e := FstabEntry{Line: n}
		var err error
		if e.Spec, err = unescapeFstab(f[0]); err == nil {
			if e.Mountpoint, err = unescapeFstab(f[1]); err == nil {
				e.Type, err = unescapeFstab(f[2])
			}
		}
		if err != nil {
			return nil, fmt.Errorf("fstab line %d: %w", n, err)
		}
		opts := "defaults"
		if len(f) > 3 {
			if opts, err = unescapeFstab(f[3]); err != nil {
				return nil, fmt.Errorf("fstab line %d: %w", n, err)
			}
		}
		e.Options = strings.Split(opts, ",")
		entries = append(entries, e)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read fstab: %w (a line longer than %d bytes?)", err, maxFstabLine)
	}
	return entries, nil
}

func unescapeFstab(s string) (string, error) {
	if s == "" {
		return "", fmt.Errorf("empty field")
	}
	if !strings.Contains(s, `\`) {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) && isOctal(s[i+1:i+4]) {
			v, _ := strconv.ParseUint(s[i+1:i+4], 8, 8)
			b.WriteByte(byte(v))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	// An escape may spell bytes that are no text (\200): such a field
	// names no path or filesystem anyone can type.
	if out := b.String(); utf8.ValidString(out) && !strings.ContainsRune(out, 0) {
		return out, nil
	}
	return "", fmt.Errorf("field %q escapes to bytes that are not text", s)
}

func isOctal(s string) bool {
	if len(s) != 3 || s[0] > '3' {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '7' {
			return false
		}
	}
	return true
}

// HasOption tells whether the entry's options include o.
func (e FstabEntry) HasOption(o string) bool {
	for _, x := range e.Options {
		if x == o {
			return true
		}
	}
	return false
}

// SourceKind says how an fstab spec names its device.
type SourceKind string

const (
	SourceUUID      SourceKind = "uuid"
	SourceLabel     SourceKind = "label"
	SourcePartUUID  SourceKind = "partuuid"
	SourcePartLabel SourceKind = "partlabel"
	SourceID        SourceKind = "id"   // /dev/disk/by-id/…
	SourcePath      SourceKind = "path" // /dev/sdXN and friends
	SourceOther     SourceKind = "other"
)

// Source splits an fstab spec into how it names the device and the name.
func Source(spec string) (SourceKind, string) {
	for prefix, k := range map[string]SourceKind{
		"UUID=": SourceUUID, "LABEL=": SourceLabel, "PARTUUID=": SourcePartUUID, "PARTLABEL=": SourcePartLabel,
	} {
		if v, ok := strings.CutPrefix(spec, prefix); ok {
			return k, strings.Trim(v, `"`)
		}
	}
	for prefix, k := range map[string]SourceKind{
		"/dev/disk/by-uuid/": SourceUUID, "/dev/disk/by-label/": SourceLabel,
		"/dev/disk/by-partuuid/": SourcePartUUID, "/dev/disk/by-partlabel/": SourcePartLabel,
		"/dev/disk/by-id/": SourceID,
	} {
		if v, ok := strings.CutPrefix(spec, prefix); ok {
			return k, unescapeUdev(v)
		}
	}
	if strings.HasPrefix(spec, "/dev/") {
		return SourcePath, spec
	}
	return SourceOther, spec
}

// unescapeUdev undoes udev's \xNN escapes in /dev/disk/by-* names
// (a label "my disk" is by-label/my\x20disk).
func unescapeUdev(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && s[i+1] == 'x' {
			if v, err := strconv.ParseUint(s[i+2:i+4], 16, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// EscapeUdev escapes a name for a /dev/disk/by-* link as udev does.
func EscapeUdev(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '/' || c == ' ' || c == '\\' || c < 0x20 || c >= 0x7f || c == '"' || c == '\'' || c == '`' {
			fmt.Fprintf(&b, `\x%02x`, c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// fstabPaths are where a NixOS root's fstab is, inside the root: the
// system's own (on NixOS /etc/fstab is a link to it, made by activation),
// then /etc/fstab.
var fstabPaths = []string{nixos.SystemFstab, "/etc/fstab"}

// ReadSystemFstab reads the fstab of the NixOS root mounted at root, every
// link resolved inside root. It returns the path it read ("" when there
// is no fstab, which is no error).
func ReadSystemFstab(root string) ([]FstabEntry, string, error) {
	for _, c := range fstabPaths {
		f, err := rootfs.Open(root, c)
		var nr *rootfs.NotRegularError
		if errors.As(err, &nr) {
			return nil, c, nr
		} else if err != nil {
			continue
		}
		entries, err := ParseFstab(f)
		f.Close()
		if err != nil {
			return nil, c, fmt.Errorf("%s: %w", c, err)
		}
		return entries, c, nil
	}
	return nil, "", nil
}

// Package dns gives the recovery container a working resolver without
// touching the target: it builds a resolv.conf from the host's (or from
// servers the user names) and finds, inside the mounted root, where the
// target's /etc/resolv.conf leads, so that the file can be bind-mounted
// there read-only for the session.
//
// On NixOS /etc/resolv.conf is often a chain of absolute symlinks
// (/etc/resolv.conf → /etc/static/resolv.conf → /nix/store/…, or →
// /run/systemd/resolve/stub-resolv.conf). Every link is resolved inside the
// root, never against the host, with github.com/cyphar/filepath-securejoin:
// a link that climbs out with ../ or names a host path is clamped to the
// root, as the kernel would clamp it for a process chrooted there.
package dns

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/nixrescue/nixrescue/runtime/hint"
	"github.com/nixrescue/nixrescue/runtime/rootfs"
	"golang.org/x/sys/unix"
)

// Files the host keeps its resolver configuration in.
const (
	HostResolvConf   = "/etc/resolv.conf"
	HostUplinkConf   = "/run/systemd/resolve/resolv.conf"
	targetResolvConf = "/etc/resolv.conf"
	maxResolvConf    = 64 << 10
)

// Build returns the resolv.conf the container gets. With servers, it names
// just those. Otherwise it is the host's file, except that a systemd-resolved
// stub (127.0.0.53) is replaced by the uplink servers of uplink (the
// contents of /run/systemd/resolve/resolv.conf; nil when the host has none),
// as systemd-nspawn's *-uplink modes do: the stub listens in the host's
// network namespace only.
func Build(host, uplink io.Reader, servers []string) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString("# written by nixrescue for this session; the target's resolv.conf is unchanged\n")
	if len(servers) > 0 {
		for _, s := range servers {
			ip, err := netip.ParseAddr(s)
			if err != nil {
				return nil, hint.Errorf("{DNS %s}: not an IP address", s)
			}
			fmt.Fprintf(&b, "nameserver %s\n", ip)
		}
		return b.Bytes(), nil
	}
	hostLines, err := readLines(host)
	if err != nil {
		return nil, fmt.Errorf("read host resolv.conf: %w", err)
	}
	stub := false
	for _, l := range hostLines {
		if ns, ok := nameserver(l); ok && ns == "127.0.0.53" {
			stub = true
		}
	}
	if stub && uplink != nil {
		upLines, err := readLines(uplink)
		if err != nil {
			return nil, fmt.Errorf("read uplink resolv.conf: %w", err)
		}
		var ups []string
		for _, l := range upLines {
			if ns, ok := nameserver(l); ok {
				ups = append(ups, ns)
			}
		}
		if len(ups) > 0 {
			for _, l := range hostLines {
				if _, ok := nameserver(l); ok {
					continue
				}
				b.WriteString(l + "\n")
			}
			for _, ns := range ups {
				fmt.Fprintf(&b, "nameserver %s\n", ns)
			}
			return b.Bytes(), nil
		}
	}
	for _, l := range hostLines {
		b.WriteString(l + "\n")
	}
	return b.Bytes(), nil
}

// ErrNoHostResolver says the host has no /etc/resolv.conf (or it is a
// link to nothing): an offline rescue system. The container then gets no
// DNS, which only what downloads needs.
var ErrNoHostResolver = errors.New("this host has no /etc/resolv.conf")

// BuildFromHost is Build on the live host files; ErrNoHostResolver when
// the host has none and no servers are named.
func BuildFromHost(servers []string) ([]byte, error) {
	if len(servers) > 0 {
		return Build(nil, nil, servers)
	}
	h, err := os.Open(HostResolvConf)
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrNoHostResolver
	} else if err != nil {
		return nil, fmt.Errorf("open host resolv.conf: %w", err)
	}
	defer h.Close()
	var up io.Reader
	if u, err := os.Open(HostUplinkConf); err == nil {
		defer u.Close()
		up = u
	}
	return Build(h, up, nil)
}

func readLines(r io.Reader) ([]string, error) {
	var lines []string
	sc := bufio.NewScanner(io.LimitReader(r, maxResolvConf))
	for sc.Scan() {
		lines = append(lines, strings.TrimRight(sc.Text(), " \t\r"))
	}
	return lines, sc.Err()
}

func nameserver(line string) (string, bool) {
	f := strings.Fields(line)
	if len(f) >= 2 && f[0] == "nameserver" {
		return f[1], true
	}
	return "", false
}

// Shape says what the target's /etc/resolv.conf is.
type Shape string

const (
	ShapeFile    Shape = "file"    // a regular file
	ShapeMissing Shape = "missing" // nothing there
	ShapeLink    Shape = "link"    // a symlink chain
)

// Plan is where the session's resolv.conf goes inside the root.
type Plan struct {
	Shape Shape
	// Dests are paths inside the root (absolute, as the container sees
	// them) to bind the file at.
	Dests []string
	// Placeholder is a path inside the root where an empty file must be
	// created as the mount point, and removed after the session; empty
	// when none is needed.
	Placeholder string
}

// containerTmpfs are the directories the container gets fresh tmpfs on: a
// destination under them lands on the tmpfs, not on the target.
var containerTmpfs = []string{"/run", "/tmp"}

// containerKernelFS are the directories bound from the host or the kernel:
// a destination under them would be created on the host, so it is refused.
var containerKernelFS = []string{"/dev", "/proc", "/sys"}

// PlanFor finds where /etc/resolv.conf leads inside root, for a session
// that activates system (a path inside the root; empty when unknown).
// When the file is the NixOS link to /etc/static/resolv.conf, activation
// will point /etc/static at system's etc, so that system's resolv.conf is a
// destination too.
func PlanFor(root, system string) (Plan, error) {
	var p Plan
	st, err := rootfs.Lstat(root, targetResolvConf)
	switch {
	case errors.Is(err, os.ErrNotExist):
		p.Shape = ShapeMissing
	case err != nil:
		return p, fmt.Errorf("inspect target's /etc/resolv.conf: %w", err)
	case st.Mode()&os.ModeSymlink != 0:
		p.Shape = ShapeLink
	case st.Mode().IsRegular():
		p.Shape = ShapeFile
	default:
		return p, hint.Errorf("the target's /etc/resolv.conf is a %s, not a file: remove it or pass {DNS none}", st.Mode().Type())
	}
	candidates := []string{targetResolvConf}
	if p.Shape == ShapeLink && system != "" {
		if link, err := rootfs.Readlink(root, targetResolvConf); err == nil {
			if !path.IsAbs(link) {
				link = path.Join("/etc", link)
			}
			if path.Clean(link) == "/etc/static/resolv.conf" {
				candidates = append(candidates, path.Join(system, "etc/resolv.conf"))
			}
		}
	}
	for _, c := range candidates {
		dest, err := rootfs.Resolve(root, c)
		if err != nil {
			return p, fmt.Errorf("resolve %s inside the target: %w", c, err)
		}
		if under(dest, containerKernelFS) {
			return p, hint.Errorf("the target's %s leads to %s, which the container takes from the host: fix the link, or pass {DNS none}", c, dest)
		}
		if slices.Contains(p.Dests, dest) {
			continue
		}
		if !under(dest, containerTmpfs) {
			st, err := os.Lstat(filepath.Join(root, dest))
			switch {
			case errors.Is(err, os.ErrNotExist):
				if c != targetResolvConf {
					// Only where activation will lead: not there yet,
					// and nothing to bind until it is.
					continue
				}
				parent, err := os.Stat(filepath.Join(root, path.Dir(dest)))
				if err != nil || !parent.IsDir() {
					return p, hint.Errorf("the target's /etc/resolv.conf leads to %s, whose directory does not exist: fix the link, or pass {DNS none}", dest)
				}
				p.Placeholder = dest
			case err != nil:
				return p, fmt.Errorf("inspect %s in the target: %w", dest, err)
			case !st.Mode().IsRegular():
				return p, hint.Errorf("the target's /etc/resolv.conf leads to %s, which is a %s, not a file: fix it, or pass {DNS none}", dest, st.Mode().Type())
			}
		}
		p.Dests = append(p.Dests, dest)
	}
	return p, nil
}

func under(p string, dirs []string) bool {
	for _, d := range dirs {
		if p == d || strings.HasPrefix(p, d+"/") {
			return true
		}
	}
	return false
}

// CreatePlaceholder makes an empty file at p inside root, the mount point
// for resolv.conf where the target has none (Plan.Placeholder), and
// passes its inode to record before it returns, so that the caller can
// remove it afterwards, even after a crash, knowing it is still the one it
// made; when record fails, the file is removed.
func CreatePlaceholder(root, p string, record func(ino uint64) error) error {
	d, err := rootfs.OpenDir(root, path.Dir(p), false)
	if err != nil {
		return fmt.Errorf("open %s in the target: %w", path.Dir(p), err)
	}
	defer d.Close()
	dir := int(d.Fd())
	fd, err := unix.Openat(dir, path.Base(p), unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return fmt.Errorf("create mount point %s in the target: %w", p, err)
	}
	var st unix.Stat_t
	err = unix.Fstat(fd, &st)
	unix.Close(fd)
	if err == nil {
		err = record(st.Ino)
	}
	if err != nil {
		_ = unix.Unlinkat(dir, path.Base(p), 0)
		return err
	}
	return nil
}

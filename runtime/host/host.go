// Package host gathers the facts about the rescue host that a recovery
// container's spec depends on: its capability bounding set, whether it
// booted by EFI, its open-file limit. Parsers take an io.Reader so they can
// be tested on any input; the Read… functions open the live files.
package host

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/moby/sys/capability"
	"github.com/nixrescue/nixrescue/runtime/mount"
	"golang.org/x/sys/unix"
)

// Facts are what the spec needs to know about the host.
type Facts struct {
	// Capabilities is the bounding set of this process, as CAP_… names.
	Capabilities []string
	// EFI is true when the host booted by EFI (/sys/firmware/efi exists).
	EFI bool
	// NoFile is the hard RLIMIT_NOFILE of this process: the most a
	// container can be given without CAP_SYS_RESOURCE.
	NoFile uint64
	// InitramfsRoot is true when / is the initramfs (rootfs), from which
	// pivot_root cannot move away.
	InitramfsRoot bool
	// SwapAccounted is true when the memory cgroup can limit swap too, so
	// that a memory limit is not escaped by swapping.
	SwapAccounted bool
}

// maxNoFile caps the open-file limit handed to the container.
const maxNoFile = 1 << 20

// Read gathers the facts from the running host.
func Read() (Facts, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return Facts{}, fmt.Errorf("read capabilities: %w", err)
	}
	defer f.Close()
	caps, err := ParseBoundingSet(f)
	if err != nil {
		return Facts{}, err
	}
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		return Facts{}, fmt.Errorf("read RLIMIT_NOFILE: %w", err)
	}
	mi, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return Facts{}, fmt.Errorf("read mount table: %w", err)
	}
	defer mi.Close()
	initramfs, err := mount.RootIsInitramfs(mi)
	if err != nil {
		return Facts{}, err
	}
	return Facts{Capabilities: caps, EFI: EFIBooted("/sys"), NoFile: min(rl.Max, maxNoFile), InitramfsRoot: initramfs,
		SwapAccounted: swapAccounted(cgroupRoot)}, nil
}

// cgroupRoot is where the cgroup hierarchies are mounted.
const cgroupRoot = "/sys/fs/cgroup"

// CgroupDirs are the cgroups named like pattern (filepath.Match) at the
// top of every hierarchy: each v1 controller's and the unified one. A
// container's cgroup is made in each.
func CgroupDirs(pattern string) []string {
	var dirs []string
	for _, pat := range []string{filepath.Join(cgroupRoot, pattern), filepath.Join(cgroupRoot, "*", pattern)} {
		m, _ := filepath.Glob(pat)
		dirs = append(dirs, m...)
	}
	return dirs
}

// swapAccounted tells whether the memory cgroup under root limits swap:
// v1's memory.memsw files exist only then; v2 has memory.swap.max in
// every child when the memory controller is on.
func swapAccounted(root string) bool {
	if _, err := os.Stat(filepath.Join(root, "memory/memory.memsw.limit_in_bytes")); err == nil {
		return true
	}
	b, err := os.ReadFile(filepath.Join(root, "cgroup.controllers"))
	return err == nil && slices.Contains(strings.Fields(string(b)), "memory")
}

// OOMKills counts the processes the kernel's OOM killer killed in the
// cgroup named cgroupsPath (as in a spec), from cgroup v1's
// memory.oom_control or v2's memory.events; 0 when neither can be read.
func OOMKills(cgroupsPath string) uint64 {
	for _, f := range []string{
		filepath.Join(cgroupRoot, "memory", cgroupsPath, "memory.oom_control"),
		filepath.Join(cgroupRoot, cgroupsPath, "memory.events"),
	} {
		if n, ok := readCounter(f, "oom_kill"); ok {
			return n
		}
	}
	return 0
}

// readCounter reads the "key N" line of a cgroup file of such lines.
func readCounter(file, key string) (uint64, bool) {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0, false
	}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, " "); ok && k == key {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}

// EFIBooted tells whether the host under sysfs root sys booted by EFI.
func EFIBooted(sys string) bool {
	st, err := os.Stat(sys + "/firmware/efi")
	return err == nil && st.IsDir()
}

// ParseBoundingSet reads the CapBnd line of a /proc/PID/status file and
// returns the capability names it holds, sorted. Bits the library does not
// know by name are left out: a runtime could not name them either.
func ParseBoundingSet(r io.Reader) ([]string, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok || key != "CapBnd" {
			continue
		}
		bits, err := strconv.ParseUint(strings.TrimSpace(val), 16, 64)
		if err != nil {
			return nil, fmt.Errorf("parse CapBnd %q: %w", strings.TrimSpace(val), err)
		}
		var names []string
		for _, c := range capability.ListKnown() {
			if c < 64 && bits&(1<<uint(c)) != 0 {
				names = append(names, "CAP_"+strings.ToUpper(c.String()))
			}
		}
		slices.Sort(names)
		return names, nil
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read status: %w", err)
	}
	return nil, fmt.Errorf("no CapBnd line in status")
}

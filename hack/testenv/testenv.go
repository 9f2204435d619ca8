// Package testenv is what nixrescue's integration tests share: the gate on
// NIXRESCUE_INTEGRATION, the static build of the binary under test, and
// snapshots of the host and of a target tree, so that every session test
// can assert that it left both as they were.
package testenv

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/moby/sys/mountinfo"
)

// EnvVar gates the tests that need root or a daemon.
const EnvVar = "NIXRESCUE_INTEGRATION"

// Require skips t when EnvVar is unset, and fails it when EnvVar is set
// but the test cannot run here (not root): on CI a skipped test would
// prove nothing.
func Require(t testing.TB) {
	t.Helper()
	if os.Getenv(EnvVar) == "" {
		t.Skip("NIXRESCUE_INTEGRATION is unset: this test needs root (hack/test sets it)")
	}
	if os.Geteuid() != 0 {
		t.Fatalf("%s is set but this test runs as uid %d: it needs root", EnvVar, os.Geteuid())
	}
}

// RequireTool skips t when the host program name is missing and
// EnvVar is unset, and fails it when EnvVar is set: hack/install-deps
// installs every program a test runs.
func RequireTool(t testing.TB, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err == nil {
		return
	}
	if Enabled() {
		t.Fatalf("%s is not installed: run hack/install-deps", name)
	}
	t.Skipf("%s is not installed (%s unset)", name, EnvVar)
}

// Enabled tells whether integration tests run.
func Enabled() bool { return os.Getenv(EnvVar) != "" }

// BuildStatic builds the static nixrescue binary into dir and returns its
// path; moduleRoot is the repository's top directory.
func BuildStatic(moduleRoot, dir string) (string, error) { return BuildStaticFor(moduleRoot, dir, "") }

// BuildStaticFor is BuildStatic for GOARCH goarch ("" this host's): arm64
// with Debian's cross compiler (gcc-aarch64-linux-gnu), as hack/release
// builds it, into dir/nixrescue-arm64. It builds as hack/lib.sh's
// build_static does (its tags and flags), by running it.
func BuildStaticFor(moduleRoot, dir, goarch string) (string, error) {
	out := filepath.Join(dir, "nixrescue")
	env := os.Environ()
	if goarch == "arm64" {
		out += "-arm64"
		env = append(env, "GOARCH=arm64", "CC=aarch64-linux-gnu-gcc")
	}
	cmd := exec.Command("sh", "-c", `. hack/lib.sh && build_static "$0"`, out)
	cmd.Dir = moduleRoot
	cmd.Env = env
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build nixrescue: %v\n%s", err, b)
	}
	return out, nil
}

// Version describes the checkout at moduleRoot as hack/lib.sh's builds
// do (git describe), for the binary's --version.
func Version(moduleRoot string) string {
	cmd := exec.Command("git", "describe", "--tags", "--always", "--dirty")
	cmd.Dir = moduleRoot
	out, err := cmd.Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}

// Host is what a session must leave as it found it.
type Host struct {
	Mounts  []string // mount points and sources, from /proc/self/mountinfo
	Loops   []string // attached loop devices and their backing files
	Run     []string // entries under /run, two levels deep
	Cgroups []string // cgroup directories named nixrescue*
	// Containerd are the containers and tasks in containerd's nixrescue
	// namespace, when a containerd is named by NIXRESCUE_CONTAINERD_ADDRESS.
	Containerd []string
	// Daemons are the qemu-storage-daemon processes (image exports).
	Daemons []string
}

// SnapshotHost reads the host's state.
func SnapshotHost(t testing.TB) Host {
	t.Helper()
	var h Host
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h.Mounts, err = ParseMountPoints(f)
	if err != nil {
		t.Fatal(err)
	}
	loops, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	for _, l := range loops {
		b, _ := os.ReadFile(l)
		h.Loops = append(h.Loops, l+"="+strings.TrimSpace(string(b)))
	}
	parts, _ := filepath.Glob("/sys/block/loop*/loop*p*")
	h.Loops = append(h.Loops, parts...)
	for _, pat := range []string{"/run/*", "/run/*/*"} {
		m, _ := filepath.Glob(pat)
		for _, p := range m {
			// util-linux's own state (libmount's utab, blkid's cache),
			// made by the mount, mkfs and partx the fixtures run; nixrescue
			// uses neither (mount(2), blkid -p).
			if strings.HasPrefix(p, "/run/mount") || strings.HasPrefix(p, "/run/blkid") {
				continue
			}
			h.Run = append(h.Run, p)
		}
	}
	for _, pat := range []string{"/sys/fs/cgroup/*/nixrescue*", "/sys/fs/cgroup/nixrescue*", "/sys/fs/cgroup/*/*/nixrescue*"} {
		m, _ := filepath.Glob(pat)
		h.Cgroups = append(h.Cgroups, m...)
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		if b, err := os.ReadFile(p); err == nil && strings.Contains(string(b), "qemu-storage-daemon") {
			h.Daemons = append(h.Daemons, strings.ReplaceAll(string(b), "\x00", " "))
		}
	}
	sort.Strings(h.Run)
	sort.Strings(h.Cgroups)
	sort.Strings(h.Daemons)
	if addr := os.Getenv("NIXRESCUE_CONTAINERD_ADDRESS"); addr != "" {
		for _, what := range []string{"containers", "tasks"} {
			out, err := exec.Command("ctr", "--address", addr, "-n", "nixrescue", what, "ls", "-q").Output()
			if err != nil {
				t.Fatalf("ctr %s ls: %v", what, err)
			}
			for _, id := range strings.Fields(string(out)) {
				h.Containerd = append(h.Containerd, what+" "+id)
			}
		}
	}
	return h
}

// ParseMountPoints returns "mountpoint source fstype" for each mount of
// a mountinfo file, sorted.
func ParseMountPoints(r io.Reader) ([]string, error) {
	mounts, err := mountinfo.GetMountsFromReader(r, nil)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, m := range mounts {
		out = append(out, m.Mountpoint+" "+m.Source+" "+m.FSType)
	}
	sort.Strings(out)
	return out, nil
}

// AssertHostUnchanged fails t for any difference between before and now.
func AssertHostUnchanged(t testing.TB, before Host) {
	t.Helper()
	after := SnapshotHost(t)
	diff := func(what string, a, b []string) {
		for _, x := range b {
			if !slices.Contains(a, x) {
				t.Errorf("host %s: new %s", what, x)
			}
		}
		for _, x := range a {
			if !slices.Contains(b, x) && !(what == "/run entry" && sharedStateDir(x)) {
				t.Errorf("host %s: gone %s", what, x)
			}
		}
	}
	diff("mount", before.Mounts, after.Mounts)
	diff("loop device", before.Loops, after.Loops)
	diff("/run entry", before.Run, after.Run)
	diff("cgroup", before.Cgroups, after.Cgroups)
	diff("containerd object", before.Containerd, after.Containerd)
	diff("qemu-storage-daemon", before.Daemons, after.Daemons)
}

// sharedStateDir tells whether p is one of the state directories all
// sessions share. A session removes them when it ends and no other
// session uses them, whoever made them (an earlier session killed before
// its end, a command that found nothing to do): that is the tidying the
// host check wants, not a change to report. A session's own directory is
// not one of them.
func sharedStateDir(p string) bool {
	switch p {
	case "/run/nixrescue", "/run/nixrescue/sessions", "/run/nixrescue/claims", "/run/nixrescue/containers", "/run/nixrescue/runc":
		return true
	}
	return false
}

// Tree is a snapshot of a directory tree: for each path, its type,
// permissions and content (file hash or link target). Times are left out:
// activation re-creates links with the same targets.
type Tree map[string]string

// SnapshotTree reads the tree under root.
func SnapshotTree(t testing.TB, root string) Tree {
	t.Helper()
	tree := Tree{}
	err := filepath.Walk(root, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		switch {
		case info.Mode()&os.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			tree[rel] = "link " + target
		case info.Mode().IsRegular():
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			h := sha256.New()
			_, err = io.Copy(h, f)
			f.Close()
			if err != nil {
				return err
			}
			tree[rel] = fmt.Sprintf("file %o %s", info.Mode().Perm(), hex.EncodeToString(h.Sum(nil))[:16])
		case info.IsDir():
			tree[rel] = fmt.Sprintf("dir %o", info.Mode().Perm()|info.Mode()&os.ModeSticky)
		default:
			tree[rel] = "other " + info.Mode().String()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return tree
}

// AssertTreeUnchanged fails t for any difference between before and the
// tree under root now, except the paths in allowed (relative to root).
func AssertTreeUnchanged(t testing.TB, root string, before Tree, allowed ...string) {
	t.Helper()
	after := SnapshotTree(t, root)
	var keys []string
	for k := range before {
		keys = append(keys, k)
	}
	for k := range after {
		if _, ok := before[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		if slices.Contains(allowed, k) {
			continue
		}
		if before[k] != after[k] {
			t.Errorf("target %s: was %q, now %q", k, before[k], after[k])
		}
	}
}

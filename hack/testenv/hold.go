package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Hold stops a nixrescue session at one point from outside it, for the
// tests that kill or interrupt it there: a stand-in put in front of a host
// program the session runs next (its directory first on PATH) waits, at
// the call it picks, until the nixrescue that started it is gone or has
// cancelled it; every other call runs the host's program. nixrescue has no
// hook of its own for this.
type Hold struct {
	// Name is the point ("attached"), and the hold's directory's name.
	Name string
	// Tool is the host program the hold stands in for.
	Tool string
	// DMUUIDPrefix, when set, picks only a call whose last argument is a
	// device-mapper device with such a UUID (CRYPT-LUKS2-: an opened LUKS
	// volume; LVM-: a logical volume).
	DMUUIDPrefix string
	// Nth picks the Nth call of those (0 and 1: the first).
	Nth int
}

// The points a session is held at.
var (
	// HoldAttached: the target attached (a loop device, an image's
	// export), nothing probed yet: the first blkid.
	HoldAttached = Hold{Name: "attached", Tool: "blkid"}
	// HoldMounted: with --fsck, the root mounted and the next filesystem
	// being checked: the second e2fsck.
	HoldMounted = Hold{Name: "mounted", Tool: "e2fsck", Nth: 2}
	// HoldUnlocked: a LUKS volume opened, its content not probed yet.
	HoldUnlocked = Hold{Name: "unlocked", Tool: "blkid", DMUUIDPrefix: "CRYPT-"}
	// HoldActivated: an LVM volume group activated, its volumes not
	// probed yet.
	HoldActivated = Hold{Name: "activated", Tool: "blkid", DMUUIDPrefix: "LVM-"}
	// HoldImported: a ZFS pool (one that was exported) imported, its
	// datasets not listed yet: the second zfs (the first asks its
	// version, before the import).
	HoldImported = Hold{Name: "imported", Tool: "zfs", Nth: 2}
)

// Script is the stand-in's text. It finds the host's program on PATH
// after its own directory, and writes the held call's arguments to
// "held" in its directory when it holds.
func (h Hold) Script() string {
	filter := ""
	if h.DMUUIDPrefix != "" {
		filter = fmt.Sprintf(`	name=$(basename "$(readlink -f "$dev")")
	case $(cat "/sys/class/block/$name/dm/uuid" 2>/dev/null) in %s*) ;; *) return 1 ;; esac
`, h.DMUUIDPrefix)
	}
	return fmt.Sprintf(`#!/bin/sh
# A test's hold (hack/testenv Hold %[1]q), not a NixOS program: it stands
# in front of the host's %[2]s and holds the nixrescue that runs it at one
# call until that nixrescue is killed or cancels it.
here=$(dirname "$0")
path=$PATH
PATH=${PATH#"$here":}
real=$(command -v %[2]s)
PATH=$path
for dev; do :; done
hold() {
	[ ! -e "$here/held" ] || return 1
%[3]s	n=$(( $(cat "$here/calls" 2>/dev/null || echo 0) + 1 ))
	echo $n >"$here/calls"
	[ $n -ge %[4]d ]
}
if hold; then
	echo "$@" >"$here/held"
	while kill -0 $PPID 2>/dev/null; do sleep 0.05; done
	exit 1
fi
exec "$real" "$@"
`, h.Name, h.Tool, filter, max(h.Nth, 1))
}

// Shell is a shell command that writes the hold into dir (made), for a
// script that runs nixrescue with dir first on PATH.
func (h Hold) Shell(dir string) string {
	return fmt.Sprintf("mkdir -p %[1]s && cat >%[1]s/%[2]s <<'NIXRESCUE_HOLD'\n%[3]sNIXRESCUE_HOLD\nchmod +x %[1]s/%[2]s\n", dir, h.Tool, h.Script())
}

// Install writes the hold into a directory of t's and returns the
// environment that puts it first on PATH, and a wait for the hold: it
// returns the held call's arguments, or fails t after a minute.
func (h Hold) Install(t testing.TB) (env []string, wait func() string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), h.Name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, h.Tool), []byte(h.Script()), 0o755); err != nil {
		t.Fatal(err)
	}
	env = append(os.Environ(), "PATH="+dir+":"+os.Getenv("PATH"))
	return env, func() string {
		t.Helper()
		for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if b, err := os.ReadFile(filepath.Join(dir, "held")); err == nil && len(b) > 0 {
				return strings.TrimSpace(string(b))
			}
		}
		t.Fatalf("nixrescue never reached %s (no %s call held)", h.Name, h.Tool)
		return ""
	}
}

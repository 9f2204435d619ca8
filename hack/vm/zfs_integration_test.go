package vm_test

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nixrescue/nixrescue/hack/fixture"
	"github.com/nixrescue/nixrescue/hack/testenv"
	"github.com/nixrescue/nixrescue/hack/vm"
)

// zfsInitramfs is the rescue host's initramfs with OpenZFS 2.3: its
// modules built for the lane's kernel (vm.ZFSModules, cached), zpool, zfs
// and zdb from bookworm-backports.
func zfsInitramfs(t *testing.T) string {
	t.Helper()
	mods, err := vm.ZFSModules(lab.kernel)
	if err != nil {
		t.Fatal(err)
	}
	return initramfsWith(t, "zfs", vm.InitramfsOptions{DebTools: append(append([]vm.DebTool{}, vm.DefaultDebTools...), vm.ZFSDebTools...),
		DebLibraries: vm.ZFSLibraries, ExtraModules: mods})
}

// initramfsWith builds a variant of the rescue host's initramfs (o, with
// the nixrescue under test) for one test.
func initramfsWith(t *testing.T, name string, o vm.InitramfsOptions) string {
	t.Helper()
	o.Nixrescue = lab.nixrescue
	out := filepath.Join(t.TempDir(), "initramfs-"+name+".cpio.gz")
	if err := vm.BuildInitramfs(lab.kernel, o, out); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestZFSRoots (OVMF): the ZFS roots NixOS users run, made in the rescue
// host by OpenZFS 2.3 with a real Nix and systemd-boot on a vfat ESP:
// legacy datasets, mountpoint=/ datasets (zfsutil), an encrypted parent
// dataset (its passphrase from --key-file), and a pool left imported by
// the target, as after a crash (made in a boot of its own, under the
// target's hostid). Each goes through inspect, run, rebuild and
// hardware-config, and is exported after; a session killed with the pool
// imported is cleaned up; then each disk boots, its stage 1 importing
// the pool with boot.zfs.forceImportRoot = false.
func TestZFSRoots(t *testing.T) {
	setup(t)
	t.Parallel()
	initramfs := zfsInitramfs(t)
	fixtures := []struct {
		name string
		o    fixture.LayeredOptions
		key  string
	}{
		{"legacy", fixture.LayeredOptions{Layout: fixture.LayeredZFS, Root: fixture.Options{Hostname: "zfslegacy"}}, ""},
		{"zfsutil", fixture.LayeredOptions{Layout: fixture.LayeredZFSUtil, Root: fixture.Options{Hostname: "zfsutil"}}, ""},
		{"encrypted", fixture.LayeredOptions{Layout: fixture.LayeredZFSEncrypted, Root: fixture.Options{Hostname: "zfscrypt"}}, "--key-file /root/key"},
		{"crashed", fixture.LayeredOptions{Layout: fixture.LayeredZFS, LeftImported: true, Root: fixture.Options{Hostname: "zfscrashed"}}, ""},
	}
	var disks []vm.Disk
	var scripts, make, sessions string
	devs := map[string]string{}
	layered := map[string]*fixture.Layered{}
	for _, f := range fixtures {
		l := buildLayered(t, f.o)
		call, dev := attach(&disks, l)
		layered[f.name], devs[f.name] = l, dev
		scripts += l.Script
		make += "step make-" + f.name + " " + call + "\n"
		sessions += sessionSteps(f.name, dev, f.key)
	}
	// The pools are all named rpool, each exported before the next is
	// made; the one left imported last, and the boot ends with it so.
	steps := rescueWith(t, vm.Machine{Disks: disks}, initramfs, ". /lib/vm.sh\n"+scripts+make)
	for _, f := range fixtures {
		wantExit(t, steps, "make-"+f.name, 0)
	}
	vars := filepath.Join(t.TempDir(), "vars.fd")
	steps = rescueWith(t, vm.Machine{Firmware: vm.OVMF, Vars: vars, Disks: disks, Timeout: 12 * time.Minute}, initramfs, `
. /lib/vm.sh
`+holdAt+testenv.HoldImported.Shell("/tmp/hold-imported")+zfsStopAt+`
printf %s '`+fixture.FixtureKey+`' > /root/key
snapshot
step locked nixrescue inspect `+devs["encrypted"]+` --json
`+sessions+`
step generations nixrescue generations `+devs["crashed"]+` --json
step rollback nixrescue rollback `+devs["crashed"]+` --to 2 --json
step kill-imported zfs_stop_at -KILL imported run `+devs["legacy"]+` -q -- true
step interrupted zfs_stop_at -INT imported run `+devs["legacy"]+` -q -- true
truncate -s 128M /tmp/host-pool
zpool create -o cachefile=none -O mountpoint=none rpool /tmp/host-pool
step renamed nixrescue run `+devs["legacy"]+` -q -- sh -c 'cat /etc/hostname; grep " / " /proc/mounts'
step renamed-hw nixrescue hardware-config `+devs["legacy"]+`
step host-pool zpool list -H -o name
zpool destroy rpool
step pools zpool list -H
unchanged zfs
`)
	checkZFSRoots(t, steps, devs)
	if t.Failed() {
		return
	}
	// Each boots its default: generation 3, which the rebuild made; the
	// crashed one's generation 2, which the rollback made the default.
	// Two at a time (two cores), each with a copy of the variable store
	// the rebuilds wrote their boot entries to.
	var boots []func()
	for _, f := range fixtures {
		m := vm.Machine{Firmware: vm.OVMF, Vars: copyVars(t, vars), Disks: []vm.Disk{{Path: layered[f.name].Image.Path}}}
		boots = append(boots, func() {
			bootTo(t, m, []string{"importing root ZFS pool", "rpool"},
				[]string{"nixrescue-fixture: booting system", "-nixos-system-" + f.o.Root.Hostname + "-", "(root mounted: " + f.o.Root.Hostname + ")"})
		})
	}
	parallel(boots[:2]...)
	parallel(boots[2:]...)
}

// zfsStopAt holds a session at a point, sends it a signal (-INT as
// Ctrl-C: the session closes what it opened; -KILL, then cleanup), and
// shows the pools imported before and after.
const zfsStopAt = `
zfs_stop_at() {
  sig=$1 point=$2; shift 2
  hold_at $point /tmp/stop.out "$@"
  echo "before: $(zpool list -H -o name | tr '\n' ' ')"
  kill $sig $pid; wait $pid; echo "status $?"
  if [ "$sig" = -KILL ]; then nixrescue cleanup >/dev/null; fi
  echo "after: $(zpool list -H -o name | tr '\n' ' ')"
}
`

// checkZFSRoots checks TestZFSRoots' rescue steps.
func checkZFSRoots(t *testing.T, steps map[string]vm.Step, devs map[string]string) {
	t.Helper()
	if s := steps["locked"]; !strings.Contains(s.Stdout+s.Stderr, "rpool/crypt stays locked") {
		t.Errorf("the encrypted pool without a key: want its dataset said locked:\n%s%s", s.Stdout, s.Stderr)
	}
	for name, sets := range map[string][]string{"legacy": {"rpool/root", "rpool/nix"}, "zfsutil": {"rpool/root", "rpool/nix"},
		"encrypted": {"rpool/crypt/root", "rpool/crypt/nix"}, "crashed": {"rpool/root", "rpool/nix"}} {
		checkSession(t, steps, name, "systemd-boot",
			[]string{"ZFS pool rpool", "dataset " + sets[0]},
			[]string{" - zfs " + sets[0] + " ", " - zfs " + sets[1] + " "},
			[]string{`device = "` + sets[0] + `";`, `fsType = "zfs";`})
	}
	if s := wantExit(t, steps, "generations", 0); !strings.Contains(s.Stdout, `"number": 3`) {
		t.Errorf("generations: want 1 to 3:\n%s%s", s.Stdout, s.Stderr)
	}
	if s := wantExit(t, steps, "rollback", 0); !strings.Contains(s.Stdout, `"generation": 2`) {
		t.Errorf("rollback to 2:\n%s%s", s.Stdout, s.Stderr)
	}
	for n, status := range map[string]string{"kill-imported": "status 137", "interrupted": "status 130"} {
		if s := wantExit(t, steps, n, 0); !strings.Contains(s.Stdout, "before: rpool \n") || !strings.Contains(s.Stdout, status) || !strings.Contains(s.Stdout, "after: \n") {
			t.Errorf("%s: want the pool imported while held, and exported after (by the session on Ctrl-C, by cleanup after a SIGKILL):\n%s%s", n, s.Stdout, s.Stderr)
		}
	}
	if s := wantExit(t, steps, "renamed", 0); !strings.Contains(s.Stdout, "zfslegacy") || !strings.Contains(s.Stdout, "-zfs") ||
		!strings.Contains(s.Stderr, `a ZFS pool named "rpool" is imported on this host`) {
		t.Errorf("a pool of the host's named rpool: want the target's imported under another name:\n%s%s", s.Stdout, s.Stderr)
	}
	if s := wantExit(t, steps, "renamed-hw", 0); !strings.Contains(s.Stdout, `device = "rpool/root";`) {
		t.Errorf("hardware-config of a pool imported under another name: want its own name:\n%s%s", s.Stdout, s.Stderr)
	}
	if s := wantExit(t, steps, "host-pool", 0); strings.TrimSpace(s.Stdout) != "rpool" {
		t.Errorf("the host's pool after the session: %q", s.Stdout)
	}
	if s := wantExit(t, steps, "pools", 0); strings.TrimSpace(s.Stdout) != "" {
		t.Errorf("pools left imported on the rescue host:\n%s", s.Stdout)
	}
	wantExit(t, steps, "unchanged-zfs", 0)
}

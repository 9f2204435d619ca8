package vm_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixrescue/nixrescue/hack/fixture"
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
	out := filepath.Join(t.TempDir(), "initramfs-zfs.cpio.gz")
	o := vm.InitramfsOptions{Nixrescue: lab.nixrescue, DebTools: append(append([]vm.DebTool{}, vm.DefaultDebTools...), vm.ZFSDebTools...),
		DebLibraries: vm.ZFSLibraries, ExtraModules: mods}
	if err := vm.BuildInitramfs(lab.kernel, o, out); err != nil {
		t.Fatal(err)
	}
	return out
}

// treeDisk writes a NixOS-shaped root (hack/fixture) as a tar on a disk
// of its own, for the rescue host to unpack into datasets.
func treeDisk(t *testing.T, o fixture.Options) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "root")
	if _, err := fixture.Build(dir, o); err != nil {
		t.Fatal(err)
	}
	tar := filepath.Join(t.TempDir(), "tree.tar")
	if out, err := exec.Command("tar", "-C", dir, "-cf", tar, ".").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v %s", err, out)
	}
	st, _ := os.Stat(tar)
	if err := os.Truncate(tar, (st.Size()/(1<<20)+1)<<20); err != nil {
		t.Fatal(err)
	}
	return tar
}

// TestZFSPool: a NixOS-style root pool with legacy datasets (root, nix,
// home) made in the rescue host by OpenZFS 2.3, then opened by nixrescue
// as stage 1 would: found by its label, imported without mounting under
// the session's root, its datasets mounted as the fstab says, exported
// at the end; the host as it was.
func TestZFSPool(t *testing.T) {
	setup(t)
	t.Parallel()
	initramfs := zfsInitramfs(t)
	pool := filepath.Join(t.TempDir(), "pool.img")
	truncate(t, pool, 512<<20)
	// One partition for the pool, as NixOS's installation guide makes it
	// (a whole disk's would be partitioned by zpool, which waits for udev).
	if out, err := exec.Command("sgdisk", "-n1:0:0", "-t1:BF01", pool).CombinedOutput(); err != nil {
		t.Fatalf("sgdisk: %v %s", err, out)
	}
	tree := treeDisk(t, fixture.Options{Hostname: "zfsfix",
		Fstab: "rpool/root / zfs zfsutil 0 0\nrpool/nix /nix zfs zfsutil 0 0\nrpool/home /home zfs zfsutil 0 0\n"})
	m := vm.Machine{Disks: []vm.Disk{{Path: pool}, {Path: tree}}}
	m.Timeout = 8 * 60e9
	r, err := m.Rescue(t.Context(), lab.kernel, initramfs, `
. /lib/vm.sh
step version zpool version
step make sh -c 'set -e
zpool create -f -o ashift=12 -o cachefile=none -O mountpoint=none -O compression=lz4 -O acltype=posixacl -O xattr=sa rpool /dev/vda1
for d in root nix home; do zfs create -o mountpoint=legacy rpool/$d; done
mkdir -p /mnt/t && mount -t zfs rpool/root /mnt/t && mkdir -p /mnt/t/nix /mnt/t/home
mount -t zfs rpool/nix /mnt/t/nix && mount -t zfs rpool/home /mnt/t/home
tar -C /mnt/t -xf /dev/vdb
umount /mnt/t/home /mnt/t/nix /mnt/t
zpool export rpool'
snapshot
step inspect nixrescue inspect /dev/vda --json
step run nixrescue run /dev/vda -q -- sh -c 'cat /etc/hostname; grep -E " (/|/nix|/home) zfs " /proc/mounts'
step pools zpool list -H
unchanged zfs
`)
	if err != nil || r.TimedOut || r.ExitStatus != 0 {
		t.Fatalf("the rescue host ended badly: err %v, timed out %v, exit %d\n%s\n%s", err, r.TimedOut, r.ExitStatus, r.Output, r.Console)
	}
	steps := vm.Steps(r.Output)
	if s := wantExit(t, steps, "version", 0); !strings.Contains(s.Stdout, "zfs-2.3") {
		t.Errorf("zpool version: %s%s", s.Stdout, s.Stderr)
	}
	wantExit(t, steps, "make", 0)
	if s := wantExit(t, steps, "inspect", 0); !strings.Contains(s.Stdout, `"kind": "zfs"`) || !strings.Contains(s.Stdout, `"dataset": "rpool/root"`) {
		t.Errorf("inspect:\n%s%s", s.Stdout, s.Stderr)
	}
	if s := wantExit(t, steps, "run", 0); !strings.Contains(s.Stdout, "zfsfix") || !strings.Contains(s.Stdout, "rpool/root / zfs") || !strings.Contains(s.Stdout, "rpool/nix /nix zfs") {
		t.Errorf("run:\n%s%s", s.Stdout, s.Stderr)
	}
	if s := wantExit(t, steps, "pools", 0); strings.TrimSpace(s.Stdout) != "" {
		t.Errorf("pools left imported: %s", s.Stdout)
	}
	wantExit(t, steps, "unchanged-zfs", 0)
}

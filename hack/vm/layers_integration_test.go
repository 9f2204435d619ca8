package vm_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/nixrescue/nixrescue/hack/fixture"
	"github.com/nixrescue/nixrescue/hack/testenv"
	"github.com/nixrescue/nixrescue/hack/vm"
)

// Encrypted and layered disks, made in the rescue host (this machine's
// kernel has no device-mapper or md), then opened by nixrescue as NixOS's
// stage 1 would open them.

// buildLayered makes a layered fixture with a real Nix and Debian's
// kernel for its generations; its disks follow the VM's disks so far.
func buildLayered(t *testing.T, o fixture.LayeredOptions) *fixture.Layered {
	t.Helper()
	o.Root.RealNix = true
	o.Root.Kernel = lab.kernel.Image
	dir := filepath.Join(lab.dir, fmt.Sprintf("%s-%s-%v-%v-%s", o.Layout, o.KDF, o.Degraded, o.LeftImported, o.Root.Hostname))
	l, err := fixture.BuildLayered(mkdir(t, dir), o)
	if err != nil {
		t.Fatalf("build %s: %v", o.Layout, err)
	}
	return l
}

// attach adds a layered fixture's disk and payloads to disks, and returns
// the call that makes its layers in the VM, and its disk's name there.
func attach(disks *[]vm.Disk, l *fixture.Layered) (call, disk string) {
	name := func(i int) string { return "/dev/vd" + string(rune('a'+i)) }
	disk = name(len(*disks))
	*disks = append(*disks, vm.Disk{Path: l.Image.Path})
	call = l.Function + " " + disk
	for _, p := range l.Payloads {
		call += " " + name(len(*disks))
		*disks = append(*disks, vm.Disk{Path: p})
	}
	return call, disk
}

// sessionSteps are the steps every layered target goes through: inspect,
// run (the mounts and the /dev the container sees), rebuild,
// hardware-config.
func sessionSteps(label, disk, keyArgs string) string {
	return fmt.Sprintf(`step %[1]s-inspect nixrescue inspect %[2]s %[3]s
step %[1]s-run nixrescue run %[2]s %[3]s -q -- sh -c 'cat /proc/self/mountinfo; ls /dev/mapper /dev/disk/by-uuid; ls /dev/vg 2>/dev/null; ls /dev/md 2>/dev/null; readlink /nix/var/nix/profiles/system'
step %[1]s-rebuild nixrescue rebuild %[2]s %[3]s --json
step %[1]s-hw nixrescue hardware-config %[2]s %[3]s
`, label, disk, keyArgs)
}

// checkSession checks what sessionSteps did: the root found through the
// layers and mounted, generation 3 made and its bootloader installed.
func checkSession(t *testing.T, steps map[string]vm.Step, label, kind string, wantInspect, wantRun, wantHW []string) {
	t.Helper()
	in := wantExit(t, steps, label+"-inspect", 0).Stdout
	for _, w := range wantInspect {
		if !strings.Contains(in, w) {
			t.Errorf("%s: inspect lacks %q:\n%s", label, w, in)
		}
	}
	run := wantExit(t, steps, label+"-run", 0).Stdout
	for _, w := range append(wantRun, "system-2-link") {
		if !strings.Contains(run, w) {
			t.Errorf("%s: run's container lacks %q:\n%s", label, w, run)
		}
	}
	r := wantExit(t, steps, label+"-rebuild", 0)
	var rep report
	if err := json.Unmarshal([]byte(r.Stdout), &rep); err != nil || rep.CurrentAfter.Generation != 3 || rep.Bootloader.Kind != kind || rep.Bootloader.Action != "installed" {
		t.Errorf("%s: rebuild: %v %+v\n%s", label, err, rep, r.Stderr)
	}
	hw := wantExit(t, steps, label+"-hw", 0).Stdout
	for _, w := range wantHW {
		if !strings.Contains(hw, w) {
			t.Errorf("%s: hardware-config lacks %q:\n%s", label, w, hw)
		}
	}
	if strings.Contains(hw, "nixrescue-") {
		t.Errorf("%s: hardware-config names a session's own device:\n%s", label, hw)
	}
}

// holdAt writes the holds (testenv.Hold) the kill and interrupt steps
// use, and hold_at POINT, which runs nixrescue held there (a point with
// no hold: as it is) and waits until it is held, or says "ready".
var holdAt = testenv.HoldUnlocked.Shell("/tmp/hold-unlocked") + testenv.HoldActivated.Shell("/tmp/hold-activated") + `
hold_at() {
  point=$1 out=$2; shift 2
  : >$out
  rm -f /tmp/hold-$point/held /tmp/hold-$point/calls
  PATH=/tmp/hold-$point:$PATH nixrescue "$@" >$out 2>&1 &
  pid=$!
  i=0; until [ -s /tmp/hold-$point/held ] || grep -q ready $out || [ $i -ge 900 ]; do sleep 0.1; i=$((i+1)); done
}
`

// killAt runs a session held at a point and kills it there, then
// cleans up: nothing may stay open.
const killAt = `
kill_at() {
  point=$1; shift
  hold_at $point /tmp/kill.out "$@"
  echo "before: $(ls /dev/mapper | grep -v control | tr '\n' ' ')$(cat /proc/mdstat | grep ^md)"
  kill -9 $pid; wait $pid 2>/dev/null
  nixrescue cleanup >/dev/null
  echo "after: $(ls /dev/mapper | grep -v control | tr '\n' ' ')$(cat /proc/mdstat | grep ^md)"
}
`

// benchScript times a session (run --no-activate -- true) on a LUKS
// target against the same steps by hand: cryptsetup open, vgchange (when
// VG), the mounts, a chroot, and all of it undone; the key derivation is
// in both. One run each, in centiseconds (/proc/uptime).
const benchScript = `
cs() { cut -d' ' -f1 /proc/uptime | tr -d .; }
bench() {
  disk=$1 boot=$2 vg=$3
  t0=$(cs)
  nixrescue run $disk --key-file /root/key --no-activate -q --json -- true >/tmp/bench.json || return 1
  t1=$(cs)
  cryptsetup open --disable-locks --key-file /root/key ${disk}2 bench || return 1
  root=/dev/mapper/bench
  lvmb() { lvm vgchange -q --nolocking --devices /dev/mapper/bench --config 'activation { udev_sync=0 udev_rules=0 }' "$@" >/dev/null; }
  if [ -n "$vg" ]; then
    lvmb -ay $vg || return 1
    root=/dev/$vg/root
  fi
  mkdir -p /mnt/b && mount $root /mnt/b && mount $boot /mnt/b/boot &&
    mount --bind /dev /mnt/b/dev && mount -t proc proc /mnt/b/proc && mount -t sysfs sysfs /mnt/b/sys &&
    chroot /mnt/b /nix/var/nix/profiles/system/sw/bin/true || return 1
  umount /mnt/b/sys /mnt/b/proc /mnt/b/dev /mnt/b/boot /mnt/b
  if [ -n "$vg" ]; then lvmb -an $vg; fi
  cryptsetup close --disable-locks bench
  t2=$(cs)
  echo "nixrescue $((t1 - t0)) by-hand $((t2 - t1))"
  tr -d ' \n' </tmp/bench.json | sed 's/.*"phases":\[//; s/\].*//; s/},{/}\n{/g' | sed 's/{"name":"\([^"]*\)","ms":\([0-9]*\)[^}]*}/\1 \2 ms/'
}
`

// benchRatio reads a bench step: the session's time over the hand's.
func benchRatio(t *testing.T, steps map[string]vm.Step, name string) {
	t.Helper()
	s := wantExit(t, steps, name, 0)
	var session, hand float64
	if _, err := fmt.Sscanf(s.Stdout, "nixrescue %f by-hand %f", &session, &hand); err != nil || hand == 0 {
		t.Errorf("%s: %v %q %s", name, err, s.Stdout, s.Stderr)
		return
	}
	t.Logf("%s: session %.2f s, by hand %.2f s: %.2f×; the session's phases: %s", name, session/100, hand/100, session/hand,
		strings.Join(strings.Split(strings.TrimSpace(s.Stdout), "\n")[1:], ", "))
}

// interruptAt interrupts a session (SIGINT, as Ctrl-C) held at a point:
// it closes what it opened by itself, no cleanup needed.
const interruptAt = `
interrupt_at() {
  point=$1; shift
  hold_at $point /tmp/int.out "$@"
  echo "before: $(ls /dev/mapper | grep -v control | tr '\n' ' ')"
  kill -INT $pid; wait $pid; echo "status $?"
  echo "after: $(ls /dev/mapper | grep -v control | tr '\n' ' ')"
}
`

// wantKilled checks a kill_at step: something was open, nothing is.
func wantKilled(t *testing.T, steps map[string]vm.Step, name string) {
	t.Helper()
	s := wantExit(t, steps, name, 0)
	if !regexp.MustCompile(`before: \S`).MatchString(s.Stdout) || !strings.Contains(s.Stdout, "after: \n") {
		t.Errorf("%s: want layers open before the kill and none after cleanup:\n%s%s", name, s.Stdout, s.Stderr)
	}
}

// TestLUKSAndLVMOnLUKS (OVMF): LUKS2 → ext4 root with argon2id and with
// pbkdf2, and the NixOS manual's LVM on LUKS, each through inspect, run,
// rebuild and hardware-config; keys from a file, from standard input and
// a wrong one; the volume open on the host, a volume group of the host's
// with the target's name, a missing cryptsetup, a key file that is a
// directory; SIGKILL after the unlock, after LVM's activation and during
// the command; doctor on both repaired disks (nothing fatal) and, without
// a key, one line naming --key-file; then the repaired LUKS disk boots,
// its initrd opening the root.
func TestLUKSAndLVMOnLUKS(t *testing.T) {
	setup(t)
	t.Parallel()
	luks := buildLayered(t, fixture.LayeredOptions{Layout: fixture.LayeredLUKS})
	lvm := buildLayered(t, fixture.LayeredOptions{Layout: fixture.LayeredLVMOnLUKS})
	pbkdf2 := buildLayered(t, fixture.LayeredOptions{Layout: fixture.LayeredLUKS, KDF: "pbkdf2", Root: fixture.Options{Hostname: "pbkdf2"}})
	var disks []vm.Disk
	makeLUKS, a := attach(&disks, luks)
	makeLVM, b := attach(&disks, lvm)
	makePBKDF2, p := attach(&disks, pbkdf2)
	scratch := filepath.Join(lab.dir, "scratch.img")
	truncate(t, scratch, 64<<20)
	disks = append(disks, vm.Disk{Path: scratch})
	scratchDev := "/dev/vd" + string(rune('a'+len(disks)-1))
	key := "--key-file /root/key"
	vars := filepath.Join(t.TempDir(), "vars.fd")
	steps := rescue(t, vm.Machine{Firmware: vm.OVMF, Vars: vars, Disks: disks}, `
. /lib/vm.sh
`+luks.Script+lvm.Script+pbkdf2.Script+holdAt+killAt+interruptAt+benchScript+`
step make-luks `+makeLUKS+`
step make-lvm `+makeLVM+`
step make-pbkdf2 `+makePBKDF2+`
printf %s '`+fixture.FixtureKey+`' > /root/key
printf %s wrong > /root/wrong
# What making the fixtures left (locks, LVM's backups) goes: nixrescue
# must not make it again.
rm -rf /run/lock /run/cryptsetup /etc/lvm
snapshot
step locked nixrescue inspect `+a+` --json
`+sessionSteps("luks", a, key)+sessionSteps("lvm", b, key)+`
step pbkdf2 nixrescue run `+p+` `+key+` -q -- cat /etc/hostname
step stdin sh -c 'printf "%s\nsecond line\n" "`+fixture.FixtureKey+`" | nixrescue run `+a+` --key-file - -q -- sh -c "cat /etc/hostname; cat"'
step wrong nixrescue run `+a+` --key-file /root/wrong -q -- true
step key-dir nixrescue run `+a+` --key-file /root -q -- true
step no-cryptsetup env PATH=/bin:/usr/sbin nixrescue run `+a+` `+key+` -q -- true
printf %s '`+fixture.FixtureKey+`' | cryptsetup open --disable-locks --key-file=- `+a+`2 hostopen
step open-on-host nixrescue run `+a+` `+key+` -q -- true
cryptsetup close --disable-locks hostopen
lvmc() { lvm "$@" -q --nolocking --config 'activation { udev_sync=0 udev_rules=0 } backup { backup=0 archive=0 }' >/dev/null; }
lvmc pvcreate `+scratchDev+`
lvmc vgcreate vg `+scratchDev+`
lvmc lvcreate -L 8M -n other vg
step host-vg nixrescue run `+b+` `+key+` -q -- true
lvmc vgchange -an vg
lvmc vgremove -f vg; lvmc pvremove `+scratchDev+`
step kill-unlocked kill_at unlocked run `+a+` `+key+` -q -- true
step kill-activated kill_at activated run `+b+` `+key+` -q -- true
step kill-command kill_at command run `+b+` `+key+` -q -- sh -c 'echo ready; sleep 413'
step interrupted interrupt_at activated run `+b+` `+key+` -q -- true
step read-only nixrescue run `+a+` --read-only `+key+` -q -- sh -c 'cat /sys/block/dm-*/ro'
step bench-luks bench `+a+` "`+a+`1" ""
step bench-lvm bench `+b+` "`+b+`1" vg
step system-3 nixrescue run `+a+` --read-only `+key+` -q -- readlink -f /nix/var/nix/profiles/system-3-link
step doctor-luks nixrescue doctor `+a+` `+key+` --json
step doctor-lvm nixrescue doctor `+b+` `+key+` --json
step doctor-locked nixrescue doctor `+a+` --json
mount `+a+`1 /mnt && rm -f /mnt/EFI/BOOT/BOOTX64.EFI && umount /mnt
unchanged layers
`)
	wantExit(t, steps, "make-luks", 0)
	wantExit(t, steps, "make-lvm", 0)
	if s := wantExit(t, steps, "locked", 0); !strings.Contains(s.Stdout, `"state": "locked"`) || !strings.Contains(s.Stdout, `"cipher": "aes-xts-plain64"`) || !strings.Contains(s.Stdout, luks.LUKSUUID) {
		t.Errorf("inspect without a key: want the locked volume's header:\n%s%s", s.Stdout, s.Stderr)
	}
	checkSession(t, steps, "luks", "systemd-boot",
		[]string{"LUKS2 \"cryptroot\" " + luks.LUKSUUID, "open as cryptroot", "/dev/mapper/cryptroot"},
		[]string{" / rw,relatime - ext4 /dev/dm-", "cryptroot", "nixrescue-"},
		[]string{`boot.initrd.luks.devices."cryptroot".device = "/dev/disk/by-uuid/` + luks.LUKSUUID + `"`})
	checkSession(t, steps, "lvm", "systemd-boot",
		[]string{"LVM volume group vg", "logical volume /dev/vg/root", "logical volume /dev/vg/swap", "open as luksroot"},
		[]string{" / rw,relatime - ext4 /dev/dm-", "luksroot", "vg-root", "root\nswap\n"},
		[]string{`fileSystems."/"`})
	if s := wantExit(t, steps, "pbkdf2", 0); !strings.Contains(s.Stdout, "pbkdf2") {
		t.Errorf("pbkdf2: %s", s.Stdout)
	}
	if s := wantExit(t, steps, "stdin", 0); s.Stdout != "nixfixture\nsecond line\n" {
		t.Errorf("--key-file -: the passphrase is the first line of standard input, the rest the command's:\n%q\n%s", s.Stdout, s.Stderr)
	}
	for name, want := range map[string]string{
		"wrong":         "no key given opens " + a + "2",
		"key-dir":       "--key-file /root is a directory",
		"no-cryptsetup": "install cryptsetup",
		"open-on-host":  "already open on this host as /dev/mapper/hostopen",
		"host-vg":       "vgimportclone",
	} {
		s := wantExit(t, steps, name, 125)
		if lines := strings.Split(strings.TrimSpace(s.Stderr), "\n"); !strings.Contains(s.Stderr, want) || len(lines) > 2 {
			t.Errorf("%s: want one line with %q:\n%s", name, want, s.Stderr)
		}
	}
	wantKilled(t, steps, "kill-unlocked")
	wantKilled(t, steps, "kill-activated")
	wantKilled(t, steps, "kill-command")
	wantKilled(t, steps, "interrupted")
	if s := wantExit(t, steps, "read-only", 0); strings.TrimSpace(s.Stdout) != "1" {
		t.Errorf("--read-only: the LUKS mapping should be read-only: %q", s.Stdout)
	}
	benchRatio(t, steps, "bench-luks")
	benchRatio(t, steps, "bench-lvm")
	system3 := strings.TrimSpace(wantExit(t, steps, "system-3", 0).Stdout)
	doctorSays(t, steps, "doctor-luks", "", "")
	doctorSays(t, steps, "doctor-lvm", "", "")
	if s := wantExit(t, steps, "doctor-locked", 125); !strings.Contains(s.Stderr, "--key-file") {
		t.Errorf("doctor without a key: want the locked root said, with --key-file:\n%s", s.Stderr)
	}
	wantExit(t, steps, "unchanged-layers", 0)
	if t.Failed() {
		return
	}
	bootTo(t, vm.Machine{Firmware: vm.OVMF, Vars: vars, Disks: []vm.Disk{{Path: luks.Image.Path}}},
		[]string{"nixrescue-fixture: booting system " + system3 + " (root mounted: nixfixture)"})
}

// TestGRUBCryptodiskAndRAID1 (SeaBIOS): LUKS1 with /boot inside the
// encrypted root (GRUB's cryptodisk), RAID1 /boot and root, and a
// degraded mirror, through inspect, run, rebuild and hardware-config.
func TestGRUBCryptodiskAndRAID1(t *testing.T) {
	setup(t)
	t.Parallel()
	crypto := buildLayered(t, fixture.LayeredOptions{Layout: fixture.LayeredLUKS1Boot})
	raid := buildLayered(t, fixture.LayeredOptions{Layout: fixture.LayeredRAID1})
	degraded := buildLayered(t, fixture.LayeredOptions{Layout: fixture.LayeredRAID1, Degraded: true, Root: fixture.Options{Hostname: "degraded"}})
	var disks []vm.Disk
	makeCrypto, c := attach(&disks, crypto)
	makeRAID, d := attach(&disks, raid)
	makeDegraded, e := attach(&disks, degraded)
	key := "--key-file /root/key"
	steps := rescue(t, vm.Machine{Disks: disks}, `
. /lib/vm.sh
`+crypto.Script+raid.Script+degraded.Script+holdAt+killAt+`
step make-crypto `+makeCrypto+`
step make-raid `+makeRAID+`
step make-degraded `+makeDegraded+`
printf %s '`+fixture.FixtureKey+`' > /root/key
snapshot
`+sessionSteps("cryptodisk", c, key)+sessionSteps("raid", d, "")+`
step degraded nixrescue run `+e+` -q -- cat /etc/hostname
step kill-assembled kill_at command run `+d+` -q -- sh -c 'echo ready; sleep 413'
unchanged layers
`)
	wantExit(t, steps, "make-crypto", 0)
	wantExit(t, steps, "make-raid", 0)
	checkSession(t, steps, "cryptodisk", "grub-bios",
		[]string{"LUKS1 " + crypto.LUKSUUID, "open as cryptroot"},
		[]string{" / rw,relatime - ext4 /dev/dm-"},
		[]string{`boot.initrd.luks.devices."cryptroot".device = "/dev/disk/by-uuid/` + crypto.LUKSUUID + `"`})
	if s := steps["cryptodisk-rebuild"]; !strings.Contains(s.Stderr, "Installation finished. No error reported.") {
		t.Errorf("GRUB with cryptodisk: %s", s.Stderr)
	}
	checkSession(t, steps, "raid", "grub-bios",
		[]string{"RAID raid1 boot (2 of 2 members", "RAID raid1 root (2 of 2 members"},
		[]string{" / rw,relatime - ext4 /dev/md", " /boot rw,relatime - ext4 /dev/md", "boot\nroot\n"},
		[]string{`fileSystems."/boot"`})
	if s := wantExit(t, steps, "degraded", 0); !strings.Contains(s.Stdout, "degraded") || !strings.Contains(s.Stderr, "is degraded: 1 of its 2 members are here") {
		t.Errorf("a degraded mirror: want it assembled, with a warning:\n%s%s", s.Stdout, s.Stderr)
	}
	wantKilled(t, steps, "kill-assembled")
	wantExit(t, steps, "unchanged-layers", 0)
}

func mkdir(t *testing.T, dir string) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func truncate(t *testing.T, p string, size int64) {
	t.Helper()
	f, err := os.Create(p)
	if err == nil {
		err = f.Truncate(size)
		f.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
}

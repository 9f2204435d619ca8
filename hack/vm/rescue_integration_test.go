package vm_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nixrescue/nixrescue/hack/debs"
	"github.com/nixrescue/nixrescue/hack/fixture"
	"github.com/nixrescue/nixrescue/hack/testenv"
	"github.com/nixrescue/nixrescue/hack/vm"
)

// The rescue host in a VM: Debian's kernel, the initramfs of hack/vm with
// the static nixrescue under test, and fixture disks with Debian's kernel
// for their generations, so that a repaired disk boots to a marker. The
// two tests run side by side (one VM each, then their boots), and each
// boots its rescue host once for all its scenarios.

var lab struct {
	once      sync.Once
	err       error
	dir       string
	kernel    *vm.Kernel
	initramfs string
	// nixrescue is the static binary, for this host too.
	nixrescue string
}

func TestMain(m *testing.M) {
	code := m.Run()
	if lab.dir != "" {
		os.RemoveAll(lab.dir)
	}
	os.Exit(code)
}

// setup builds nixrescue and the rescue host's initramfs, once.
func setup(t *testing.T) {
	t.Helper()
	testenv.Require(t)
	lab.once.Do(func() {
		if lab.dir, lab.err = os.MkdirTemp("", "nixrescue-vmtest-"); lab.err != nil {
			return
		}
		lab.nixrescue, lab.kernel, lab.initramfs, lab.err = rescueHost(debs.Native)
	})
	if lab.err != nil {
		t.Fatal(lab.err)
	}
}

// rescueHost builds a rescue host of architecture a in lab.dir: the
// static nixrescue (for arm64, cross-built as hack/release builds it),
// Debian's kernel, and the initramfs holding that nixrescue.
func rescueHost(a debs.Arch) (bin string, k *vm.Kernel, initramfs string, err error) {
	goarch := map[bool]string{true: "arm64"}[a.Qemu != ""]
	if bin, err = testenv.BuildStaticFor("../..", lab.dir, goarch); err != nil {
		return
	}
	if k, err = vm.DebianKernelFor(a); err != nil {
		return
	}
	initramfs = filepath.Join(lab.dir, "initramfs-"+a.Name+".cpio.gz")
	err = vm.BuildInitramfs(k, vm.InitramfsOptions{Nixrescue: bin}, initramfs)
	return
}

// buildImage makes a fixture disk with a real Nix and GRUB, and Debian's
// kernel for its generations.
func buildImage(t *testing.T, name string, o fixture.ImageOptions) *fixture.Image {
	t.Helper()
	o.Root.RealNix = true
	o.Root.Kernel = lab.kernel.Image
	img, err := fixture.BuildImage(filepath.Join(lab.dir, name+".img"), o)
	if err != nil {
		t.Fatalf("build %s: %v", name, err)
	}
	return img
}

// rescue boots the rescue host on m and runs script; it fails the test
// when the machine did not end or the script failed before its end.
func rescue(t *testing.T, m vm.Machine, script string) map[string]vm.Step {
	t.Helper()
	return rescueWith(t, m, lab.initramfs, script)
}

// rescueWith is rescue with another initramfs (one with OpenZFS, or the
// aarch64 rescue host's, booted with its kernel).
func rescueWith(t *testing.T, m vm.Machine, initramfs, script string) map[string]vm.Step {
	t.Helper()
	if m.Timeout == 0 {
		m.Timeout = 6 * time.Minute
	}
	k := lab.kernel
	if m.Arch.Qemu != "" {
		k = armLab.kernel // the aarch64 rescue host's
	}
	r, err := m.Rescue(context.Background(), k, initramfs, script)
	t.Logf("%s rescue host: %.1f s", m.Firmware, r.Elapsed.Seconds())
	if testing.Verbose() {
		t.Logf("its output:\n%s", r.Output)
	}
	if err != nil || r.TimedOut || r.ExitStatus != 0 {
		t.Fatalf("the rescue host (%s) ended badly: err %v, timed out %v, exit %d\nits output:\n%s\nits console:\n%s",
			m.Firmware, err, r.TimedOut, r.ExitStatus, r.Output, r.Console)
	}
	return vm.Steps(r.Output)
}

// bootTo boots m's disks through its firmware and fails the test unless
// the console shows, for each of lines, a line holding all its parts.
func bootTo(t *testing.T, m vm.Machine, lines ...[]string) {
	t.Helper()
	m.Timeout = 3 * time.Minute
	r, err := m.Boot(context.Background())
	t.Logf("%s boot: %.1f s", m.Firmware, r.Elapsed.Seconds())
	if err != nil {
		t.Error(err)
		return
	}
	for _, parts := range lines {
		found := false
		for _, l := range strings.Split(r.Console, "\n") {
			n := 0
			for _, p := range parts {
				if strings.Contains(l, p) {
					n++
				}
			}
			found = found || n == len(parts)
		}
		if !found {
			t.Errorf("the boot (%s, timed out %v) showed no line with %q:\n%s", m.Firmware, r.TimedOut, parts, r.Console)
		}
	}
}

// step returns the named step and fails the test if it is missing.
func step(t *testing.T, steps map[string]vm.Step, name string) vm.Step {
	t.Helper()
	s, ok := steps[name]
	if !ok {
		t.Fatalf("the script ran no step %q", name)
	}
	return s
}

// wantExit fails the test unless the step ended with code.
func wantExit(t *testing.T, steps map[string]vm.Step, name string, code int) vm.Step {
	t.Helper()
	s := step(t, steps, name)
	if s.ExitStatus != code {
		t.Errorf("%s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", name, s.ExitStatus, code, s.Stdout, s.Stderr)
	}
	return s
}

// report is what nixrescue rebuild --json reports, the parts read here.
type report struct {
	CurrentAfter struct {
		Generation int `json:"generation"`
	} `json:"current_after"`
	Bootloader struct {
		Kind       string `json:"kind"`
		Action     string `json:"action"`
		NVRAMEntry string `json:"nvram_entry"`
	} `json:"bootloader"`
	DiskAliases []struct {
		Name, Device string
	} `json:"disk_aliases"`
}

// systemdBootInstalled checks a rebuild (step name) that installed
// systemd-boot: bootctl made its NVRAM entry, and the ESP (the listing of
// step esp) has the loader efi and generation 3's entry.
func systemdBootInstalled(t *testing.T, steps map[string]vm.Step, name, esp, efi string) {
	t.Helper()
	rebuilt(t, steps, name, "systemd-boot")
	if s := step(t, steps, name); !strings.Contains(s.Stdout+s.Stderr, `Created EFI boot entry "Linux Boot Manager"`) {
		t.Errorf("bootctl made no boot entry:\n%s", s.Stderr)
	}
	if f := step(t, steps, esp).Stdout; !strings.Contains(f, "/mnt/EFI/systemd/"+efi) || !strings.Contains(f, "/mnt/loader/entries/nixos-generation-3.conf") {
		t.Errorf("the ESP after the rebuild:\n%s", f)
	}
}

func rebuilt(t *testing.T, steps map[string]vm.Step, name, kind string) report {
	t.Helper()
	s := wantExit(t, steps, name, 0)
	var r report
	if err := json.Unmarshal([]byte(s.Stdout), &r); err != nil {
		t.Fatalf("%s: report: %v\n%s\n%s", name, err, s.Stdout, s.Stderr)
	}
	if r.CurrentAfter.Generation != 3 || r.Bootloader.Kind != kind || r.Bootloader.Action != "installed" {
		t.Errorf("%s: generation %d, bootloader %+v; want 3, %s installed\n%s", name, r.CurrentAfter.Generation, r.Bootloader, kind, s.Stderr)
	}
	return r
}

// grubConfiguration is a configuration.nix that installs GRUB for BIOS
// on /dev/sdz, as the user of the manual procedure writes it.
const grubConfiguration = `{ config, pkgs, ... }:
{
  imports = [ ./hardware-configuration.nix ];
  networking.hostName = "nixfixture";
  boot.loader.grub.enable = true;
  boot.loader.grub.device = "/dev/sdz";
  system.stateVersion = "24.05";
}
`

// filesystemWith makes an ext4 filesystem image holding copies of files
// (disk images the rescue host then finds as files), and returns its
// path.
func filesystemWith(t *testing.T, name string, files ...string) string {
	t.Helper()
	dir := filepath.Join(lab.dir, name+".d")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var size int64
	for _, file := range files {
		if out, err := exec.Command("cp", "--sparse=always", file, dir).CombinedOutput(); err != nil {
			t.Fatalf("%v %s", err, out)
		}
		st, err := os.Stat(file)
		if err != nil {
			t.Fatal(err)
		}
		size += st.Size()
	}
	p := filepath.Join(lab.dir, name+".img")
	if out, err := exec.Command("mkfs.ext4", "-q", "-d", dir, p, fmt.Sprintf("%dM", size>>20+128)).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4 -d: %v %s", err, out)
	}
	os.RemoveAll(dir)
	return p
}

// fileOf copies file name out of the ext4 filesystem image fs (debugfs:
// no mount), and returns the copy's path.
func fileOf(t *testing.T, fs, name string) string {
	t.Helper()
	out := filepath.Join(lab.dir, "from-"+filepath.Base(fs)+"-"+name)
	if b, err := exec.Command("debugfs", "-R", "dump /"+name+" "+out, fs).CombinedOutput(); err != nil {
		t.Fatalf("debugfs dump: %v %s", err, b)
	}
	return out
}

// copyVars copies an OVMF variable store, so that two machines can boot
// from what one rescue host left in it.
func copyVars(t *testing.T, vars string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "vars.fd")
	if out, err := exec.Command("cp", vars, dst).CombinedOutput(); err != nil {
		t.Fatalf("copy the variable store: %v %s", err, out)
	}
	return dst
}

// parallel runs each function in a goroutine and waits for all.
func parallel(fs ...func()) {
	var wg sync.WaitGroup
	for _, f := range fs {
		wg.Add(1)
		go func() { defer wg.Done(); f() }()
	}
	wg.Wait()
}

// TestUEFIRescueHost is the manual procedure, UEFI edition, on a rescue
// host booted by OVMF: a systemd-boot disk whose ESP lost its loader and
// entries, and a GRUB-on-EFI disk, both rebuilt by nixrescue; the NVRAM
// entries bootctl and grub-install made are then what boots each disk on
// a fresh machine with the same variable store (the removable-media
// fallback deleted first, so that only the entry can work).
// hardware-config runs there too, on the virtio disk. doctor finds no
// loader on the fresh ESP (fixed by the rebuild it prints), nothing once
// repaired, and, the GRUB disk's NVRAM entry and fallback loader deleted,
// nvram-no-entry, which its fix (a rebuild: generation 4) makes again;
// prune --keep 1 on the systemd-boot disk deletes generations 1 and 2,
// generation 1's kernel and initrd leave the ESP, and doctor finds
// nothing (the disk then boots generation 3 as before).
func TestUEFIRescueHost(t *testing.T) {
	setup(t)
	t.Parallel()
	sd := buildImage(t, "uefi-systemd-boot", fixture.ImageOptions{Layout: fixture.LayoutUEFI})
	grub := buildImage(t, "uefi-grub", fixture.ImageOptions{Layout: fixture.LayoutGrubEFI})
	vars := filepath.Join(t.TempDir(), "vars.fd")
	steps := rescue(t, vm.Machine{Firmware: vm.OVMF, Vars: vars, Disks: []vm.Disk{{Path: sd.Path}, {Path: grub.Path}}}, `
. /lib/vm.sh
step blkid blkid
snapshot
step hardware-config nixrescue hardware-config /dev/vda
step doctor-before nixrescue doctor /dev/vda --json
step rebuild-systemd-boot nixrescue rebuild /dev/vda --json
step rebuild-grub nixrescue rebuild /dev/vdb --json
step efibootmgr efibootmgr
step system-3 nixrescue run /dev/vda --read-only -q -- readlink -f /nix/var/nix/profiles/system-3-link
step doctor-after nixrescue doctor /dev/vda --json
step prune nixrescue prune /dev/vda --keep 1 --json
step doctor-pruned nixrescue doctor /dev/vda --json
mount /dev/vda1 /mnt && step esp-systemd-boot find /mnt && rm -f /mnt/EFI/BOOT/BOOTX64.EFI && umount /mnt
mount /dev/vdb1 /mnt && step esp-grub find /mnt && rm -f /mnt/EFI/BOOT/BOOTX64.EFI && umount /mnt
n=$(efibootmgr | sed -n 's/^Boot\([0-9A-F]*\)\* NixOS-boot-efi.*/\1/p'); efibootmgr -q -b "$n" -B
step doctor-no-entry nixrescue doctor /dev/vdb --json
step rebuild-grub-again nixrescue rebuild /dev/vdb --json
step doctor-entry-again nixrescue doctor /dev/vdb --json
unchanged uefi
`)
	doctorSays(t, steps, "doctor-before", "bootloader-missing", "nixrescue rebuild /dev/vda")
	doctorSays(t, steps, "doctor-after", "", "")
	var pruned struct {
		Plan struct {
			Delete, Kept []int
		}
		Removed []string
		Freed   int64
	}
	if st := wantExit(t, steps, "prune", 0); json.Unmarshal([]byte(st.Stdout), &pruned) != nil || fmt.Sprint(pruned.Plan.Delete) != "[1 2]" ||
		fmt.Sprint(pruned.Plan.Kept) != "[3]" || len(pruned.Removed) != 2 || pruned.Freed <= 0 {
		t.Errorf("prune --keep 1 on systemd-boot: %+v\n%s%s", pruned, st.Stdout, st.Stderr)
	}
	doctorSays(t, steps, "doctor-pruned", "", "")
	doctorSays(t, steps, "doctor-no-entry", "nvram-no-entry", "nixrescue rebuild /dev/vdb")
	wantExit(t, steps, "rebuild-grub-again", 0)
	doctorSays(t, steps, "doctor-entry-again", "", "")
	if b := step(t, steps, "blkid").Stdout; !strings.Contains(b, `/dev/vda1: `) || !strings.Contains(b, `TYPE="vfat"`) {
		t.Fatalf("the rescue host does not see the disks' partitions as the kernel scanned them:\n%s", b)
	}
	hw := wantExit(t, steps, "hardware-config", 0).Stdout
	esp := sd.Partitions[1]
	for _, want := range []string{`fileSystems."/boot"`, "/dev/disk/by-uuid/" + esp.UUID, `fsType = "vfat"`, `"virtio_pci"`, `"virtio_blk"`, "qemu-guest.nix"} {
		if !strings.Contains(hw, want) {
			t.Errorf("hardware-config lacks %q:\n%s", want, hw)
		}
	}
	if strings.Contains(hw, "isContainer") {
		t.Errorf("hardware-config takes the session for a container:\n%s", hw)
	}
	systemdBootInstalled(t, steps, "rebuild-systemd-boot", "esp-systemd-boot", "systemd-bootx64.efi")
	rebuilt(t, steps, "rebuild-grub", "grub-efi")
	if e := step(t, steps, "efibootmgr").Stdout; !strings.Contains(e, "Linux Boot Manager") || !strings.Contains(e, "NixOS-boot-efi") {
		t.Errorf("the NVRAM lacks the entries bootctl and grub-install made:\n%s", e)
	}
	system3 := strings.TrimSpace(wantExit(t, steps, "system-3", 0).Stdout)
	wantExit(t, steps, "unchanged-uefi", 0)
	if t.Failed() {
		return
	}
	parallel(func() {
		bootTo(t, vm.Machine{Firmware: vm.OVMF, Vars: copyVars(t, vars), Disks: []vm.Disk{{Path: sd.Path}}},
			[]string{"starting Boot", `"Linux Boot Manager"`}, []string{"nixrescue-fixture: booting system " + system3})
		bootTestOnThisHost(t, sd.Path, "efi", "nixos-generation-3.conf")
	}, func() {
		bootTo(t, vm.Machine{Firmware: vm.OVMF, Vars: copyVars(t, vars), Disks: []vm.Disk{{Path: grub.Path}}},
			[]string{"starting Boot", `"NixOS-boot-efi"`}, []string{"nixrescue-fixture: booting generation 4"})
	})
}

// doctorSays checks doctor's report of a step: the fatal finding id
// with its first fix line, or ("") nothing fatal.
func doctorSays(t *testing.T, steps map[string]vm.Step, name, id, fix string) {
	t.Helper()
	st := step(t, steps, name)
	var rep struct {
		Fatal    bool `json:"fatal"`
		Findings []struct {
			ID, Severity string
			Fix          []string
		} `json:"findings"`
	}
	if err := json.Unmarshal([]byte(st.Stdout), &rep); err != nil {
		t.Errorf("%s: exit %d, no report (%v):\n%s%s", name, st.ExitStatus, err, st.Stdout, st.Stderr)
		return
	}
	if id == "" {
		if rep.Fatal || st.ExitStatus != 0 {
			t.Errorf("%s: exit %d, something fatal: %+v", name, st.ExitStatus, rep.Findings)
		}
		return
	}
	for _, f := range rep.Findings {
		if f.ID == id && f.Severity == "fatal" && len(f.Fix) > 0 && strings.HasPrefix(f.Fix[0], fix) && st.ExitStatus == 1 {
			return
		}
	}
	t.Errorf("%s: exit %d, no fatal %s fixed by %q: %+v", name, st.ExitStatus, id, fix, rep.Findings)
}

// bootTestOnThisHost runs nixrescue boot-test on the repaired disk here
// (a kernel without vfat: the ESP is read and aimed with mtools), which
// must reach multi-user through its bootloader's entry, and leave the
// image as it was.
func bootTestOnThisHost(t *testing.T, img, firmware, entry string) {
	t.Helper()
	before, err := exec.Command("sha256sum", img).Output()
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(lab.nixrescue, "boot-test", img, "--json").Output()
	var r struct {
		Firmware, Entry, Reached string
		Passed                   bool
		Booted                   struct{ Generation int }
	}
	if jerr := json.Unmarshal(out, &r); jerr != nil || err != nil || !r.Passed || r.Firmware != firmware || r.Entry != entry || r.Booted.Generation != 3 {
		t.Errorf("boot-test %s: %v %v %+v\n%s", img, err, jerr, r, out)
	}
	if after, _ := exec.Command("sha256sum", img).Output(); string(after) != string(before) {
		t.Error("boot-test changed the image")
	}
}

// TestBIOSRescueHost: a rescue host booted by SeaBIOS repairs a
// systemd-boot disk (no NVRAM entry can be made from there: said in one
// line; the disk then boots under OVMF through the fallback path) and the
// BIOS/GRUB disk of the manual procedure (it then boots); doctor before
// and after GRUB is installed on a disk whose boot code was zeroed; bad input
// (--efi on without EFI, an ESP that is not vfat); and the cgroup v2
// paths: the session's cgroup, --memory and its OOM line, a SIGKILL of
// nixrescue; and disks on NVMe and AHCI, opened by their kernel names.
func TestBIOSRescueHost(t *testing.T) {
	setup(t)
	t.Parallel()
	sd := buildImage(t, "bios-host-systemd-boot", fixture.ImageOptions{Layout: fixture.LayoutUEFI})
	bios := buildImage(t, "bios-host-grub", fixture.ImageOptions{Layout: fixture.LayoutBIOS})
	ext4ESP := buildImage(t, "bios-host-ext4-esp", fixture.ImageOptions{Layout: fixture.LayoutUEFI, FSTypes: map[int]string{1: "ext4"}})
	disks := []vm.Disk{{Path: sd.Path}, {Path: bios.Path}, {Path: ext4ESP.Path}}
	// The BIOS disk again, on NVMe and on AHCI, as it was before the
	// repair.
	for _, iface := range []string{"nvme", "ahci"} {
		p := filepath.Join(lab.dir, "bios-host-"+iface+".img")
		if out, err := exec.Command("cp", "--sparse=always", bios.Path, p).CombinedOutput(); err != nil {
			t.Fatalf("%v %s", err, out)
		}
		disks = append(disks, vm.Disk{Path: p, Interface: iface})
	}
	// The machine of the manual procedure as a disk image, a file on a
	// disk of the rescue host (vdd): prepared for UEFI, booted by BIOS.
	seed := buildImage(t, "bios-host-seed", fixture.ImageOptions{Layout: fixture.LayoutBIOS, Root: fixture.Options{Bootloader: fixture.BootSystemd}})
	scratch := filesystemWith(t, "bios-host-scratch", seed.Path)
	disks = append(disks, vm.Disk{Path: scratch})
	steps := rescue(t, vm.Machine{Firmware: vm.SeaBIOS, Disks: disks}, `
. /lib/vm.sh
step blkid blkid
snapshot
step efi-on nixrescue rebuild /dev/vda --efi on
step rebuild-systemd-boot nixrescue rebuild /dev/vda --json
mount /dev/vda1 /mnt && step fallback ls /mnt/EFI/BOOT && umount /mnt
step system-3 nixrescue run /dev/vda --read-only -q -- readlink -f /nix/var/nix/profiles/system-3-link
dd if=/dev/zero of=/dev/vdb bs=440 count=1 conv=notrunc 2>/dev/null
step doctor-grub-before nixrescue doctor /dev/vdb --json
step rebuild-grub nixrescue rebuild /dev/vdb --json
step doctor-grub-after nixrescue doctor /dev/vdb --json
step boot-partition nixrescue inspect /dev/vdb2
step esp-ext4 nixrescue rebuild /dev/vdc
step cgroup nixrescue run /dev/vdb --read-only -q -- sh -c 'cat /proc/self/cgroup; ls /sys/fs/cgroup'
step memory nixrescue run /dev/vdb --read-only -q --no-activate --memory 48M -- sh -c 'x=0123456789abcdef; while :; do x=$x$x; done'
limits() {
  : >/tmp/limits.out
  nixrescue run /dev/vdb --read-only -q --no-activate --isolate-pids --cpus 0.5 --pids-limit 64 -- sh -c 'sh -c "i=0; while [ \$i -lt 200 ]; do sleep 30 & i=\$((i+1)); done" 2>/dev/null; set -- /proc/[0-9]*; echo "count $#"; echo ready; sleep 8' >/tmp/limits.out 2>/dev/null &
  pid=$!
  i=0; until grep -q ready /tmp/limits.out || [ $i -ge 600 ]; do sleep 0.1; i=$((i+1)); done
  cat /sys/fs/cgroup/nixrescue-*/cpu.max /sys/fs/cgroup/nixrescue-*/pids.max
  grep count /tmp/limits.out
  wait $pid
}
step limits limits
sleeping() { for p in /proc/[0-9]*; do [ "$(cat $p/comm 2>/dev/null)" = sleep ] && echo "${p#/proc/}"; done; }
killed() {
  : >/tmp/killed.out
  nixrescue run /dev/vdb --read-only -q -- sh -c 'trap "" TERM; sleep 413 & echo ready; wait' >/tmp/killed.out 2>&1 &
  pid=$!
  i=0; until grep -q ready /tmp/killed.out || [ $i -ge 600 ]; do sleep 0.1; i=$((i+1)); done
  echo "running: $(sleeping)"
  kill -9 $pid
  i=0; while [ -n "$(sleeping)" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
  echo "left: $(sleeping)"
  nixrescue cleanup
}
step killed killed
for d in nvme0n1 sda; do step "$d" nixrescue run /dev/$d --read-only -v -- sh -c 'cat /etc/hostname; src=$(awk "\$5 == \"/\" {print \$(NF-1)}" /proc/self/mountinfo); echo "$src"; readlink -f "$src"'; done
unchanged bios
mkdir -p /mnt/scratch && mount /dev/vdd /mnt/scratch
cat > /tmp/grub.nix <<'EOF'
`+grubConfiguration+`EOF
image_config() { nixrescue run /mnt/scratch/bios-host-seed.img -q --no-activate -- sh -c 'cat > /etc/nixos/configuration.nix' </tmp/grub.nix; }
step image-config image_config
step rebuild-image nixrescue rebuild /mnt/scratch/bios-host-seed.img --json -v
step image-maps sh -c 'ls /sys/block; dmsetup ls'
umount /mnt/scratch
`)
	if s := wantExit(t, steps, "efi-on", 125); strings.Count(strings.TrimSpace(s.Stderr), "\n") != 0 || !strings.Contains(s.Stderr, "--efi on") || !strings.Contains(s.Stderr, "did not boot by EFI") {
		t.Errorf("--efi on on a host without EFI: want one line that says so:\n%s", s.Stderr)
	}
	r := rebuilt(t, steps, "rebuild-systemd-boot", "systemd-boot")
	if r.Bootloader.NVRAMEntry == "" {
		t.Errorf("the report does not say that no NVRAM entry was made: %+v", r.Bootloader)
	}
	if s := steps["rebuild-systemd-boot"]; strings.Count(s.Stderr, "no NVRAM boot entry") != 1 || !strings.Contains(s.Stderr, "fallback path EFI/BOOT/BOOTX64.EFI") {
		t.Errorf("a rebuild from a BIOS host should say once that no entry was made and that the fallback path boots:\n%s", s.Stderr)
	}
	if f := step(t, steps, "fallback").Stdout; !strings.Contains(f, "BOOTX64.EFI") {
		t.Errorf("no fallback loader on the ESP: %s", f)
	}
	system3 := strings.TrimSpace(wantExit(t, steps, "system-3", 0).Stdout)
	doctorSays(t, steps, "doctor-grub-before", "bootcode-missing", "nixrescue rebuild /dev/vdb")
	doctorSays(t, steps, "doctor-grub-after", "", "")
	g := rebuilt(t, steps, "rebuild-grub", "grub-bios")
	if len(g.DiskAliases) != 1 || g.DiskAliases[0].Name != "/dev/sdz" || g.DiskAliases[0].Device != "/dev/vdb" {
		t.Errorf("the configuration's /dev/sdz should be the virtio disk: %+v", g.DiskAliases)
	}
	// A partition that is not the root's, as the target: which to name.
	if s := wantExit(t, steps, "boot-partition", 125); strings.Count(strings.TrimSpace(s.Stderr), "\n") != 0 ||
		!strings.Contains(s.Stderr, "nixrescue: /dev/vdb2: partition 2 of /dev/vdb (/dev/vdb2 ext4 \"boot\")") ||
		!strings.Contains(s.Stderr, "holds no NixOS root: a partition as the target must be the root's: name the root's partition, 3 (/dev/vdb3), or the whole disk, /dev/vdb") {
		t.Errorf("inspect of the /boot partition: want one line naming the root's partition and the disk:\n%s", s.Stderr)
	}
	if s := wantExit(t, steps, "esp-ext4", 1); !strings.Contains(s.Stderr, "not a FAT EFI System Partition") {
		t.Errorf("an ESP that is not vfat: want bootctl's own error:\n%s", s.Stderr)
	}
	if s := wantExit(t, steps, "cgroup", 0); !strings.Contains(s.Stdout, "0::/") || !strings.Contains(s.Stdout, "nixrescue") {
		t.Errorf("the session's cgroup (v2):\n%s", s.Stdout)
	}
	if s := wantExit(t, steps, "memory", 137); !strings.Contains(s.Stderr, "killed for lack of memory") || !strings.Contains(s.Stderr, "--memory 48") {
		t.Errorf("--memory: want the OOM line:\n%s", s.Stderr)
	}
	// cgroup v2: the quota and the cap in the session's own cgroup, and a
	// fork bomb stopped at the cap.
	if s := wantExit(t, steps, "limits", 0); !strings.HasPrefix(s.Stdout, "50000 100000\n64\ncount ") {
		t.Errorf("--cpus 0.5 --pids-limit 64 (cgroup v2): want cpu.max 50000 100000 and pids.max 64:\n%s%s", s.Stdout, s.Stderr)
	} else if n, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(s.Stdout, "50000 100000\n64\ncount "))); err != nil || n > 64 || n < 32 {
		t.Errorf("a fork bomb under --pids-limit 64 (cgroup v2): %q processes", s.Stdout)
	}
	if s := wantExit(t, steps, "killed", 0); !regexp.MustCompile(`running: \d+\n`).MatchString(s.Stdout) || !strings.Contains(s.Stdout, "left: \n") {
		t.Errorf("after a SIGKILL of nixrescue the container's processes run on:\n%s%s", s.Stdout, s.Stderr)
	}
	for _, d := range []string{"nvme0n1", "sda"} {
		root := "/dev/" + d + map[bool]string{true: "p3", false: "3"}[d == "nvme0n1"]
		// The root is mounted by the name the machine knows it by,
		// which leads to it inside.
		if s := wantExit(t, steps, d, 0); !strings.Contains(s.Stdout, "nixfixture\n/dev/disk/by-uuid/") || !strings.Contains(s.Stdout, "\n"+root+"\n") {
			t.Errorf("%s: the session should run on its root %s, mounted by its UUID:\n%s", d, root, s.Stdout)
		} else if !strings.Contains(s.Stderr, "no-pivot mode") {
			t.Errorf("%s: on an initramfs the container should be entered without pivot_root:\n%s", d, s.Stderr)
		}
	}
	wantExit(t, steps, "unchanged-bios", 0)
	// GRUB onto an image, by NixOS's installer (no udevadm on its PATH):
	// its partitions device-mapper maps, which tell grub-install where
	// they start; gone after.
	wantExit(t, steps, "image-config", 0)
	if r := rebuilt(t, steps, "rebuild-image", "grub-bios"); len(r.DiskAliases) != 1 || r.DiskAliases[0].Name != "/dev/sdz" || !strings.HasPrefix(r.DiskAliases[0].Device, "/dev/loop") {
		t.Errorf("the image's /dev/sdz should be its loop device: %+v", r.DiskAliases)
	}
	if s := steps["rebuild-image"]; !strings.Contains(s.Stderr, "installing the GRUB 2 boot loader on /dev/sdz") || !strings.Contains(s.Stderr, "are device-mapper maps over /dev/loop") {
		t.Errorf("rebuild of an image: GRUB should be installed through device-mapper maps of its partitions:\n%s", s.Stderr)
	}
	if s := wantExit(t, steps, "image-maps", 0); strings.Contains(s.Stdout, "dm-") || !strings.Contains(s.Stdout, "No devices found") {
		t.Errorf("device-mapper maps left after the session:\n%s", s.Stdout)
	}
	if t.Failed() {
		return
	}
	seedAfter := fileOf(t, scratch, "bios-host-seed.img")
	parallel(func() {
		// No NVRAM entry: a fresh variable store, the fallback path.
		bootTo(t, vm.Machine{Firmware: vm.OVMF, Disks: []vm.Disk{{Path: sd.Path}}}, []string{"nixrescue-fixture: booting system " + system3})
	}, func() {
		bootTo(t, vm.Machine{Firmware: vm.SeaBIOS, Disks: []vm.Disk{{Path: bios.Path}}}, []string{"nixrescue-fixture: booting generation 3"})
	}, func() {
		bootTo(t, vm.Machine{Firmware: vm.SeaBIOS, Disks: []vm.Disk{{Path: seedAfter}}}, []string{"nixrescue-fixture: booting generation 3"})
	})
}

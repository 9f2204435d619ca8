package vm

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/nixrescue/nixrescue/hack/debs"
)

// InitramfsOptions say what goes into the rescue host's initramfs.
type InitramfsOptions struct {
	// Nixrescue is the static nixrescue under test: /bin/nixrescue (none
	// when empty).
	Nixrescue string
	// Init is /init; default the rescue host's (it runs /script).
	Init string
	// Files are more files, by path inside.
	Files map[string]string
	// Tools are host programs a rescue system has, copied with their
	// libraries to the same paths; default DefaultTools.
	Tools []string
	// DebTools are programs of packages hack/install-deps downloaded,
	// copied with their libraries to their paths in the package; default
	// DefaultDebTools. NoDebTools leaves them all out.
	DebTools   []DebTool
	NoDebTools bool
	// Modules are loaded at boot, in order; default DefaultModules.
	Modules []string
	// ExtraModules are modules built outside the kernel's package (.ko
	// files: OpenZFS's, ZFSModules), loaded after Modules, in order.
	ExtraModules []string
	// DebLibraries are more packages of libraries DebTools need
	// (ZFSLibraries).
	DebLibraries []string
}

// DefaultTools are what a rescue system has beside busybox: dmsetup
// maps an image's partitions with device-mapper (nixrescue does, for
// grub-install).
var DefaultTools = []string{"/usr/sbin/blkid", "/usr/bin/efibootmgr", "/usr/sbin/dmsetup"}

// DebTool is a program of a Debian package in the cache (hack/debs).
type DebTool struct{ Package, Path string }

// DefaultDebTools open encrypted and layered disks: cryptsetup, lvm and
// mdadm, as a rescue system has them.
var DefaultDebTools = []DebTool{{"cryptsetup-bin", "/sbin/cryptsetup"}, {"lvm2", "/sbin/lvm"}, {"mdadm", "/sbin/mdadm"}}

// ArmDebTools are an arm64 rescue host's programs beside busybox:
// util-linux's blkid (Debian's arm64 package), which nixrescue needs.
var ArmDebTools = []DebTool{{"util-linux", "/sbin/blkid"}}

// debLibraries are packages of libraries DefaultDebTools need that a host
// may lack.
var debLibraries = []string{"libdevmapper-event1.02.1"}

// DefaultModules give the rescue host its disks (virtio, NVMe, AHCI),
// filesystems (ext4, vfat), loop devices and EFI variables,
// and device-mapper, dm-crypt (with what cryptsetup's default
// aes-xts-plain64 and its checks need) and RAID1.
var DefaultModules = []string{"virtio_pci", "virtio_blk", "nvme", "ahci", "sd_mod", "ext4", "vfat", "loop", "efivarfs",
	"dm_mod", "dm_crypt", "xts", "algif_skcipher", "raid1"}

// BuildInitramfs writes the rescue host's initramfs to out (a gzipped
// newc cpio): Debian's busybox-static as its userland, the kernel modules
// with their dependencies, the tools with their libraries, nixrescue, and
// /init, which mounts what a rescue system mounts (cgroup2 only, efivarfs
// when booted by EFI), waits for the machine's disks, runs /script with
// its output on the second serial port, and powers off.
func BuildInitramfs(k *Kernel, o InitramfsOptions, out string) error {
	arm := k.Arch.Qemu != ""
	if o.Tools == nil {
		o.Tools = DefaultTools
		if arm {
			o.Tools = []string{} // this host's programs are not arm64's
		}
	}
	if o.Modules == nil {
		o.Modules = DefaultModules
		if arm {
			o.Modules = append(slices.Clone(DefaultModules), "virtio_console")
		}
	}
	dir, err := os.MkdirTemp(filepath.Dir(out), ".initramfs-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	for _, d := range []string{"bin", "sbin", "usr/bin", "usr/sbin", "lib64", "etc/vm", "proc", "sys", "dev", "run", "tmp", "mnt", "root", "var/tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	busybox, err := Busybox(k.Arch)
	if err != nil {
		return err
	}
	if err := copyTo(busybox, filepath.Join(dir, "bin/busybox"), 0o755); err != nil {
		return fmt.Errorf("busybox-static (hack/install-deps): %w", err)
	}
	if o.Nixrescue != "" {
		if err := copyTo(o.Nixrescue, filepath.Join(dir, "bin/nixrescue"), 0o755); err != nil {
			return err
		}
	}
	if err := copyTools(dir, o.Tools); err != nil {
		return err
	}
	if o.DebTools == nil && !o.NoDebTools {
		o.DebTools = DefaultDebTools
		if arm {
			o.DebTools = ArmDebTools
		}
	}
	if err := copyDebTools(dir, k.Arch, o.DebTools, o.DebLibraries); err != nil {
		return err
	}
	load, err := copyModules(k, o.Modules, o.ExtraModules, dir)
	if err != nil {
		return err
	}
	if o.Init == "" {
		o.Init = initScript
	}
	files := map[string]string{
		"init":           o.Init,
		"lib/vm.sh":      guestLibrary,
		"etc/vm/modules": strings.Join(load, "\n") + "\n",
		// Where the script speaks: the PC's second UART; the virt board
		// has one, so a virtio console there.
		"etc/vm/output": map[bool]string{false: "/dev/ttyS1\n", true: "/dev/hvc0\n"}[arm],
		"etc/passwd":    "root:x:0:0:root:/root:/bin/sh\n",
		"etc/group":     "root:x:0:\ndisk:x:6:\n",
		"etc/hostname":  "rescue\n",
	}
	for name, content := range o.Files {
		files[strings.TrimPrefix(name, "/")] = content
	}
	for name, content := range files {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o755); err != nil {
			return err
		}
	}
	return WriteCpio(dir, out)
}

// Busybox is Debian's busybox-static of architecture a: this host's own
// (/bin/busybox), or the one of a's package.
func Busybox(a debs.Arch) (string, error) {
	if a.Qemu == "" {
		return "/bin/busybox", nil
	}
	d, err := a.Unpack("busybox-static")
	if err != nil {
		return "", err
	}
	return filepath.Join(d, "bin/busybox"), nil
}

// copyModules copies the kernel's modules (and their dependencies) into
// the initramfs tree dir, with depmod's index, and returns the order the
// init loads them in (each after its soft dependencies).
func copyModules(k *Kernel, modules, extra []string, dir string) ([]string, error) {
	mods, err := k.moduleFiles(modules)
	if err != nil {
		return nil, err
	}
	var load []string
	for _, m := range modules {
		load = append(append(load, softDependencies[m]...), m)
	}
	for _, ko := range extra {
		if err := copyTo(ko, filepath.Join(dir, "lib/modules", k.Version, "extra", filepath.Base(ko)), 0o644); err != nil {
			return nil, err
		}
		load = append(load, strings.TrimSuffix(filepath.Base(ko), ".ko"))
	}
	for _, m := range mods {
		if err := copyTo(filepath.Join(k.Tree, m), filepath.Join(dir, m), 0o644); err != nil {
			return nil, err
		}
	}
	for _, f := range []string{"modules.order", "modules.builtin", "modules.builtin.modinfo"} {
		src := filepath.Join(k.Tree, "lib/modules", k.Version, f)
		if _, err := os.Stat(src); err == nil {
			if err := copyTo(src, filepath.Join(dir, "lib/modules", k.Version, f), 0o644); err != nil {
				return nil, err
			}
		}
	}
	if b, err := exec.Command("depmod", "-b", dir, k.Version).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("depmod: %v: %s", err, bytes.TrimSpace(b))
	}
	return load, nil
}

// WriteCpio archives dir (as root-owned files) into a gzipped newc cpio.
func WriteCpio(dir, out string) error {
	cmd := exec.Command("sh", "-c", `cd "$DIR" && find . | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0 | gzip -1 > "$OUT.tmp" && mv "$OUT.tmp" "$OUT"`)
	cmd.Env = append(os.Environ(), "DIR="+dir, "OUT="+out)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("cpio (hack/install-deps): %v: %s", err, bytes.TrimSpace(b))
	}
	return nil
}

// copyDebTools copies programs of packages in the cache to their paths
// in the package, under dir, with their libraries.
func copyDebTools(dir string, a debs.Arch, tools []DebTool, moreLibraries []string) error {
	var libPath []string
	libraries := moreLibraries
	if a.Qemu == "" {
		libraries = append(slices.Clone(debLibraries), moreLibraries...)
	}
	for _, p := range libraries {
		d, err := a.Unpack(p)
		if err != nil {
			return err
		}
		libPath = append(libPath, a.LibraryDirs(d)...)
	}
	var progs []program
	for _, t := range tools {
		d, err := a.Unpack(t.Package)
		if err != nil {
			return err
		}
		progs = append(progs, program{src: filepath.Join(d, t.Path), dst: t.Path})
	}
	return copyProgramsFor(dir, a, progs, libPath)
}

// copyTools copies host programs and their libraries to the same paths
// under dir.
func copyTools(dir string, tools []string) error {
	var progs []program
	for _, t := range tools {
		progs = append(progs, program{src: t, dst: t})
	}
	return copyProgramsFor(dir, debs.Native, progs, nil)
}

// program is a program to copy from src to dst (inside the initramfs).
type program struct{ src, dst string }

// copyProgramsFor copies programs of architecture a under dir with the
// libraries they need (those in libPath first), each library where the
// system's would be, and the ELF interpreter where the programs name it.
func copyProgramsFor(dir string, a debs.Arch, progs []program, libPath []string) error {
	libs := map[string]bool{}
	for _, p := range progs {
		if err := copyTo(p.src, filepath.Join(dir, p.dst), 0o755); err != nil {
			return fmt.Errorf("%s (hack/install-deps): %w", p.src, err)
		}
		deps, err := a.Libraries(p.src, libPath)
		if err != nil {
			return err
		}
		for _, d := range deps {
			libs[d] = true
		}
	}
	if len(libs) == 0 {
		return nil
	}
	// glibc loads it when a thread exits (pthread_exit, for zdb's
	// threads): ldd does not list it; initramfs-tools and NixOS's stage 1
	// copy it all the same.
	gcc, err := libgcc(a)
	if err != nil {
		return err
	}
	libs[gcc] = true
	for l := range libs {
		real, err := filepath.EvalSymlinks(l)
		if err != nil {
			return err
		}
		to := l
		if i := strings.Index(l, "/lib/"+a.Triplet+"/"); i > 0 && strings.HasPrefix(l, debs.Cache()) {
			to = "/usr" + l[i:] // from an unpacked package
		}
		if err := copyTo(real, filepath.Join(dir, to), 0o755); err != nil {
			return err
		}
	}
	if a.Qemu == "" {
		return nil
	}
	// The interpreter arm64's programs name (/lib/ld-linux-aarch64.so.1).
	if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(a.Loader)), 0o755); err != nil {
		return err
	}
	return os.Symlink("/usr/lib/"+a.Triplet+"/"+filepath.Base(a.Loader), filepath.Join(dir, a.Loader))
}

// libgcc is libgcc_s of architecture a: this host's, or a's sysroot's.
func libgcc(a debs.Arch) (string, error) {
	if a.Qemu == "" {
		return hostLibgcc, nil
	}
	root, err := a.Sysroot()
	if err != nil {
		return "", err
	}
	return filepath.Join(a.LibraryDirs(root)[0], "libgcc_s.so.1"), nil
}

// hostLibgcc is this host's libgcc_s (Debian's libgcc-s1).
const hostLibgcc = "/lib/x86_64-linux-gnu/libgcc_s.so.1"

func copyTo(src, dst string, mode os.FileMode) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	return os.WriteFile(dst, b, mode)
}

// initScript is the rescue host's /init: what a rescue system's own init
// leaves mounted (proc, sysfs, devtmpfs, a tmpfs /run, cgroup2 alone at
// /sys/fs/cgroup as on a systemd host of today, efivarfs when the
// firmware is EFI), the modules loaded, the disks waited for; then
// /script, its output on ttyS1 (hvc0 on arm64) and its exit status after it; then power
// off (the VM ends).
const initScript = `#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin:/sbin:/usr/bin:/usr/sbin HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp
mount -t cgroup2 cgroup2 /sys/fs/cgroup
echo /bin/modprobe > /proc/sys/kernel/modprobe
while read -r m; do modprobe "$m" || echo "vm: modprobe $m failed"; done < /etc/vm/modules
if [ -d /sys/firmware/efi ]; then mount -t efivarfs efivarfs /sys/firmware/efi/efivars; fi
hostname rescue
want=$(sed -n 's/.*nixrescue\.disks=\([0-9]*\).*/\1/p' /proc/cmdline)
i=0
while [ "$(ls /sys/class/block | grep -cE '^(vd[a-z]+|nvme[0-9]+n[0-9]+|sd[a-z]+)$')" -lt "${want:-0}" ] && [ $i -lt 200 ]; do
  sleep 0.05; i=$((i+1))
done
stty -F "$(cat /etc/vm/output)" raw -echo 2>/dev/null
cd /root
out=$(cat /etc/vm/output)
if [ -e /script ]; then
  sh /script </dev/null >"$out" 2>&1
  echo "NIXRESCUE-VM-EXIT=$?" >"$out"
else
  echo "vm: no /script" >"$out"
fi
sync
poweroff -f
`

// guestLibrary is /lib/vm.sh, for scripts: steps framed so that Steps
// can split the output, and the host's state, so that a script can check
// that nixrescue left the rescue host as it found it.
const guestLibrary = `# Sourced by scripts run in the rescue VM (hack/vm).

# step NAME COMMAND…: runs COMMAND with its stdout and stderr apart, each
# framed, then its exit status; always returns 0.
step() {
  _name=$1; shift
  "$@" </dev/null >/tmp/step.out 2>/tmp/step.err
  _rc=$?
  echo "@@@ stdout $_name"; cat /tmp/step.out
  echo "@@@ stderr $_name"; cat /tmp/step.err
  echo "@@@ exit $_name $_rc"
  return 0
}

# host_state prints what a session must leave as it found it: mounts,
# loop devices, nbd devices (and which serve a connection), device-mapper
# devices, /run, nixrescue's cgroups, and the programs running other than
# busybox's own (this script's).
host_state() {
  awk '{ for (i = 7; i <= NF; i++) if ($i == "-") { print $5, $(i+1), $(i+2); break } }' /proc/self/mountinfo | sort
  losetup -a 2>/dev/null | sort
  for d in /sys/block/nbd*; do [ -e "$d" ] && echo "$d" && ls "$d/pid" 2>/dev/null; done
  ls /dev/mapper 2>/dev/null | grep -v '^control$' | sort
  find /run | sort
  find /sys/fs/cgroup -type d -name 'nixrescue*' | sort
  for p in /proc/[0-9]*; do readlink "$p/exe" 2>/dev/null; done | grep -vx /bin/busybox | sort
}

# snapshot keeps the host's state; unchanged compares with it (a step
# named unchanged-LABEL whose stdout is the difference).
snapshot() { host_state > /tmp/state.before; }
unchanged() { host_state > /tmp/state.after; step "unchanged-$1" diff /tmp/state.before /tmp/state.after; }
`

package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nixrescue/nixrescue/hack/fixture"
	"github.com/nixrescue/nixrescue/hack/testenv"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// images are fixture disk images, built once per test binary and copied
// (sparse) for each test.
var images struct {
	once sync.Once
	dir  string
	err  error
	// by name: a layout, or a broken variant
	built map[string]*fixture.Image
}

// Broken variants of the BIOS layout.
const (
	imgTruncated   = "truncated"
	imgZeroedRoot  = "zeroed-root"
	imgBadUUID     = "bad-uuid"
	imgBadUUIDNoFl = "bad-uuid-nofail"
	imgLUKS        = "luks"
	imgEmpty       = "empty-ext4"
	// Variants for what a new user met (correctness_integration_test.go).
	imgRootOptions = "root-options"
	imgDupLabel    = "duplicate-label"
	imgUnmountable = "unmountable-root"
	// Hostile and faulty variants (hostile_integration_test.go).
	imgLinks        = "hostile-links"
	imgJunkFstab    = "junk-fstab"
	imgHalfway      = "mount-fails-halfway"
	imgSlowActivate = "slow-activate"
	// The BIOS layout as qcow2 (image_integration_test.go).
	imgQcow2 = "bios-qcow2"
)

func buildImages() {
	images.built = map[string]*fixture.Image{}
	images.dir, images.err = os.MkdirTemp("/var/tmp", "nixrescue-images-")
	if images.err != nil {
		return
	}
	build := func(name string, o fixture.ImageOptions) *fixture.Image {
		if images.err != nil {
			return nil
		}
		img, err := fixture.BuildImage(filepath.Join(images.dir, name+".img"), o)
		if err != nil {
			images.err = fmt.Errorf("build image %s: %w", name, err)
			return nil
		}
		images.built[name] = img
		return img
	}
	for _, l := range fixture.DiskLayouts {
		build(string(l), fixture.ImageOptions{Layout: l, Root: fixture.Options{Bootloader: map[bool]string{true: fixture.BootSystemd}[l == fixture.LayoutEFI]}})
	}
	missing := "/dev/disk/by-uuid/00000000-dead-4bad-8bad-000000000000 /data ext4 defaults 0 2\n"
	build(imgBadUUID, fixture.ImageOptions{Layout: fixture.LayoutBIOS, ExtraFstab: missing})
	build(imgBadUUIDNoFl, fixture.ImageOptions{Layout: fixture.LayoutBIOS, ExtraFstab: strings.Replace(missing, "defaults", "defaults,nofail", 1)})
	if bios := build(imgTruncated, fixture.ImageOptions{Layout: fixture.LayoutBIOS}); bios != nil {
		if err := os.Truncate(bios.Path, 60<<20); err != nil {
			images.err = err
		}
	}
	if z := build(imgZeroedRoot, fixture.ImageOptions{Layout: fixture.LayoutBIOS}); z != nil {
		// The root is partition 3, after 1 MiB of GPT, 1 MiB bios_grub
		// and 32 MiB of /boot; ext4's superblock is 1 KiB into it.
		f, err := os.OpenFile(z.Path, os.O_WRONLY, 0)
		if err == nil {
			_, err = f.WriteAt(make([]byte, 4096), (1+1+32)<<20)
			f.Close()
		}
		if err != nil {
			images.err = err
		}
	}
	buildHostileImages(build)
	buildLayoutImages(build)
	build(imgRootOptions, fixture.ImageOptions{Layout: fixture.LayoutBIOS, RootOptions: "noatime,commit=60,x-systemd.device-timeout=10s"})
	build(imgDupLabel, fixture.ImageOptions{Layout: fixture.LayoutBIOS, Labels: map[int]string{2: "nixos"}, ExtraFstab: "LABEL=nixos /data ext4 defaults 0 2\n"})
	build(imgUnmountable, fixture.ImageOptions{Layout: fixture.LayoutBIOS, Unmountable: 3})
	if images.err == nil {
		// A LUKS container: blkid knows it by its header.
		p := filepath.Join(images.dir, imgLUKS+".img")
		h := make([]byte, 592)
		copy(h, "LUKS\xba\xbe\x00\x01aes")
		copy(h[40:], "xts-plain64")
		copy(h[72:], "sha256")
		copy(h[168:], "0f2d8f4e-6c2a-4a3e-9b9e-1234567890ab")
		images.err = os.WriteFile(p, h, 0o644)
		if images.err == nil {
			images.err = os.Truncate(p, 16<<20)
		}
		images.built[imgLUKS] = &fixture.Image{Path: p}
	}
	if bios := images.built[string(fixture.LayoutBIOS)]; images.err == nil && bios != nil {
		p := filepath.Join(images.dir, imgQcow2+".img")
		if out, err := exec.Command("qemu-img", "convert", "-O", "qcow2", bios.Path, p).CombinedOutput(); err != nil {
			images.err = fmt.Errorf("qemu-img convert: %v %s", err, out)
		}
		images.built[imgQcow2] = &fixture.Image{Path: p, Root: bios.Root, Partitions: bios.Partitions, Fstab: bios.Fstab}
	}
	if images.err == nil {
		// A filesystem with no NixOS on it.
		p := filepath.Join(images.dir, imgEmpty+".img")
		if images.err = os.WriteFile(p, nil, 0o644); images.err == nil {
			images.err = os.Truncate(p, 16<<20)
		}
		if images.err == nil {
			if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-L", "data", p).CombinedOutput(); err != nil {
				images.err = fmt.Errorf("mkfs: %v %s", err, out)
			}
		}
		images.built[imgEmpty] = &fixture.Image{Path: p}
	}
}

// image copies fixture image name into the test's directory.
func image(t *testing.T, name string) (string, *fixture.Image) {
	t.Helper()
	images.once.Do(buildImages)
	if images.err != nil {
		t.Fatal(images.err)
	}
	img := images.built[name]
	dst := filepath.Join(t.TempDir(), name+".img")
	if out, err := exec.Command("cp", "--sparse=always", img.Path, dst).CombinedOutput(); err != nil {
		t.Fatalf("copy image: %v %s", err, out)
	}
	return dst, img
}

func fileHash(t *testing.T, p string) string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

// imageSession runs nixrescue with args and checks that the host is as
// before.
func imageSession(t *testing.T, args ...string) result {
	t.Helper()
	host := testenv.SnapshotHost(t)
	r := nixrescue(t, args...)
	testenv.AssertHostUnchanged(t, host)
	return r
}

var (
	loopRE = regexp.MustCompile(`/dev/loop[0-9]+`)
	dateRE = regexp.MustCompile(`"date": "[^"]*"`)
)

func TestInspectImagesGolden(t *testing.T) {
	testenv.Require(t)
	for _, l := range fixture.DiskLayouts {
		t.Run(string(l), func(t *testing.T) {
			img, _ := image(t, string(l))
			r := imageSession(t, "inspect", img, "--json")
			if r.code != 0 {
				t.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			var report map[string]any
			if err := json.Unmarshal([]byte(r.stdout), &report); err != nil {
				t.Fatalf("not JSON: %v\n%s", err, r.stdout)
			}
			got := strings.ReplaceAll(r.stdout, img, "IMAGE")
			got = loopRE.ReplaceAllString(got, "/dev/loopN")
			got = dateRE.ReplaceAllString(got, `"date": "DATE"`)
			golden := filepath.Join("testdata", "inspect-"+string(l)+".json")
			if *update {
				os.MkdirAll("testdata", 0o755)
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (go test ./cmd/nixrescue -update writes it)", err)
			}
			if got != string(want) {
				t.Errorf("inspect --json differs from %s:\n%s", golden, got)
			}
		})
	}
}

func TestInspectText(t *testing.T) {
	testenv.Require(t)
	img, _ := image(t, string(fixture.LayoutBIOS))
	r := imageSession(t, "inspect", img)
	for _, want := range []string{"partition table gpt", "bios_grub", "NixOS root: /dev/loop", "/boot", "* 2", "bootloader: grub-bios on /dev/sdz", "this host booted by EFI: false"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("inspect lacks %q:\n%s", want, r.stdout)
		}
	}
}

// mountsInside lists "mountpoint fstype" of the target's filesystems as
// the container sees them.
const mountsInside = `awk '$2 == "/" || $2 == "/boot" || $2 == "/nix" || $2 == "/home" || $2 == "/data" || $2 == "/mnt" {print $2, $3}' /proc/mounts | sort -u`

func TestMountsAsTheFstabSays(t *testing.T) {
	testenv.Require(t)
	want := map[fixture.DiskLayout]string{
		fixture.LayoutBIOS:   "/ ext4\n/boot ext4\n",
		fixture.LayoutEFI:    "/ ext4\n/boot " + map[bool]string{true: "vfat", false: "ext4"}[fixture.KernelHasVFAT()] + "\n",
		fixture.LayoutBtrfs:  "/ btrfs\n/home btrfs\n/nix btrfs\n",
		fixture.LayoutXFSNix: "/ ext4\n/nix xfs\n",
		fixture.LayoutBare:   "/ ext4\n",
		// A root made afresh: the session's tmpfs, the system on /nix.
		fixture.LayoutImpermanence: "/ tmpfs\n/boot ext4\n/nix ext4\n",
	}
	for _, l := range fixture.DiskLayouts {
		name := string(l)
		if l == fixture.LayoutEFI && !fixture.KernelHasVFAT() {
			name += "-esp-ext4-standin-no-vfat-in-kernel"
		}
		t.Run(name, func(t *testing.T) {
			img, _ := image(t, string(l))
			before := fileHash(t, img)
			r := imageSession(t, "run", img, "-q", "--", "sh", "-c", mountsInside+"; readlink /run/current-system; cat /etc/hostname")
			if r.code != 0 {
				t.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			if !strings.HasPrefix(r.stdout, want[l]) || !strings.Contains(r.stdout, "nixos-system-nixfixture") || !strings.HasSuffix(r.stdout, "nixfixture\n") {
				t.Errorf("inside:\n%s\nwant mounts:\n%s", r.stdout, want[l])
			}
			if l == fixture.LayoutBIOS || l == fixture.LayoutEFI {
				r = imageSession(t, "run", img, "-q", "--", "cat", "/boot/nixrescue-boot-marker")
				if r.code != 0 || r.stdout != "the /boot filesystem\n" {
					t.Errorf("/boot inside: exit %d %q %s", r.code, r.stdout, r.stderr)
				}
			}
			// Activation changed the image (links made again); --read-only
			// changes nothing at all.
			_ = before
			before = fileHash(t, img)
			r = imageSession(t, "run", img, "--read-only", "--", "sh", "-c", "touch /nix/var/x 2>/dev/null && echo writable || echo read-only")
			if r.code != 0 || strings.TrimSpace(r.stdout) != "read-only" {
				t.Errorf("--read-only: exit %d %q %s", r.code, r.stdout, r.stderr)
			}
			if fileHash(t, img) != before {
				t.Error("--read-only changed the image")
			}
		})
	}
}

func TestCuratedDev(t *testing.T) {
	testenv.Require(t)
	img, fx := image(t, string(fixture.LayoutBIOS))
	root, boot := fx.Partitions[3], fx.Partitions[2]
	script := `ls /dev | grep -E '^(loop|sd|vd|nvme)' | tr '\n' ' '; echo; ` +
		`readlink /dev/disk/by-uuid/` + root.UUID + `; readlink /dev/disk/by-label/boot; readlink /dev/disk/by-partuuid/` + boot.PartUUID + `; ` +
		`readlink /dev/disk/by-partlabel/root; test -b /dev/disk/by-uuid/` + root.UUID + ` && echo block`
	r := imageSession(t, "run", img, "-q", "--", "sh", "-c", script)
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	lines := strings.Split(r.stdout, "\n")
	devs := strings.Fields(lines[0])
	// The loop disk and its three partitions, and the name the target's
	// configuration gives its disk (/dev/sdz, with its partitions), which
	// leads to the same devices; nothing else.
	if len(devs) != 8 || !loopRE.MatchString("/dev/"+devs[0]) || devs[4] != "sdz" {
		t.Errorf("devices inside: %v", devs)
	}
	nums := imageSession(t, "run", img, "-q", "--", "sh", "-c", `for d in /dev/* /dev/*/*; do [ -b "$d" ] && stat -c '%t:%T' "$d"; done | sort | uniq -c`)
	if got := strings.Fields(nums.stdout); len(got) != 8 || got[0] != "2" || got[2] != "2" || got[4] != "2" || got[6] != "2" {
		t.Errorf("block device numbers inside (count, major:minor): %v", got)
	}
	if len(lines) < 6 || !strings.HasSuffix(lines[1], "p3") || !strings.HasSuffix(lines[2], "p2") || !strings.HasSuffix(lines[3], "p2") || !strings.HasSuffix(lines[4], "p3") || lines[5] != "block" {
		t.Errorf("/dev/disk links inside:\n%s", r.stdout)
	}
	// --dev host shows the host's devices instead.
	r = imageSession(t, "run", img, "-q", "--dev", "host", "--", "sh", "-c", "ls /dev | grep -c -E '^(loop|vd|sd)'")
	if r.code != 0 || strings.TrimSpace(r.stdout) == "4" {
		t.Errorf("--dev host: exit %d, %q", r.code, r.stdout)
	}
}

func TestOverridesBootAndMount(t *testing.T) {
	testenv.Require(t)
	img, _ := image(t, string(fixture.LayoutBIOS))
	r := imageSession(t, "run", img, "-q", "--boot", "2", "--mount", "2:/mnt", "--", "sh", "-c", mountsInside+"; ls /mnt")
	if r.code != 0 || !strings.Contains(r.stdout, "/boot ext4\n/mnt ext4\n") || !strings.Contains(r.stdout, "nixrescue-boot-marker") {
		t.Errorf("exit %d:\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	r = imageSession(t, "run", img, "-q", "--mount", "nonsense", "--", "true")
	if r.code != 125 || !strings.Contains(r.stderr, "DEVICE:/PATH") {
		t.Errorf("bad --mount: exit %d %s", r.code, r.stderr)
	}
}

func TestFstabNamingAnotherDisk(t *testing.T) {
	testenv.Require(t)
	img, _ := image(t, imgBadUUID)
	before := fileHash(t, img)
	r := imageSession(t, "run", img, "-q", "--", "true")
	if r.code != 125 || !strings.Contains(r.stderr, "/data") || !strings.Contains(r.stderr, "--mount DEVICE:/data") || strings.Count(strings.TrimSpace(r.stderr), "\n") > 0 {
		t.Errorf("without nofail: exit %d, stderr %q", r.code, r.stderr)
	}
	if fileHash(t, img) != before {
		t.Error("a refused session changed the image")
	}
	img, _ = image(t, imgBadUUIDNoFl)
	r = imageSession(t, "inspect", img, "--json")
	if r.code != 0 || !strings.Contains(r.stdout, `"reason": "not on the target disk (nofail)"`) {
		t.Errorf("nofail: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	r = imageSession(t, "run", img, "-q", "--", "sh", "-c", mountsInside)
	if r.code != 0 || r.stdout != "/ ext4\n/boot ext4\n" {
		t.Errorf("nofail session: exit %d %q %s", r.code, r.stdout, r.stderr)
	}
}

func TestBadTargets(t *testing.T) {
	testenv.Require(t)
	cases := []struct {
		name, image, want string
	}{
		{"truncated image", imgTruncated, "truncated"},
		{"zeroed root superblock", imgZeroedRoot, "no filesystem recognised"},
		// Without cryptsetup (this host has none) it says which package;
		// with it, that the header is not a whole one. (The VM lane opens
		// real LUKS volumes: hack/vm.)
		{"LUKS", imgLUKS, "cryptsetup"},
		{"a filesystem without NixOS", imgEmpty, "no NixOS root found"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			img, _ := image(t, c.image)
			before := fileHash(t, img)
			for _, cmd := range []string{"inspect", "run"} {
				args := []string{cmd, img}
				if cmd == "run" {
					args = append(args, "--", "true")
				}
				r := imageSession(t, args...)
				lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
				if r.code != 125 || len(lines) != 1 || !strings.Contains(lines[0], c.want) {
					t.Errorf("%s: exit %d, stderr %q, want one line with %q", cmd, r.code, r.stderr, c.want)
				}
			}
			if fileHash(t, img) != before {
				t.Error("the image changed")
			}
		})
	}
	r := imageSession(t, "inspect", "/nonexistent/disk.img")
	if r.code != 125 || !strings.Contains(r.stderr, "no such file, device or directory") {
		t.Errorf("missing path: exit %d %s", r.code, r.stderr)
	}
	r = imageSession(t, "inspect", t.TempDir())
	if r.code != 125 || !strings.Contains(r.stderr, "not a NixOS root") {
		t.Errorf("empty directory: exit %d %s", r.code, r.stderr)
	}
	r = imageSession(t, "inspect", "/dev/null")
	if r.code != 125 || !strings.Contains(r.stderr, "name a disk") {
		t.Errorf("a character device: exit %d %s", r.code, r.stderr)
	}
}

// attach attaches img to a loop device as a test of a real disk would
// have it, optionally with its partitions (partx -a); detached at cleanup.
func attach(t *testing.T, img string, partitions bool) string {
	t.Helper()
	out, err := exec.Command("losetup", "--find", "--show", img).Output()
	if err != nil {
		t.Fatalf("losetup: %v", err)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() {
		exec.Command("partx", "-d", dev).Run()
		exec.Command("losetup", "-d", dev).Run()
	})
	if partitions {
		if out, err := exec.Command("partx", "-a", dev).CombinedOutput(); err != nil {
			t.Fatalf("partx -a: %v %s", err, out)
		}
	}
	return dev
}

func TestDiskAndPartitionTargets(t *testing.T) {
	testenv.Require(t)
	img, _ := image(t, string(fixture.LayoutBIOS))
	disk := attach(t, img, false)
	// A whole disk whose partitions the kernel does not know: nixrescue
	// adds them, and removes them after.
	r := imageSession(t, "run", disk, "-q", "--", "sh", "-c", mountsInside)
	if r.code != 0 || r.stdout != "/ ext4\n/boot ext4\n" {
		t.Errorf("disk %s: exit %d %q %s", disk, r.code, r.stdout, r.stderr)
	}
	if _, err := os.Stat(disk + "p3"); err == nil {
		t.Errorf("%sp3 left behind", disk)
	}
	// Read-only (inspect is): the partitions are added all the same.
	r = imageSession(t, "inspect", disk)
	if r.code != 0 || !strings.Contains(r.stdout, "NixOS root: "+disk+"p3") {
		t.Errorf("inspect %s: exit %d %s %s", disk, r.code, r.stdout, r.stderr)
	}
	if _, err := os.Stat(disk + "p3"); err == nil {
		t.Errorf("%sp3 left behind by inspect", disk)
	}
	img2, _ := image(t, string(fixture.LayoutBIOS))
	disk2 := attach(t, img2, true)
	// A partition the kernel knows: it is the root; its disk is used.
	r = imageSession(t, "run", disk2+"p3", "-q", "--", "sh", "-c", mountsInside+"; ls /dev | grep -c loop")
	if r.code != 0 || r.stdout != "/ ext4\n/boot ext4\n4\n" {
		t.Errorf("partition %sp3: exit %d %q %s", disk2, r.code, r.stdout, r.stderr)
	}
	if _, err := os.Stat(disk2 + "p3"); err != nil {
		t.Errorf("the kernel's own partition %sp3 was removed", disk2)
	}
	r = imageSession(t, "inspect", disk2+"p2")
	if r.code != 125 || !strings.Contains(r.stderr, "no NixOS root") {
		t.Errorf("the /boot partition as target: exit %d %s", r.code, r.stderr)
	}
}

func TestTargetInUse(t *testing.T) {
	testenv.Require(t)
	img, _ := image(t, string(fixture.LayoutBIOS))
	host := testenv.SnapshotHost(t)
	first, _ := startSession(t, img, "echo ready; exec sleep 60")
	r := nixrescue(t, "run", img, "-q", "--", "true")
	want := fmt.Sprintf("in use by nixrescue (pid %d, ", first.Process.Pid)
	if r.code != 125 || !strings.Contains(r.stderr, want) {
		t.Errorf("second session: exit %d, stderr %q, want %q", r.code, r.stderr, want)
	}
	// cleanup leaves the live session alone.
	r = nixrescue(t, "cleanup", "--json")
	if r.code != 0 || !strings.Contains(r.stdout, `"live": [`) || strings.Contains(r.stdout, `"removed": [\n    "`) {
		t.Errorf("cleanup with a live session: exit %d %s %s", r.code, r.stdout, r.stderr)
	}
	first.Process.Signal(syscall.SIGTERM)
	waitExit(t, first)
	testenv.AssertHostUnchanged(t, host)
}

func TestMountedReadWriteElsewhereIsRefused(t *testing.T) {
	testenv.Require(t)
	img, _ := image(t, string(fixture.LayoutBIOS))
	dev := attach(t, img, true)
	mnt := t.TempDir()
	if out, err := exec.Command("mount", dev+"p2", mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount: %v %s", err, out)
	}
	defer exec.Command("umount", mnt).Run()
	r := nixrescue(t, "inspect", dev)
	if r.code != 125 || !strings.Contains(r.stderr, "mounted read-write at "+mnt) || !strings.Contains(r.stderr, "--force") {
		t.Errorf("exit %d, stderr %q", r.code, r.stderr)
	}
	r = nixrescue(t, "run", dev, "--force", "-q", "--", "cat", "/boot/nixrescue-boot-marker")
	if r.code != 0 || !strings.Contains(r.stderr, "going on because of --force") {
		t.Errorf("--force: exit %d %s", r.code, r.stderr)
	}
}

func TestImageSessionEndings(t *testing.T) {
	testenv.Require(t)
	t.Run("error exit", func(t *testing.T) {
		img, _ := image(t, string(fixture.LayoutBtrfs))
		r := imageSession(t, "run", img, "-q", "--", "sh", "-c", "exit 3")
		if r.code != 3 {
			t.Errorf("exit %d: %s", r.code, r.stderr)
		}
	})
	t.Run("SIGINT", func(t *testing.T) {
		img, _ := image(t, string(fixture.LayoutXFSNix))
		host := testenv.SnapshotHost(t)
		c, _ := startSession(t, img, "echo ready; exec sleep 60")
		c.Process.Signal(syscall.SIGINT)
		if code := waitExit(t, c); code != 130 {
			t.Errorf("exit %d", code)
		}
		testenv.AssertHostUnchanged(t, host)
	})
	t.Run("SIGKILL then cleanup", func(t *testing.T) {
		img, _ := image(t, string(fixture.LayoutBIOS))
		host := testenv.SnapshotHost(t)
		c, _ := startSession(t, img, "echo ready; exec sleep 60")
		c.Process.Kill()
		waitExit(t, c)
		// With the embedded backend the host's mount table never saw the
		// session's mounts (a mount namespace of its own); containerd's
		// shim needs them in the host's, in the session's private tree,
		// until cleanup.
		now := testenv.SnapshotHost(t)
		if backend == "embedded" && !bytes.Equal([]byte(strings.Join(now.Mounts, "\n")), []byte(strings.Join(host.Mounts, "\n"))) {
			t.Errorf("mounts on the host after SIGKILL")
		}
		r := nixrescue(t, "cleanup")
		if r.code != 0 || !strings.Contains(r.stdout, "removed what session") {
			t.Errorf("cleanup: exit %d %q %s", r.code, r.stdout, r.stderr)
		}
		testenv.AssertHostUnchanged(t, host)
		r = nixrescue(t, "inspect", img)
		if r.code != 0 {
			t.Errorf("the image cannot be opened after cleanup: %s", r.stderr)
		}
	})
}

func TestTwoRootsAskForRootPart(t *testing.T) {
	testenv.Require(t)
	img, _ := image(t, string(fixture.LayoutBIOS))
	// Make the /boot partition look like a NixOS root too.
	dev := attach(t, img, true)
	mnt := t.TempDir()
	if out, err := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-ec",
		`mount "$1" "$2"; mkdir -p "$2/etc"; touch "$2/etc/NIXOS"; umount "$2"`, "sh", dev+"p2", mnt).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	exec.Command("partx", "-d", dev).Run()
	exec.Command("losetup", "-d", dev).Run()
	r := imageSession(t, "inspect", img)
	if r.code != 125 || !strings.Contains(r.stderr, "2 NixOS roots found") || !strings.Contains(r.stderr, "--root-part N") {
		t.Errorf("exit %d, stderr %q", r.code, r.stderr)
	}
	r = imageSession(t, "inspect", img, "--root-part", "3", "--json")
	if r.code != 0 || !strings.Contains(r.stdout, `"device": "/dev/loop`) {
		t.Errorf("--root-part 3: exit %d %s", r.code, r.stderr)
	}
	r = imageSession(t, "inspect", img, "--root-part", "1")
	if r.code != 125 || !strings.Contains(r.stderr, "--root-part 1 holds no NixOS root") {
		t.Errorf("--root-part 1: exit %d %s", r.code, r.stderr)
	}
}

// An embedded session on an image is the process the user started, in a
// mount namespace of its own from its first instruction (package
// privatens): no copy of nixrescue re-executed to get there. With
// containerd it stays in the host's namespace, where the shim sees its
// mounts.
func TestImageSessionIsOneProcess(t *testing.T) {
	testenv.Require(t)
	img, _ := image(t, string(fixture.LayoutBIOS))
	host := testenv.SnapshotHost(t)
	c, _ := startSession(t, img, "echo ready; exec sleep 60")
	pid := c.Process.Pid
	theirs, err1 := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", pid))
	ours, err2 := os.Readlink("/proc/self/ns/mnt")
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	if private := theirs != ours; private != (backend == "embedded") {
		t.Errorf("backend %s: nixrescue's mount namespace %s, the host's %s", backend, theirs, ours)
	}
	// No child of it runs nixrescue's commands (a re-execution would).
	procs, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if len(f) < 2 || f[1] != fmt.Sprint(pid) {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join(filepath.Dir(p), "cmdline"))
		if args := strings.Split(string(cmdline), "\x00"); len(args) > 1 && args[1] == "run" {
			t.Errorf("nixrescue %d has a child running %q", pid, args)
		}
	}
	c.Process.Signal(syscall.SIGTERM)
	waitExit(t, c)
	testenv.AssertHostUnchanged(t, host)
}

// TestEmbeddedSessionInTheHostsNamespace: when privatens leaves the
// command in the host's mount namespace (something exists at containerd's
// socket path, but no containerd answers there), the embedded session
// mounts in a private tree of the host's namespace: still one process, its
// container works, and what a SIGKILL leaves there cleanup undoes.
func TestEmbeddedSessionInTheHostsNamespace(t *testing.T) {
	testenv.Require(t)
	if backend != "embedded" {
		t.Log("the suite's embedded pass runs it: it chooses its backend itself")
		return
	}
	img, _ := image(t, string(fixture.LayoutBIOS))
	address := filepath.Join(t.TempDir(), "containerd.sock")
	if err := os.WriteFile(address, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	auto := []string{"--backend", "auto", "--address", address}
	host := testenv.SnapshotHost(t)
	r := resultOf(t, exec.Command(binary, append(append([]string{"run", img}, auto...), "-v", "--", "cat", "/boot/nixrescue-boot-marker")...))
	if r.code != 0 || !strings.Contains(r.stderr, "backend embedded (auto: containerd at ") {
		t.Fatalf("run: exit %d\n%s", r.code, r.stderr)
	}
	testenv.AssertHostUnchanged(t, host)

	c := exec.Command(binary, append(append([]string{"run", img}, auto...), "-q", "--", "sh", "-c", "echo ready; exec sleep 60")...)
	var stderr safeBuffer
	c.Stderr = &stderr
	out, err := c.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	c.WaitDelay = 2 * time.Second
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	if line, _ := bufio.NewReader(out).ReadString('\n'); line != "ready\n" {
		c.Process.Kill()
		waitExit(t, c)
		t.Fatalf("no ready: %q %s", line, stderr.String())
	}
	theirs, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", c.Process.Pid))
	ours, _ := os.Readlink("/proc/self/ns/mnt")
	if theirs != ours {
		t.Errorf("nixrescue's mount namespace %s is not the host's %s", theirs, ours)
	}
	c.Process.Kill()
	waitExit(t, c)
	if r := nixrescue(t, "cleanup"); r.code != 0 {
		t.Errorf("cleanup: exit %d %s", r.code, r.stderr)
	}
	testenv.AssertHostUnchanged(t, host)
}

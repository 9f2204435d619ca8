package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nixrescue/nixrescue/hack/fixture"
	"github.com/nixrescue/nixrescue/hack/testenv"
	"github.com/nixrescue/nixrescue/hack/vm"
	"github.com/nixrescue/nixrescue/runtime/commands"
	"github.com/nixrescue/nixrescue/runtime/mount"
)

// Images with a real Nix and GRUB, built once per run.
const (
	imgSeed    = "seed"     // BIOS disk, configuration for systemd-boot: the machine of the manual procedure's story: prepared for UEFI, booted by BIOS
	imgRealNix = "real-nix" // BIOS disk, GRUB on /dev/sdz
	imgNoESP   = "no-esp"   // UEFI disk, systemd-boot, but the fstab mounts nothing on /boot
	imgFlake   = "flake"    // BIOS disk, GRUB on /dev/sdz, the configuration a flake
)

var realNixImages sync.Once

func realNixImage(t *testing.T, name string) string {
	t.Helper()
	images.once.Do(buildImages)
	realNixImages.Do(func() {
		if images.err != nil {
			return
		}
		if missing := fixture.HostToolsMissing(); missing != "" {
			images.err = &missingTools{missing}
			return
		}
		for n, o := range map[string]fixture.ImageOptions{
			imgSeed:    {Layout: fixture.LayoutBIOS, Root: fixture.Options{RealNix: true, Bootloader: fixture.BootSystemd}},
			imgRealNix: {Layout: fixture.LayoutBIOS, Root: fixture.Options{RealNix: true}},
			imgFlake:   {Layout: fixture.LayoutBIOS, Root: fixture.Options{RealNix: true, Flake: true}},
			imgNoESP: {Layout: fixture.LayoutUEFI, Root: fixture.Options{RealNix: true},
				Fstab: "# fileSystems.\"/boot\" was lost from hardware-configuration.nix\n/dev/disk/by-label/nixos / ext4 defaults 0 1\n"},
		} {
			img, err := fixture.BuildImage(filepath.Join(images.dir, n+".img"), o)
			if err != nil {
				images.err = err
				return
			}
			images.built[n] = img
		}
	})
	p, _ := image(t, name)
	return p
}

// grubOnImages says whether GRUB for BIOS can be installed on a disk
// image from this host: nixrescue maps an image's partitions with
// device-mapper for grub-install where the kernel has it (the VM lane's
// does; this project's CI machine's does not, and there the installation
// is proven in the VM lane, TestBIOSRescueHost).
var grubOnImages = mount.DMPartitionsAvailable() == nil

// rebuildFlags are what a rebuild of a GRUB image needs on this host:
// --no-install-bootloader where GRUB cannot be installed on an image (the
// real-Nix fixtures have GRUB installed already, as their machine's
// installation left it, and grub.cfg is written all the same).
func rebuildFlags() []string {
	if grubOnImages {
		return nil
	}
	return []string{"--no-install-bootloader"}
}

// noGRUBHere is the start of the refusal of a rebuild that would install
// GRUB for BIOS on an image where the kernel has no device-mapper.
const noGRUBHere = "GRUB for BIOS cannot be installed on /dev/sdz (here /dev/loop"

type missingTools struct{ what string }

func (m *missingTools) Error() string { return "the real-Nix fixtures need " + m.what }

// writeConfiguration replaces the target's configuration.nix, as a user
// would with an editor inside the container.
func writeConfiguration(t *testing.T, img, loader string) {
	t.Helper()
	conf := `{ config, pkgs, ... }:
{
  imports = [ ./hardware-configuration.nix ];
  networking.hostName = "nixfixture";
` + loader + `  system.stateVersion = "24.05";
}
`
	c := command(context.Background(), "run", img, "-q", "--no-activate", "--", "sh", "-c", "cat > /etc/nixos/configuration.nix")
	c.Stdin = strings.NewReader(conf)
	if out, err := c.CombinedOutput(); err != nil {
		t.Fatalf("edit configuration.nix: %v %s", err, out)
	}
}

const grubOnSdz = `  boot.loader.grub.enable = true;
  boot.loader.grub.device = "/dev/sdz";
`

// targetFiles reads, from inside, the files a rebuild must leave alone
// (resolv.conf and nix.conf, links and contents) and the profile.
func targetFiles(t *testing.T, img string) string {
	t.Helper()
	r := nixrescue(t, "run", img, "--read-only", "--dns", "none", "--", "sh", "-c",
		"readlink /etc/resolv.conf; cat /etc/resolv.conf; readlink /etc/nix/nix.conf; cat /etc/nix/nix.conf")
	if r.code != 0 {
		t.Fatalf("read the target's files: %s", r.stderr)
	}
	return r.stdout
}

func profileGeneration(t *testing.T, img string) string {
	t.Helper()
	r := nixrescue(t, "run", img, "--read-only", "--", "readlink", "/nix/var/nix/profiles/system")
	if r.code != 0 {
		t.Fatalf("read the profile: %s", r.stderr)
	}
	return strings.TrimSpace(r.stdout)
}

// boot boots the image by BIOS (SeaBIOS), as a virtio disk.
func boot(t *testing.T, img string, timeout time.Duration) vm.Result {
	t.Helper()
	r, err := vm.Machine{Disks: []vm.Disk{{Path: img}}, Timeout: timeout}.Boot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestRebuildSeedScenario is the story of the manual procedure, told
// with nixrescue: an install prepared for UEFI on a machine that boots by
// BIOS, so no GRUB in its boot sector. The user switches the
// configuration to GRUB on the disk and rebuilds; the disk boots.
func TestRebuildSeedScenario(t *testing.T) {
	testenv.Require(t)
	img := realNixImage(t, imgSeed)
	if b := boot(t, img, 5*time.Second); !b.TimedOut || strings.Contains(b.Output, "GRUB") || strings.Contains(b.Output, "nixrescue-fixture") {
		t.Fatalf("before the repair the disk should not boot GRUB:\n%s", b.Output)
	}
	writeConfiguration(t, img, grubOnSdz)
	files := targetFiles(t, img)
	host := testenv.SnapshotHost(t)
	if !grubOnImages {
		// GRUB cannot go on an image from here: refused before anything
		// is written, the image byte for byte as it was. The story goes
		// on in the VM lane, whose kernel has device-mapper
		// (TestBIOSRescueHost).
		sum := fileHash(t, img)
		oneLine(t, nixrescue(t, "rebuild", img), noGRUBHere)
		if fileHash(t, img) != sum {
			t.Errorf("the refused rebuild changed the image")
		}
		testenv.AssertHostUnchanged(t, host)
		return
	}
	auditLog := filepath.Join(t.TempDir(), "audit.log")
	r := nixrescue(t, "rebuild", img, "--json", "--audit-log", auditLog)
	testenv.AssertHostUnchanged(t, host)
	if r.code != 0 {
		t.Fatalf("rebuild: exit %d\n%s", r.code, r.stderr)
	}
	const action = "installed"
	// The audit record says what the rebuild wrote.
	recs := readAudit(t, auditLog)
	if len(recs) != 2 || recs[1].ExitStatus == nil || *recs[1].ExitStatus != 0 ||
		!slices.ContainsFunc(recs[1].Wrote, func(w string) bool { return strings.HasPrefix(w, "system profile switched from generation 2 to 3") }) ||
		!slices.ContainsFunc(recs[1].Wrote, func(w string) bool { return strings.HasPrefix(w, "bootloader grub-bios "+action) }) {
		t.Errorf("audit records of the rebuild: %+v", recs)
	}
	var rep commands.RunReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("report: %v\n%s", err, r.stdout)
	}
	if rep.CurrentBefore.Generation != 2 || rep.CurrentAfter.Generation != 3 || rep.ExitStatus != 0 {
		t.Errorf("generations %+v → %+v, exit %d", rep.CurrentBefore, rep.CurrentAfter, rep.ExitStatus)
	}
	if rep.Bootloader == nil || rep.Bootloader.Action != action || rep.Bootloader.Kind != "grub-bios" {
		t.Errorf("bootloader %+v", rep.Bootloader)
	}
	if len(rep.DiskAliases) != 1 || rep.DiskAliases[0].Name != "/dev/sdz" || rep.DiskAliases[0].Source != "configuration.nix" || !loopRE.MatchString(rep.DiskAliases[0].Device) {
		t.Errorf("disk aliases %+v", rep.DiskAliases)
	}
	if rep.Sandbox == nil || !rep.Sandbox.On || rep.Sandbox.Mode != "auto" {
		t.Errorf("sandbox %+v", rep.Sandbox)
	}
	for _, want := range []string{"installing the GRUB 2 boot loader on /dev/sdz", "Installation finished. No error reported."} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("the rebuild's output lacks %q:\n%s", want, r.stderr)
		}
	}
	if got := profileGeneration(t, img); got != "system-3-link" {
		t.Errorf("profile → %s", got)
	}
	r = nixrescue(t, "run", img, "--read-only", "--", "cat", "/nix/var/nix/profiles/system/sandboxed")
	if strings.TrimSpace(r.stdout) != "yes" {
		t.Errorf("the build was not sandboxed: %q %s", r.stdout, r.stderr)
	}
	if got := targetFiles(t, img); got != files {
		t.Errorf("resolv.conf or nix.conf changed:\nbefore:\n%s\nafter:\n%s", files, got)
	}
	b := boot(t, img, 60*time.Second)
	if b.TimedOut || !strings.Contains(b.Output, "nixrescue-fixture: default generation 3") || !strings.Contains(b.Output, "booting generation 3") {
		t.Errorf("after the repair the disk should boot generation 3 by default:\n%s", b.Output)
	}
}

func TestRebuildSandboxModes(t *testing.T) {
	testenv.Require(t)
	img := realNixImage(t, imgRealNix)
	// --no-pivot: auto finds out. On this project's machines the root is
	// not an initramfs, and MS_MOVE + chroot leaves the sandbox's mount
	// steps working, so the sandbox stays on; either way the report and
	// the build agree.
	r := nixrescue(t, append([]string{"rebuild", img, "--no-pivot", "--json"}, rebuildFlags()...)...)
	if r.code != 0 {
		t.Fatalf("--no-pivot: exit %d %s", r.code, r.stderr)
	}
	var rep commands.RunReport
	json.Unmarshal([]byte(r.stdout), &rep)
	built := nixrescue(t, "run", img, "--read-only", "--", "cat", "/nix/var/nix/profiles/system/sandboxed")
	if rep.Sandbox == nil || (strings.TrimSpace(built.stdout) == "yes") != rep.Sandbox.On {
		t.Errorf("--no-pivot: report %+v, build sandboxed %q", rep.Sandbox, built.stdout)
	}
	if rep.Sandbox != nil && !rep.Sandbox.On && !strings.Contains(r.stderr, "building with sandbox = false for this session only") {
		t.Errorf("sandbox turned off without saying so:\n%s", r.stderr)
	}
	// --sandbox off: this session only, said in the report; nix.conf as it was.
	files := targetFiles(t, img)
	writeConfiguration(t, img, grubOnSdz+"  # another change, another derivation\n")
	r = nixrescue(t, append([]string{"rebuild", img, "--sandbox", "off", "--json"}, rebuildFlags()...)...)
	json.Unmarshal([]byte(r.stdout), &rep)
	if r.code != 0 || rep.Sandbox == nil || rep.Sandbox.On || rep.Sandbox.NixConfig != "sandbox = false" {
		t.Errorf("--sandbox off: exit %d %+v %s", r.code, rep.Sandbox, r.stderr)
	}
	built = nixrescue(t, "run", img, "--read-only", "--", "cat", "/nix/var/nix/profiles/system/sandboxed")
	if strings.TrimSpace(built.stdout) != "no" {
		t.Errorf("--sandbox off: the build was sandboxed: %q", built.stdout)
	}
	if got := targetFiles(t, img); got != files {
		t.Errorf("nix.conf or resolv.conf changed")
	}
}

// bootSector is the MBR's boot code and the BIOS boot partition, where
// grub-install writes.
func bootSector(t *testing.T, img string) []byte {
	t.Helper()
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 2<<20)
	if _, err := f.ReadAt(b, 0); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRebuildRefusals(t *testing.T) {
	testenv.Require(t)
	img := realNixImage(t, imgRealNix)
	writeConfiguration(t, img, `  boot.loader.grub.enable = true;
  boot.loader.grub.devices = [ "/dev/sdz" "/dev/sdy" ];
`)
	before := fileHash(t, img)
	r := imageSession(t, "rebuild", img)
	if r.code != 125 || !strings.Contains(r.stderr, "--disk-alias") || !strings.Contains(r.stderr, "refused before anything ran") || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
		t.Errorf("two disks for one: exit %d, stderr %q", r.code, r.stderr)
	}
	if fileHash(t, img) != before {
		t.Error("a refused rebuild changed the image")
	}
	r = imageSession(t, "rebuild", img, "-q", "--disk-alias", "/dev/sdz", "--disk-alias", "/dev/sdy")
	switch {
	case !grubOnImages:
		oneLine(t, r, "GRUB for BIOS cannot be installed on /dev/sdy and /dev/sdz (here /dev/loop")
	case r.code != 0 || !strings.Contains(r.stdout+r.stderr, "on /dev/sdz...") || !strings.Contains(r.stdout+r.stderr, "on /dev/sdy..."):
		t.Errorf("with --disk-alias for both (GRUB on both names of the one disk): exit %d %s%s", r.code, r.stdout, r.stderr)
	}
	r = imageSession(t, "rebuild", img, "--dev", "host")
	if r.code != 125 || !strings.Contains(r.stderr, "--dev host") {
		t.Errorf("--dev host: exit %d %s", r.code, r.stderr)
	}
}

func TestRebuildBuildFailureChangesNothing(t *testing.T) {
	testenv.Require(t)
	img := realNixImage(t, imgRealNix)
	writeConfiguration(t, img, "  boot.loader.grub.enable = false;\n")
	profile := profileGeneration(t, img)
	sector := bootSector(t, img)
	r := imageSession(t, append([]string{"rebuild", img, "-q"}, rebuildFlags()...)...)
	// nix-build exits 100 when a builder fails, and nixos-rebuild with it.
	if r.code != 100 || !strings.Contains(r.stderr, "failed with exit code 1") {
		t.Errorf("exit %d (want nix-build's 100 passed through), stderr:\n%s", r.code, r.stderr)
	}
	if got := profileGeneration(t, img); got != profile {
		t.Errorf("profile %s → %s", profile, got)
	}
	if !bytes.Equal(bootSector(t, img), sector) {
		t.Error("the boot sector changed")
	}
}

func TestRebuildOfflineGetsAHint(t *testing.T) {
	testenv.Require(t)
	img := realNixImage(t, imgRealNix)
	writeConfiguration(t, img, grubOnSdz+"  # nixrescue-fixture-fetch: http://nixrescue-test.invalid/nixpkgs.tar.gz\n")
	r := imageSession(t, append([]string{"rebuild", img, "-q", "--network", "none"}, rebuildFlags()...)...)
	if r.code == 0 || !strings.Contains(r.stderr, "unable to download") || !strings.Contains(r.stderr, "hint: the command needed the network, which --network none took away") {
		t.Errorf("exit %d, stderr:\n%s", r.code, r.stderr)
	}
}

func TestNothingInsideSaysContainer(t *testing.T) {
	testenv.Require(t)
	img := realNixImage(t, imgRealNix)
	hostPID, _ := os.Readlink("/proc/self/ns/pid")
	hostCgroup, _ := os.Readlink("/proc/self/ns/cgroup")
	// NIXOS_INSTALL_BOOTLOADER=1 reaches install-grub.pl inside: once
	// GRUB's state file exists, only that makes it run grub-install.
	for _, c := range []struct {
		args    []string
		install bool
	}{{nil, true}, {[]string{"--no-install-bootloader"}, false}, {[]string{"--", "--option", "sandbox", "false"}, true}} {
		if c.install && !grubOnImages {
			continue // refused here: TestRebuildSeedScenario
		}
		r := imageSession(t, append([]string{"rebuild", img, "-q"}, c.args...)...)
		if r.code != 0 || strings.Contains(r.stdout+r.stderr, "installing the GRUB 2 boot loader") != c.install {
			t.Errorf("rebuild %v: exit %d, installed: %v\n%s", c.args, r.code, !c.install, r.stderr)
		}
	}
	r := imageSession(t, "run", img, "-q", "--", "sh", "-c",
		`for f in /run/.containerenv /.dockerenv /run/host/container-manager /run/systemd/container; do test -e $f && echo "found $f"; done; `+
			`env | grep '^container=' ; tr '\0' '\n' < /proc/1/environ 2>/dev/null | grep '^container=' ; readlink /proc/self/ns/pid; readlink /proc/self/ns/cgroup; echo NIXOS_INSTALL_BOOTLOADER=$NIXOS_INSTALL_BOOTLOADER`)
	want := hostPID + "\n" + hostCgroup + "\nNIXOS_INSTALL_BOOTLOADER=\n"
	if r.code != 0 || r.stdout != want {
		t.Errorf("inside:\n%s\nwant:\n%s\n%s", r.stdout, want, r.stderr)
	}
}

// TestRebuildWithoutTheESP: a configuration with systemd-boot whose fstab
// mounts nothing on /boot (hardware-configuration.nix lost it). The
// installer refuses, as systemd-boot-builder.py's mount-point check does;
// nixrescue says that the ESP is not mounted, which partition looks like
// it, and how to mount it; inspect says so before anything is run.
func TestRebuildWithoutTheESP(t *testing.T) {
	testenv.Require(t)
	img := realNixImage(t, imgNoESP)
	fx := images.built[imgNoESP]
	want := []string{"installs systemd-boot into its EFI system partition at /boot, but nothing is mounted there",
		"partition 1 (", "EFI system partition) looks like it", "--boot UUID=" + fx.Partitions[1].UUID}
	r := imageSession(t, "inspect", img, "--json")
	for _, w := range want {
		if r.code != 0 || !strings.Contains(r.stdout, w) {
			t.Errorf("inspect: exit %d; its warnings lack %q:\n%s", r.code, w, r.stdout)
		}
	}
	r = imageSession(t, "rebuild", img)
	if r.code != 1 || !strings.Contains(r.stderr, "efiSysMountPoint = '/boot' is not a mounted partition") {
		t.Fatalf("rebuild: exit %d, want the installer's refusal (1):\n%s", r.code, r.stderr)
	}
	hints := 0
	for _, l := range strings.Split(r.stderr, "\n") {
		if strings.HasPrefix(l, "nixrescue: hint: the configuration installs systemd-boot") {
			hints++
			for _, w := range want {
				if !strings.Contains(l, w) {
					t.Errorf("the hint lacks %q: %s", w, l)
				}
			}
		}
	}
	if hints != 1 {
		t.Errorf("want one hint about the ESP, got %d:\n%s", hints, r.stderr)
	}
}

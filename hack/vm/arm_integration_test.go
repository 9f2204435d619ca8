package vm_test

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/nixrescue/nixrescue/hack/debs"
	"github.com/nixrescue/nixrescue/hack/fixture"
	"github.com/nixrescue/nixrescue/hack/vm"
)

// The aarch64 rescue host: Debian's arm64 kernel under qemu-system-aarch64
// (virt, a Cortex-A57, software emulation), booted by AAVMF (UEFI), with
// an initramfs of Debian's arm64 busybox and blkid and the arm64
// nixrescue, as hack/release builds it.
var armLab struct {
	once      sync.Once
	err       error
	kernel    *vm.Kernel
	initramfs string
}

// setupArm builds the aarch64 rescue host, once.
func setupArm(t *testing.T) {
	t.Helper()
	setup(t)
	armLab.once.Do(func() {
		_, armLab.kernel, armLab.initramfs, armLab.err = rescueHost(debs.Arm64)
	})
	if armLab.err != nil {
		t.Fatal(armLab.err)
	}
}

// armImage is an aarch64 fixture disk: Debian's arm64 programs, Nix and
// kernel in its generations.
func armImage(t *testing.T, name string, o fixture.ImageOptions) *fixture.Image {
	t.Helper()
	o.Root.Arch, o.Root.RealNix, o.Root.Kernel = "aarch64", true, armLab.kernel.Image
	img, err := fixture.BuildImage(filepath.Join(lab.dir, name+".img"), o)
	if err != nil {
		t.Fatalf("build %s: %v", name, err)
	}
	return img
}

// TestAarch64RescueHost: an aarch64 rescue host (booted by UEFI) repairs
// an aarch64 systemd-boot disk whose ESP lost its loader and entries
// (Debian's arm64 bootctl in its store installs systemd-bootaa64.efi and
// makes an NVRAM entry) and an SD image whose extlinux.conf is gone (its
// extlinux-conf-builder writes it anew); doctor finds each fault before
// and nothing after; the host is left as it was. Then the systemd-boot
// disk boots by the NVRAM entry bootctl made (its fallback loader
// deleted), and both pass boot-test on this host: under AAVMF, and under
// U-Boot.
func TestAarch64RescueHost(t *testing.T) {
	setupArm(t)
	t.Parallel()
	sd := armImage(t, "arm-systemd-boot", fixture.ImageOptions{Layout: fixture.LayoutUEFI})
	board := armImage(t, "arm-extlinux", fixture.ImageOptions{Layout: fixture.LayoutSD, Tweak: func(root string) error {
		return os.Remove(filepath.Join(root, "boot/extlinux/extlinux.conf"))
	}})
	vars := filepath.Join(t.TempDir(), "vars.fd")
	m := vm.Machine{Arch: debs.Arm64, Firmware: vm.AAVMF, Vars: vars, Disks: []vm.Disk{{Path: sd.Path}, {Path: board.Path}}}
	steps := rescueWith(t, m, armLab.initramfs, `
. /lib/vm.sh
step uname uname -m
snapshot
step doctor-sd-before nixrescue doctor /dev/vda --json
step rebuild-systemd-boot nixrescue rebuild /dev/vda --json
step doctor-sd-after nixrescue doctor /dev/vda --json
step doctor-board-before nixrescue doctor /dev/vdb --json
step rebuild-extlinux nixrescue rebuild /dev/vdb --json
step doctor-board-after nixrescue doctor /dev/vdb --json
step system-3 nixrescue run /dev/vda --read-only -q -- readlink -f /nix/var/nix/profiles/system-3-link
unchanged arm
mount /dev/vda1 /mnt && step esp find /mnt && rm -f /mnt/EFI/BOOT/BOOTAA64.EFI && umount /mnt
`)
	if u := wantExit(t, steps, "uname", 0).Stdout; strings.TrimSpace(u) != "aarch64" {
		t.Fatalf("the rescue host is %q", u)
	}
	doctorSays(t, steps, "doctor-sd-before", "bootloader-missing", "nixrescue rebuild /dev/vda")
	systemdBootInstalled(t, steps, "rebuild-systemd-boot", "esp", "systemd-bootaa64.efi")
	doctorSays(t, steps, "doctor-sd-after", "", "")
	doctorSays(t, steps, "doctor-board-before", "boot-menu-missing", "nixrescue rebuild /dev/vdb")
	rebuilt(t, steps, "rebuild-extlinux", "extlinux")
	doctorSays(t, steps, "doctor-board-after", "", "")
	system3 := strings.TrimSpace(wantExit(t, steps, "system-3", 0).Stdout)
	wantExit(t, steps, "unchanged-arm", 0)
	if t.Failed() {
		return
	}
	parallel(func() {
		bootTo(t, vm.Machine{Arch: debs.Arm64, Firmware: vm.AAVMF, Vars: copyVars(t, vars), Disks: []vm.Disk{{Path: sd.Path}}},
			[]string{"starting Boot", `"Linux Boot Manager"`}, []string{"nixrescue-fixture: booting system " + system3})
		bootTestOnThisHost(t, sd.Path, "efi", "nixos-generation-3.conf")
	}, func() {
		bootTestOnThisHost(t, board.Path, "u-boot", "nixos-default")
	})
}

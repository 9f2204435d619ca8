package commands

import (
	"strings"
	"testing"
	"time"

	"github.com/nixrescue/nixrescue/runtime/nixos"
)

func TestInterfaceOfInitrd(t *testing.T) {
	for text, want := range map[string]string{
		`boot.initrd.availableKernelModules = [ "xhci_pci" "nvme" "usb_storage" "sd_mod" ];`:           "nvme",
		`boot.initrd.availableKernelModules = [ "ahci" "xhci_pci" "sd_mod" ];`:                         "ahci",
		"boot.initrd.availableKernelModules = [\n  \"virtio_pci\"\n  \"virtio_blk\"\n];":               "virtio",
		`boot.initrd.availableKernelModules = [ "ahci" "nvme" ];`:                                      "", // two kinds: cannot tell
		`boot.initrd.availableKernelModules = [ "ehci_pci" "usb_storage" ];`:                           "",
		`{ imports = [ (modulesPath + "/installer/scan/not-detected.nix") ]; }`:                        "",
		`boot.initrd.availableKernelModules = [ "ata_piix" ]; boot.initrd.kernelModules = [ "nvme" ];`: "",
	} {
		if got := interfaceOfInitrd(text); got != want {
			t.Errorf("%q: %q, want %q", text, got, want)
		}
	}
}

func TestBootTestOptionsRefused(t *testing.T) {
	for _, c := range []struct {
		o    BootTestOptions
		want string
	}{
		{BootTestOptions{Firmware: "uefi"}, "use auto, efi, bios, u-boot"},
		{BootTestOptions{Accel: "hvf"}, "use auto, kvm or tcg"},
		{BootTestOptions{Until: "login"}, "use stage-1, root, stage-2 or multi-user"},
		{BootTestOptions{Until: "kernel"}, "use stage-1, root, stage-2 or multi-user"},
		{BootTestOptions{Timeout: 2 * time.Second}, "give at least 10s"},
		{BootTestOptions{MemoryMiB: 64}, "give at least 256M"},
	} {
		if err := c.o.check(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.o, err, c.want)
		}
	}
	ok := BootTestOptions{Firmware: "efi", Accel: "tcg", Until: "stage-2", Timeout: time.Minute, MemoryMiB: 512}
	if err := ok.check(); err != nil {
		t.Errorf("%+v refused: %v", ok, err)
	}
}

// TestEveryBootloaderIsAimed: each kind in nixos's registry has its aim
// for boot-test.
func TestEveryBootloaderIsAimed(t *testing.T) {
	for _, l := range nixos.Loaders {
		if aimers[l.Kind] == nil {
			t.Errorf("boot-test cannot aim %s", l.Kind)
		}
	}
}

package commands

import "testing"

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

package nixos

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReadBootEntries: GRUB's entries as install-grub.pl writes them (a
// device prefix, /boot's own filesystem or the store), and systemd-boot's
// entries with the loader.conf default; the kernel directories of each.
func TestReadBootEntries(t *testing.T) {
	root := t.TempDir()
	files := map[string]string{
		"/boot/grub/grub.cfg": "set default=0\nmenuentry 'NixOS' {\n  linux ($drive1)/kernels/abc-bzImage init=/nix/store/00000000000000000000000000000000-sys/init\n  initrd ($drive1)/kernels/abc-initrd\n}\n" +
			"menuentry 'NixOS - Configuration 7' {\n  linux ($drive1)//nix/store/11111111111111111111111111111111-linux/bzImage\n  initrd /boot/kernels/x-initrd\n}\n",
		"/efi/loader/loader.conf":                                      "default nixos-generation-4.conf\n",
		"/efi/loader/entries/nixos-generation-4.conf":                  "title NixOS\nlinux /EFI/nixos/k4.efi\ninitrd /EFI/nixos/i4.efi\n",
		"/efi/loader/entries/nixos-generation-12.conf":                 "title NixOS\nlinux /EFI/nixos/k12.efi\n",
		"/efi/loader/entries/nixos-generation-3-specialisation-x.conf": "linux /EFI/nixos/k3.efi\n",
	}
	for p, c := range files {
		full := filepath.Join(root, p)
		os.MkdirAll(filepath.Dir(full), 0o755)
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	gens := []Generation{{Number: 5, StorePath: "/nix/store/00000000000000000000000000000000-sys"}}
	grub, ok := ReadBootEntries(root, Bootloader{Kind: GRUBBIOS}, gens)
	if !ok || len(grub) != 2 || grub[0].Generation != 5 || !grub[0].Default || grub[1].Generation != 7 || grub[1].Default ||
		strings.Join(grub[0].Files, " ") != "/boot/kernels/abc-bzImage /boot/kernels/abc-initrd" ||
		strings.Join(grub[1].Files, " ") != "/nix/store/11111111111111111111111111111111-linux/bzImage /boot/kernels/x-initrd" {
		t.Errorf("GRUB: %v %+v", ok, grub)
	}
	sd, ok := ReadBootEntries(root, Bootloader{Kind: SystemdBoot, ESP: "/efi"}, nil)
	if !ok || len(sd) != 3 || sd[0].Generation != 12 || sd[1].Generation != 4 || !sd[1].Default || sd[2].Generation != 3 ||
		strings.Join(sd[1].Files, " ") != "/efi/EFI/nixos/k4.efi /efi/EFI/nixos/i4.efi" {
		t.Errorf("systemd-boot: %v %+v", ok, sd)
	}
	if _, ok := ReadBootEntries(root, Bootloader{Kind: SystemdBoot}, nil); ok {
		t.Error("entries read where there are none")
	}
	if d := BootFileDirs(Bootloader{Kind: SystemdBoot, ESP: "/efi"}); strings.Join(d, " ") != "/efi/EFI/nixos" {
		t.Errorf("dirs %v", d)
	}
}

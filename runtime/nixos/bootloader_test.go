package nixos_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/nixrescue/nixrescue/hack/fixture"
	"github.com/nixrescue/nixrescue/runtime/nixos"
)

// TestDetectBootloaderESP reads where each bootloader's configuration
// puts the ESP: GRUB's efiSysMountPoint in grub-config.xml (none for
// BIOS), systemd-boot's EFI_SYS_MOUNT_POINT in its installer or the
// builder the installer runs, in each of the forms nixpkgs has written it.
func TestDetectBootloaderESP(t *testing.T) {
	bb := filepath.Join(t.TempDir(), "busybox")
	if err := os.WriteFile(bb, []byte("#!/bin/false\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		loader string
		kind   nixos.Kind
		esp    string
	}{
		{fixture.BootGRUB, "grub-bios", ""},
		{fixture.BootGRUBEFI, "grub-efi", "/boot/efi"},
		{fixture.BootSystemd, "systemd-boot", "/boot"},
	} {
		dir := t.TempDir()
		l, err := fixture.Build(dir, fixture.Options{Busybox: bb, Bootloader: c.loader})
		if err != nil {
			t.Fatal(err)
		}
		b := nixos.DetectBootloader(dir, l.Systems[1])
		if b.Kind != c.kind || b.ESP != c.esp {
			t.Errorf("%s: kind %q, ESP %q; want %q, %q", c.loader, b.Kind, b.ESP, c.kind, c.esp)
		}
	}
	// The installer runs the substituted builder, which names the ESP.
	dir := t.TempDir()
	store := "/nix/store/00000000000000000000000000000000-"
	files := map[string]string{
		store + "system/bin/switch-to-configuration": "#!/bin/sh\nexec " + store + "install-systemd-boot.sh \"$1\"\n",
		store + "install-systemd-boot.sh":            "#!/bin/sh\n" + store + "python3/bin/python3 " + store + "systemd-boot \"$@\"\n",
	}
	for form, want := range map[string]string{
		`EFI_SYS_MOUNT_POINT = "/efi"`:            "/efi",
		`EFI_SYS_MOUNT_POINT = Path("/boot/efi")`: "/boot/efi",
		`BOOT_MOUNT_POINT = Path("/boot")` + "\n": "/boot",
	} {
		files[store+"systemd-boot"] = "import os\n" + form + "\n"
		for p, content := range files {
			if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, p), []byte(content), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		if b := nixos.DetectBootloader(dir, store+"system"); b.Kind != nixos.SystemdBoot || b.ESP != want {
			t.Errorf("%s: %+v, want ESP %s", form, b, want)
		}
	}
}

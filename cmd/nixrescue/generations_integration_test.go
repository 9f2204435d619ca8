package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nixrescue/nixrescue/hack/fixture"
	"github.com/nixrescue/nixrescue/hack/testenv"
	"github.com/nixrescue/nixrescue/runtime/commands"
)

func generations(t *testing.T, img string) commands.GenerationsReport {
	t.Helper()
	r := imageSession(t, "generations", img, "--json")
	if r.code != 0 {
		t.Fatalf("generations: exit %d %s", r.code, r.stderr)
	}
	var g commands.GenerationsReport
	if err := json.Unmarshal([]byte(r.stdout), &g); err != nil {
		t.Fatalf("%v\n%s", err, r.stdout)
	}
	return g
}

func TestGenerationsAndRollbackWithGRUB(t *testing.T) {
	testenv.Require(t)
	img := realNixImage(t, imgRealNix)
	g := generations(t, img)
	// GRUB installed, as the machine's installation left it: its
	// grub.cfg boots generation 2.
	if g.Current.Generation != 2 || len(g.Generations) != 2 || g.Generations[0].NixOSVersion != "24.05.20240601.a1b2c3d" || g.Generations[1].Kernel != "6.6.63" ||
		!g.Generations[1].Current || g.BootDefault.Generation != 2 || g.Bootloader.Kind != "grub-bios" {
		t.Errorf("before: %+v", g)
	}
	r := imageSession(t, "generations", img)
	if !strings.Contains(r.stdout, "* 2") || !strings.Contains(r.stdout, "boots generation 2 by default (/boot/grub/grub.cfg)") {
		t.Errorf("text:\n%s", r.stdout)
	}
	r = imageSession(t, "rollback", img)
	if r.code != 0 || !strings.Contains(r.stderr, "rolled back: generation 1 is the system profile's and the bootloader's default (it was 2)") {
		t.Fatalf("rollback: exit %d %s", r.code, r.stderr)
	}
	g = generations(t, img)
	if g.Current.Generation != 1 || g.BootDefault.Generation != 1 || g.BootDefault.Source != "/boot/grub/grub.cfg" {
		t.Errorf("after: current %+v, boot default %+v", g.Current, g.BootDefault)
	}
	b := boot(t, img, 60*time.Second)
	if b.TimedOut || !strings.Contains(b.Output, "nixrescue-fixture: default generation 1") || !strings.Contains(b.Output, "booting generation 1") {
		t.Errorf("after the rollback the disk should boot generation 1 by default:\n%s", b.Output)
	}
}

func TestRollbackRefusals(t *testing.T) {
	testenv.Require(t)
	img, fx := image(t, string(fixture.LayoutBIOS))
	gen1 := fx.Root.Systems[0]
	cases := []struct {
		name, prepare string
		args          []string
		want          string
	}{
		{"past the newest", "", []string{"--to", "9"}, "--to 9 is past the newest generation (2)"},
		{"current already", "", []string{"--to", "2"}, "generation 2 is the current one already"},
		{"missing generation", "rm /nix/var/nix/profiles/system-1-link; ln -s /nix/store/00000000000000000000000000000000-gone /nix/var/nix/profiles/system-0-link", []string{"--to", "1"}, "generation 1 does not exist"},
		{"store path gone", "rm -rf " + gen1, nil, "is gone from the store"},
		{"not a NixOS system", "rm -f /nix/var/nix/profiles/system-1-link; ln -s " + fx.Root.Busybox + " /nix/var/nix/profiles/system-1-link", nil, "is not a NixOS system"},
		{"not a system profile", "rm /nix/var/nix/profiles/system; ln -s " + fx.Root.Systems[1] + " /nix/var/nix/profiles/system", nil, "not a NixOS system profile"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			img, _ := image(t, string(fixture.LayoutBIOS))
			if c.prepare != "" {
				if r := nixrescue(t, "run", img, "-q", "--no-activate", "--", "sh", "-c", c.prepare); r.code != 0 {
					t.Fatalf("prepare: %s", r.stderr)
				}
			}
			before := nixrescue(t, "run", img, "--read-only", "--", "readlink", "/nix/var/nix/profiles/system").stdout
			r := imageSession(t, append([]string{"rollback", img}, c.args...)...)
			if r.code != 125 || !strings.Contains(r.stderr, c.want) || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
				t.Errorf("exit %d, stderr %q, want one line with %q", r.code, r.stderr, c.want)
			}
			if after := nixrescue(t, "run", img, "--read-only", "--", "readlink", "/nix/var/nix/profiles/system").stdout; after != before {
				t.Errorf("profile %q → %q", before, after)
			}
		})
	}
	_ = img
}

func TestGenerationsAndRollbackWithSystemdBoot(t *testing.T) {
	testenv.Require(t)
	name := string(fixture.LayoutEFI)
	if !fixture.KernelHasVFAT() {
		t.Log("this kernel has no vfat: the ESP is an ext4 stand-in")
	}
	img, _ := image(t, name)
	g := generations(t, img)
	if g.Bootloader.Kind != "systemd-boot" || g.Current.Generation != 2 || g.BootDefault.Source != "" {
		t.Errorf("before: %+v", g)
	}
	r := imageSession(t, "rollback", img, "--to", "1", "--json")
	var rep commands.RunReport
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &rep) != nil {
		t.Fatalf("rollback --json: exit %d %s\n%s", r.code, r.stdout, r.stderr)
	}
	if rep.CurrentBefore.Generation != 2 || rep.CurrentAfter.Generation != 1 || rep.ExitStatus != 0 || rep.Bootloader == nil || rep.Bootloader.Kind != "systemd-boot" {
		t.Errorf("the rollback's report: %+v", rep)
	}
	g = generations(t, img)
	if g.Current.Generation != 1 || g.BootDefault.Generation != 1 || g.BootDefault.Source != "/boot/loader/loader.conf" || g.BootDefault.Entry != "nixos-generation-1.conf" {
		t.Errorf("after: current %+v, boot default %+v", g.Current, g.BootDefault)
	}
	r = imageSession(t, "run", img, "--read-only", "--", "sh", "-c", "ls /boot/loader/entries; cat /boot/loader/loader.conf")
	if !strings.Contains(r.stdout, "nixos-generation-1.conf\nnixos-generation-2.conf\n") || !strings.Contains(r.stdout, "default nixos-generation-1.conf") {
		t.Errorf("the ESP:\n%s", r.stdout)
	}
}

// TestBootctlSeesNoContainer runs the systemd-boot installer stand-in (the
// same checks as systemd's detect_container) with a fake efivarfs
// directory, since no test machine here booted by EFI: in nixrescue's
// container it writes EFI variables; under --isolate-pids it says it is in
// a container and skips them, as bootctl does.
func TestBootctlSeesNoContainer(t *testing.T) {
	testenv.Require(t)
	img, _ := image(t, string(fixture.LayoutEFI))
	script := `export NIXRESCUE_FIXTURE_EFIVARFS=/tmp/fake-efivars NIXOS_INSTALL_BOOTLOADER=1; mkdir -p $NIXRESCUE_FIXTURE_EFIVARFS; ` +
		`/nix/var/nix/profiles/system/bin/switch-to-configuration boot; ls /tmp/fake-efivars`
	r := imageSession(t, "run", img, "-q", "--", "sh", "-c", script)
	if r.code != 0 || !strings.Contains(r.stdout, "Created EFI boot entry") || !strings.Contains(r.stdout, "Boot0001-") {
		t.Errorf("in nixrescue's container: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = imageSession(t, "run", img, "-q", "--isolate-pids", "--", "sh", "-c", script)
	if r.code != 0 || !strings.Contains(r.stdout, "Not touching EFI variables: running in a container (a PID namespace of its own)") {
		t.Errorf("with --isolate-pids: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

func TestHardwareConfig(t *testing.T) {
	testenv.Require(t)
	img, fx := image(t, string(fixture.LayoutBIOS))
	root, bootPart := fx.Partitions[3], fx.Partitions[2]
	original := nixrescue(t, "run", img, "--read-only", "--", "cat", "/etc/nixos/hardware-configuration.nix").stdout
	r := imageSession(t, "hardware-config", img)
	if r.code != 0 {
		t.Fatalf("exit %d %s", r.code, r.stderr)
	}
	for _, want := range []string{"--- a/etc/nixos/hardware-configuration.nix", `+      fsType = "ext4";`, "/dev/disk/by-uuid/" + root.UUID, "/dev/disk/by-uuid/" + bootPart.UUID, `fileSystems."/boot"`, "not-detected.nix"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("diff lacks %q:\n%s", want, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "isContainer") || strings.Contains(r.stdout, "resolv.conf") {
		t.Errorf("the generated configuration takes the session for a container, or a bound file for a filesystem:\n%s", r.stdout)
	}
	if !strings.Contains(r.stderr, "nothing written; pass --write") {
		t.Errorf("stderr %q", r.stderr)
	}
	if got := nixrescue(t, "run", img, "--read-only", "--", "cat", "/etc/nixos/hardware-configuration.nix").stdout; got != original {
		t.Error("without --write the file changed")
	}
	// The stand-in does detect a container when there is one.
	r = imageSession(t, "hardware-config", img, "--isolate-pids", "--json")
	var rep commands.HardwareReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil || !strings.Contains(rep.Generated, "boot.isContainer = true;") || strings.Contains(rep.Generated, "not-detected.nix") {
		t.Errorf("--isolate-pids: %v\n%s", err, r.stdout)
	}
	auditLog := filepath.Join(t.TempDir(), "audit.log")
	r = imageSession(t, "hardware-config", img, "--write", "--json", "--audit-log", auditLog)
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil || r.code != 0 || !rep.Written || !rep.Changed || !strings.HasPrefix(rep.Backup, "/etc/nixos/hardware-configuration.nix.") {
		t.Fatalf("--write: exit %d %+v %s", r.code, rep, r.stderr)
	}
	if recs := readAudit(t, auditLog); len(recs) != 2 || len(recs[1].Wrote) != 1 || recs[1].Wrote[0] != "/etc/nixos/hardware-configuration.nix replaced (the old one kept as "+rep.Backup+")" {
		t.Errorf("audit records of hardware-config --write: %+v", recs)
	}
	files := nixrescue(t, "run", img, "--read-only", "--", "sh", "-c", "cat "+rep.Backup+"; echo ==; cat /etc/nixos/hardware-configuration.nix; echo ==; ls /etc/nixos | wc -l").stdout
	parts := strings.Split(files, "==\n")
	if len(parts) != 3 || parts[0] != original || parts[1] != rep.Generated || strings.TrimSpace(parts[2]) != "3" {
		t.Errorf("after --write:\n%s", files)
	}
	r = imageSession(t, "hardware-config", img, "--write")
	if r.code != 0 || !strings.Contains(r.stderr, "no change") || r.stdout != "" {
		t.Errorf("--write with no change: exit %d %q %q", r.code, r.stdout, r.stderr)
	}
	if n := nixrescue(t, "run", img, "--read-only", "--", "sh", "-c", "ls /etc/nixos | wc -l").stdout; strings.TrimSpace(n) != "3" {
		t.Errorf("--write with no change wrote something: %s files", n)
	}
}

func TestHardwareConfigRefusals(t *testing.T) {
	testenv.Require(t)
	img, _ := image(t, string(fixture.LayoutBIOS))
	r := imageSession(t, "hardware-config", img, "--read-only", "--write")
	if r.code != 125 || !strings.Contains(r.stderr, "read-only") {
		t.Errorf("--read-only --write: exit %d %s", r.code, r.stderr)
	}
	if r := nixrescue(t, "run", img, "-q", "--no-activate", "--", "rm", "-rf", "/etc/nixos"); r.code != 0 {
		t.Fatal(r.stderr)
	}
	r = imageSession(t, "hardware-config", img)
	if r.code != 125 || !strings.Contains(r.stderr, "has no /etc/nixos") || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
		t.Errorf("no /etc/nixos: exit %d %q", r.code, r.stderr)
	}
}

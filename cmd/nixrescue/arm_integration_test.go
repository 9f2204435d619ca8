package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/nixrescue/nixrescue/hack/fixture"
	"github.com/nixrescue/nixrescue/hack/testenv"
	"github.com/nixrescue/nixrescue/runtime/commands"
	"github.com/nixrescue/nixrescue/runtime/doctor"
	"github.com/nixrescue/nixrescue/runtime/host"
	"github.com/nixrescue/nixrescue/runtime/nixos"
)

// sdImage is an aarch64 board's NixOS as sd-image.nix writes it (MBR,
// FIRMWARE and NIXOS_SD, /boot/extlinux/extlinux.conf for U-Boot), its
// programs Debian's arm64 ones (busybox, coreutils, Nix, the kernel).
func sdImage(t *testing.T) string {
	requireEmulator(t, "aarch64")
	return kernelImage(t, "sd-aarch64", fixture.ImageOptions{Layout: fixture.LayoutSD, Root: fixture.Options{Arch: "aarch64"}})
}

// requireEmulator fails t (skips it without NIXRESCUE_INTEGRATION) when
// this host cannot run programs of arch: hack/install-deps registers
// qemu-aarch64 with binfmt_misc (F flag).
func requireEmulator(t *testing.T, arch string) {
	t.Helper()
	if _, ok := host.Emulator(arch); ok {
		return
	}
	if testenv.Enabled() {
		t.Fatalf("this host cannot run %s programs (no qemu-user handler with the F flag in %s): run hack/install-deps", arch, host.BinfmtDir)
	}
	t.Skipf("this host cannot run %s programs (%s unset)", arch, testenv.EnvVar)
}

// TestAarch64ImageOnThisHost: an aarch64 SD image repaired on this x86_64
// host. inspect names the architecture and the qemu-user handler that
// runs it; run's uname -m says aarch64 (coreutils' own, through
// binfmt_misc); with its extlinux.conf gone, doctor says so, and the
// rebuild it proposes runs the target's own Nix under qemu-user (sandbox
// off and filter-syscalls = false for the session, said) and the
// system's extlinux-conf-builder, which writes the menu anew; the board
// then boots to multi-user under U-Boot on qemu's virt board, and a
// rollback makes generation 2 U-Boot's default; boot-test aims
// generation 1's own entry (nixos-1-default); prune deletes generation 1
// and the builder its files in /boot/nixos. The host is left as it was
// by each command.
func TestAarch64ImageOnThisHost(t *testing.T) {
	testenv.Require(t)
	img := sdImage(t)
	in := imageSession(t, "inspect", img, "--json")
	var rep commands.Report
	if in.code != 0 || json.Unmarshal([]byte(in.stdout), &rep) != nil || rep.Arch != "aarch64" || rep.Runs != "emulated" ||
		rep.Emulator != "qemu-aarch64" || rep.Bootloader.Kind != nixos.Extlinux {
		t.Fatalf("inspect: exit %d %+v\n%s", in.code, rep, in.stderr)
	}
	if text := imageSession(t, "inspect", img); !strings.Contains(text.stdout, "architecture: aarch64 (runs here through qemu-user: binfmt_misc's qemu-aarch64)") {
		t.Errorf("inspect in text:\n%s", text.stdout)
	}
	run := imageSession(t, "run", img, "--", "uname", "-m")
	if run.code != 0 || run.stdout != "aarch64\n" || !strings.Contains(run.stderr, "through qemu-user (binfmt_misc's qemu-aarch64)") {
		t.Fatalf("run -- uname -m: exit %d %q\n%s", run.code, run.stdout, run.stderr)
	}
	if rm := imageSession(t, "run", img, "--no-activate", "--", "rm", nixos.ExtlinuxConf); rm.code != 0 {
		t.Fatalf("remove extlinux.conf: exit %d\n%s", rm.code, rm.stderr)
	}
	d, _ := diagnose(t, img)
	f := findingOf(t, d, "boot-menu-missing")
	if f.Severity != doctor.Fatal || len(f.Fix) != 1 || f.Fix[0] != "nixrescue rebuild "+img {
		t.Fatalf("boot-menu-missing: %+v", f)
	}
	rb := imageSession(t, "rebuild", img, "--json")
	var rr commands.RunReport
	if rb.code != 0 || json.Unmarshal([]byte(rb.stdout), &rr) != nil || rr.Emulator != "qemu-aarch64" || rr.Sandbox == nil || rr.Sandbox.On ||
		!strings.Contains(rr.Sandbox.Why, "qemu-user") || !strings.Contains(strings.Join(rr.NixSettings, "\n"), "filter-syscalls = false") ||
		rr.CurrentAfter == nil || rr.CurrentAfter.Generation != 3 || rr.Bootloader == nil || rr.Bootloader.Kind != nixos.Extlinux {
		t.Fatalf("rebuild --json: exit %d %+v\n%s", rb.code, rr, rb.stderr)
	}
	d, r := diagnose(t, img)
	noneFatal(t, d, r)
	if g := generations(t, img); g.BootDefault.Source != nixos.ExtlinuxConf || g.BootDefault.Generation != 3 {
		t.Errorf("after the rebuild: %+v", g.BootDefault)
	}
	if backend == "containerd" {
		return // a boot test does not depend on the backend
	}
	bt, btr := bootTest(t, img)
	if btr.code != 0 || !bt.Passed || bt.Firmware != "u-boot" || bt.Arch != "aarch64" || bt.Entry != "nixos-default" || bt.Booted.Generation != 3 {
		t.Fatalf("boot-test after the rebuild: exit %d %+v\n%s", btr.code, bt, btr.stderr)
	}
	if rb := imageSession(t, "rollback", img); rb.code != 0 {
		t.Fatalf("rollback: exit %d\n%s", rb.code, rb.stderr)
	}
	if g := generations(t, img); g.BootDefault.Generation != 2 {
		t.Errorf("after the rollback: %+v", g.BootDefault)
	}
	bt, btr = bootTest(t, img, "--until", "stage-2")
	if btr.code != 0 || !bt.Passed || bt.Booted.Generation != 2 {
		t.Errorf("boot-test after the rollback: exit %d %+v", btr.code, bt)
	}
	// A generation's own entry, as the builder labels it today.
	bt, btr = bootTest(t, img, "--generation", "1", "--until", "stage-1")
	if btr.code != 0 || !bt.Passed || bt.Booted.Generation != 1 || bt.Entry != "nixos-1-default" {
		t.Errorf("boot-test --generation 1: exit %d %+v", btr.code, bt)
	}
	// prune on extlinux: generation 1 goes (3 is the newest, 2 the
	// current), and the builder removes its kernel and initrd from
	// /boot/nixos.
	pr := imageSession(t, "prune", img, "--keep", "1", "--json")
	var pruned commands.PruneReport
	if pr.code != 0 || json.Unmarshal([]byte(pr.stdout), &pruned) != nil || fmt.Sprint(pruned.Plan.Delete) != "[1]" || len(pruned.Removed) != 2 ||
		!strings.HasPrefix(pruned.Removed[0], "/boot/nixos/") {
		t.Errorf("prune --keep 1: exit %d %+v\n%s", pr.code, pruned, pr.stderr)
	}
	d, r = diagnose(t, img)
	noneFatal(t, d, r)
}

// TestAarch64BootTestRefusals: an aarch64 machine has no BIOS, and KVM
// runs this host's architecture only: both refused in one line, before
// anything boots.
func TestAarch64BootTestRefusals(t *testing.T) {
	testenv.Require(t)
	img := sdImage(t)
	before := fileHash(t, img)
	oneLine(t, nixrescue(t, "boot-test", img, "--firmware", "bios"), "--firmware bios: an aarch64 machine boots by efi or u-boot")
	r := nixrescue(t, "boot-test", img, "--accel", "kvm")
	if r.code == 0 || !strings.Contains(r.stderr, "KVM runs machines of this host's architecture (x86_64) only") {
		t.Errorf("--accel kvm on an aarch64 image: exit %d\n%s", r.code, r.stderr)
	}
	if fileHash(t, img) != before {
		t.Error("a refused boot-test changed the image")
	}
}

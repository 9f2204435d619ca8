package main

import (
	"context"
	bin "encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nixrescue/nixrescue/hack/fixture"
	"github.com/nixrescue/nixrescue/hack/testenv"
	"github.com/nixrescue/nixrescue/hack/vm"
	"github.com/nixrescue/nixrescue/runtime/commands"
	nrimage "github.com/nixrescue/nixrescue/runtime/image"
	"github.com/nixrescue/nixrescue/runtime/nbd"
)

// Disk images as people keep them: qcow2 (with a backing file,
// compressed), VMDK, VDI, VHDX, read through qemu's block layer; and
// --snapshot, which leaves the image or disk as it was.

// convert makes a copy of the raw image src in format (qemu-img convert,
// with more options), in the test's directory.
func convert(t *testing.T, src, format string, opts ...string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), filepath.Base(src)+"."+format)
	args := append(append([]string{"convert", "-O", format}, opts...), src, dst)
	if out, err := exec.Command("qemu-img", args...).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img %v: %v %s", args, err, out)
	}
	return dst
}

// inspected is inspect's report, which must be there.
func inspected(t *testing.T, args ...string) commands.Report {
	t.Helper()
	rep, r := inspectReport(t, args...)
	if r.code != 0 {
		t.Fatalf("inspect %v: exit %d\n%s", args, r.code, r.stderr)
	}
	return rep
}

// TestEveryLayoutAsQcow2: each fixture layout, converted to qcow2, is
// found and mounted as the raw one is.
func TestEveryLayoutAsQcow2(t *testing.T) {
	testenv.Require(t)
	for _, l := range fixture.DiskLayouts {
		t.Run(string(l), func(t *testing.T) {
			raw, _ := image(t, string(l))
			q := convert(t, raw, "qcow2")
			want, got := inspected(t, raw), inspected(t, q)
			if got.Format == nil || got.Format.Format != "qcow2" || got.Format.VirtualSize != want.Format.VirtualSize {
				t.Errorf("format: %+v, want qcow2 of %d bytes", got.Format, want.Format.VirtualSize)
			}
			if got.Root == nil || want.Root == nil || got.Root.Partition.UUID != want.Root.Partition.UUID || len(got.Plan) != len(want.Plan) {
				t.Errorf("the qcow2 is not opened as the raw image: root %+v, plan %d entries; raw: %+v, %d", got.Root, len(got.Plan), want.Root, len(want.Plan))
			}
			// The system's hostname (a root made afresh at each boot has
			// no /etc before activation, which a look does not run).
			if r := imageSession(t, "run", q, "--read-only", "-q", "--", "cat", "/nix/var/nix/profiles/system/etc/hostname"); r.code != 0 || r.stdout != "nixfixture\n" {
				t.Errorf("run: exit %d %q %s", r.code, r.stdout, r.stderr)
			}
		})
	}
}

// TestImageFormats: a compressed qcow2, a qcow2 on a backing file (as
// libvirt and nixos-generators make them), VMDK, VDI and VHDX: inspect
// names the format and the backing chain; a session writes into the
// image's own format (a backing file is left alone).
func TestImageFormats(t *testing.T) {
	testenv.Require(t)
	raw, _ := image(t, string(fixture.LayoutBIOS))
	base := convert(t, raw, "qcow2", "-c")
	top := filepath.Join(t.TempDir(), "top.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", base, top).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	cases := []struct{ name, path, format string }{
		{"compressed qcow2", convert(t, raw, "qcow2", "-c"), "qcow2"},
		{"qcow2 on a backing file", top, "qcow2"},
		{"VMDK", convert(t, raw, "vmdk"), "vmdk"},
		{"VDI", convert(t, raw, "vdi"), "vdi"},
		{"VHDX", convert(t, raw, "vhdx"), "vhdx"},
	}
	// How this host's sessions reach an export: over NBD where the
	// kernel has nbd, else (as here) FUSE.
	via := nrimage.ViaFUSE
	if nbd.Available() == nil {
		via = nrimage.ViaNBD
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			baseHash := fileHash(t, base)
			rep := inspected(t, c.path)
			if rep.Format == nil || string(rep.Format.Format) != c.format || rep.Format.InUse || rep.Format.Via != via {
				t.Errorf("format %+v, want %s through %s, not in use", rep.Format, c.format, via)
			}
			if c.path == top && (len(rep.Format.Backing) != 1 || rep.Format.Backing[0].File != base) {
				t.Errorf("backing chain %+v, want %s", rep.Format.Backing, base)
			}
			if r := imageSession(t, "run", c.path, "-q", "--", "sh", "-c", "echo written > /root/format-test"); r.code != 0 {
				t.Fatalf("run: exit %d %s", r.code, r.stderr)
			}
			if r := imageSession(t, "run", c.path, "--read-only", "-q", "--", "cat", "/root/format-test"); r.stdout != "written\n" {
				t.Errorf("the write did not stay in the image: %q %s", r.stdout, r.stderr)
			}
			if out, err := exec.Command("qemu-img", "check", c.path).CombinedOutput(); err != nil && c.format == "qcow2" {
				t.Errorf("qemu-img check after the session: %v %s", err, out)
			}
			if fileHash(t, base) != baseHash && c.path == top {
				t.Error("the backing file changed")
			}
		})
	}
}

// TestSnapshotLeavesTheTargetAsItWas: --snapshot on a raw image, a qcow2
// and a disk: the session writes, the target is byte for byte as it was,
// the overlay is gone; --snapshot-out keeps the overlay, a qcow2 on the
// image that holds the session's writes and opens like any image.
func TestSnapshotLeavesTheTargetAsItWas(t *testing.T) {
	testenv.Require(t)
	raw, _ := image(t, string(fixture.LayoutBIOS))
	q := convert(t, raw, "qcow2")
	diskImg, _ := image(t, string(fixture.LayoutBIOS))
	disk := attach(t, diskImg, false)
	for _, target := range []string{raw, q, disk} {
		hashed := target
		if target == disk {
			hashed = diskImg
		}
		before := fileHash(t, hashed)
		overlays, _ := filepath.Glob("/var/tmp/nixrescue-*-snapshot.qcow2")
		r := imageSession(t, "run", target, "--snapshot", "-q", "--", "sh", "-c", "echo throwaway > /root/snap; cat /root/snap")
		if r.code != 0 || r.stdout != "throwaway\n" {
			t.Errorf("%s: run --snapshot: exit %d %q %s", target, r.code, r.stdout, r.stderr)
		}
		if fileHash(t, hashed) != before {
			t.Errorf("%s changed under --snapshot", target)
		}
		if after, _ := filepath.Glob("/var/tmp/nixrescue-*-snapshot.qcow2"); len(after) != len(overlays) {
			t.Errorf("an overlay was left: %v", after)
		}
	}
	out := filepath.Join(t.TempDir(), "repair.qcow2")
	before := fileHash(t, raw)
	if r := imageSession(t, "run", raw, "--snapshot-out", out, "-q", "--", "sh", "-c", "echo kept > /root/snap"); r.code != 0 {
		t.Fatalf("run --snapshot-out: exit %d %s", r.code, r.stderr)
	}
	if fileHash(t, raw) != before {
		t.Error("the image changed under --snapshot-out")
	}
	rep := inspected(t, out)
	if rep.Format == nil || rep.Format.Format != "qcow2" || len(rep.Format.Backing) != 1 || rep.Format.Backing[0].File != raw {
		t.Errorf("the overlay: %+v, want a qcow2 on %s", rep.Format, raw)
	}
	if r := imageSession(t, "run", out, "--read-only", "-q", "--", "cat", "/root/snap"); r.stdout != "kept\n" {
		t.Errorf("the overlay lacks the session's write: %q %s", r.stdout, r.stderr)
	}
	r := imageSession(t, "run", raw, "--snapshot-out", out, "-q", "--", "true")
	oneLine(t, r, "--snapshot-out "+out+": the file exists")
}

// TestRebuildQcow2ThenBoot: the manual procedure's repair on a qcow2 of the
// real-Nix disk, which then boots generation 3; the same repair under
// --snapshot-out leaves the raw image as it was and its overlay boots.
func TestRebuildQcow2ThenBoot(t *testing.T) {
	testenv.Require(t)
	raw := realNixImage(t, imgRealNix)
	q := convert(t, raw, "qcow2")
	if r := imageSession(t, append([]string{"rebuild", q, "-q"}, rebuildFlags()...)...); r.code != 0 {
		t.Fatalf("rebuild on the qcow2: exit %d %s", r.code, r.stderr)
	}
	bootFormat(t, q, "qcow2", "booting generation 3")
	out := filepath.Join(t.TempDir(), "repair.qcow2")
	before := fileHash(t, raw)
	if r := imageSession(t, append([]string{"rebuild", raw, "--snapshot-out", out}, rebuildFlags()...)...); r.code != 0 {
		t.Fatalf("rebuild --snapshot-out: exit %d %s", r.code, r.stderr)
	}
	if fileHash(t, raw) != before {
		t.Error("the image changed under --snapshot-out")
	}
	bootFormat(t, out, "qcow2", "booting generation 3")
}

// bootFormat boots an image of a format by BIOS and wants marker.
func bootFormat(t *testing.T, img, format, marker string) {
	t.Helper()
	r, err := vm.Machine{Disks: []vm.Disk{{Path: img, Format: format}}, Timeout: 60 * time.Second}.Boot(context.Background())
	if err != nil || r.TimedOut || !strings.Contains(r.Output, marker) {
		t.Errorf("boot %s: %v, timed out %v, want %q:\n%s", img, err, r.TimedOut, marker, r.Output)
	}
}

// TestImageBadInput: what is wrong with an image is said in one line
// that names the fix; nothing is left running or attached, and the image
// is as it was.
func TestImageBadInput(t *testing.T) {
	testenv.Require(t)
	raw, _ := image(t, string(fixture.LayoutBIOS))
	q := convert(t, raw, "qcow2")
	dir := t.TempDir()
	truncated := filepath.Join(dir, "truncated.qcow2")
	b, _ := os.ReadFile(q)
	if err := os.WriteFile(truncated, b[:len(b)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	orphan := filepath.Join(dir, "orphan.qcow2")
	gone := filepath.Join(dir, "gone.qcow2")
	encrypted := filepath.Join(dir, "encrypted.qcow2")
	for _, args := range [][]string{
		{"create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", gone, "-u", orphan, "100M"},
		{"create", "-q", "--object", "secret,id=s,data=x", "-f", "qcow2", "-o", "encrypt.format=luks,encrypt.key-secret=s,encrypt.iter-time=50", encrypted, "100M"},
	} {
		// qemu-img times its key derivation by CPU time, which a busy
		// machine sometimes reports as none: tried again.
		var out []byte
		var err error
		for i := 0; i < 5; i++ {
			if out, err = exec.Command("qemu-img", args...).CombinedOutput(); err == nil {
				break
			}
		}
		if err != nil {
			t.Fatalf("qemu-img %v: %v %s", args, err, out)
		}
	}
	// A VMDK of a version no qemu reads.
	unreadable := convert(t, raw, "vmdk")
	vb, _ := os.ReadFile(unreadable)
	bin.LittleEndian.PutUint32(vb[4:], 99)
	os.WriteFile(unreadable, vb, 0o644)
	// A host without qemu-storage-daemon: qemu-img and the system's own
	// tools only.
	noDaemon := t.TempDir()
	os.Symlink("/usr/bin/qemu-img", filepath.Join(noDaemon, "qemu-img"))
	cases := []struct {
		name, image, want string
		env               []string
	}{
		{"a truncated qcow2", truncated, "qemu-img check finds it damaged", nil},
		{"a missing backing file", orphan, "its backing file " + gone + " is missing", nil},
		{"an encrypted qcow2", encrypted, "encrypted qcow2, which nixrescue does not open", nil},
		{"a format qemu cannot read", unreadable, "qemu cannot read its format", nil},
		{"no qemu-storage-daemon", q, "no qemu-storage-daemon", []string{"PATH=" + noDaemon + ":/usr/sbin:/sbin"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := fileHash(t, c.image)
			host := testenv.SnapshotHost(t)
			cmd := command(context.Background(), "run", c.image, "-q", "--", "true")
			cmd.Env = append(os.Environ(), c.env...)
			var stderr strings.Builder
			cmd.Stderr = &stderr
			err := cmd.Run()
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			}
			oneLine(t, result{code: code, stderr: stderr.String()}, c.want)
			testenv.AssertHostUnchanged(t, host)
			if fileHash(t, c.image) != before {
				t.Error("the image changed")
			}
		})
	}
}

// TestImageHeldByARunningVM: an image whose qemu lock another program
// holds (a running VM; here a qemu-storage-daemon) is refused for a write
// in one line; --read-only and --snapshot work on it, with a warning, and
// leave it as it was.
func TestImageHeldByARunningVM(t *testing.T) {
	testenv.Require(t)
	raw, _ := image(t, string(fixture.LayoutBIOS))
	q := convert(t, raw, "qcow2")
	holder := exec.Command("qemu-storage-daemon", "--blockdev", "driver=file,node-name=f,filename="+q, "--blockdev", "driver=qcow2,node-name=q,file=f")
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { holder.Process.Kill(); holder.Wait() }()
	for deadline := time.Now().Add(10 * time.Second); !nrimage.InUse(q); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("qemu-storage-daemon does not hold the image's lock")
		}
	}
	before := fileHash(t, q)
	host := testenv.SnapshotHost(t)
	oneLine(t, nixrescue(t, "run", q, "-q", "--", "touch", "/written"), "another program is using the image (qemu's lock is held: a running VM?): shut that VM down, or pass --read-only or --snapshot")
	for _, flag := range []string{"--read-only", "--snapshot"} {
		r := nixrescue(t, "run", q, "-q", flag, "--", "cat", "/etc/hostname")
		if r.code != 0 || r.stdout != "nixfixture\n" || !strings.Contains(r.stderr, "another program (a running VM?) is using") {
			t.Errorf("%s on a held image: exit %d %q %s", flag, r.code, r.stdout, r.stderr)
		}
	}
	testenv.AssertHostUnchanged(t, host)
	if fileHash(t, q) != before {
		t.Error("the held image changed")
	}
}

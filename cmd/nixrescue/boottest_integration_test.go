package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nixrescue/nixrescue/hack/debs"
	"github.com/nixrescue/nixrescue/hack/fixture"
	"github.com/nixrescue/nixrescue/hack/testenv"
	"github.com/nixrescue/nixrescue/hack/vm"
	"github.com/nixrescue/nixrescue/runtime/commands"
)

// kernelImages are fixture images whose generations carry Debian's
// kernel, built once per run (by name) and copied for each test.
var kernelImages struct {
	mu    sync.Mutex
	built map[string]string
}

// kernelImage builds fixture image name with o, its generations booting
// Debian's kernel with a real Nix and GRUB, once per run, and returns a
// copy of it for the test.
func kernelImage(t *testing.T, name string, o fixture.ImageOptions) string {
	t.Helper()
	images.once.Do(buildImages)
	if images.err != nil {
		t.Fatal(images.err)
	}
	kernelImages.mu.Lock()
	path, ok := kernelImages.built[name]
	if !ok {
		a, err := debs.ArchOf(o.Root.Arch)
		if err != nil {
			kernelImages.mu.Unlock()
			t.Fatal(err)
		}
		k, err := vm.DebianKernelFor(a)
		if err != nil {
			kernelImages.mu.Unlock()
			t.Fatal(err)
		}
		o.Root.RealNix, o.Root.Kernel = true, k.Image
		img, err := fixture.BuildImage(filepath.Join(images.dir, name+".img"), o)
		if err != nil {
			kernelImages.mu.Unlock()
			t.Fatal(err)
		}
		if kernelImages.built == nil {
			kernelImages.built = map[string]string{}
		}
		path = img.Path
		kernelImages.built[name] = path
	}
	kernelImages.mu.Unlock()
	dst := filepath.Join(t.TempDir(), name+".img")
	if out, err := exec.Command("cp", "--sparse=always", path, dst).CombinedOutput(); err != nil {
		t.Fatalf("copy: %v %s", err, out)
	}
	return dst
}

// bootableImage is a disk that boots for real: generation 1 looking for
// a root that is on no disk, generation 2 with a unit that fails; GRUB
// for BIOS installed, as the machine's installation left it.
func bootableImage(t *testing.T) string {
	return kernelImage(t, "bootable", fixture.ImageOptions{Layout: fixture.LayoutBIOS, Root: fixture.Options{BootFaults: true}})
}

// bootTest runs boot-test --json with args and reads its report.
func bootTest(t *testing.T, args ...string) (commands.BootTestReport, result) {
	t.Helper()
	r := nixrescueWithin(t, 10*time.Minute, append([]string{"boot-test", "--json"}, args...)...)
	var rep commands.BootTestReport
	if r.code != 125 {
		if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
			t.Fatalf("boot-test %v: exit %d, report: %v\n%s%s", args, r.code, err, r.stdout, r.stderr)
		}
	}
	return rep, r
}

// TestBootTest: a disk whose boot code is gone is refused, saying so; after
// rebuild --boot-test, generation 3 reaches multi-user through GRUB on
// BIOS (milestones in order); generation 1 stops in stage 1 waiting for
// its root, generation 2 reaches multi-user with its failed unit; OVMF
// on a BIOS disk gets nowhere before the timeout; a generation that is
// not there and a timeout too short are refused. The image is unchanged
// by each boot test, and nothing is left on the host.
func TestBootTest(t *testing.T) {
	testenv.Require(t)
	img := bootableImage(t)
	host := testenv.SnapshotHost(t)
	// Its boot code gone (the MBR's first 440 bytes), as a disk that lost
	// it: refused, saying so.
	broken := filepath.Join(t.TempDir(), "no-boot-code.img")
	if out, err := exec.Command("cp", "--sparse=always", img, broken).CombinedOutput(); err != nil {
		t.Fatalf("copy: %v %s", err, out)
	}
	if f, err := os.OpenFile(broken, os.O_WRONLY, 0); err != nil {
		t.Fatal(err)
	} else {
		_, err = f.WriteAt(make([]byte, 440), 0)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	_, r := bootTest(t, broken)
	oneLine(t, r, "no bootloader installed: the configuration's GRUB for BIOS is not in the disk's boot sector")
	rb := imageSession(t, append([]string{"rebuild", img, "--json", "--boot-test"}, rebuildFlags()...)...)
	var rep commands.RunReport
	if rb.code != 0 || json.Unmarshal([]byte(rb.stdout), &rep) != nil || rep.BootTest == nil {
		t.Fatalf("rebuild --boot-test: exit %d\n%s\n%s", rb.code, rb.stdout, rb.stderr)
	}
	if bt := rep.BootTest; !bt.Passed || bt.Booted.Generation != 3 || bt.Reached != "multi-user" || bt.Firmware != "bios" || bt.Entry != "NixOS - Configuration 3" ||
		bt.Interface != "virtio" || bt.InterfaceWhy != "nixrescue cannot tell the target machine's: the default" {
		t.Errorf("the boot after the rebuild: %+v", bt)
	} else {
		var last float64
		for _, m := range bt.Milestones {
			if m.MS < last {
				t.Errorf("milestones out of order: %+v", bt.Milestones)
			}
			last = m.MS
		}
		if len(bt.Milestones) != 7 {
			t.Errorf("milestones %+v, want all seven", bt.Milestones)
		}
		t.Logf("to multi-user (%s): %+v", bt.Accel, bt.Milestones)
	}
	// The boot's progress, as it comes: where it starts, how, and each
	// milestone.
	for _, want := range []string{"nixrescue: the rebuild succeeded; now the boot test: " + img + " boots in a throwaway VM",
		"the test passes at multi-user, and gives up after 5m0s", "nixrescue: boot: stage-1 reached after ", "nixrescue: boot: multi-user reached after "} {
		if !strings.Contains(rb.stderr, want) {
			t.Errorf("rebuild --boot-test does not say %q:\n%s", want, rb.stderr)
		}
	}
	if !strings.Contains(rb.stderr, "nixrescue: booting with KVM") && !strings.Contains(rb.stderr, "nixrescue: booting under software emulation (TCG, ") {
		t.Errorf("rebuild --boot-test does not say which accelerator it boots with:\n%s", rb.stderr)
	}
	before := fileHash(t, img)
	console := filepath.Join(t.TempDir(), "console.log")
	g1, r := bootTest(t, img, "--generation", "1", "--console", console)
	if r.code != 1 || g1.Passed || g1.Reached != "stage-1" || !strings.Contains(strings.Join(g1.Failure, "\n"), "waiting for device "+fixture.MissingRoot) ||
		strings.Contains(strings.Join(g1.Failure, "\n"), "Kernel panic") {
		t.Errorf("generation 1 (no root): exit %d %+v", r.code, g1)
	}
	if b, _ := os.ReadFile(console); !bytes.Contains(b, []byte("An error occurred in stage 1")) {
		t.Errorf("the console file lacks stage 1's error:\n%s", b)
	}
	g2, r := bootTest(t, img, "--generation", "2")
	if r.code != 0 || !g2.Passed || len(g2.FailedUnits) != 1 || g2.FailedUnits[0] != fixture.FailingUnit {
		t.Errorf("generation 2 (a failing unit): exit %d %+v", r.code, g2)
	}
	for _, l := range g2.Failure {
		if !strings.Contains(l, "[FAILED]") {
			t.Errorf("a boot that passed reports %q, which did not stop it", l)
		}
	}
	// --until stage-1 stops there, and says so.
	r = nixrescueWithin(t, 10*time.Minute, "boot-test", img, "--until", "stage-1")
	if r.code != 0 || !strings.Contains(r.stdout, "boot test passed: reached stage-1 (wanted stage-1)") || !strings.Contains(r.stdout, "milestones: firmware ") ||
		strings.Contains(r.stdout, "root ") || !strings.Contains(r.stderr, "nixrescue: boot: stage-1 reached after ") {
		t.Errorf("--until stage-1: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	efi, r := bootTest(t, img, "--firmware", "efi", "--timeout", "20s", "--until", "stage-1")
	if r.code != 1 || !efi.TimedOut || efi.Reached == "stage-1" || !strings.Contains(strings.Join(efi.Failure, "\n"), "no stage-1 within the timeout (20s): the boot was stopped there, having reached ") {
		t.Errorf("OVMF on a BIOS disk: exit %d %+v", r.code, efi)
	}
	_, r = bootTest(t, img, "--generation", "9")
	oneLine(t, r, "generation 9")
	_, r = bootTest(t, img, "--timeout", "2s")
	oneLine(t, r, "--timeout 2s: no boot gets anywhere that fast")
	noQemu := t.TempDir()
	for _, tool := range []string{"qemu-img", "qemu-storage-daemon"} {
		os.Symlink("/usr/bin/"+tool, filepath.Join(noQemu, tool))
	}
	c := command(context.Background(), "boot-test", img)
	c.Env = append(os.Environ(), "PATH="+noQemu+":/usr/sbin:/sbin")
	var errb bytes.Buffer
	c.Stderr = &errb
	err := c.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	}
	oneLine(t, result{code: code, stderr: errb.String()}, "no qemu-system-x86_64, which boot-test needs: install qemu-system-x86")
	if fileHash(t, img) != before {
		t.Error("boot-test changed the image")
	}
	interruptedBootTest(t, img)
	killedBootTest(t, img)
	testenv.AssertHostUnchanged(t, host)
	if overlays, _ := filepath.Glob("/var/tmp/nixrescue-*-boot-test.qcow2"); len(overlays) > 0 {
		t.Errorf("overlays left: %v", overlays)
	}
}

// killedBootTest kills a boot test while its VM runs (OVMF on the BIOS
// disk sits in its boot manager until the timeout): cleanup ends qemu and
// removes the overlay.
// interruptedBootTest: a Ctrl-C (SIGINT to nixrescue alone: the VM is
// in a process group of its own) while the VM boots ends the VM and the
// boot test by itself, status 130, nothing for cleanup to do.
func interruptedBootTest(t *testing.T, img string) {
	t.Helper()
	cmd, stderr := bootingVM(t, img)
	cmd.Process.Signal(syscall.SIGINT)
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 130 || !strings.Contains(stderr.String(), "nixrescue: interrupted") {
		t.Errorf("boot-test interrupted: %v\n%s", err, stderr.String())
	}
	if bootTestQemu() {
		t.Error("qemu still runs after the boot test was interrupted")
	}
	if r := nixrescue(t, "cleanup", "--json"); r.code != 0 || strings.Contains(r.stdout, "nixrescue-") {
		t.Errorf("cleanup found something to do: exit %d %s %s", r.code, r.stdout, r.stderr)
	}
}

func killedBootTest(t *testing.T, img string) {
	t.Helper()
	cmd, _ := bootingVM(t, img)
	cmd.Process.Signal(syscall.SIGKILL)
	waitExit(t, cmd)
	if r := nixrescue(t, "cleanup"); r.code != 0 {
		t.Errorf("cleanup: exit %d %s", r.code, r.stderr)
	}
	deadline := time.Now().Add(10 * time.Second)
	for bootTestQemu() && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if bootTestQemu() {
		t.Error("qemu still runs after cleanup")
	}
}

// bootingVM starts a boot test of img that runs long (OVMF on a BIOS
// disk gets nowhere) and returns once its qemu runs.
func bootingVM(t *testing.T, img string) (*exec.Cmd, *safeBuffer) {
	t.Helper()
	cmd := command(context.Background(), "boot-test", img, "--firmware", "efi", "--timeout", "5m")
	stderr := &safeBuffer{}
	cmd.Stderr = stderr
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(60 * time.Second); !bootTestQemu(); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("no qemu after 60 s: %s", stderr.String())
		}
	}
	return cmd, stderr
}

// bootTestQemu tells whether a qemu-system runs a boot test's overlay.
func bootTestQemu() bool {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, _ := os.ReadFile(p)
		if bytes.Contains(b, []byte("qemu-system")) && bytes.Contains(b, []byte("-boot-test.qcow2")) {
			return true
		}
	}
	return false
}

package boottest

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nixrescue/nixrescue/hack/testenv"
)

// TestKVMHangGoesToTCG: a machine that goes silent under KVM after its
// firmware (under nested virtualisation, qemu's default CPU model hangs
// a kernel's early boot: no line after the bootloader's; here the disk's
// boot sector jumps to itself, a hang on every host and accelerator) is
// taken for a KVM hang once kvmGrace has passed without stage 1: qemu is
// started again under TCG, the note says why, and the hang is
// remembered for this kernel. kvmGrace is what keeps the switch within
// 10 s of the boot test's start.
func TestKVMHangGoesToTCG(t *testing.T) {
	testenv.Require(t)
	testenv.RequireTool(t, "qemu-system-x86_64")
	testenv.RequireTool(t, "qemu-img")
	if !kvmUsable() {
		t.Fatal("/dev/kvm does not open: this test needs KVM present (working or hanging)")
	}
	if kvmGrace > 9*time.Second {
		t.Fatalf("kvmGrace is %v: the switch to TCG would come later than 10 s after the start", kvmGrace)
	}
	dir := t.TempDir()
	raw, disk := filepath.Join(dir, "hang.raw"), filepath.Join(dir, "hang.qcow2")
	sector := make([]byte, 1<<20)
	copy(sector, []byte{0xeb, 0xfe}) // jmp $
	sector[510], sector[511] = 0x55, 0xaa
	if err := os.WriteFile(raw, sector, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, disk).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img convert: %v %s", err, out)
	}
	// Once it says it goes to TCG, the test has seen what it looks for:
	// the boot under TCG, which would hang as long, is cancelled.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var notes []string
	m := Machine{Disk: disk, Interface: "virtio", Dir: dir, Timeout: time.Minute, Until: Stage1, Accel: "auto",
		KVMHangs: filepath.Join(dir, "cache", "kvm-hangs"), KVMCPU: "qemu64", Note: func(s string) {
			notes = append(notes, s)
			if strings.Contains(s, "software emulation (TCG") {
				cancel()
			}
		}}
	_, err := Boot(ctx, m)
	said := strings.Join(notes, "\n")
	if !errors.Is(err, context.Canceled) || len(notes) != 2 || !strings.Contains(notes[0], "booting with KVM") ||
		!strings.Contains(notes[1], "KVM made no progress in 8 s") {
		t.Errorf("boot: %v; notes:\n%s", err, said)
	}
	if !m.kvmMemory().hangs() {
		t.Error("the hang was not remembered for this kernel")
	}
}

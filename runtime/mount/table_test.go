package mount

import (
	"os"
	"testing"
)

// TestKernelThread: kthreadd (PID 2) is a kernel thread, this test is
// not: a kernel thread's mount namespace is never a reason to refuse a
// target.
func TestKernelThread(t *testing.T) {
	if _, err := os.Stat("/proc/2/stat"); err != nil {
		t.Skip("no PID 2 in this PID namespace")
	}
	if !kernelThread("/proc/2") {
		t.Error("PID 2 (kthreadd) is not taken for a kernel thread")
	}
	if kernelThread("/proc/self") {
		t.Error("this process is taken for a kernel thread")
	}
}

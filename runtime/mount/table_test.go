package mount

import (
	"testing"
)

// TestKernelThread: kthreadd's stat line (flags with PF_KTHREAD,
// 0x00200000) is a kernel thread's, a user process's is not, even with
// spaces and parentheses in its name; and this test's own process, read
// from /proc, is not: a kernel thread's mount namespace is never a reason
// to refuse a target.
func TestKernelThread(t *testing.T) {
	kthreadd := "2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0 0 11 0 0 20 0 1 0 2 0 0 18446744073709551615 0 0 0 0 0 0 0 2147483647 0 0 0 0 0 1 0 0 0 0 0 0 0 0 0 0 0 0 0"
	user := "4242 (my (odd) prog) S 1 4242 4242 0 -1 4194560 110 0 0 0 0 0 0 0 20 0 1 0 98 2207744 230 18446744073709551615"
	for line, want := range map[string]bool{kthreadd: true, user: false, "": false, "1 (init": false} {
		if got := kernelThreadStat(line); got != want {
			t.Errorf("%q: %v, want %v", line, got, want)
		}
	}
	if kernelThread("/proc/self") {
		t.Error("this process is taken for a kernel thread")
	}
}

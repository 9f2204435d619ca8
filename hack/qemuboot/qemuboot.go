// Package qemuboot boots a disk image in qemu and returns what its serial
// console printed: the proof that a repaired disk boots. It is for tests
// and by hand (go run ./hack/qemuboot IMAGE).
//
// The machine is Debian's qemu-system-x86_64 with SeaBIOS, 256 MiB, no
// network, no graphics; the image is attached read-write (GRUB may write
// its environment block) as a raw disk; -no-reboot makes a halt or a
// kernel panic end qemu. A disk that does not boot ends at the timeout.
package qemuboot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"time"
)

// ansiRE matches terminal escape sequences GRUB sends.
var ansiRE = regexp.MustCompile(`\x1b\[[0-9;?]*[A-Za-z]|\r`)

// Result is what a boot printed.
type Result struct {
	// Output is the serial console, escape codes and carriage returns
	// removed.
	Output string
	// TimedOut is true when qemu did not end by itself.
	TimedOut bool
	Elapsed  time.Duration
}

// Boot boots image for at most timeout.
func Boot(ctx context.Context, image string, timeout time.Duration) (Result, error) {
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		return Result{}, errors.New("qemu-system-x86_64 is not installed: run hack/install-deps")
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, qemu, "-nographic", "-serial", "mon:stdio", "-nic", "none", "-m", "256",
		"-drive", "file="+image+",format=raw", "-no-reboot")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err = cmd.Run()
	r := Result{Output: ansiRE.ReplaceAllString(out.String(), ""), Elapsed: time.Since(start)}
	if ctx.Err() != nil {
		r.TimedOut = true
		return r, nil
	}
	if err != nil {
		return r, fmt.Errorf("qemu: %v: %s", err, r.Output)
	}
	return r, nil
}

// Package helper is the part of nixrescue that runs inside the recovery
// container. The nixrescue binary is bound read-only at specs.HelperPath and
// started under that name; main hands control here before anything else.
//
// It has two jobs:
//   - hold: the container's first process. It keeps the container alive,
//     and starts activation, the command and the rest of the session's
//     processes in it when nixrescue asks over its control connection
//     (protocol.go; runtime/backend/holdctl is the other end): a fork and an
//     exec instead of a runtime's exec. It exits when that connection ends
//     (nixrescue is done, or dead) or on SIGTERM; without one (a bundle run
//     by hand) it only waits for SIGTERM. It is written in C and runs
//     before Go starts (hold.c; hold.go says why).
//   - probe-sandbox: tells whether Nix's build sandbox can work in the
//     container (see probeSandbox).
//
// The binary runs with none of the host's files around it, so it must be
// linked statically; session refuses a dynamic build before starting.
package helper

import (
	"debug/elf"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Exit statuses of a command that cannot be run, as POSIX shells and
// `docker run` give them (session maps the runtimes' start errors to them).
const (
	ExitNotFound      = 127
	ExitCannotExecute = 126
)

// SessionFDEnv names, in hold's environment, the descriptor of its control
// socket, whose other end only nixrescue holds (hold.h has the same). It
// must be said, not assumed: when the hold was Go, Go's runtime (1.25 and
// later) kept the cgroup's CPU quota files open at the lowest free
// descriptors, so a hold started without one found such a file at fd 3;
// taking it for nixrescue's end, it read "-1", then EOF, and exited.
const SessionFDEnv = "NIXRESCUE_SESSION_FD"

// Main runs the helper with args (without argv[0]) and never returns.
func Main(args []string) {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "nixrescue helper: no mode given (hold or probe-sandbox)")
		os.Exit(2)
	}
	switch args[0] {
	case "hold":
		// hold.c's constructor takes it before Go starts, when the binary
		// runs as HelperPath; main calls Main only then.
		fmt.Fprintln(os.Stderr, "nixrescue helper: the hold did not start: it runs only as the container's /run/nixrescue/nixrescue")
		os.Exit(2)
	case "probe-sandbox":
		os.Exit(probeSandbox())
	default:
		fmt.Fprintf(os.Stderr, "nixrescue helper: unknown mode %q\n", args[0])
		os.Exit(2)
	}
}

// probeSandbox does, in a throwaway mount namespace, the mount steps of
// Nix's build sandbox (libstore's build/local-derivation-goal.cc): make
// '/' private, then pivot_root into a new root. The first fails where '/'
// is not a mount of its own (a plain chroot: "unable to make '/' private"),
// the second on a root that cannot be pivoted away from (an initramfs:
// "cannot pivot old root directory"). Exit 0 when both work.
func probeSandbox() int {
	runtime.LockOSThread() // the namespace is this thread's; it exits with it
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		fmt.Fprintf(os.Stderr, "cannot create a mount namespace: %v\n", err)
		return 1
	}
	if err := unix.Mount("", "/", "", unix.MS_PRIVATE|unix.MS_REC, ""); err != nil {
		fmt.Fprintf(os.Stderr, "unable to make '/' private: %v\n", err)
		return 1
	}
	// A tmpfs over /tmp in this namespace only: nothing is left behind.
	steps := []func() error{
		func() error { return unix.Mount("probe", "/tmp", "tmpfs", 0, "") },
		func() error { return os.Mkdir("/tmp/root", 0o700) },
		func() error { return unix.Mount("probe", "/tmp/root", "tmpfs", 0, "") },
		func() error { return os.Mkdir("/tmp/root/old", 0o700) },
	}
	for _, step := range steps {
		if err := step(); err != nil {
			fmt.Fprintf(os.Stderr, "cannot prepare a sandbox root: %v\n", err)
			return 1
		}
	}
	if err := unix.PivotRoot("/tmp/root", "/tmp/root/old"); err != nil {
		fmt.Fprintf(os.Stderr, "cannot pivot old root directory: %v\n", err)
		return 1
	}
	return 0
}

// LookPath finds file as runc does for a process (os/exec's rules, with
// the process's own PATH from env): a name with a slash is itself, another
// is the first executable regular file of that name in PATH's
// directories, as stat (following links) sees them. Not found is said in
// os/exec's words, which backend.StartError reads.
func LookPath(file string, env []string, stat func(string) (os.FileInfo, error)) (string, error) {
	if strings.Contains(file, "/") {
		return file, nil
	}
	pathList := ""
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, "PATH="); ok {
			pathList = v
		}
	}
	for _, dir := range filepath.SplitList(pathList) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, file)
		if st, err := stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("exec: %q: executable file not found in $PATH", file)
}

// ExitStatus is a wait status as a shell reports it: the exit code, or
// 128+N for a process killed by signal N.
func ExitStatus(ws syscall.WaitStatus) int {
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}

// Binary is the running binary, which serves as the in-container
// helper (bound at specs.HelperPath). It must be static: the target has none of the host's libraries.
func Binary() (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("find the nixrescue binary: %w", err)
	}
	exe, err = filepath.EvalSymlinks(exe)
	if err != nil {
		return "", fmt.Errorf("find the nixrescue binary: %w", err)
	}
	f, err := elf.Open(exe)
	if err != nil {
		return "", fmt.Errorf("read the nixrescue binary: %w", err)
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			return "", fmt.Errorf("%s is dynamically linked, but it also runs inside the target, which has none of this host's libraries: build it static (see the README)", exe)
		}
	}
	return exe, nil
}

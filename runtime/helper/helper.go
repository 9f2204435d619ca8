// Package helper is the part of nixrescue that runs inside the recovery
// container. The nixrescue binary is bound read-only at specs.HelperPath and
// started under that name; main hands control here before anything else.
//
// It has two jobs:
//   - hold: the container's first process. It keeps the container alive
//     while activation and the command run as further processes in it, and
//     exits when nixrescue goes away (the pipe named by SessionFDEnv reaches
//     EOF, where the backend passes one) or on SIGTERM. As PID 1 of a private PID namespace it reaps
//     orphans, which no program of the target would do for us.
//   - probe-sandbox: tells whether Nix's build sandbox can work in the
//     container (see probeSandbox).
//
// The binary runs with none of the host's files around it, so it must be
// linked statically; session refuses a dynamic build before starting.
package helper

import (
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"strconv"

	"golang.org/x/sys/unix"
)

// Exit statuses of a command that cannot be run, as POSIX shells and
// `docker run` give them (session maps the runtimes' start errors to them).
const (
	ExitNotFound      = 127
	ExitCannotExecute = 126
)

// SessionFDEnv names, in hold's environment, the descriptor of the pipe
// whose write end only nixrescue holds. It must be said, not assumed: Go's
// runtime (1.25 and later) keeps the cgroup's CPU quota files open to
// follow the limit, and takes the lowest free descriptors, so a hold
// started without a pipe finds one of them at fd 3, reads "-1" and EOF,
// and would take that for nixrescue's end.
const SessionFDEnv = "NIXRESCUE_SESSION_FD"

// Main runs the helper with args (without argv[0]) and never returns.
func Main(args []string) {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "nixrescue helper: no mode given (hold or probe-sandbox)")
		os.Exit(2)
	}
	switch args[0] {
	case "hold":
		hold()
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

// hold waits for the end of the session and reaps children meanwhile.
func hold() {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, unix.SIGTERM, unix.SIGINT, unix.SIGHUP, unix.SIGCHLD)
	done := make(chan struct{})
	if f := sessionPipe(); f != nil {
		go func() {
			_, _ = io.Copy(io.Discard, f)
			close(done)
		}()
	}
	for {
		select {
		case <-done:
			os.Exit(0)
		case s := <-sigs:
			if s == unix.SIGCHLD {
				reap()
				continue
			}
			os.Exit(0)
		}
	}
}

// sessionPipe is the pipe named by SessionFDEnv, or nil when there is none
// (the containerd backend ends the task itself) or it is not a pipe.
func sessionPipe() *os.File {
	fd, err := strconv.Atoi(os.Getenv(SessionFDEnv))
	if err != nil || fd < 3 {
		return nil
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFIFO {
		return nil
	}
	return os.NewFile(uintptr(fd), "session")
}

// reap collects every exited child without blocking.
func reap() {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
	}
}

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
//     by hand) it only waits for SIGTERM.
//   - probe-sandbox: tells whether Nix's build sandbox can work in the
//     container (see probeSandbox).
//
// The binary runs with none of the host's files around it, so it must be
// linked statically; session refuses a dynamic build before starting.
package helper

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
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
// socket, whose other end only nixrescue holds. It must be said, not
// assumed: Go's runtime (1.25 and later) keeps the cgroup's CPU quota
// files open to follow the limit, at the lowest free descriptors, so a
// hold started without one finds such a file at fd 3; taking it for
// nixrescue's end, it read "-1", then EOF, and exited.
const SessionFDEnv = "NIXRESCUE_SESSION_FD"

// Main runs the helper with args (without argv[0]) and never returns.
func Main(args []string) {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "nixrescue helper: no mode given (hold or probe-sandbox)")
		os.Exit(2)
	}
	switch args[0] {
	case "hold":
		listen := ""
		if len(args) == 3 && args[1] == "--listen" {
			listen = args[2]
		}
		hold(listen)
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

// hold waits for the end of the session, and meanwhile starts the
// session's processes when asked (see protocol.go).
func hold(listen string) {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, unix.SIGTERM, unix.SIGINT, unix.SIGHUP)
	go func() {
		<-sigs
		os.Exit(0)
	}()
	conn, err := controlConn(listen)
	if err != nil {
		fmt.Fprintf(os.Stderr, "nixrescue hold: %v\n", err)
		os.Exit(1)
	}
	if conn == nil {
		select {} // until a signal
	}
	serve(conn)
	os.Exit(0)
}

// controlConn is the connection to nixrescue: the socket named by
// SessionFDEnv, or else the one connection accepted at listen; nil when
// there is neither (hold only waits).
func controlConn(listen string) (*net.UnixConn, error) {
	if f := sessionSocket(); f != nil {
		defer f.Close()
		return UnixConn(f)
	}
	if listen == "" {
		return nil, nil
	}
	l, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: listen, Net: "unixpacket"})
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", listen, err)
	}
	// One connection, nixrescue's, made before any program of the
	// target runs: then nobody else can connect.
	c, err := l.AcceptUnix()
	l.Close() // removes the socket file too
	if err != nil {
		return nil, fmt.Errorf("accept on %s: %w", listen, err)
	}
	return c, nil
}

// sessionSocket is the socket named by SessionFDEnv, or nil when there is
// none or it is not a socket.
func sessionSocket() *os.File {
	fd, err := strconv.Atoi(os.Getenv(SessionFDEnv))
	if err != nil || fd < 3 {
		return nil
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		return nil
	}
	return os.NewFile(uintptr(fd), "session")
}

// serve runs what nixrescue asks for until it closes the connection.
func serve(c *net.UnixConn) {
	type request struct {
		r     Request
		files []*os.File
	}
	reqs := make(chan request)
	go func() {
		defer close(reqs)
		for {
			var r Request
			files, err := Receive(c, &r)
			if err != nil {
				return
			}
			reqs <- request{r, files}
		}
	}()
	// One reaper for all: as PID 1 of a private PID namespace
	// (--isolate-pids) the hold also reaps the orphans reparented to it,
	// which no program of the target would do for us.
	chld := make(chan os.Signal, 8)
	signal.Notify(chld, unix.SIGCHLD)
	pid := 0
	for {
		select {
		case req, ok := <-reqs:
			if !ok {
				if pid > 0 {
					_ = unix.Kill(pid, unix.SIGKILL)
				}
				return
			}
			switch {
			case req.r.Start != nil && pid == 0:
				var master *os.File
				var err error
				pid, master, err = start(req.r.Start, req.files)
				closeAll(req.files)
				if err != nil {
					pid = 0
					_ = Send(c, Reply{Error: err.Error()})
					continue
				}
				if master != nil {
					_ = Send(c, Reply{Started: pid}, master)
					master.Close()
				} else {
					_ = Send(c, Reply{Started: pid})
				}
			case req.r.Start != nil:
				closeAll(req.files)
				_ = Send(c, Reply{Error: "a process is running already"})
			case req.r.Signal > 0 && pid > 0:
				closeAll(req.files)
				_ = unix.Kill(pid, unix.Signal(req.r.Signal))
			default:
				closeAll(req.files)
			}
		case <-chld:
			for {
				var ws unix.WaitStatus
				p, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
				if p <= 0 || err != nil {
					break
				}
				if p == pid {
					status := ExitStatus(syscall.WaitStatus(ws))
					pid = 0
					_ = Send(c, Reply{Exited: &status})
				}
			}
		}
	}
}

// start forks and executes the process asked for, on the files given
// (stdin, stdout, stderr) or on a new pty whose master it returns.
func start(s *Start, files []*os.File) (int, *os.File, error) {
	if len(s.Args) == 0 {
		return 0, nil, errors.New("no program given")
	}
	prog, err := LookPath(s.Args[0], s.Env, os.Stat)
	if err != nil {
		return 0, nil, err
	}
	attr := &syscall.ProcAttr{Dir: s.Cwd, Env: s.Env, Sys: &syscall.SysProcAttr{}}
	var master *os.File
	if s.TTY {
		m, slave, err := openPty(s.Width, s.Height)
		if err != nil {
			return 0, nil, err
		}
		defer slave.Close()
		master = m
		attr.Files = []uintptr{slave.Fd(), slave.Fd(), slave.Fd()}
		attr.Sys.Setsid, attr.Sys.Setctty, attr.Sys.Ctty = true, true, 0
	} else {
		if len(files) != 3 {
			return 0, nil, fmt.Errorf("%d files given for stdin, stdout and stderr", len(files))
		}
		attr.Files = []uintptr{files[0].Fd(), files[1].Fd(), files[2].Fd()}
	}
	pid, err := syscall.ForkExec(prog, s.Args, attr)
	if err != nil {
		if master != nil {
			master.Close()
		}
		return 0, nil, fmt.Errorf("exec %s: %w", prog, err)
	}
	return pid, master, nil
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

// openPty makes a pty on the container's devpts, of the size given.
func openPty(width, height uint16) (master, slave *os.File, err error) {
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("open a pty: %w", err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		m.Close()
		return nil, nil, fmt.Errorf("unlock the pty: %w", err)
	}
	if width > 0 && height > 0 {
		_ = unix.IoctlSetWinsize(int(m.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Col: width, Row: height})
	}
	// TIOCGPTPEER opens the peer of this very master (no path to look
	// up in /dev/pts); its argument is the open flags.
	fd, _, errno := unix.Syscall(unix.SYS_IOCTL, m.Fd(), unix.TIOCGPTPEER, uintptr(unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC))
	if errno != 0 {
		m.Close()
		return nil, nil, fmt.Errorf("open the pty's peer: %w", errno)
	}
	return m, os.NewFile(uintptr(fd), "pty"), nil
}

// ExitStatus is a wait status as a shell reports it: the exit code, or
// 128+N for a process killed by signal N.
func ExitStatus(ws syscall.WaitStatus) int {
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}

// Package embedded runs recovery containers with runc's libcontainer,
// linked into the nixrescue binary: no daemon and no other binary.
//
// libcontainer sets a container up by re-executing the running binary with
// the argument "init" (the nsenter package's C constructor joins the
// namespaces before the Go runtime starts); main must call MaybeInit first
// thing. Its state lives under the state directory given to New, one
// directory per container; New destroys the state that a killed nixrescue
// left behind.
package embedded

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/console"
	_ "github.com/opencontainers/cgroups/devices" // lets the cgroup manager apply device rules
	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/configs"
	_ "github.com/opencontainers/runc/libcontainer/nsenter" // joins namespaces in "init" before Go starts
	"github.com/opencontainers/runc/libcontainer/specconv"
	"github.com/opencontainers/runc/libcontainer/utils"
	rspec "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/nixrescue/nixrescue/runtime/backend"
	"github.com/nixrescue/nixrescue/runtime/backend/holdctl"
	"github.com/nixrescue/nixrescue/runtime/helper"
	"github.com/nixrescue/nixrescue/runtime/privatens"
	"github.com/nixrescue/nixrescue/runtime/roles"
)

// MaybeInit hands the process to libcontainer when it was started as a
// container's init (runtime/roles: RuncInit); it does not return then.
// Call it from an init() function of package main, before anything else
// runs.
//
// Otherwise it locks the main goroutine to the main thread for good. When
// libcontainer sets a container up it runs a goroutine that locks its
// thread, joins the container's mount namespace and exits without
// unlocking, so that Go ends the thread. Should that goroutine land on the
// main thread, which Go never ends, the process would stay in the
// container's mount namespace, keeping the container's mounts (and with
// them the target's filesystems and partitions) busy until it exits: seen
// as "remove partition 3: device or resource busy" and seconds of waiting
// at teardown, one session in a few when several ran at once. With main
// locked to it, no other goroutine ever runs on the main thread.
func MaybeInit() {
	if roles.Of(os.Args) == roles.RuncInit {
		libcontainer.Init()
	}
	runtime.LockOSThread()
}

// Runner is the embedded backend.
type Runner struct {
	stateDir string
	noPivot  bool
}

// Option configures a Runner.
type Option func(*Runner)

// WithNoPivot makes containers use MS_MOVE and chroot instead of
// pivot_root, for rescue systems running from an initramfs.
func WithNoPivot(on bool) Option { return func(r *Runner) { r.noPivot = on } }

// New returns a Runner keeping container state under stateDir. live tells
// whether a container id belongs to a session still running; the state of
// every other container found there is destroyed.
func New(stateDir string, live func(id string) bool, opts ...Option) (*Runner, error) {
	logrus.SetLevel(logrus.WarnLevel)
	r := &Runner{stateDir: stateDir}
	for _, o := range opts {
		o(r)
	}
	if err := r.destroyStale(live); err != nil {
		return nil, err
	}
	return r, nil
}

// Name implements backend.Runner.
func (r *Runner) Name() string { return "embedded" }

// Prewarm readies what the first container of the process costs, on
// goroutines of their own, while the session attaches and mounts (mostly
// waiting on the kernel and on blkid) instead of on the way of the
// container: encoding/json's encoders for libcontainer's configuration
// and state, which it writes to runc's init and to its state file, built
// once; and the kernel's cgroup attach lock (privatens.WarmCgroupAttach),
// which stays warm only for a moment: call Prewarm again shortly before
// the container is created.
func Prewarm() {
	encodersOnce.Do(func() {
		go func() { _, _ = json.Marshal(&libcontainer.State{}) }()
	})
	warmCgroupAttach()
}

var encodersOnce sync.Once

// warmCgroupAttach warms the kernel's cgroup attach lock on a goroutine of
// its own (privatens.WarmCgroupAttach).
func warmCgroupAttach() {
	go func() { _ = privatens.WarmCgroupAttach() }()
}

// destroyStale destroys containers whose session is gone.
func (r *Runner) destroyStale(live func(id string) bool) error {
	entries, err := os.ReadDir(r.stateDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		return fmt.Errorf("read container state directory: %w", err)
	}
	for _, e := range entries {
		if !e.IsDir() || (live != nil && live(e.Name())) {
			continue
		}
		if err := DestroyByID(r.stateDir, e.Name()); err != nil {
			return fmt.Errorf("destroy stale container %s: %w", e.Name(), err)
		}
	}
	return nil
}

// DestroyByID kills and removes a container found in stateDir.
func DestroyByID(stateDir, id string) error {
	c, err := libcontainer.Load(stateDir, id)
	if err != nil {
		// Unreadable state (a crash while it was written): nothing runs
		// that we could find through it.
		return os.RemoveAll(filepath.Join(stateDir, id))
	}
	if st, err := c.Status(); err == nil && st != libcontainer.Stopped {
		_ = c.Signal(unix.SIGKILL)
		waitStopped(c, 5*time.Second)
	}
	return c.Destroy()
}

func waitStopped(c *libcontainer.Container, limit time.Duration) {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if st, err := c.Status(); err != nil || st == libcontainer.Stopped {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Create implements backend.Runner.
func (r *Runner) Create(ctx context.Context, id string, spec *rspec.Spec) (backend.Container, error) {
	c, err := r.create(id, spec)
	if err != nil {
		return nil, err
	}
	// The hold serves this socket: it starts the session's processes, and
	// when nixrescue dies the kernel closes our end, the hold exits and
	// the container stops with it.
	hold, theirs, err := holdctl.Pair()
	if err != nil {
		_ = c.Destroy()
		return nil, err
	}
	c.hold = hold
	c.init = &libcontainer.Process{
		Args:       spec.Process.Args,
		Env:        append(slices.Clip(spec.Process.Env), helper.SessionFDEnv+"=3"),
		Cwd:        spec.Process.Cwd,
		Stderr:     os.Stderr,
		ExtraFiles: []*os.File{theirs}, // fd 3
		Rlimits:    c.rlimits,
		Init:       true,
	}
	err = c.lc.Run(c.init)
	theirs.Close()
	if err != nil {
		_ = c.Destroy()
		return nil, fmt.Errorf("start container: %w", err)
	}
	return c, nil
}

// CreateFirst implements backend.Runner: libcontainer's Start runs the
// container's init up to the point where it waits to execute p (runc
// create); first.Run lets it (runc start).
func (r *Runner) CreateFirst(ctx context.Context, id string, spec *rspec.Spec, p backend.Process) (backend.First, error) {
	c, err := r.create(id, spec)
	if err != nil {
		return nil, err
	}
	lp, console, err := c.process(p)
	if err != nil {
		_ = c.Destroy()
		return nil, err
	}
	lp.Init = true
	c.init = lp
	err = c.lc.Start(lp)
	if console != nil {
		console.child.Close()
	}
	if err != nil {
		if console != nil {
			console.parent.Close()
		}
		_ = c.Destroy()
		return nil, fmt.Errorf("start container: %w", err)
	}
	return &first{container: c, p: p, console: console}, nil
}

// create makes the container's state and cgroups, with no process yet.
func (r *Runner) create(id string, spec *rspec.Spec) (*container, error) {
	warmCgroupAttach()
	cfg, err := specconv.CreateLibcontainerConfig(&specconv.CreateOpts{
		CgroupName:  id,
		Spec:        spec,
		NoPivotRoot: r.noPivot,
	})
	if err != nil {
		return nil, fmt.Errorf("convert spec: %w", err)
	}
	rlimits, err := convertRlimits(spec.Process.Rlimits)
	if err != nil {
		return nil, err
	}
	cfg.Rlimits = rlimits
	var lc *libcontainer.Container
	err = inStateDir(r.stateDir, func() (err error) {
		lc, err = libcontainer.Create(r.stateDir, id, cfg)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("create container: %w", err)
	}
	return &container{lc: lc, rlimits: rlimits}, nil
}

// inStateDir makes dir and runs create, which makes something in it; it
// makes dir again and retries when dir vanished in between. A session
// that ends removes the shared state directories when they are empty, so
// that the host's /run is left as it was; another session's container
// may be on its way into them at that moment (libcontainer makes the
// directory, sets its cgroup manager up, then makes the container's
// directory in it): seen as "mkdir /run/nixrescue/containers/ID: no such
// file or directory" with 8 sessions at once.
func inStateDir(dir string, create func() error) error {
	for range 100 {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("create state directory: %w", err)
		}
		err := create()
		if err == nil || !errors.Is(err, os.ErrNotExist) {
			return err
		}
		if _, serr := os.Stat(dir); serr == nil {
			return err // missing is something else than dir
		}
	}
	return fmt.Errorf("create state directory: %s keeps being removed", dir)
}

type container struct {
	lc      *libcontainer.Container
	init    *libcontainer.Process
	hold    *holdctl.Conn // nil for a container made around its first process
	rlimits []configs.Rlimit
}

// Root implements backend.Container.
func (c *container) Root() string {
	pid, _ := c.init.Pid()
	return fmt.Sprintf("/proc/%d/root", pid)
}

// consoleSocket is the pair of sockets over which runc sends the master of
// the pty it makes for a process.
type consoleSocket struct{ parent, child *os.File }

// process is p as libcontainer runs it, with a console socket when p runs
// on a terminal.
func (c *container) process(p backend.Process) (*libcontainer.Process, *consoleSocket, error) {
	lp := &libcontainer.Process{
		Args:    p.Args,
		Env:     p.Env,
		Cwd:     p.Cwd,
		Stdin:   p.Stdin,
		Stdout:  p.Stdout,
		Stderr:  p.Stderr,
		Rlimits: c.rlimits,
	}
	if p.TTY == nil {
		return lp, nil, nil
	}
	parent, child, err := utils.NewSockPair("console")
	if err != nil {
		return nil, nil, fmt.Errorf("create console socket: %w", err)
	}
	lp.ConsoleSocket = child
	lp.ConsoleWidth, lp.ConsoleHeight = p.TTY.Size()
	return lp, &consoleSocket{parent: parent, child: child}, nil
}

// Exec implements backend.Container: the hold starts p.
func (c *container) Exec(ctx context.Context, p backend.Process) (int, error) {
	return c.hold.Exec(ctx, p)
}

// wait attaches a started process to the user's terminal when it has one,
// forwards signals to it until it ends, and returns its exit status.
func wait(ctx context.Context, lp *libcontainer.Process, p backend.Process, cs *consoleSocket) (int, error) {
	if cs != nil {
		defer cs.parent.Close()
		master, err := recvFile(cs.parent)
		if err != nil {
			_ = lp.Signal(unix.SIGKILL)
			_, _ = lp.Wait()
			return -1, fmt.Errorf("receive console: %w", err)
		}
		cons, err := console.ConsoleFromFile(master)
		if err != nil {
			master.Close()
			_ = lp.Signal(unix.SIGKILL)
			_, _ = lp.Wait()
			return -1, fmt.Errorf("use console: %w", err)
		}
		defer cons.Close()
		// Runs before the Close above: the output is drained first.
		defer backend.AttachTTY(cons, p.TTY)()
	}
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				_ = lp.Signal(unix.SIGKILL)
				return
			case s, ok := <-p.Signals:
				if !ok {
					return
				}
				_ = lp.Signal(s)
			}
		}
	}()
	ps, err := lp.Wait()
	if ps == nil {
		return -1, fmt.Errorf("wait for %s: %w", p.Args[0], err)
	}
	return helper.ExitStatus(ps.Sys().(syscall.WaitStatus)), nil
}

// first is a container whose first process waits to be executed.
type first struct {
	*container
	p       backend.Process
	console *consoleSocket
}

// Run implements backend.First.
func (f *first) Run(ctx context.Context) (int, error) {
	if err := f.lc.Exec(); err != nil {
		if f.console != nil {
			f.console.parent.Close()
		}
		return -1, &backend.StartError{Program: f.p.Args[0], Err: err}
	}
	return wait(ctx, f.init, f.p, f.console)
}

// Destroy implements backend.Container.
func (c *container) Destroy() error {
	if c.lc == nil {
		return nil
	}
	if c.hold != nil {
		c.hold.Close()
		c.hold = nil
	}
	if st, err := c.lc.Status(); err == nil && st != libcontainer.Stopped {
		_ = c.lc.Signal(unix.SIGKILL)
	}
	if c.init != nil {
		_, _ = c.init.Wait()
	}
	waitStopped(c.lc, 5*time.Second)
	err := c.lc.Destroy()
	c.lc = nil
	if err != nil {
		return fmt.Errorf("destroy container: %w", err)
	}
	return nil
}

var rlimitTypes = map[string]int{
	"RLIMIT_NOFILE":  unix.RLIMIT_NOFILE,
	"RLIMIT_NPROC":   unix.RLIMIT_NPROC,
	"RLIMIT_CORE":    unix.RLIMIT_CORE,
	"RLIMIT_MEMLOCK": unix.RLIMIT_MEMLOCK,
	"RLIMIT_STACK":   unix.RLIMIT_STACK,
}

// convertRlimits maps the spec's rlimits to libcontainer's: specconv
// leaves them to the caller, as runc's own newProcess does.
func convertRlimits(in []rspec.POSIXRlimit) ([]configs.Rlimit, error) {
	var out []configs.Rlimit
	for _, r := range in {
		t, ok := rlimitTypes[r.Type]
		if !ok {
			return nil, fmt.Errorf("rlimit %s is not supported", r.Type)
		}
		out = append(out, configs.Rlimit{Type: t, Hard: r.Hard, Soft: r.Soft})
	}
	return out, nil
}

// recvFile receives the file descriptor libcontainer sends on the console
// socket (SCM_RIGHTS): the pty's master. (libcontainer's own helper is
// deprecated for outside use.)
func recvFile(socket *os.File) (*os.File, error) {
	name := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4))
	n, oobn, _, _, err := unix.Recvmsg(int(socket.Fd()), name, oob, unix.MSG_CMSG_CLOEXEC)
	if err != nil {
		return nil, err
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return nil, fmt.Errorf("no file descriptor in the console message (%d messages): %v", len(msgs), err)
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		return nil, fmt.Errorf("no single file descriptor in the console message: %v", err)
	}
	return os.NewFile(uintptr(fds[0]), string(name[:n])), nil
}

// Destroy implements backend.First: the console socket goes too when the
// process never ran.
func (f *first) Destroy() error {
	if f.console != nil {
		f.console.parent.Close()
	}
	return f.container.Destroy()
}

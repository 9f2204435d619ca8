// Package engine runs one recovery session: it opens a target (a disk, a
// partition, a disk image, or a directory where a root is mounted), mounts
// it as its own fstab says, starts the recovery container on it, runs
// processes there, and closes it all again, whatever happened in between.
//
//	s, err := engine.Open(ctx, options)      // state, attach, discover, plan, mounts
//	p, err := s.Prepare(containerOptions)    // the container's shape: spec, /dev, DNS
//	c, err := s.Start(ctx, p)                // the container, its hold first
//	code, err := c.Exec(ctx, process)        // a process in it, as often as needed
//	code, err := s.RunFirst(ctx, p, process) // or: one process, the container made around it
//	s.Close()                                // container, mounts, devices, state: gone
//
// A session on a disk or image mounts in the mount namespace of its own
// that nixrescue entered before Go started (runtime/privatens), or, when
// it has none (containerd's shim must see the mounts; the constructor did
// not act), in a private tree of the host's namespace under the session's
// directory. Either way a session is a value of this process: two in one
// command (rebuild --boot-test) are two Opens. Its state and journal
// (runtime/state) let a later session, or Cleanup, undo what a killed one
// left (runtime/recovery).
//
// The engine returns data and errors; it writes nothing for people but
// through the logger it is given (Options.Log).
package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/nixrescue/nixrescue/runtime/audit"
	"github.com/nixrescue/nixrescue/runtime/backend/embedded"
	"github.com/nixrescue/nixrescue/runtime/guard"
	"github.com/nixrescue/nixrescue/runtime/hint"
	"github.com/nixrescue/nixrescue/runtime/mount"
	"github.com/nixrescue/nixrescue/runtime/nixos"
	"github.com/nixrescue/nixrescue/runtime/open"
	"github.com/nixrescue/nixrescue/runtime/policy"
	"github.com/nixrescue/nixrescue/runtime/privatens"
	"github.com/nixrescue/nixrescue/runtime/recovery"
	"github.com/nixrescue/nixrescue/runtime/state"
	"github.com/nixrescue/nixrescue/runtime/target"
)

// Options say what a session opens and how.
type Options struct {
	// Target is the TARGET argument (a disk, partition, image or
	// directory); empty means Root.
	Target string
	// Root is the directory holding the mounted NixOS root, when there is
	// no Target; RootIsDefault says no one named it (it is /mnt).
	Root          string
	RootIsDefault bool
	TargetOptions
	// Container says the session will start a container: a backend is
	// chosen (Backend, Address, Namespace) and made ready.
	Container bool
	// Backend is auto, embedded or containerd; Address and Namespace are
	// containerd's socket and namespace.
	Backend, Address, Namespace string
	// StateDir is where session state lives; empty is state.DefaultDir.
	StateDir string
	// Log takes what the session has to say for people (warnings of the
	// teardown, which backend was chosen); nil says nothing.
	Log *slog.Logger
	// Command is nixrescue's command line, for nixrescue ps and the
	// audit record.
	Command []string
	// AuditLog is where the session's audit records go (audit.Open):
	// "" is where the host keeps its logs, and a record that cannot be
	// written there is a warning; a place the user chose that cannot be
	// written stops the session before it begins.
	AuditLog string
	// Policy, when set, is what the caller (a sudo user) may open: the
	// target is refused unless it allows it.
	Policy *policy.Grant
}

// TargetOptions say how a target is opened (runtime/open).
type TargetOptions = open.Options

// Layout is what opening a target found (runtime/open).
type Layout = open.Layout

// Session is an open target: its state, its filesystems mounted, and,
// once started, its container.
type Session struct {
	o       Options
	log     *slog.Logger
	target  target.Target
	backend backendChoice
	st      *state.Session
	opened  *open.Opened
	// container is a Container or a First.
	container interface{ Destroy() error }
	// guard kills the container's processes if this process dies; it is
	// disarmed once the container is gone.
	guard *guard.Guard
	// ctx ends when a signal comes while no process runs (fwd); cancel
	// ends it at Close.
	ctx    context.Context
	cancel context.CancelFunc
	fwd    *forwarder
	timer  timer
	closed bool
	// outcome is how the command ended (Outcome), for the audit record.
	outcome outcome
	// audit is where the audit records go (nil: nowhere); audited says
	// the record of the start was written: the end's is written too.
	audit   *audit.Log
	audited bool
}

// ErrNotRoot says nixrescue needs root.
var ErrNotRoot error = &hint.Error{Err: errors.New("a recovery session needs root (it mounts and makes namespaces)"), Fix: RootFix}

// RootFix is what to do when nixrescue needs root.
const RootFix = "run nixrescue as root, e.g. with sudo"

// Open opens o's target: the session's state, the target attached,
// its root found and mounted with the rest of its fstab.
func Open(ctx context.Context, o Options) (*Session, error) {
	if os.Geteuid() != 0 {
		return nil, ErrNotRoot
	}
	if o.Log == nil {
		o.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	t, err := ResolveTarget(o)
	if err != nil {
		return nil, err
	}
	if err := Allowed(o, t); err != nil {
		return nil, err
	}
	s := &Session{o: o, log: o.Log, target: t, backend: backendChoice{name: BackendEmbedded, why: "no container to run"}}
	s.timer.onEnd = func(name string, ms float64) {
		s.log.Info(fmt.Sprintf("session phase %s: %.0f ms", name, ms), "verbose", true)
	}
	// Signals: passed on to what runs in the container; before and
	// between processes they end the session, which is torn down.
	s.ctx, s.cancel = context.WithCancel(ctx)
	s.fwd = watchSignals(s.cancel)
	ctx = s.ctx
	if err := s.open(ctx); err != nil {
		s.Outcome(0, err)
		s.Close()
		return nil, err
	}
	return s, nil
}

// open is Open's work, in the session's context.
func (s *Session) open(ctx context.Context) error {
	o, t := s.o, s.target
	var err error
	if o.Container {
		if s.backend, err = chooseBackend(ctx, o.Backend, o.Address, o.Namespace); err != nil {
			return err
		}
		o.Log.Info(fmt.Sprintf("backend %s (%s)", s.backend.name, s.backend.why), "verbose", true)
		if s.backend.name == BackendEmbedded {
			embedded.Prewarm()
		}
	}
	if o.Fsck && o.ReadOnly {
		return hint.Errorf("{Fsck} repairs what it can, {ReadOnly} writes nothing: choose one")
	}
	if err := s.enterNamespace(); err != nil {
		return err
	}
	if err := s.begin(ctx); err != nil {
		return err
	}
	if t.Kind == target.KindDirectory {
		s.opened, err = open.Directory(ctx, t, o.TargetOptions, s.opening())
	} else {
		s.opened, err = open.Target(ctx, t, o.TargetOptions, s.opening())
	}
	if ctx.Err() != nil {
		return ErrInterrupted // what failed failed for that
	}
	return err
}

// opening is what opening the target needs of s.
func (s *Session) opening() *open.Session {
	o := &open.Session{State: s.st, Time: s.timer.start, Guard: s.timer.guard, Log: s.log}
	if s.o.Container && s.backend.name == BackendEmbedded {
		// Warmed when the session began, and again shortly before the
		// container is made.
		o.Prewarm = embedded.Prewarm
	}
	return o
}

// mounts tells whether the session mounts anything: the target's
// filesystems, or those it is asked to mount on a directory target.
func (o Options) mounts(t target.Target) bool {
	return t.Kind != target.KindDirectory || len(o.Mounts) > 0 || o.Boot != "" || o.MountMissing
}

// hostTree tells whether the session's mounts go in a private tree of the
// host's mount namespace, not in the mount namespace of its own that
// privatens entered: containerd's shim must see them, and a process
// privatens left where it was (a command it does not read as a session's,
// containerd's socket present when it started) has no other.
func (s *Session) hostTree() bool {
	return s.o.mounts(s.target) && (s.backend.name == BackendContainerd || !privatens.Entered())
}

// enterNamespace makes the mount namespace privatens entered private for
// the session's mounts, when it mounts there.
func (s *Session) enterNamespace() error {
	if s.backend.name == BackendContainerd && privatens.Entered() {
		// chooseBackend never picks containerd then: a bug if it did.
		return errors.New("containerd chosen in a private mount namespace: its shim could not see the session's mounts")
	}
	if !s.o.mounts(s.target) || s.hostTree() {
		return nil
	}
	return mount.MakePrivateTree()
}

// begin makes the session's state, once what killed sessions left is
// gone: it may be in this target (a mount point made for resolv.conf, a
// loop device of this image), and the target must be seen as it is.
func (s *Session) begin(ctx context.Context) error {
	dir, err := state.Open(s.o.StateDir)
	if err != nil {
		return err
	}
	if privatens.Entered() {
		detachOtherSessions(dir.SessionsDir())
	}
	if _, err := recovery.RemoveStale(ctx, dir, s.backend.containerd); err != nil {
		dir.RemoveIfUnused()
		return err
	}
	if s.st, err = dir.Begin(s.target.Path, os.Getpid()); err != nil {
		return err
	}
	if err := s.recordCaller(); err != nil {
		return err
	}
	if s.hostTree() {
		return s.privateTree()
	}
	return nil
}

// privateTree makes the session's directory a mount of its own, private:
// what is mounted under it stays there, in the host's mount namespace,
// where containerd's shim can see it, and reaches no other mount.
func (s *Session) privateTree() error {
	dir := s.st.Dir()
	if err := unix.Mount(dir, dir, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("make the session's mount tree: %w", err)
	}
	if err := s.st.Record(func(j *state.Journal) { j.HostTree = dir }); err != nil {
		_ = unix.Unmount(dir, unix.MNT_DETACH)
		return err
	}
	if err := unix.Mount("", dir, "", unix.MS_PRIVATE|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("make the session's mount tree private: %w", err)
	}
	return nil
}

// Allowed checks the target, and the devices --mount and --boot name,
// against the caller's grant, when there is a policy.
func Allowed(o Options, t target.Target) error {
	if o.Policy == nil {
		return nil
	}
	info := policy.TargetInfo{Arg: t.Arg, Path: t.Path, Disk: t.Disk}
	if t.Disk != "" {
		info.Serial = target.Serial(t.Disk)
	}
	if err := o.Policy.AllowTarget(info); err != nil {
		return err
	}
	var devs []string
	for _, m := range o.Mounts {
		dev, _, _ := strings.Cut(m, ":")
		devs = append(devs, dev)
	}
	if o.Boot != "" {
		devs = append(devs, o.Boot)
	}
	for _, dev := range devs {
		if !strings.HasPrefix(dev, "/") {
			return hint.Errorf("policy %s: %s: under a policy, name the devices of {Mount} and {Boot} by their paths", o.Policy.Path, dev)
		}
		d, err := target.Resolve(dev)
		if err != nil {
			return err
		}
		info := policy.TargetInfo{Arg: dev, Path: d.Path, Disk: d.Disk}
		if d.Disk != "" {
			info.Serial = target.Serial(d.Disk)
		}
		if err := o.Policy.AllowTarget(info); err != nil {
			return err
		}
	}
	return nil
}

// ResolveTarget says what a session on o works on: the TARGET argument,
// or the root directory (which Prepare checks, with its own messages).
func ResolveTarget(o Options) (target.Target, error) {
	if o.Target != "" {
		return target.Resolve(o.Target)
	}
	if o.Root == "" {
		return target.Target{}, errors.New("no target given: name a disk, a partition, an image or the directory where the NixOS root is mounted")
	}
	abs, err := filepath.Abs(o.Root)
	if err != nil {
		return target.Target{}, hint.Errorf("resolve {Root %s}: %w", o.Root, err)
	}
	// A link to the mount point: the mount table knows the mounts under
	// where it leads.
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		abs = real
	}
	if o.RootIsDefault && nixos.CheckRoot(abs) != nil {
		return target.Target{}, &hint.Error{Err: hint.Errorf("no TARGET given, and %s (where {Root DIR} looks by default) holds no NixOS root", o.Root),
			Fix: "name what to repair: a disk (/dev/sdb), a partition, a disk image, or the directory where the NixOS root is mounted; or mount the NixOS root on " + o.Root}
	}
	return target.Target{Arg: o.Root, Path: abs, Kind: target.KindDirectory}, nil
}

// Target is what the session opened.
func (s *Session) Target() target.Target { return s.target }

// Root is the mounted root, as this process sees it.
func (s *Session) Root() string { return s.opened.RootDir }

// Layout is what opening the target found: its disk, partitions, root
// and mount plan.
func (s *Session) Layout() Layout { return s.opened.Layout }

// Warnings are what opening the target found amiss.
func (s *Session) Warnings() []string { return s.opened.Warnings }

// DiskAliases are the names of the target's disk the configuration
// gives, as the session maps them (checked while it was read-only).
func (s *Session) DiskAliases() []target.DiskAlias { return s.opened.Aliases }

// Backend is the backend chosen, and why.
func (s *Session) Backend() (name, why string) { return s.backend.name, s.backend.why }

// ID is the session's id, its container's and its cgroup's name.
func (s *Session) ID() string { return s.st.ID }

// Phases are how long each step of the session took so far.
func (s *Session) Phases() []Phase { return s.timer.phases }

// Guards are what each of the session's protections cost so far, within
// its phases: the claims on the target, the check that nothing else has
// its data mounted read-write, the guard process, the audit records.
func (s *Session) Guards() []Phase { return s.timer.guards }

// Close tears the session down in the reverse order of setup: container,
// placeholder, mounts, partitions, loop devices, claims, state. It is safe
// to call more than once; what fails is said as a warning.
func (s *Session) Close() {
	if s.closed {
		return
	}
	s.closed = true
	defer s.cancel()
	defer s.fwd.stop()
	if s.st == nil {
		return
	}
	done := s.timer.start("teardown")
	defer done()
	warn := func(what string, err error) {
		if err != nil {
			s.log.Warn(what + err.Error())
		}
	}
	if s.container != nil {
		warn("", s.container.Destroy())
		s.container = nil
	}
	disarmed := s.timer.guard(GuardProcess)
	s.guard.Disarm()
	disarmed()
	recovery.UndoPlaceholder(s.st.Journal())
	if s.opened != nil {
		warn("teardown: ", s.opened.Close())
	}
	if j := s.st.Journal(); j.HostTree != "" {
		warn("teardown: ", mount.UnmountUnder(j.HostTree))
	}
	warn("teardown: ", recovery.UndoLoops(s.st.Journal()))
	released := s.timer.guard(GuardClaims)
	s.st.ReleaseClaims()
	released()
	warn("", s.st.End())
	if s.audited {
		s.auditEnd()
	}
}

// GRUBInstallProblem says why GRUB for BIOS cannot be installed on the
// target from this host, nil when it can (or is not its bootloader).
func (s *Session) GRUBInstallProblem() error { return s.opened.GRUBInstallProblem() }

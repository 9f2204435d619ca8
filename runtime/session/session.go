// Package session runs one recovery session: it checks the target, builds
// the container's spec, starts the container through a backend, runs
// activation and then the user's command in it, and tears everything down,
// whatever happened in between. The pipeline is the one ../shared/DESIGN.md
// draws; targets other than a mounted directory (disks, images) will slot
// in before Prepare as a step that yields the mounted root.
package session

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	units "github.com/docker/go-units"
	rspec "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/nixrescue/nixrescue/runtime/backend"
	"github.com/nixrescue/nixrescue/runtime/backend/embedded"
	"github.com/nixrescue/nixrescue/runtime/dns"
	"github.com/nixrescue/nixrescue/runtime/guard"
	"github.com/nixrescue/nixrescue/runtime/helper"
	"github.com/nixrescue/nixrescue/runtime/host"
	"github.com/nixrescue/nixrescue/runtime/nixos"
	"github.com/nixrescue/nixrescue/runtime/privatens"
	"github.com/nixrescue/nixrescue/runtime/rootfs"
	"github.com/nixrescue/nixrescue/runtime/target"
	"github.com/nixrescue/nixrescue/specs"
)

// Exit statuses for nixrescue's own failures, as `docker run` and
// `podman run` use them; the command's own status passes through otherwise.
const (
	ExitFailure       = 125
	ExitCannotExecute = 126
	ExitNotFound      = 127
)

// DefaultStateDir is where sessions keep their state on the host.
const DefaultStateDir = "/run/nixrescue"

// EFIMode says when efivarfs goes into the container.
type EFIMode string

const (
	EFIAuto EFIMode = "auto" // when the host booted by EFI
	EFIOn   EFIMode = "on"   // always; an error when the host has no EFI
	EFIOff  EFIMode = "off"  // never
)

// DNSNone as the only --dns value leaves the target's resolv.conf alone.
const DNSNone = "none"

// Options describe a session. The zero value of each field is the default.
type Options struct {
	// Root is the directory holding the mounted NixOS root.
	Root string
	// System picks the system to activate.
	System nixos.SystemChoice
	// NoActivate skips activation (and systemd-tmpfiles).
	NoActivate bool
	// Quiet hides activation's output unless it fails.
	Quiet bool
	// Args is the command; empty runs the target's shell.
	Args []string
	// ShellCommand, when set, is run by the target's shell (-c).
	ShellCommand string
	// Login runs the shell as a login shell (enter).
	Login bool
	// Terminal gives the command a pty when stdin is a terminal.
	Terminal bool
	// DNS servers to use instead of the host's; ["none"] injects nothing.
	DNS []string
	// NetworkNone isolates the network.
	NetworkNone bool
	// IsolatePIDs gives the container its own PID namespace.
	IsolatePIDs bool
	// EFI is the efivarfs mode; empty is auto.
	EFI EFIMode
	// StateDir is where session state lives; empty is DefaultStateDir.
	StateDir string
	// Target is the TARGET argument (a disk, partition, image or
	// directory); empty means Root.
	Target string
	// TargetOptions say how a disk or image is opened.
	TargetOptions
	// HostDev binds the host's /dev instead of a curated one.
	HostDev bool
	// Memory limits, in bytes, what the container's processes may use
	// together (0: no limit), swap included where the host accounts it;
	// at least MinMemory.
	Memory int64
	// NoPivot uses runc's no-pivot mode (MS_MOVE and chroot), as a rescue
	// system running from its initramfs needs; it is detected there.
	NoPivot bool
	// Sandbox, when set, decides Nix's build sandbox for the command.
	Sandbox SandboxMode
	// ExtraEnv is added to the command's environment (not activation's).
	ExtraEnv []string
	// Backend is auto, embedded or containerd; Address and Namespace are
	// containerd's socket and namespace. Verbose says which was chosen.
	Backend   string
	Address   string
	Namespace string
	Verbose   bool
	// Report, when set, is filled with what the session did, and given
	// to OnReport once all is torn down (in the process that ran it).
	Report   *RunReport
	OnReport func(*RunReport) error
	// bootloaderStep reports what the command did to the bootloader.
	bootloaderStep bool
	// networkHint watches the command's output for failed downloads and
	// says what to do about them (a pipe instead of the terminal changes
	// how programs behave, so only where it helps: rebuild).
	networkHint bool
	// beforeContainer runs on the host once the target is mounted and
	// before the container starts; afterCommand after the command, before
	// teardown. Commands built on sessions (rollback, hardware-config)
	// use them.
	beforeContainer func(root string) error
	afterCommand    func(root string, code int) error

	Stdin          io.Reader
	Stdout, Stderr io.Writer
}

func (o *Options) defaults() {
	if o.StateDir == "" {
		o.StateDir = DefaultStateDir
	}
	if o.EFI == "" {
		o.EFI = EFIAuto
	}
	if o.Stdin == nil {
		o.Stdin = os.Stdin
	}
	if o.Stdout == nil {
		o.Stdout = os.Stdout
	}
	if o.Stderr == nil {
		o.Stderr = os.Stderr
	}
}

// MinMemory is the least memory limit accepted: below it not even
// activation runs, and the runtime refuses limits under what it already
// uses.
const MinMemory = 16 << 20

// Prepared is everything a container needs, decided before it starts.
type Prepared struct {
	Root     string
	System   nixos.System
	Hostname string
	Env      []string
	DNS      dns.Plan
	Resolv   []byte
	Host     host.Facts
	EFIVars  bool
	// Devices and DiskLinks make the curated /dev.
	Devices   []rspec.LinuxDevice
	DiskLinks string
	// Warnings are what the session should say before it goes on.
	Warnings []string
}

// Prepare checks the target and decides the container's shape. It reads
// the host and the target and changes neither.
func Prepare(o Options) (*Prepared, error) {
	o.defaults()
	if o.Root == "" {
		return nil, errors.New("no target given: name a disk, an image or the directory where the NixOS root is mounted")
	}
	root, err := filepath.Abs(o.Root)
	if err != nil {
		return nil, fmt.Errorf("resolve --root: %w", err)
	}
	if r, err := filepath.EvalSymlinks(root); err == nil {
		root = r
	}
	if err := nixos.CheckRoot(root); err != nil {
		return nil, err
	}
	if !o.ReadOnly {
		var fs unix.Statfs_t
		if err := unix.Statfs(root, &fs); err == nil && fs.Flags&unix.ST_RDONLY != 0 {
			return nil, &nixos.RootError{Root: root, Err: errors.New("mounted read-only"),
				Fix: "remount it read-write (mount -o remount,rw), or pass --read-only to look without activating"}
		}
	}
	sys, err := nixos.ResolveSystem(root, o.System)
	if err != nil {
		return nil, err
	}
	if !o.NoActivate && !nixos.Exists(root, sys.Path+"/activate") {
		return nil, fmt.Errorf("%s has no activate script: it is not a NixOS system; pick another with --generation N or --system PATH, or pass --no-activate", sys.StorePath)
	}
	hostname, err := nixos.Hostname(root)
	if err != nil {
		return nil, err
	}
	facts, err := host.Read()
	if err != nil {
		return nil, err
	}
	p := &Prepared{Root: root, System: sys, Hostname: hostname, Host: facts}
	switch o.EFI {
	case EFIAuto:
		p.EFIVars = facts.EFI
	case EFIOn:
		if !facts.EFI {
			return nil, errors.New("--efi on: this host did not boot by EFI (no /sys/firmware/efi), so it has no EFI variables to give; use --efi auto")
		}
		p.EFIVars = true
	case EFIOff:
	default:
		return nil, fmt.Errorf("--efi %q: use auto, on or off", o.EFI)
	}
	term := ""
	if o.Terminal {
		term = os.Getenv("TERM")
	}
	p.Env = nixos.Env(sys.Path, term)
	if !(len(o.DNS) == 1 && o.DNS[0] == DNSNone) {
		p.Resolv, err = dns.BuildFromHost(o.DNS)
		if errors.Is(err, dns.ErrNoHostResolver) {
			// DNS is a convenience: what needs no download works without.
			p.Warnings = append(p.Warnings, "this host has no /etc/resolv.conf, so the container gets no DNS; a download will fail (name a server with --dns IP)")
			return p, nil
		} else if err != nil {
			return nil, err
		}
		p.DNS, err = dns.PlanFor(root, sys.Path)
		if err != nil {
			return nil, err
		}
	}
	return p, nil
}

// Spec is the spec of a container for p. resolvSource is the host path of
// the resolv.conf to bind (relative paths are relative to a bundle);
// helperSource the nixrescue binary to bind at specs.HelperPath.
func (p *Prepared) Spec(args []string, resolvSource, helperSource, cgroupsPath string, o Options) (*rspec.Spec, error) {
	so := specs.Options{
		Root:         p.Root,
		Hostname:     p.Hostname,
		Env:          p.Env,
		Args:         args,
		Capabilities: p.Host.Capabilities,
		NoFile:       p.Host.NoFile,
		NetworkNone:  o.NetworkNone,
		IsolatePIDs:  o.IsolatePIDs,
		EFIVars:      p.EFIVars,
		HelperSource: helperSource,
		CgroupsPath:  cgroupsPath,
		HostDev:      o.HostDev,
		Devices:      p.Devices,
		DiskLinks:    p.DiskLinks,
		MemoryLimit:  o.Memory,
	}
	if o.Memory > 0 && p.Host.SwapAccounted {
		so.MemorySwap = o.Memory
	}
	if p.Resolv != nil && len(p.DNS.Dests) > 0 {
		so.ResolvSource = resolvSource
		so.ResolvDests = p.DNS.Dests
	}
	spec, err := specs.Recovery(so)
	if err != nil {
		return nil, err
	}
	if err := checkMountPoints(p.Root, spec); err != nil {
		return nil, err
	}
	return spec, nil
}

// checkMountPoints refuses a root where a mount point of spec that lies in
// the target's own tree (under no other mount of the spec) is a link, or,
// for a filesystem, not a directory: the runtime follows links inside the
// root, so a /run that leads to /etc would have the container's /run
// mounted over the target's /etc. Missing ones are fine: the runtime makes
// them. The resolv.conf destinations are resolved already (dns.PlanFor).
func checkMountPoints(root string, spec *rspec.Spec) error {
	for _, m := range spec.Mounts {
		covered := slices.ContainsFunc(spec.Mounts, func(o rspec.Mount) bool {
			return o.Destination != m.Destination && strings.HasPrefix(m.Destination, strings.TrimSuffix(o.Destination, "/")+"/")
		})
		if covered {
			continue
		}
		st, err := rootfs.Lstat(root, m.Destination)
		switch {
		case errors.Is(err, os.ErrNotExist):
		case err != nil:
			return &nixos.RootError{Root: root, Err: err}
		case st.Mode()&os.ModeSymlink != 0:
			to, _ := rootfs.Readlink(root, m.Destination)
			return &nixos.RootError{Root: root, Err: fmt.Errorf("%s is a link to %q, not a directory", m.Destination, to),
				Fix: "a NixOS root has an empty directory there; replace the link with one (the container's " + m.Destination + " would be mounted where it leads)"}
		case !st.IsDir() && m.Type != "bind":
			return &nixos.RootError{Root: root, Err: fmt.Errorf("%s is not a directory", m.Destination),
				Fix: "a NixOS root has an empty directory there; replace the file with one"}
		}
	}
	return nil
}

// HelperSource is the running binary, which serves as the in-container
// helper. It must be static: the target has none of the host's libraries.
func HelperSource() (string, error) {
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

// Run runs a whole session and returns the command's exit status. An
// error means nixrescue itself failed (ExitFailure); the session is torn
// down in every case.
func Run(ctx context.Context, o Options) (int, error) {
	ran := false
	code, err := run(ctx, &o, &ran)
	if ran && o.OnReport != nil && o.Report != nil {
		if rerr := o.OnReport(o.Report); rerr != nil && err == nil {
			return ExitFailure, rerr
		}
	}
	return code, err
}

// run is Run; ran says whether the session ran in this process (not in a
// re-executed one).
func run(ctx context.Context, op *Options, ran *bool) (int, error) {
	o := *op
	o.defaults()
	if o.Memory != 0 && o.Memory < MinMemory {
		return ExitFailure, fmt.Errorf("--memory %s: give a size of at least 16M, such as 512M or 2G", units.BytesSize(float64(o.Memory)))
	}
	helperSrc, err := HelperSource()
	if err != nil {
		return ExitFailure, err
	}
	// Signals: forwarded to whatever runs in the container; before and
	// between processes they cancel the session.
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, unix.SIGINT, unix.SIGTERM, unix.SIGHUP)
	defer signal.Stop(sigs)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	fwd := &forwarder{}
	go fwd.loop(sigs, cancel)

	if o.Report == nil {
		o.Report = &RunReport{}
	}
	rep := o.Report
	rep.Phases, rep.DiskAliases = []Phase{}, []DiskAlias{}
	l, code, err := open(ctx, o, true)
	if l == nil {
		return code, err
	}
	*ran = true
	op.Report = rep
	defer l.close()
	p, s := l.prepared, l.s
	o = l.o
	rep.Target, rep.DiskAliases = l.target, append(rep.DiskAliases, l.aliases...)
	rep.SystemBefore, rep.GenerationBefore = currentGeneration(p.Root)
	defer func() {
		rep.SystemAfter, rep.GenerationAfter = currentGeneration(p.Root)
		if o.bootloaderStep {
			rep.Bootloader = bootloaderAfter(p.Root, slices.Contains(o.ExtraEnv, "NIXOS_INSTALL_BOOTLOADER=1"), rep.ExitStatus)
		}
	}()
	args, err := commandArgs(p, o)
	if err != nil {
		return ExitFailure, err
	}
	runner, err := l.runner(p)
	if err != nil {
		return ExitFailure, err
	}
	resolvSrc := ""
	if p.Resolv != nil && len(p.DNS.Dests) > 0 {
		if resolvSrc, err = s.writeResolv(p.Resolv); err != nil {
			return ExitFailure, err
		}
		if p.DNS.Placeholder != "" {
			if err := s.createPlaceholder(p.Root, p.DNS.Placeholder); err != nil {
				return ExitFailure, err
			}
		}
	}
	spec, err := p.Spec(nil, resolvSrc, helperSrc, "/"+s.id, o)
	if err != nil {
		return ExitFailure, err
	}
	if ctx.Err() != nil {
		return errInterrupted.ExitCode(), errInterrupted
	}
	if o.beforeContainer != nil {
		if err := o.beforeContainer(p.Root); err != nil {
			return ExitFailure, err
		}
	}
	pauseForTest(ctx, "mounted")
	if s.guard, err = guard.Start("/" + s.id); err != nil {
		// The session works without; only a killed nixrescue would then
		// leave the container's processes to the next session's sweep.
		fmt.Fprintf(o.Stderr, "nixrescue: warning: %v\n", err)
	}

	var failed failures
	command := func(env []string) backend.Process {
		proc := backend.Process{
			Args:   args,
			Env:    env,
			Cwd:    "/",
			Stdin:  o.Stdin,
			Stdout: o.Stdout,
			Stderr: o.Stderr,
		}
		if o.networkHint {
			proc.Stdout = &failureWatch{w: o.Stdout, seen: &failed}
			proc.Stderr = &failureWatch{w: o.Stderr, seen: &failed}
		}
		if o.Terminal {
			if t := newTerminal(o.Stdin, o.Stdout); t != nil {
				proc.TTY = t
			}
		}
		return proc
	}
	env := append(slices.Clone(p.Env), o.ExtraEnv...)
	ln := &launch{runner: runner, s: s, spec: spec, p: p, o: o, fwd: fwd, rep: rep}
	if o.NoActivate && o.Sandbox == "" {
		// Nothing runs before the command: it is the container's first
		// process, and the container is made around it (one process
		// started instead of two: the hold's, then the command's).
		code, err = ln.first(ctx, command(env))
	} else {
		code, err = ln.withHold(ctx, command, env)
	}
	if err != nil {
		return ExitFailure, err
	}
	if code != 0 && failed.network {
		fmt.Fprintln(o.Stderr, networkHint(o))
	}
	if code != 0 && failed.space {
		fmt.Fprintln(o.Stderr, spaceHint)
	}
	if code == 128+int(unix.SIGKILL) && o.Memory > 0 && host.OOMKills("/"+s.id) > 0 {
		rep.OOMKilled = true
		fmt.Fprintf(o.Stderr, "nixrescue: the command was killed for lack of memory: it needed more than --memory %s; raise --memory or drop it\n", units.BytesSize(float64(o.Memory)))
	}
	if o.afterCommand != nil {
		if err := o.afterCommand(p.Root, code); err != nil {
			return ExitFailure, err
		}
	}
	rep.ExitStatus = code
	return code, nil
}

// launch is what it takes to start a session's container and run its
// command there.
type launch struct {
	runner backend.Runner
	s      *session
	spec   *rspec.Spec
	p      *Prepared
	o      Options
	fwd    *forwarder
	rep    *RunReport
}

// withHold runs the command in a container whose first process is the
// hold, after what must run before it: activation, the sandbox probe.
// command makes the command's process for an environment.
func (l *launch) withHold(ctx context.Context, command func(env []string) backend.Process, env []string) (int, error) {
	done := l.s.timer.start("container create")
	c, err := l.runner.Create(ctx, l.s.id, l.spec)
	done()
	if err != nil {
		return ExitFailure, fmt.Errorf("start the recovery container: %w", err)
	}
	l.s.container = c
	if !l.o.NoActivate {
		done := l.s.timer.start("activation")
		err := activate(ctx, c, l.p, l.o, l.fwd)
		done()
		if err != nil {
			return ExitFailure, err
		}
	}
	if l.o.Sandbox != "" {
		ch, err := chooseSandbox(ctx, c, l.p, l.o.Sandbox, l.o.Stderr, l.fwd)
		if err != nil {
			return ExitFailure, err
		}
		l.rep.Sandbox = ch
		if ch.NixConfig != "" {
			env = append(env, "NIX_CONFIG="+ch.NixConfig)
		}
	}
	done = l.s.timer.start("command")
	defer done()
	return l.fwd.run(ctx, c, command(env))
}

// first runs p as the first process of a container made around it, and
// times the container's creation and the command.
func (l *launch) first(ctx context.Context, p backend.Process) (int, error) {
	ch := make(chan os.Signal, 4)
	p.Signals = ch
	done := l.s.timer.start("container create")
	c, err := l.runner.CreateFirst(ctx, l.s.id, l.spec, p)
	done()
	var se *backend.StartError
	if errors.As(err, &se) {
		return cannotRun(se, errorWriter(p)), nil
	}
	if err != nil {
		return ExitFailure, fmt.Errorf("start the recovery container: %w", err)
	}
	l.s.container = c
	done = l.s.timer.start("command")
	defer done()
	return l.fwd.start(ctx, ch, c.Root(), p, c.Run)
}

// pauseEnv names a point of the session (attached, mounted) where
// nixrescue stops until it is interrupted or killed: the crash tests kill
// it there. Not for users; it changes nothing else.
const pauseEnv = "_NIXRESCUE_TEST_PAUSE"

// pauseForTest stops at point when pauseEnv names it.
func pauseForTest(ctx context.Context, point string) {
	if os.Getenv(pauseEnv) != point {
		return
	}
	fmt.Fprintf(os.Stderr, "nixrescue: test: paused at %s\n", point)
	<-ctx.Done()
}

// live is an open session: its state, its target opened and mounted, and
// the container's shape decided.
type live struct {
	st       *state
	s        *session
	o        Options
	target   target.Target
	prepared *Prepared
	aliases  []DiskAlias
	backend  backendChoice
}

func (l *live) close() {
	done := l.s.timer.start("teardown")
	l.s.end()
	l.st.removeDirsIfUnused()
	done()
}

// open begins a session on o's target. When the target must be mounted
// and this process is not yet in a mount namespace of its own, it runs the
// whole command again in one and returns nil with that run's exit status.
func open(ctx context.Context, o Options, prepare bool) (*live, int, error) {
	if os.Geteuid() != 0 {
		return nil, ExitFailure, errors.New("a recovery session needs root (it mounts and makes namespaces): run nixrescue as root, e.g. with sudo")
	}
	t, err := o.resolveTarget()
	if err != nil {
		return nil, ExitFailure, err
	}
	be := backendChoice{name: BackendEmbedded, why: "no container to run"}
	if prepare {
		if be, err = chooseBackend(ctx, o); err != nil {
			return nil, ExitFailure, err
		}
		if o.Verbose && !inPrivateNS() {
			fmt.Fprintf(o.Stderr, "nixrescue: backend %s (%s)\n", be.name, be.why)
		}
		if be.name == BackendEmbedded {
			embedded.Prewarm()
		}
	}
	// Mounts go into a mount namespace of the session's own, except with
	// containerd, whose shim must see them from the host's (see package
	// backend/containerd): then into a private tree of the host's. A
	// directory target needs none unless the session mounts something
	// on it.
	mounts := t.Kind != target.KindDirectory || len(o.Mounts) > 0 || o.Boot != "" || o.MountMissing
	hostTree := be.name == BackendContainerd && mounts
	if be.name == BackendContainerd && privatens.Entered() {
		// chooseBackend never picks containerd then: a bug if it did.
		return nil, ExitFailure, errors.New("containerd chosen in a private mount namespace: its shim could not see the session's mounts")
	}
	if mounts && !hostTree {
		if !inPrivateNS() && !privatens.Entered() {
			code, err := reexecInPrivateNS(backendEnv + "=" + be.name)
			return nil, code, err
		}
		if err := enterPrivateNS(); err != nil {
			return nil, ExitFailure, err
		}
	}
	// What killed sessions left goes first: it may be in this target (a
	// mount point made for resolv.conf, a loop device of this image), and
	// the target must be seen as it really is.
	st, err := newState(o.StateDir)
	if err != nil {
		return nil, ExitFailure, err
	}
	if inPrivateNS() || privatens.Entered() {
		detachOtherSessions(st.sessionsDir())
	}
	if _, _, err := st.cleanStale(ctx, be.containerd); err != nil {
		st.removeDirsIfUnused()
		return nil, ExitFailure, err
	}
	s, err := st.begin(t.Path)
	if err != nil {
		st.removeDirsIfUnused()
		return nil, ExitFailure, err
	}
	if o.Report != nil {
		s.timer = timer{&o.Report.Phases}
		o.Report.Backend = be.name
		o.Report.BackendWhy = be.why
	}
	l := &live{st: st, s: s, o: o, target: t, backend: be}
	if prepare && be.name == BackendEmbedded {
		s.prewarm = embedded.Prewarm
	}
	if hostTree {
		if err := s.privateTree(); err != nil {
			l.close()
			return nil, ExitFailure, err
		}
	}
	var op *Opened
	if t.Kind == target.KindDirectory {
		op, err = openDirectory(t, o.TargetOptions, s)
	} else {
		op, err = openTarget(ctx, t, o.TargetOptions, s)
	}
	if op != nil {
		s.opened = op // even when it failed midway: teardown undoes it
	}
	if err != nil {
		l.close()
		return nil, ExitFailure, err
	}
	l.o.Root = op.RootDir
	if prepare {
		// (Inspect and generations report them themselves.)
		for _, w := range op.Warnings {
			fmt.Fprintf(o.Stderr, "nixrescue: warning: %s\n", w)
		}
	}
	if !prepare {
		return l, 0, nil
	}
	if l.prepared, err = Prepare(l.o); err != nil {
		l.close()
		return nil, ExitFailure, err
	}
	for _, w := range l.prepared.Warnings {
		fmt.Fprintf(o.Stderr, "nixrescue: warning: %s\n", w)
	}
	if !o.HostDev {
		if err := l.curateDev(); err != nil {
			l.close()
			return nil, ExitFailure, err
		}
	}
	return l, 0, nil
}

// InterruptedError says a signal ended the session before the command
// ran; the session was torn down all the same.
type InterruptedError struct{}

func (InterruptedError) Error() string { return "interrupted: the session was torn down" }

// ExitCode is a shell's status for a command ended by SIGINT.
func (InterruptedError) ExitCode() int { return 128 + int(unix.SIGINT) }

var errInterrupted = InterruptedError{}

// activate runs the system's activation, then systemd-tmpfiles.
func activate(ctx context.Context, c backend.Container, p *Prepared, o Options, fwd *forwarder) error {
	var out io.Writer = o.Stderr
	var buf bytes.Buffer
	if o.Quiet {
		out = &buf
	}
	steps := []struct {
		what string
		args []string
	}{{"activation of " + p.System.Path, nixos.ActivateCommand(p.System.Path)}}
	if nixos.Exists(p.Root, nixos.TmpfilesCommand(p.System.Path)[0]) {
		steps = append(steps, struct {
			what string
			args []string
		}{"systemd-tmpfiles", nixos.TmpfilesCommand(p.System.Path)})
	}
	for _, step := range steps {
		buf.Reset()
		code, err := fwd.run(ctx, c, backend.Process{
			Args: step.args, Env: p.Env, Cwd: "/",
			Stdout: out, Stderr: out,
		})
		if err != nil {
			return fmt.Errorf("run %s: %w", step.what, err)
		}
		if fwd.interrupted() {
			return errInterrupted
		}
		if code != 0 {
			if o.Quiet {
				o.Stderr.Write(buf.Bytes())
			}
			// NixOS's activation carries on after errors (trap ERR), and
			// so do we: the system may still be usable enough to repair.
			fmt.Fprintf(o.Stderr, "nixrescue: warning: %s exited with status %d; carrying on (its output is above)\n", step.what, code)
		}
	}
	return nil
}

// commandArgs is the command the user asked for.
func commandArgs(p *Prepared, o Options) ([]string, error) {
	if o.ShellCommand != "" && len(o.Args) > 0 {
		return nil, errors.New("give the command either with -c or after --, not both")
	}
	shell := nixos.Shell(p.Root, p.System.Path)
	switch {
	case o.ShellCommand != "":
		return []string{shell, "-c", o.ShellCommand}, nil
	case len(o.Args) > 0:
		return o.Args, nil
	case o.Login:
		return []string{shell, "-l"}, nil
	default:
		return []string{shell}, nil
	}
}

// forwarder passes signals to the process that runs, and cancels the
// session when none does.
type forwarder struct {
	mu      sync.Mutex
	current chan os.Signal
	intr    atomic.Bool
}

func (f *forwarder) loop(sigs <-chan os.Signal, cancel context.CancelFunc) {
	for s := range sigs {
		f.mu.Lock()
		cur := f.current
		f.mu.Unlock()
		f.intr.Store(true)
		if cur == nil {
			cancel()
			continue
		}
		select {
		case cur <- s:
		default:
		}
	}
}

func (f *forwarder) interrupted() bool { return f.intr.Load() }

// run runs p in c: see start.
func (f *forwarder) run(ctx context.Context, c backend.Container, p backend.Process) (int, error) {
	ch := make(chan os.Signal, 4)
	p.Signals = ch
	return f.start(ctx, ch, c.Root(), p, func(ctx context.Context) (int, error) { return c.Exec(ctx, p) })
}

// start starts p (whose Signals are ch) with run in a container whose root
// is at root, forwarding signals to it until it ends: unless the session
// was interrupted, or its program cannot run for want of an interpreter.
// Programs run directly, with no launcher of ours, so why one cannot run
// is said here, with a shell's status.
func (f *forwarder) start(ctx context.Context, ch chan os.Signal, root string, p backend.Process, run func(context.Context) (int, error)) (int, error) {
	f.forwardTo(ch)
	defer f.forwardTo(nil)
	if ctx.Err() != nil {
		return ExitFailure, errInterrupted
	}
	if interp := missingInterpreter(root, p.Args[0], p.Env); interp != "" {
		fmt.Fprintf(errorWriter(p), "nixrescue: %s: cannot be run: its interpreter %s is missing in the target\n", p.Args[0], interp)
		return helper.ExitNotFound, nil
	}
	code, err := run(ctx)
	return startResult(code, err, p)
}

// startResult is a process's exit status, or, when its program could not
// be started, a shell's status for that, said on p's error output.
func startResult(code int, err error, p backend.Process) (int, error) {
	var se *backend.StartError
	if errors.As(err, &se) {
		return cannotRun(se, errorWriter(p)), nil
	}
	return code, err
}

// forwardTo makes ch the destination of signals (nil: none, they cancel
// the session).
func (f *forwarder) forwardTo(ch chan os.Signal) {
	f.mu.Lock()
	f.current = ch
	f.mu.Unlock()
}

// errorWriter is where p's errors go: its terminal, or its stderr.
func errorWriter(p backend.Process) io.Writer {
	switch {
	case p.TTY != nil:
		return p.TTY.Out()
	case p.Stderr != nil:
		return p.Stderr
	}
	return os.Stderr
}

// cannotRun says to w why a program could not be started, and returns the
// status a shell gives for it: 127 when it is not there, 126 otherwise.
func cannotRun(se *backend.StartError, w io.Writer) int {
	if se.NotFound() {
		where := "on the target's PATH"
		if strings.Contains(se.Program, "/") {
			where = "in the target"
		}
		fmt.Fprintf(w, "nixrescue: %s: command not found %s; check the name, or give its full path\n", se.Program, where)
		return helper.ExitNotFound
	}
	fmt.Fprintf(w, "nixrescue: %s: cannot be run: %s\n", se.Program, se.Reason())
	return helper.ExitCannotExecute
}

// SpecOptions are the options of a spec without a session: the spec
// command prints it, or writes a bundle that any OCI runtime can run.
type SpecOptions struct {
	Options
	// Bundle, when set, is a directory to write config.json and
	// resolv.conf into; it must be new or empty.
	Bundle string
}

// WriteSpec writes the spec a session would use for o to w, or a bundle.
// The spec names the resolv.conf and the /dev/disk links relative to the
// bundle, as runc reads relative bind sources.
func WriteSpec(ctx context.Context, o SpecOptions, w io.Writer) (int, error) {
	o.defaults()
	helperSrc, err := HelperSource()
	if err != nil {
		return ExitFailure, err
	}
	t, err := o.resolveTarget()
	if err != nil {
		return ExitFailure, err
	}
	if o.Bundle != "" {
		if entries, err := os.ReadDir(o.Bundle); err == nil && len(entries) > 0 {
			return ExitFailure, fmt.Errorf("bundle directory %s is not empty: name a new or empty directory", o.Bundle)
		}
	}
	var p *Prepared
	if t.Kind == target.KindDirectory && len(o.Mounts) == 0 && o.Boot == "" && !o.MountMissing {
		o.Root = t.Path
		if p, err = Prepare(o.Options); err != nil {
			return ExitFailure, err
		}
		for _, w := range p.Warnings {
			fmt.Fprintf(o.Stderr, "nixrescue: warning: %s\n", w)
		}
		if !o.HostDev {
			disk, parts, _ := mountedDisk(p.Root)
			if p.Devices, err = devicesFor(disk, parts); err != nil {
				return ExitFailure, err
			}
			if disk != "" {
				p.DiskLinks = "disk"
				if o.Bundle != "" {
					if err := writeDiskLinks(filepath.Join(o.Bundle, "disk"), disk, parts); err != nil {
						return ExitFailure, err
					}
				}
			}
		}
	} else {
		if o.Bundle != "" {
			return ExitFailure, fmt.Errorf("%s (%s): a bundle needs a root that stays mounted; mount the NixOS root (and what its fstab mounts under it) yourself and pass that directory", t.Arg, t.Kind)
		}
		// The spec of a session on a disk or image names the session's
		// own mounts: print it while they exist.
		l, code, err := open(ctx, o.Options, true)
		if l == nil {
			return code, err
		}
		defer l.close()
		p = l.prepared
		o.Options = l.o
	}
	if p.DNS.Placeholder != "" {
		// A runtime would create the mount point in the target and leave
		// it there; a session makes it and removes it afterwards.
		fmt.Fprintf(o.Stderr, "nixrescue: warning: the target has no %s, so the spec injects no DNS (a session does)\n", p.DNS.Placeholder)
		p.DNS.Dests = nil
	}
	spec, err := p.Spec(o.Args, "resolv.conf", helperSrc, "", o.Options)
	if err != nil {
		return ExitFailure, err
	}
	b, err := json.MarshalIndent(spec, "", "  ")
	if err != nil {
		return ExitFailure, fmt.Errorf("encode spec: %w", err)
	}
	b = append(b, '\n')
	if o.Bundle == "" {
		_, err = w.Write(b)
		return 0, err
	}
	if err := writeBundle(o.Bundle, b, p.Resolv); err != nil {
		return ExitFailure, err
	}
	return 0, nil
}

// writeBundle writes config.json and resolv.conf into dir.
func writeBundle(dir string, config, resolv []byte) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create bundle %s: %w", dir, err)
	}
	if resolv != nil {
		if err := os.WriteFile(filepath.Join(dir, "resolv.conf"), resolv, 0o644); err != nil {
			return fmt.Errorf("write bundle: %w", err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), config, 0o644); err != nil {
		return fmt.Errorf("write bundle: %w", err)
	}
	return nil
}

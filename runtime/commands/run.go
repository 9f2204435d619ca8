package commands

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	units "github.com/docker/go-units"
	"golang.org/x/sys/unix"
	"golang.org/x/term"

	"github.com/nixrescue/nixrescue/runtime/engine"
	"github.com/nixrescue/nixrescue/runtime/hint"
	"github.com/nixrescue/nixrescue/runtime/host"
	"github.com/nixrescue/nixrescue/runtime/nixos"
	"github.com/nixrescue/nixrescue/specs"
)

// RunOptions are run's (and enter's): a command in the recovery
// container, after the system's activation.
type RunOptions struct {
	Options
	// Args is the command; empty runs the target's shell.
	Args []string
	// ShellCommand, when set, is run by the target's shell (-c).
	ShellCommand string
	// Login runs the shell as a login shell (enter).
	Login bool
	// NoActivate skips activation (and systemd-tmpfiles); Quiet hides
	// activation's output unless it fails.
	NoActivate, Quiet bool
	// Sandbox, when set, decides Nix's build sandbox for the command.
	Sandbox SandboxMode
	// ExtraEnv is added to the command's environment (not activation's).
	ExtraEnv []string
	// NixConfig are Nix settings for the command, for this session only
	// (NIX_CONFIG, with the sandbox's).
	NixConfig []string
	// Notes are said once the container is ready, before the command.
	Notes []string
}

// Run runs a command in the recovery container of o's target: activation
// first (unless NoActivate), the sandbox decided if asked. It returns what
// the session did and the command's exit status; an error means
// nixrescue itself failed. The session is torn down in every case.
func Run(ctx context.Context, o RunOptions) (*RunReport, int, error) {
	s, err := open(ctx, &o.Options, true)
	if err != nil {
		return nil, 0, err
	}
	if o.Terminal && o.Login && !isTerminal(o.Stdin) {
		o.Log.Info("standard input is not a terminal: the shell reads its commands from it, with no prompt, and ends where it ends")
	}
	rep := newRunReport(s)
	code, err := runIn(ctx, s, o, rep, nil)
	rep.CurrentAfter = currentRef(s.Root())
	s.Outcome(code, err, rep.wrote()...)
	s.Close()
	rep.ended(s, &o.Options)
	rep.ExitStatus = code
	return rep, code, err
}

// runIn runs o's command in session s, filling rep; watch, when set,
// wraps the command's output (a rebuild watches it for failed downloads).
func runIn(ctx context.Context, s *engine.Session, o RunOptions, rep *RunReport, watch func(io.Writer) io.Writer) (int, error) {
	o.Container.NoActivate = o.NoActivate
	p, err := prepare(s, &o.Options, true)
	if err != nil {
		return 0, err
	}
	rep.DiskAliases = append(rep.DiskAliases, p.Aliases...)
	if p.Emulator != "" {
		rep.Emulator = p.Emulator
		o.NixConfig = append(o.NixConfig, emulatedNixConfig...)
		rep.NixSettings = o.NixConfig
		o.Notes = append(o.Notes, "Nix runs under qemu-user, which cannot load its seccomp filter: giving it "+strings.Join(emulatedNixConfig, "; ")+" for this session only (NIX_CONFIG); the target's nix.conf is unchanged")
		if o.Sandbox == "" {
			o.Sandbox = SandboxAuto // off: see chooseSandbox
		}
	}
	for _, n := range o.Notes {
		o.Log.Info(n)
	}
	args, err := commandArgs(p, o)
	if err != nil {
		return 0, err
	}
	proc := newProcess(&o.Options, args, append(slices.Clone(p.Env), o.ExtraEnv...))
	if o.Sandbox == "" && len(o.NixConfig) > 0 {
		proc.Env = append(proc.Env, nixConfigEnv(o.NixConfig))
	}
	if watch != nil && proc.TTY == nil {
		proc.Stdout, proc.Stderr = watch(proc.Stdout), watch(proc.Stderr)
	}
	var code int
	if o.NoActivate && o.Sandbox == "" {
		// Nothing runs before the command: it is the container's first
		// process, and the container is made around it.
		code, err = s.RunFirst(ctx, p, proc)
	} else {
		code, err = withHold(ctx, s, p, o, rep, proc)
	}
	if err != nil {
		return 0, err
	}
	if code == 128+int(unix.SIGKILL) && o.Container.Memory > 0 && host.OOMKills("/"+s.ID()) > 0 {
		rep.OOMKilled = true
		o.Log.Info(hint.Render(fmt.Sprintf("the command was killed for lack of memory: it needed more than {Memory %s}; raise it or drop it",
			units.BytesSize(float64(o.Container.Memory)))))
	}
	return code, nil
}

// withHold starts the container with its hold, runs activation and the
// sandbox probe there, then proc.
func withHold(ctx context.Context, s *engine.Session, p *engine.Prepared, o RunOptions, rep *RunReport, proc engine.Process) (int, error) {
	c, err := s.Start(ctx, p)
	if err != nil {
		return 0, err
	}
	if !o.NoActivate {
		done := s.Time("activation")
		err := activate(ctx, s, c, p, o)
		done()
		if err != nil {
			return 0, err
		}
	}
	if o.Sandbox != "" {
		ch, err := chooseSandbox(ctx, c, p, o.Sandbox, o.Log)
		if err != nil {
			return 0, err
		}
		rep.Sandbox = ch
		if settings := append(slices.Clone(o.NixConfig), ch.NixConfig); ch.NixConfig != "" || len(o.NixConfig) > 0 {
			proc.Env = append(proc.Env, nixConfigEnv(slices.DeleteFunc(settings, func(s string) bool { return s == "" })))
		}
	}
	defer s.Time("command")()
	return c.Exec(ctx, proc)
}

// emulatedNixConfig are the Nix settings of a session whose programs run
// through qemu-user: Nix's seccomp filter (filter-syscalls) is a BPF
// program for the emulated architecture's system calls, which qemu-user
// refuses to load (EINVAL), and every build then fails. extra-platforms
// is not needed: the target's own Nix runs, and takes itself for the
// target's architecture.
var emulatedNixConfig = []string{"filter-syscalls = false"}

// nixConfigEnv gives Nix settings to a process, one per line of
// NIX_CONFIG (read after nix.conf, so they win for this process only).
func nixConfigEnv(settings []string) string {
	return "NIX_CONFIG=" + strings.Join(settings, "\n")
}

// activate runs the system's activation, then systemd-tmpfiles, as
// nixos-enter does. Their output is the command's stderr (kept back with
// Quiet, unless they fail).
func activate(ctx context.Context, s *engine.Session, c *engine.Container, p *engine.Prepared, o RunOptions) error {
	var buf bytes.Buffer
	out := &countingWriter{w: o.Stderr}
	if o.Quiet {
		out.w = &buf
	}
	type step struct {
		what string
		args []string
	}
	steps := []step{{"activation of " + p.System.Path, nixos.ActivateCommand(p.System.Path)}}
	if tmpfiles := nixos.TmpfilesCommand(p.System.Path); nixos.Exists(p.Root, tmpfiles[0]) {
		steps = append(steps, step{"systemd-tmpfiles", tmpfiles})
	}
	for _, st := range steps {
		buf.Reset()
		out.n = 0
		code, err := c.Exec(ctx, engine.Process{Args: st.args, Env: p.Env, Cwd: "/", Stdout: out, Stderr: out})
		if err != nil {
			return fmt.Errorf("run %s: %w", st.what, err)
		}
		if s.Interrupted() {
			return engine.ErrInterrupted
		}
		if code != 0 {
			if o.Quiet {
				o.Stderr.Write(buf.Bytes())
			}
			// NixOS's activation carries on after errors (trap ERR), and
			// so do we: the system may still be usable enough to repair.
			said := "its output is above"
			if out.n == 0 {
				said = "it printed nothing"
			}
			o.Log.Warn(fmt.Sprintf("%s exited with status %d; carrying on (%s)", st.what, code, said))
		}
	}
	return nil
}

// commandArgs is the command the user asked for.
func commandArgs(p *engine.Prepared, o RunOptions) ([]string, error) {
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
	}
	return []string{shell}, nil
}

// chooseSandbox decides about Nix's build sandbox: auto probes, inside the
// container, what the sandbox does first (a private mount namespace of
// '/'), and turns it off for this session only when that fails. The target's
// nix.conf is never edited: on NixOS it is in the read-only store.
func chooseSandbox(ctx context.Context, c execer, p *engine.Prepared, mode SandboxMode, log logger) (*SandboxChoice, error) {
	ch := &SandboxChoice{Mode: mode}
	switch mode {
	case SandboxOn:
		ch.On, ch.Why, ch.NixConfig = true, hint.Render("{Sandbox on}"), "sandbox = true"
		return ch, nil
	case SandboxOff:
		ch.On, ch.Why, ch.NixConfig = false, hint.Render("{Sandbox off}"), "sandbox = false"
		return ch, nil
	case SandboxAuto:
	default:
		return nil, hint.Errorf("{Sandbox %s}: use auto, on or off", mode)
	}
	if p.Emulator != "" {
		ch.On, ch.NixConfig = false, "sandbox = false"
		ch.Why = fmt.Sprintf("Nix runs under qemu-user (binfmt_misc's %s), which cannot make the namespaces of the build sandbox (clone fails with EINVAL)", p.Emulator)
		log.Info(ch.Why + "; building with sandbox = false for this session only (NIX_CONFIG); the target's nix.conf is unchanged")
		return ch, nil
	}
	var why bytes.Buffer
	code, err := c.Exec(ctx, engine.Process{Args: []string{specs.HelperPath, "probe-sandbox"}, Env: p.Env, Cwd: "/", Stdout: &why, Stderr: &why})
	if err != nil {
		return nil, fmt.Errorf("probe the Nix sandbox: %w", err)
	}
	if code == 0 {
		ch.On, ch.Why = true, "the sandbox's mount steps work in this container (a private '/' and pivot_root): the target's own setting applies"
		return ch, nil
	}
	ch.On, ch.NixConfig = false, "sandbox = false"
	ch.Why = fmt.Sprintf("the Nix build sandbox cannot work in this container (%s)", bytes.TrimSpace(why.Bytes()))
	log.Info(ch.Why + "; building with sandbox = false for this session only (NIX_CONFIG); the target's nix.conf is unchanged")
	return ch, nil
}

// execer runs a process in a container (engine.Container; a stand-in in
// the sandbox probe's test).
type execer interface {
	Exec(ctx context.Context, p engine.Process) (int, error)
}

// logger is what chooseSandbox says to.
type logger interface{ Info(msg string, args ...any) }

// countingWriter passes writes on and counts their bytes.
type countingWriter struct {
	w io.Writer
	n int
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += n
	return n, err
}

// isTerminal tells whether r is a terminal.
func isTerminal(r io.Reader) bool {
	f, ok := r.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// Package hosttool runs the host's programs nixrescue relies on (blkid,
// cryptsetup, lvm, mdadm, dmsetup, e2fsck, xfs_repair, qemu-img, mtools)
// and words how they failed: a program that is not installed, and one that
// ran and failed, are errors of their own, and the package to install is
// data.
//
// They all go through one Runner, the one in the context (WithRunner), or
// the host's (Exec): a test gives recorded answers instead
// (hosttool/hosttooltest) and needs neither root nor the programs. A
// program that outlives the call (qemu-storage-daemon's export) is
// started through it too (Start); boot-test's qemu, whose console it
// reads as it boots, is started by runtime/boottest, found with Look.
package hosttool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
)

// packages are the packages that hold the programs, as a user installs
// them.
var packages = map[string]string{
	"blkid":               "util-linux",
	"cryptsetup":          "cryptsetup (Debian: cryptsetup-bin)",
	"dmsetup":             "dmsetup",
	"e2fsck":              "e2fsprogs",
	"lvm":                 "lvm2",
	"mdadm":               "mdadm",
	"mtype":               "mtools",
	"mcopy":               "mtools",
	"qemu-img":            "qemu-utils (Debian's package; qemu's elsewhere)",
	"qemu-storage-daemon": "qemu-system-common (Debian's package; qemu's elsewhere)",
	"xfs_repair":          "xfsprogs",
	"zdb":                 "zfsutils-linux (Debian contrib; bookworm-backports' for pools of OpenZFS 2.2 and later)",
	"zfs":                 "zfsutils-linux (Debian contrib; bookworm-backports' for pools of OpenZFS 2.2 and later)",
	"zpool":               "zfsutils-linux (Debian contrib; bookworm-backports' for pools of OpenZFS 2.2 and later)",
}

// Package is the package that holds program tool.
func Package(tool string) string {
	if p, ok := packages[tool]; ok {
		return p
	}
	return tool
}

// MissingError says this host lacks a program, or a kernel feature, that
// what nixrescue was asked to do needs, and what to install: the one
// error for anything missing on the host.
type MissingError struct {
	// What is missing: a program's name, or a feature.
	What string
	// Needs says what needs it ("boot-test needs"); "" when the program
	// was run for what the user asked.
	Needs string
	// Install is what to install; "" is What's Debian package.
	Install string
}

func (e *MissingError) Error() string {
	install := e.Install
	if install == "" {
		install = Package(e.What)
	}
	if e.Needs == "" {
		return fmt.Sprintf("this host has no %s: install %s", e.What, install)
	}
	return fmt.Sprintf("this host has no %s, which %s: install %s", e.What, e.Needs, install)
}

// ExitError is a program's failure: its exit status and what it said
// (its standard error; both outputs for Combined).
type ExitError struct {
	Tool   string
	Code   int
	Output string
}

func (e *ExitError) Error() string {
	if e.Output == "" {
		return fmt.Sprintf("%s: exit status %d", e.Tool, e.Code)
	}
	return fmt.Sprintf("%s: %s", e.Tool, e.Output)
}

// Command is a program to run to its end.
type Command struct {
	Name string
	Args []string
	// Stdin is its input (a key goes there, never in Args); nil: none.
	Stdin io.Reader
	// Env is added to its environment.
	Env []string
	// Combined gives its standard error in Stdout too, in order, as a
	// user at a terminal sees them.
	Combined bool
}

// String is the command line, as a record names it.
func (c Command) String() string { return strings.Join(append([]string{c.Name}, c.Args...), " ") }

// Result is how a program ended: what it wrote and its exit status.
type Result struct {
	Stdout, Stderr []byte
	Code           int
}

// Runner runs programs: to their end (Run: its error says the program
// could not be run at all, exec.ErrNotFound when it is not installed; an
// exit status is in the Result), or started to run beside nixrescue
// until the caller stops it (Start).
type Runner interface {
	Run(ctx context.Context, c Command) (Result, error)
	Start(c Command, d Daemon) (Process, error)
}

// Daemon says how a started program runs beside nixrescue.
type Daemon struct {
	// Output takes its standard output and error.
	Output io.Writer
	// OwnGroup puts it in a process group of its own: a Ctrl-C meant for
	// nixrescue does not reach it. OwnMountNamespace gives it a private
	// mount namespace of its own.
	OwnGroup, OwnMountNamespace bool
	// Files are given to it as its descriptors 3, 4, …: a listening
	// socket it serves, made by nixrescue.
	Files []*os.File
}

// Process is a started program.
type Process interface {
	PID() int
	Signal(os.Signal) error
	// Wait waits for it to end: nil when it exited with status 0.
	Wait() error
}

type runnerKey struct{}

// WithRunner is ctx with r running the host's programs.
func WithRunner(ctx context.Context, r Runner) context.Context {
	return context.WithValue(ctx, runnerKey{}, r)
}

func runnerOf(ctx context.Context) Runner {
	if r, ok := ctx.Value(runnerKey{}).(Runner); ok {
		return r
	}
	return Exec{}
}

// Exec runs the host's programs, in English whatever the host's locale
// (their messages are read and shown), killed when the context ends.
type Exec struct{}

// Run implements Runner.
func (Exec) Run(ctx context.Context, c Command) (Result, error) {
	var out, errb bytes.Buffer
	cmd := exec.CommandContext(ctx, c.Name, c.Args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = c.Stdin, &out, &errb
	if c.Combined {
		cmd.Stderr = &out
	}
	cmd.Env = append(append(os.Environ(), "LC_ALL=C"), c.Env...)
	err := cmd.Run()
	r := Result{Stdout: out.Bytes(), Stderr: errb.Bytes()}
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() >= 0 {
		r.Code = ee.ExitCode()
		return r, nil
	}
	return r, err
}

// Start implements Runner.
func (Exec) Start(c Command, d Daemon) (Process, error) {
	cmd := exec.Command(c.Name, c.Args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = c.Stdin, d.Output, d.Output
	cmd.Env = append(append(os.Environ(), "LC_ALL=C"), c.Env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: d.OwnGroup}
	cmd.ExtraFiles = d.Files
	if d.OwnMountNamespace {
		cmd.SysProcAttr.Unshareflags = syscall.CLONE_NEWNS
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return execProcess{cmd}, nil
}

type execProcess struct{ cmd *exec.Cmd }

func (p execProcess) PID() int                 { return p.cmd.Process.Pid }
func (p execProcess) Signal(s os.Signal) error { return p.cmd.Process.Signal(s) }
func (p execProcess) Wait() error              { return p.cmd.Wait() }

// Start starts c as a daemon (d) with the context's Runner: a
// *MissingError when it is not installed.
func Start(ctx context.Context, c Command, d Daemon) (Process, error) {
	p, err := runnerOf(ctx).Start(c, d)
	switch {
	case errors.Is(err, exec.ErrNotFound):
		return nil, &MissingError{What: c.Name}
	case err != nil:
		return nil, fmt.Errorf("start %s: %w", c.Name, err)
	}
	return p, nil
}

// Look finds program name on PATH, or says it is missing (a
// *MissingError) and what needs it.
func Look(name, needs string) (string, error) {
	p, err := exec.LookPath(name)
	if err != nil {
		return "", &MissingError{What: name, Needs: needs}
	}
	return p, nil
}

// Run runs program name with args, stdin given (a key goes there, never
// in args), and returns its standard output, also when it fails: a
// *MissingError when it is not installed, an *ExitError when it exits
// non-zero.
func Run(ctx context.Context, stdin io.Reader, name string, args ...string) ([]byte, error) {
	return RunCommand(ctx, Command{Name: name, Args: args, Stdin: stdin})
}

// Combined runs program name with args as Run does, and returns its
// standard output and error together, as a user at a terminal sees them
// (e2fsck and xfs_repair report on either).
func Combined(ctx context.Context, name string, args ...string) ([]byte, error) {
	return RunCommand(ctx, Command{Name: name, Args: args, Combined: true})
}

// RunCommand runs c with the context's Runner and returns its standard
// output (with its error, when Combined), also when it fails: a
// *MissingError when it is not installed, an *ExitError with what it said
// when it exits non-zero.
func RunCommand(ctx context.Context, c Command) ([]byte, error) {
	r, err := runnerOf(ctx).Run(ctx, c)
	said := r.Stderr
	if c.Combined {
		said = r.Stdout
	}
	switch {
	case errors.Is(err, exec.ErrNotFound):
		return r.Stdout, &MissingError{What: c.Name}
	case err != nil && len(bytes.TrimSpace(said)) > 0:
		// Killed (an abort): what it said first says why (a call trace
		// follows).
		return r.Stdout, fmt.Errorf("%s: %w: %s", c.Name, err, firstLine(said))
	case err != nil:
		return r.Stdout, fmt.Errorf("%s: %w", c.Name, err)
	case r.Code != 0:
		return r.Stdout, &ExitError{Tool: c.Name, Code: r.Code, Output: strings.TrimSpace(string(said))}
	}
	return r.Stdout, nil
}

// firstLine is the first line of what a program said.
func firstLine(b []byte) string {
	line, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	return strings.TrimSpace(line)
}

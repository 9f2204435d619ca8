// Package hosttool runs the host's programs nixrescue relies on (blkid,
// cryptsetup, lvm, mdadm, dmsetup, e2fsck, xfs_repair) and words how they
// failed: a program that is not installed, and one that ran and failed,
// are errors of their own, and the package to install is data.
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
)

// packages are the packages that hold the programs, as a user installs
// them.
var packages = map[string]string{
	"blkid":      "util-linux",
	"cryptsetup": "cryptsetup (Debian: cryptsetup-bin)",
	"dmsetup":    "dmsetup",
	"e2fsck":     "e2fsprogs",
	"lvm":        "lvm2",
	"mdadm":      "mdadm",
	"xfs_repair": "xfsprogs",
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

// Run runs program name with args, stdin given (a key goes there, never
// in args), and returns its standard output, also when it fails: a
// *MissingError when it is not installed, an *ExitError when it exits
// non-zero.
func Run(ctx context.Context, stdin io.Reader, name string, args ...string) ([]byte, error) {
	var out, errb bytes.Buffer
	err := run(ctx, stdin, &out, &errb, name, args)
	return out.Bytes(), wrap(err, name, &errb)
}

// Combined runs program name with args as Run does, and returns its
// standard output and error together, as a user at a terminal sees them
// (e2fsck and xfs_repair report on either).
func Combined(ctx context.Context, name string, args ...string) ([]byte, error) {
	var out bytes.Buffer
	err := run(ctx, nil, &out, &out, name, args)
	return out.Bytes(), wrap(err, name, &out)
}

func run(ctx context.Context, stdin io.Reader, stdout, stderr io.Writer, name string, args []string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stderr
	// Their messages are read and shown: in English, whatever the host.
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	return cmd.Run()
}

func wrap(err error, name string, said *bytes.Buffer) error {
	var ee *exec.ExitError
	switch {
	case err == nil:
		return nil
	case errors.Is(err, exec.ErrNotFound):
		return &MissingError{What: name}
	case errors.As(err, &ee) && ee.ExitCode() >= 0:
		return &ExitError{Tool: name, Code: ee.ExitCode(), Output: strings.TrimSpace(said.String())}
	}
	return fmt.Errorf("%s: %w", name, err)
}

// Package hint lets the runtime say what a user can do about a failure in
// terms of its own options, and leaves the wording to the front end:
// cmd/nixrescue says "--read-only" where the runtime says {ReadOnly}.
//
// A message (an error's text, its fix, a warning) mentions an option as
// {Name} or {Name value}, Name one of the Options below (the field of the
// runtime's options it sets). Render words every mention with the words
// the front end set (SetWords); without any, an option is named as the
// runtime names it. Error carries the subject, what is wrong and the fix
// apart, so that a front end can show them as it likes (JSON has them as
// fields too).
package hint

import (
	"errors"
	"fmt"
	"strings"
	"sync/atomic"

	"github.com/nixrescue/nixrescue/runtime/internal/lazyre"
)

// Option names an option of the runtime's API.
type Option string

// The options a message may mention.
const (
	Root                Option = "Root"                // the directory of a root mounted already
	Target              Option = "Target"              // TARGET itself
	ReadOnly            Option = "ReadOnly"            // attach and mount read-only
	RootPart            Option = "RootPart"            // the partition of the root
	Mount               Option = "Mount"               // DEVICE:PATH, mounted besides or instead of the fstab's
	Boot                Option = "Boot"                // DEVICE on /boot
	MountMissing        Option = "MountMissing"        // a directory's unmounted /boot and /nix
	Force               Option = "Force"               // open what is in use elsewhere
	HostDev             Option = "HostDev"             // the host's /dev
	System              Option = "System"              // a system by its path
	Generation          Option = "Generation"          // a system by its generation
	DiskAlias           Option = "DiskAlias"           // another name of the target's disk
	NoActivate          Option = "NoActivate"          // no activation
	DNS                 Option = "DNS"                 // DNS servers, or none
	NetworkNone         Option = "NetworkNone"         // no network
	EFI                 Option = "EFI"                 // efivarfs: auto, on, off
	Memory              Option = "Memory"              // a memory limit
	Backend             Option = "Backend"             // auto, embedded, containerd
	Address             Option = "Address"             // containerd's socket
	Sandbox             Option = "Sandbox"             // Nix's build sandbox: auto, on, off
	NoInstallBootloader Option = "NoInstallBootloader" // a rebuild that leaves the bootloader be
	To                  Option = "To"                  // the generation a rollback goes to
	Write               Option = "Write"               // hardware-config writes its result
	KeyFile             Option = "KeyFile"             // a key of the target's LUKS volumes
	Snapshot            Option = "Snapshot"            // writes go to a throwaway overlay
	SnapshotOut         Option = "SnapshotOut"         // the overlay kept in a file
	Firmware            Option = "Firmware"            // boot-test's firmware: auto, bios, efi
	Until               Option = "Until"               // boot-test's goal
	Timeout             Option = "Timeout"             // boot-test's limit
	BootMemory          Option = "BootMemory"          // boot-test's VM memory
	Accel               Option = "Accel"               // boot-test's accelerator
	CPUs                Option = "CPUs"                // a CPU quota
	PidsLimit           Option = "PidsLimit"           // a cap on processes
	AuditLog            Option = "AuditLog"            // where the audit record goes
	Console             Option = "Console"             // boot-test's console log
	Bundle              Option = "Bundle"              // spec's bundle directory
	StateDir            Option = "StateDir"            // the state directory
	Fsck                Option = "Fsck"                // check the filesystems before mounting them
	DryRun              Option = "DryRun"              // say what would be done, do nothing
	BootTest            Option = "BootTest"            // a rebuild's boot test after
	Flake               Option = "Flake"               // the flake a rebuild builds
	Keep                Option = "Keep"                // how many generations prune keeps
)

// Options are all of them: a front end words each (a test checks it).
var Options = []Option{Root, Target, ReadOnly, RootPart, Mount, Boot, MountMissing, Force, HostDev, System, Generation, DiskAlias,
	NoActivate, DNS, NetworkNone, EFI, Memory, Backend, Address, Sandbox, NoInstallBootloader, To, Write, KeyFile, Snapshot, SnapshotOut, Firmware, Until, Timeout, BootMemory, Accel, CPUs, PidsLimit, AuditLog, Console, Bundle, StateDir, Fsck, DryRun, BootTest, Flake, Keep}

// Words words a mention of option o, with value ("" for none).
type Words func(o Option, value string) string

// defaultWords names an option as the runtime does.
func defaultWords(o Option, value string) string {
	if value == "" {
		return "the " + string(o) + " option"
	}
	return string(o) + "=" + value
}

var words atomic.Pointer[Words]

// SetWords sets how every mention of an option is worded, from then on:
// a front end does it once, first thing.
func SetWords(w Words) { words.Store(&w) }

var mentionRE = lazyre.New(`\{([A-Z][A-Za-z]*)(?: ([^{}]*))?\}`)

// Render words the option mentions of s ({Name} and {Name value});
// braces around anything else are left as they are.
func Render(s string) string {
	w := Words(defaultWords)
	if p := words.Load(); p != nil {
		w = *p
	}
	return mentionRE().ReplaceAllStringFunc(s, func(m string) string {
		sub := mentionRE().FindStringSubmatch(m)
		o := Option(sub[1])
		if !known(o) {
			return m
		}
		return w(o, sub[2])
	})
}

func known(o Option) bool {
	for _, k := range Options {
		if k == o {
			return true
		}
	}
	return false
}

// Mentions lists the options s mentions, known or not (for tests).
func Mentions(s string) []Option {
	var out []Option
	for _, m := range mentionRE().FindAllStringSubmatch(s, -1) {
		out = append(out, Option(m[1]))
	}
	return out
}

// Error is a failure the user can do something about: what it is about
// (as the user named it; "" for nothing in particular), what is wrong, and
// what to do. Err's text and Fix may mention options.
type Error struct {
	Subject string
	Err     error
	Fix     string
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.Subject != "" {
		b.WriteString(e.Subject + ": ")
	}
	b.WriteString(Render(e.Err.Error()))
	if e.Fix != "" {
		b.WriteString(": " + Render(e.Fix))
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// FixOf is the fix of the first Error in err's chain, worded ("" when
// there is none).
func FixOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return Render(e.Fix)
	}
	return ""
}

// text is an error whose message may mention options.
type text struct {
	msg string
	err error
}

func (t *text) Error() string { return Render(t.msg) }
func (t *text) Unwrap() error { return t.err }

// Errorf is fmt.Errorf for a message that may mention options; %w wraps
// as fmt.Errorf does.
func Errorf(format string, a ...any) error {
	e := fmt.Errorf(format, a...)
	return &text{msg: e.Error(), err: errors.Unwrap(e)}
}

// New is an Error about subject: err (which may mention options), and
// fix.
func New(subject string, err error, fix string) *Error {
	return &Error{Subject: subject, Err: err, Fix: fix}
}

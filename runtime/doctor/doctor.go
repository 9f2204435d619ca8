// Package doctor says why a NixOS target does not boot, or could not be
// repaired, from what a read-only look at it finds: each check reads one
// kind of failure NixOS users meet (a full /boot, an fstab naming a
// filesystem that is gone, a bootloader gone, a filesystem to check, a full
// store, entries naming files that are not there) and reports findings,
// each with the evidence it read and the command lines that fix it.
//
// The checks read Facts only (a mounted root and what opening it found),
// so that each is tested on a directory; running programs, booting and
// opening the target are the caller's.
package doctor

import (
	"path"
	"slices"
	"strings"

	"github.com/nixrescue/nixrescue/runtime/nixos"
	"github.com/nixrescue/nixrescue/runtime/target"
)

// Severity says how much a finding matters.
type Severity string

// The severities, gravest first.
const (
	// Fatal: the machine does not boot, or cannot be repaired, until it
	// is fixed.
	Fatal Severity = "fatal"
	// Warning: it boots, but something will fail or is at risk.
	Warning Severity = "warning"
	// Info: worth knowing; nothing to fix.
	Info Severity = "info"
)

// Finding is one thing a check found. Its JSON field names are stable
// (docs/json.md).
type Finding struct {
	// ID names the check and what it found (boot-full, fstab-missing …):
	// stable, for scripts.
	ID       string   `json:"id"`
	Severity Severity `json:"severity"`
	// Summary says what is wrong, in one line.
	Summary string `json:"summary"`
	// Evidence is what was read that shows it.
	Evidence []string `json:"evidence"`
	// Fix is the command lines that fix it, in order, to paste as they
	// are (options are mentioned as runtime/hint has them, for the front
	// end to word); empty when there is nothing to run.
	Fix []string `json:"fix"`
}

// Space is what a filesystem has left.
type Space struct {
	// Mountpoint is where the filesystem is mounted in the root.
	Mountpoint string
	// Device identifies the filesystem (st_dev), to tell one from two.
	Device                 uint64
	Size, Avail            uint64
	Inodes, InodesFree     uint64
	HasInodes, ReadFailure bool
}

// Facts are what the checks read: the target's root, mounted read-only,
// and what opening it found.
type Facts struct {
	// Root is where the target's root is mounted (its fstab's filesystems
	// mounted in it).
	Root string
	// Target is TARGET as the user gave it, for the fix lines.
	Target string
	// Disk is this host's device of the target's disk ("" for a
	// directory target); Image says it is an image file's.
	Disk  string
	Image bool
	// Partitions are the disk's, and the volumes of its layers; Plan the
	// mount plan (fstab entries that name nothing are Unresolved).
	Partitions []target.Partition
	Plan       []target.Entry
	// Generations, the current system's and the bootloader the
	// configuration installs, with the entries of its menu (EntriesRead
	// false when the menu is not there).
	Generations []nixos.Generation
	System      string
	Generation  int
	Bootloader  nixos.Bootloader
	Entries     []nixos.BootEntry
	EntriesRead bool
	// EFIArch is the UEFI name of the system's architecture (x64, aa64).
	EFIArch string
	// Aliases are the configuration's names of the disk, mapped to Disk.
	Aliases []target.DiskAlias
	// HostEFI says this host booted by EFI; BootEntries are its NVRAM's
	// boot entries (nil when not read).
	HostEFI     bool
	BootEntries []LoadOption
	// Space reads what the filesystem holding p (a path in Root) has
	// left.
	Space func(p string) Space
	// BootSector reads the first sector of a disk of this host.
	BootSector func(disk string) ([]byte, error)
	// LUKS are the LUKS volumes the configuration declares.
	LUKS []LUKSDevice
	// NoGRUBInstall says why this host cannot install GRUB for BIOS on
	// the target ("" when it can, or GRUB for BIOS is not the
	// bootloader): a rebuild that need not install it is proposed with
	// {NoInstallBootloader} then.
	NoGRUBInstall string
}

// LUKSDevice is a LUKS volume the configuration opens at boot
// (boot.initrd.luks.devices).
type LUKSDevice struct{ Name, Device string }

// Check is one kind of diagnosis: a new one is one more file, its entry
// in Checks, and its tests.
type Check struct {
	// Name is the check's, as docs/cli.md lists them.
	Name string
	Run  func(f *Facts) []Finding
}

// Checks are all of doctor's, in the order their findings are shown.
var Checks = []Check{
	{Name: "fstab", Run: checkFstab},
	{Name: "luks", Run: checkLUKS},
	{Name: "filesystems", Run: checkFSState},
	{Name: "system", Run: checkSystem},
	{Name: "bootloader", Run: checkBootloader},
	{Name: "boot-entries", Run: checkEntries},
	{Name: "boot-space", Run: checkBootSpace},
	{Name: "nvram", Run: checkNVRAM},
	{Name: "space", Run: checkSpace},
	{Name: "configuration", Run: checkConfiguration},
}

// Diagnose runs every check on f: the findings, gravest first (in the
// order of Checks within a severity).
func Diagnose(f *Facts) []Finding {
	out := []Finding{}
	for _, c := range Checks {
		out = append(out, c.Run(f)...)
	}
	rank := map[Severity]int{Fatal: 0, Warning: 1, Info: 2}
	slices.SortStableFunc(out, func(a, b Finding) int { return rank[a.Severity] - rank[b.Severity] })
	return out
}

// AnyFatal tells whether a finding is fatal.
func AnyFatal(fs []Finding) bool {
	return slices.ContainsFunc(fs, func(f Finding) bool { return f.Severity == Fatal })
}

// Command is a nixrescue command line on f's target: verb, TARGET,
// then args (options as {Name value} mentions, or "--" and a command).
func (f *Facts) Command(verb string, args ...string) string {
	return strings.Join(append([]string{"nixrescue", verb, Quote(f.Target)}, args...), " ")
}

// Unread says why p (a path in the root) was not read: the filesystem
// the fstab puts it on is not mounted (the fstab check, or the ESP's,
// says why); ok is false when it was read.
func (f *Facts) Unread(p string) (why string, ok bool) {
	best := ""
	for _, e := range f.Plan {
		mp := path.Clean(e.Mountpoint)
		if mp != "/" && (p == mp || strings.HasPrefix(p, mp+"/")) && len(mp) > len(best) {
			best, why, ok = mp, e.Reason, e.Action != target.ActionMount
		}
	}
	return why, ok
}

// Rebuild is the rebuild command line for a fix that needs the menu and
// kernels written, not the bootloader installed.
func (f *Facts) Rebuild(args ...string) string {
	if f.NoGRUBInstall != "" {
		args = append(args, "{NoInstallBootloader}")
	}
	return f.Command("rebuild", args...)
}

// Quote quotes s for a POSIX shell when it needs it.
func Quote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("/._-+=:,@%", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// finding is a Finding with an empty, not nil, evidence and fix (as JSON
// has them).
func finding(id string, sev Severity, summary string, evidence []string, fix ...string) Finding {
	if evidence == nil {
		evidence = []string{}
	}
	if fix == nil {
		fix = []string{}
	}
	return Finding{ID: id, Severity: sev, Summary: summary, Evidence: evidence, Fix: fix}
}

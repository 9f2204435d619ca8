// Package open opens a target for a session: it attaches a disk or an
// image (a loop device, qemu's export of an image or a snapshot), finds
// its partitions, opens the storage layers between them and the
// filesystems (runtime/layers: md, LUKS, LVM), finds the NixOS root,
// plans the mounts from the target's fstab (target.MakePlan) and mounts
// them, each step recorded in the session's journal first, so that a
// killed session's leftovers are undone by runtime/recovery. Close undoes
// it all, in reverse. A directory target (a root mounted by the user)
// is only looked at, and what it lacks mounted on request.
//
//	op, err := open.Target(ctx, t, options, &open.Session{State: st, Time: timer, Log: log})
//	…op.RootDir…
//	op.Close()
//
// The host's programs it runs (blkid, cryptsetup, lvm, mdadm, qemu-img)
// go through runtime/internal/hosttool, whose runner a test replaces.
package open

import (
	"io"
	"log/slog"

	"github.com/nixrescue/nixrescue/runtime/hint"
	"github.com/nixrescue/nixrescue/runtime/nixos"
	"github.com/nixrescue/nixrescue/runtime/state"
	"github.com/nixrescue/nixrescue/runtime/target"
)

// Session is what opening a target needs of the session that opens it.
type Session struct {
	// State is the session's state: its directory, journal and claims.
	State *state.Session
	// Time starts timing a phase of the session; what it returns ends it.
	// Guard, when set, times one of its guards (engine.GuardClaims,
	// GuardTwoWriters) the same way.
	Time  func(phase string) func()
	Guard func(name string) func()
	// Log takes what opening has to say beside its warnings (verbose).
	Log *slog.Logger
	// Prewarm, when set, is called as the mounts begin: what the
	// session's container will need warm stays warm only a short while.
	Prewarm func()
}

// The guards opening a target times (Session.Guard).
const (
	// GuardClaims is taking the target's claims (state.Session.Claim).
	GuardClaims = "claims"
	// GuardTwoWriters is the check that nothing else on this host has the
	// target's data mounted read-write, in any mount namespace.
	GuardTwoWriters = "two-writers check"
)

// guard times guard name when the session asked for it.
func (s *Session) guard(name string) func() {
	if s.Guard == nil {
		return func() {}
	}
	return s.Guard(name)
}

// Options say how a target is opened.
type Options struct {
	// ReadOnly attaches and mounts everything read-only.
	ReadOnly bool
	// RootPart picks the root partition (a number or a device) when a
	// disk has more than one NixOS root.
	RootPart string
	// Mounts are DEV:PATH overrides of the fstab; Boot is DEV for /boot.
	Mounts []string
	Boot   string
	// Force opens a target that is mounted read-write elsewhere, or an
	// image file whose mode forbids writing.
	Force bool
	// DiskAliases are more names for the target's disk; StrictDiskAliases
	// refuses a configuration naming a disk that cannot be mapped (a
	// rebuild) instead of warning.
	DiskAliases       []string
	StrictDiskAliases bool
	// MountMissing mounts, on a directory target, what its fstab puts on
	// /boot, /boot/efi, /efi or /nix when nothing is mounted there and it
	// is on the directory's own disk (for the session only).
	MountMissing bool
	// Fsck checks each filesystem of the target with the host's checker
	// (e2fsck -p, what the target's boot runs) before it is mounted; a
	// session that writes to a filesystem flagged with errors needs it.
	Fsck bool
	// InstallsBootloader says the session installs the bootloader (a
	// rebuild): a target GRUB cannot be installed on from this host is
	// refused while it is still read-only.
	InstallsBootloader bool
	// RequireMounts refuses a directory target where such a filesystem is
	// not mounted (rebuild, rollback, hardware-config write there);
	// otherwise the session warns.
	RequireMounts bool
	// KeyFiles are tried on each locked LUKS volume ("-": a passphrase
	// read from KeyStdin); with none, a terminal asks.
	KeyFiles []string
	KeyStdin io.Reader
	// Snapshot puts a qcow2 overlay in front of the image or disk: every
	// write goes there, the target is only read. SnapshotOut keeps the
	// overlay in that file (a qcow2 whose backing file is the target);
	// without it the overlay is removed at the end.
	Snapshot    bool
	SnapshotOut string
	// SkipUnmountable leaves out of the session a filesystem of the fstab
	// whose type this kernel does not know (its plan entry says so),
	// instead of failing: boot-test reads an ESP with mtools then.
	SkipUnmountable bool
	// KeepGoing (for a read-only look: doctor) skips an fstab entry
	// that is on no partition of the target, or on two, instead of
	// refusing the target: its plan entry is marked Unresolved.
	KeepGoing bool
}

// CheckedDiskAliases maps the names the target at root gives its disk
// (target.DiskAliases): from the current system's GRUB configuration, the
// configuration in /etc/nixos, the fstab (read from the root when nil) and
// the DiskAlias option. A strict session (a rebuild) refuses a name that
// cannot be mapped; others warn.
func CheckedDiskAliases(root, system string, fstab []target.FstabEntry, to Options, disk string, warn func(string, ...any)) ([]target.DiskAlias, error) {
	if fstab == nil {
		fstab, _, _ = target.ReadSystemFstab(root)
	}
	n := target.AliasNames{Explicit: to.DiskAliases, Configured: nixos.ConfiguredGrubDevices(root), Fstab: fstab, NotDisk: target.CheckWholeDisk(disk)}
	if system != "" {
		n.Current = nixos.DetectBootloader(root, system).Devices
	}
	aliases, problems := target.DiskAliases(n, disk)
	for _, p := range problems {
		if to.StrictDiskAliases {
			return nil, hint.Errorf("refused before anything ran: "+"%s", p)
		}
		warn("%s", p)
	}
	return aliases, nil
}

package commands

import (
	"context"
	"errors"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/nixrescue/nixrescue/runtime/boottest"
	"github.com/nixrescue/nixrescue/runtime/doctor"
	"github.com/nixrescue/nixrescue/runtime/engine"
	"github.com/nixrescue/nixrescue/runtime/hint"
	"github.com/nixrescue/nixrescue/runtime/host"
	"github.com/nixrescue/nixrescue/runtime/nixos"
	targetopen "github.com/nixrescue/nixrescue/runtime/open"
	"github.com/nixrescue/nixrescue/runtime/rootfs"
	"github.com/nixrescue/nixrescue/runtime/target"
)

// DoctorOptions are doctor's.
type DoctorOptions struct {
	Options
	// BootTest boots the default generation too and, when it fails, finds
	// the newest generation that boots; Boot shapes those boots.
	BootTest bool
	Boot     BootTestOptions
}

// DoctorReport is what doctor found. Its JSON field names are stable
// (docs/json.md).
type DoctorReport struct {
	Target target.Target `json:"target"`
	// Current is the generation the system profile points at.
	Current    *GenerationRef   `json:"current,omitempty"`
	Bootloader nixos.Bootloader `json:"bootloader"`
	// Checks are the checks that ran, by name.
	Checks   []string         `json:"checks"`
	Findings []doctor.Finding `json:"findings"`
	// Fatal says a finding is fatal: the exit status is 1.
	Fatal bool `json:"fatal"`
	// Boots are the boot tests of --boot-test, in the order they ran.
	Boots []DoctorBoot `json:"boots,omitempty"`
}

// DoctorBoot is one boot test doctor ran.
type DoctorBoot struct {
	Generation int                `json:"generation"`
	Passed     bool               `json:"passed"`
	Reached    boottest.Milestone `json:"reached"`
	Failure    []string           `json:"failure"`
}

// Doctor opens the target read-only (an fstab entry that names nothing
// does not stop it: it is a finding), reads what the checks need, runs
// nothing in it and writes nothing, closes it, and runs the checks
// (runtime/doctor); with BootTest, boots it on a snapshot. The target is
// never written.
func Doctor(ctx context.Context, do DoctorOptions) (*DoctorReport, error) {
	if do.BootTest {
		// Refused before anything opens.
		if err := do.Boot.check(); err != nil {
			return nil, err
		}
		if err := boottest.Ready(); err != nil {
			return nil, err
		}
	}
	o := do.Options
	o.KeepGoing, o.SkipUnmountable = true, true
	s, err := openReadOnly(ctx, &o)
	if err != nil {
		return nil, err
	}
	warn(o.Log, s.Warnings())
	f := gatherFacts(s)
	r := &DoctorReport{Target: s.Target(), Bootloader: f.Bootloader, Findings: doctor.Diagnose(f)}
	if f.System != "" {
		r.Current = &GenerationRef{Generation: f.Generation, System: f.System}
	}
	for _, c := range doctor.Checks {
		r.Checks = append(r.Checks, c.Name)
	}
	s.Outcome(0, nil)
	s.Close()
	if do.BootTest {
		r.Checks = append(r.Checks, "boot-test")
		if err := doctorBoots(ctx, do, f, r); err != nil {
			return nil, err
		}
	}
	r.Fatal = doctor.AnyFatal(r.Findings)
	return r, nil
}

// gatherFacts reads, from session s, what doctor's checks read.
func gatherFacts(s *engine.Session) *doctor.Facts {
	root, l := s.Root(), s.Layout()
	f := &doctor.Facts{Root: root, Target: s.Target().Arg, Disk: l.Disk, Image: l.Image != "", Partitions: l.Partitions, Plan: l.Plan,
		Aliases: s.DiskAliases(), HostEFI: host.EFIBooted("/sys")}
	f.Generations, _ = nixos.Generations(root)
	if sys, err := nixos.ResolveSystem(root, nixos.SystemChoice{}); err == nil {
		f.System, f.Generation = sys.StorePath, sys.Generation
		f.Bootloader = nixos.DetectBootloader(root, sys.StorePath)
		if pf, ok := boottest.PlatformOf(nixos.SystemArch(root, sys.StorePath)); ok {
			f.EFIArch = pf.EFIArch
		}
	} else {
		f.Bootloader = nixos.Bootloader{Kind: nixos.UnknownLoader}
	}
	f.Entries, f.EntriesRead = nixos.ReadBootEntries(root, f.Bootloader, f.Generations)
	if f.HostEFI {
		if opts, err := doctor.ReadLoadOptions("/sys/firmware/efi/efivars"); err == nil && len(opts) > 0 {
			f.BootEntries = opts
		}
	}
	for _, n := range targetopen.ConfiguredLUKS(root) {
		f.LUKS = append(f.LUKS, doctor.LUKSDevice{Name: n.Name, Device: n.Device})
	}
	f.Space = func(p string) doctor.Space { return spaceOf(root, l.Plan, p) }
	f.BootSector = readBootSector
	if f.Bootloader.Kind == nixos.GRUBBIOS {
		if err := s.GRUBInstallProblem(); err != nil {
			f.NoGRUBInstall = err.Error()
			var he *hint.Error
			if errors.As(err, &he) {
				f.NoGRUBInstall = he.Err.Error()
			}
		}
	}
	return f
}

// spaceOf is what the filesystem holding p (a path in root) has left,
// and where the plan mounts it.
func spaceOf(root string, plan []target.Entry, p string) doctor.Space {
	full, err := rootfs.Join(root, p)
	if err != nil {
		return doctor.Space{ReadFailure: true}
	}
	var st unix.Statfs_t
	var fi unix.Stat_t
	if unix.Statfs(full, &st) != nil || unix.Stat(full, &fi) != nil {
		return doctor.Space{ReadFailure: true}
	}
	sp := doctor.Space{Mountpoint: "/", Device: fi.Dev, Size: st.Blocks * uint64(st.Bsize), Avail: st.Bavail * uint64(st.Bsize),
		Inodes: st.Files, InodesFree: st.Ffree, HasInodes: st.Files > 0}
	for _, e := range plan {
		mp := path.Clean(e.Mountpoint)
		if e.Action == target.ActionMount && (p == mp || strings.HasPrefix(p, mp+"/")) && len(mp) > len(sp.Mountpoint) {
			sp.Mountpoint = mp
		}
	}
	return sp
}

// readBootSector reads a disk's first sector, read-only.
func readBootSector(disk string) ([]byte, error) {
	f, err := os.Open(disk)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, 512)
	n, err := f.ReadAt(b, 0)
	if n == len(b) {
		err = nil
	}
	return b[:n], err
}

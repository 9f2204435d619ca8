package engine

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"

	units "github.com/docker/go-units"
	rspec "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/nixrescue/nixrescue/runtime/devices"
	"github.com/nixrescue/nixrescue/runtime/dns"
	"github.com/nixrescue/nixrescue/runtime/hint"
	"github.com/nixrescue/nixrescue/runtime/host"
	"github.com/nixrescue/nixrescue/runtime/nixos"
	"github.com/nixrescue/nixrescue/runtime/open"
	"github.com/nixrescue/nixrescue/runtime/rootfs"
	"github.com/nixrescue/nixrescue/runtime/state"
	"github.com/nixrescue/nixrescue/runtime/target"
	"github.com/nixrescue/nixrescue/specs"
)

// EFIMode says when efivarfs goes into the container.
type EFIMode string

const (
	EFIAuto EFIMode = "auto" // when the host booted by EFI
	EFIOn   EFIMode = "on"   // always; an error when the host has no EFI
	EFIOff  EFIMode = "off"  // never
)

// DNSNone as the only DNS value leaves the target's resolv.conf alone.
const DNSNone = "none"

// MinMemory is the least memory limit accepted: below it not even
// activation runs, and the runtime refuses limits under what it already
// uses.
const MinMemory = 16 << 20

// ContainerOptions are the container's shape.
type ContainerOptions struct {
	// System picks the system to activate (the system profile when
	// zero).
	System nixos.SystemChoice
	// NoActivate: the system's activate script need not be there.
	NoActivate bool
	// DNS servers to use instead of the host's; ["none"] injects nothing.
	DNS []string
	// NetworkNone isolates the network; IsolatePIDs gives the container a
	// PID namespace of its own.
	NetworkNone, IsolatePIDs bool
	// EFI is the efivarfs mode; empty is auto.
	EFI EFIMode
	// HostDev binds the host's /dev instead of a curated one.
	HostDev bool
	// Memory limits, in bytes, what the container's processes may use
	// together (0: no limit), swap included where the host accounts it;
	// at least MinMemory.
	Memory int64
	// CPUs is a CPU quota, in CPUs' worth of time (0.5, 2); 0 is none.
	// PidsLimit caps the processes and threads in the container; 0 is
	// none.
	CPUs      float64
	PidsLimit int64
	// NoPivot uses runc's no-pivot mode (MS_MOVE and chroot), as a rescue
	// system running from its initramfs needs; it is detected there.
	NoPivot bool
	// Term is the terminal type to give the processes (TERM), if any.
	Term string
}

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
	// Dev is the curated /dev (none with HostDev).
	Dev devices.Curated
	// Aliases are the disk names of the configuration, mapped to the
	// target's disk inside.
	Aliases []target.DiskAlias
	// Warnings are what the session should say before it goes on, Notes
	// what it tells (what of the host the container sees beyond the
	// usual).
	Warnings []string
	Notes    []string
	// Emulator is the binfmt_misc handler (qemu-user) that runs the
	// system's programs on this host, "" when they run natively
	// (CheckArch).
	Emulator string
	options  ContainerOptions
}

// MinPids is the least --pids-limit accepted: activation alone runs a
// few dozen processes one after another, some at once.
const MinPids = 32

// checkLimits refuses limits out of range: no less than a session needs,
// no more CPUs than the host has.
func (o ContainerOptions) checkLimits() error {
	if o.Memory != 0 && o.Memory < MinMemory {
		return hint.Errorf("{Memory %s}: give a size of at least 16M, such as 512M or 2G", units.BytesSize(float64(o.Memory)))
	}
	if n := runtime.NumCPU(); o.CPUs < 0 || o.CPUs > 0 && o.CPUs < 0.01 || o.CPUs > float64(n) {
		return hint.Errorf("{CPUs %g}: give a number of CPUs from 0.01 to %d (this host's)", o.CPUs, n)
	}
	if o.PidsLimit < 0 || o.PidsLimit > 0 && o.PidsLimit < MinPids {
		return hint.Errorf("{PidsLimit %d}: give at least %d (activation alone runs a few dozen processes)", o.PidsLimit, MinPids)
	}
	return nil
}

// PrepareRoot checks the root mounted at root and decides the shape of a
// container on it, as o says. It reads the host and the target and
// changes neither. readOnly says the root may be read-only.
func PrepareRoot(root string, readOnly bool, o ContainerOptions) (*Prepared, error) {
	if o.EFI == "" {
		o.EFI = EFIAuto
	}
	if err := o.checkLimits(); err != nil {
		return nil, err
	}
	root, err := checkRoot(root, readOnly)
	if err != nil {
		return nil, err
	}
	sys, err := nixos.ResolveSystem(root, o.System)
	if err != nil {
		return nil, err
	}
	if !o.NoActivate && !nixos.Exists(root, sys.Path+"/activate") {
		return nil, hint.Errorf("%s has no activate script: it is not a NixOS system; pick another with {Generation N} or {System PATH}, or pass {NoActivate}", sys.StorePath)
	}
	hostname, err := nixos.Hostname(root, sys.Path)
	if err != nil {
		return nil, err
	}
	facts, err := host.Read()
	if err != nil {
		return nil, err
	}
	p := &Prepared{Root: root, System: sys, Hostname: hostname, Host: facts, options: o}
	switch o.EFI {
	case EFIAuto:
		p.EFIVars = facts.EFI
	case EFIOn:
		if !facts.EFI {
			return nil, hint.Errorf("{EFI on}: this host did not boot by EFI (no /sys/firmware/efi), so it has no EFI variables to give; use {EFI auto}")
		}
		p.EFIVars = true
	case EFIOff:
	default:
		return nil, hint.Errorf("{EFI %s}: use auto, on or off", o.EFI)
	}
	p.Env = nixos.Env(sys.Path, o.Term)
	if len(o.DNS) == 1 && o.DNS[0] == DNSNone {
		return p, nil
	}
	p.Resolv, err = dns.BuildFromHost(o.DNS)
	if errors.Is(err, dns.ErrNoHostResolver) {
		// DNS is a convenience: what needs no download works without.
		p.Warnings = append(p.Warnings, hint.Render("this host has no /etc/resolv.conf, so the container gets no DNS; a download will fail (name a server with {DNS IP})"))
		return p, nil
	} else if err != nil {
		return nil, err
	}
	if p.DNS, err = dns.PlanFor(root, sys.Path); err != nil {
		return nil, err
	}
	return p, nil
}

// HostRuns says how this host runs programs of arch (as a system's name
// has it): natively (""), or through emulator, a qemu-user handler of
// binfmt_misc with the F flag; an error that says what would make it work
// when nothing runs them (they would fail with "exec format error").
func HostRuns(arch string) (emulator string, err error) {
	handler, ok := host.Emulator(arch)
	if !ok {
		return "", hint.Errorf("the target's system is %s-linux and this host is %s: its programs cannot run here; register qemu-user for %s with binfmt_misc (mount -t binfmt_misc binfmt_misc %s, then install qemu-user-static and binfmt-support) and run nixrescue again (inspect and generations need none of it)",
			arch, host.Arch(), arch, host.BinfmtDir)
	}
	return handler, nil
}

// CheckArch refuses a system this host cannot run (HostRuns), and says
// that its programs run through qemu-user when they do. When the
// programs do not run here (a spec written for another machine), the
// refusal is only a warning.
func (p *Prepared) CheckArch(runsHere bool) error {
	arch := nixos.SystemArch(p.Root, p.System.StorePath)
	if arch == "" {
		return nil
	}
	handler, err := HostRuns(arch)
	switch {
	case err != nil && !runsHere:
		p.Warnings = append(p.Warnings, fmt.Sprintf("the target's system is %s-linux and this host is %s: this spec's programs run only on %s machines, or here once qemu-user is registered with binfmt_misc", arch, host.Arch(), arch))
	case err != nil:
		return err
	case handler != "":
		p.Emulator = handler
		p.Warnings = append(p.Warnings, fmt.Sprintf("the target's system is %s-linux: its programs run through qemu-user (binfmt_misc's %s), many times slower than on the machine itself", arch, handler))
	}
	return nil
}

// checkRoot checks that root holds a NixOS root, writable unless
// readOnly, and returns its absolute path, links resolved.
func checkRoot(root string, readOnly bool) (string, error) {
	root, err := filepath.Abs(root)
	if err != nil {
		return "", hint.Errorf("resolve {Root %s}: %w", root, err)
	}
	if r, err := filepath.EvalSymlinks(root); err == nil {
		root = r
	}
	if err := nixos.CheckRoot(root); err != nil {
		return "", err
	}
	if !readOnly {
		var fs unix.Statfs_t
		if err := unix.Statfs(root, &fs); err == nil && fs.Flags&unix.ST_RDONLY != 0 {
			return "", &hint.Error{Subject: root, Err: errors.New("mounted read-only"),
				Fix: "remount it read-write (mount -o remount,rw), or pass {ReadOnly} to look without activating"}
		}
	}
	return root, nil
}

// Prepare decides the shape of the session's container (PrepareRoot),
// and its curated /dev: the target's disk and partitions (for a
// directory, those of the filesystem mounted there, if any), under the
// names the configuration gives them too.
func (s *Session) Prepare(o ContainerOptions) (*Prepared, error) {
	p, err := PrepareRoot(s.Root(), s.o.ReadOnly, o)
	if err != nil {
		return nil, err
	}
	if o.HostDev {
		return p, nil
	}
	disk, parts := s.opened.Disk, s.opened.Partitions
	var why error
	if disk == "" {
		disk, parts, why = target.MountedDisk(p.Root)
	}
	if disk == "" {
		if s.o.StrictDiskAliases {
			return nil, hint.Errorf("nixrescue cannot tell which disk the bootloader goes on (%v): name the disk (or image) as {Target}", why)
		}
		return p, nil
	}
	p.Aliases = s.opened.Aliases // checked while the target was still read-only
	if s.opened.Root == nil {
		p.Aliases, err = open.CheckedDiskAliases(p.Root, p.System.StorePath, nil, s.o.TargetOptions, disk,
			func(f string, a ...any) { p.Warnings = append(p.Warnings, hint.Render(fmt.Sprintf(f, a...))) })
		if err != nil {
			return nil, err
		}
		if s.o.InstallsBootloader {
			if err := s.opened.GRUBInstallProblem(); err != nil {
				return nil, err
			}
		}
	}
	p.Dev, err = devices.Curate(filepath.Join(s.st.Dir(), "dev-disk"), disk, parts, p.Aliases)
	if why := zfsControlNeeded(p.Root, p.System.StorePath, parts); err == nil && why != "" {
		var zfs rspec.LinuxDevice
		if zfs, err = devices.CharNode(zfsControl); err == nil {
			p.Dev.Devices = append(p.Dev.Devices, zfs)
			p.Notes = append(p.Notes, "the container sees /dev/zfs: "+why)
		}
	}
	return p, err
}

// Spec is the spec of a container for p. resolvSource is the host path of
// the resolv.conf to bind (relative paths are relative to a bundle);
// helperSource the nixrescue binary to bind at specs.HelperPath; args the
// first process (empty: the hold).
func (p *Prepared) Spec(args []string, resolvSource, helperSource, cgroupsPath string) (*rspec.Spec, error) {
	o := p.options
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
		Devices:      p.Dev.Devices,
		DiskLinks:    p.Dev.Links,
		MemoryLimit:  o.Memory,
		CPUs:         o.CPUs,
		PidsLimit:    o.PidsLimit,
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
			return &hint.Error{Subject: root, Err: err}
		case st.Mode()&os.ModeSymlink != 0:
			to, _ := rootfs.Readlink(root, m.Destination)
			return &hint.Error{Subject: root, Err: fmt.Errorf("%s is a link to %q, not a directory", m.Destination, to),
				Fix: "a NixOS root has an empty directory there; replace the link with one (the container's " + m.Destination + " would be mounted where it leads)"}
		case !st.IsDir() && m.Type != "bind":
			return &hint.Error{Subject: root, Err: fmt.Errorf("%s is not a directory", m.Destination),
				Fix: "a NixOS root has an empty directory there; replace the file with one"}
		}
	}
	return nil
}

// placeResolv writes the session's resolv.conf and, where the target has
// none, the empty file to bind it on, recorded so that it is removed
// after the session, even after a crash. It returns the file's host path
// ("" when the container gets no DNS).
func (s *Session) placeResolv(p *Prepared) (string, error) {
	if p.Resolv == nil || len(p.DNS.Dests) == 0 {
		return "", nil
	}
	src := filepath.Join(s.st.Dir(), "resolv.conf")
	if err := os.WriteFile(src, p.Resolv, 0o644); err != nil {
		return "", fmt.Errorf("write resolv.conf: %w", err)
	}
	if p.DNS.Placeholder != "" {
		// Recorded as soon as it is there, so that it is removed after the
		// session, even after a crash.
		err := dns.CreatePlaceholder(p.Root, p.DNS.Placeholder, func(ino uint64) error {
			return s.st.Record(func(j *state.Journal) { j.Root, j.Placeholder, j.Inode = p.Root, p.DNS.Placeholder, ino })
		})
		if err != nil {
			return "", err
		}
	}
	return src, nil
}

// DirectoryDiskAliases are the names the configuration of the root at
// dir (a directory target) gives the disk behind it, mapped to it (none
// when it is on no disk); what cannot be mapped is passed to warn.
func DirectoryDiskAliases(dir string, to TargetOptions, warn func(string)) []target.DiskAlias {
	disk, _, err := target.MountedDisk(dir)
	if err != nil {
		return nil
	}
	sys, _ := nixos.ResolveSystem(dir, nixos.SystemChoice{})
	to.StrictDiskAliases = false
	aliases, _ := open.CheckedDiskAliases(dir, sys.StorePath, nil, to, disk, func(f string, a ...any) { warn(hint.Render(fmt.Sprintf(f, a...))) })
	return aliases
}

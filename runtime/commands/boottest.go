package commands

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"strings"
	"time"

	"github.com/nixrescue/nixrescue/runtime/boottest"
	"github.com/nixrescue/nixrescue/runtime/engine"
	"github.com/nixrescue/nixrescue/runtime/hint"
	"github.com/nixrescue/nixrescue/runtime/nixos"
	"github.com/nixrescue/nixrescue/runtime/target"
	"golang.org/x/sys/unix"
)

// BootTestOptions are boot-test's.
type BootTestOptions struct {
	Options
	// Generation is the generation to boot; 0, the bootloader's default.
	Generation int
	// Firmware is auto (as the bootloader needs), bios or efi.
	Firmware string
	Timeout  time.Duration
	// Until is the milestone that passes the test; default multi-user.
	Until boottest.Milestone
	// ConsoleFile keeps the console.
	ConsoleFile string
	MemoryMiB   int
	// Accel is auto (KVM when it works, else TCG), kvm or tcg.
	Accel string
}

// Default limits of a boot test.
const (
	DefaultBootTimeout = 5 * time.Minute
	DefaultBootMemory  = 1024
	minBootMemory      = 256
)

// MilestoneTime is when a boot reached a milestone, from qemu's start.
type MilestoneTime struct {
	Name boottest.Milestone `json:"name"`
	MS   float64            `json:"ms"`
}

// BootTestReport is what a boot test saw. Its JSON field names are
// stable (docs/json.md).
type BootTestReport struct {
	Target target.Target `json:"target"`
	// Firmware is bios or efi; Accel kvm or tcg; Interface the disk's
	// controller (virtio, nvme, ahci) and why.
	Firmware     string `json:"firmware"`
	Accel        string `json:"accel"`
	Interface    string `json:"disk_interface"`
	InterfaceWhy string `json:"disk_interface_why"`
	// Bootloader is the booted system's, as inspect reports it.
	Bootloader nixos.Bootloader `json:"bootloader"`
	// Entry is the bootloader's entry booted; Booted the generation it
	// belongs to.
	Entry  string         `json:"entry"`
	Booted *GenerationRef `json:"booted"`
	// Arch is the booted system's CPU architecture.
	Arch string `json:"arch,omitempty"`
	// Until is the milestone asked for; Reached the last one reached;
	// Passed whether Until was reached.
	Until      boottest.Milestone `json:"until"`
	Reached    boottest.Milestone `json:"reached"`
	Passed     bool               `json:"passed"`
	Milestones []MilestoneTime    `json:"milestones"`
	// Failure are the console's lines about what stopped the boot;
	// FailedUnits the units systemd said failed.
	Failure     []string `json:"failure"`
	FailedUnits []string `json:"failed_units"`
	TimedOut    bool     `json:"timed_out"`
	DurationMS  float64  `json:"duration_ms"`
	Console     string   `json:"console,omitempty"`
}

// BootTest boots the target in a throwaway VM through its own firmware
// and bootloader, on a snapshot (the target is never written), and reports
// how far it got. Its exit status is 0 when the Until milestone was
// reached, 1 when not.
func BootTest(ctx context.Context, bo BootTestOptions) (*BootTestReport, int, error) {
	if err := bo.checkPolicy(hostFile{bo.ConsoleFile != "", hint.Console}); err != nil {
		return nil, 0, err
	}
	if err := bo.check(); err != nil {
		return nil, 0, err
	}
	if err := boottest.Ready(); err != nil {
		return nil, 0, err
	}
	bo.defaults()
	t, err := engine.ResolveTarget(bo.Options.Options)
	if err != nil {
		return nil, 0, err
	}
	vm, err := engine.BeginVM(bo.StateDir, t, bo.Command)
	if err != nil {
		return nil, 0, err
	}
	defer vm.End()
	r := &BootTestReport{Until: bo.Until, Failure: []string{}, FailedUnits: []string{}, Milestones: []MilestoneTime{}}
	m, err := prepareBoot(ctx, &bo, vm.Overlay(), r)
	if err != nil {
		return nil, 0, err
	}
	m.Dir, m.Until, m.MemoryMiB, m.Timeout, m.Accel = vm.Dir(), bo.Until, bo.MemoryMiB, bo.Timeout, bo.Accel
	m.Started = vm.Started
	if bo.ConsoleFile != "" {
		f, err := os.Create(bo.ConsoleFile)
		if err != nil {
			return nil, 0, hint.Errorf("{Console %s}: %w", bo.ConsoleFile, err)
		}
		defer f.Close()
		m.Console, r.Console = f, bo.ConsoleFile
	}
	vm.Booting(r.Target.Where())
	bo.Log.Info(fmt.Sprintf("booting %s (%s, entry %q) by %s firmware, its disk on %s; the test passes at %s, and gives up after %s",
		r.Target.Arg, r.Bootloader.Kind, r.Entry, r.Firmware, r.Interface, bo.Until, bo.Timeout))
	m.Note = func(s string) { bo.Log.Info(s) }
	m.Progress = func(ms boottest.Milestone, at time.Duration) {
		bo.Log.Info(fmt.Sprintf("boot: %s reached after %.1f s", ms, at.Seconds()))
	}
	run, err := bootUntilSignalled(ctx, m)
	if err != nil {
		return nil, 0, err
	}
	r.fill(run, bo.Timeout)
	if r.Passed {
		return r, 0, nil
	}
	return r, 1, nil
}

// bootUntilSignalled boots m; a Ctrl-C (SIGINT), SIGTERM or SIGHUP ends
// the boot and its VM, which is in a process group of its own (a
// terminal's signal reaches nixrescue only), and the boot test is
// interrupted.
func bootUntilSignalled(ctx context.Context, m boottest.Machine) (*boottest.Run, error) {
	sigCtx, stop := signal.NotifyContext(ctx, unix.SIGINT, unix.SIGTERM, unix.SIGHUP)
	defer stop()
	run, err := boottest.Boot(sigCtx, m)
	if sigCtx.Err() != nil && ctx.Err() == nil {
		return nil, engine.ErrInterrupted
	}
	return run, err
}

func (bo *BootTestOptions) check() error {
	switch bo.Firmware {
	case "", "auto":
	default:
		if !slices.Contains(boottest.Firmwares(), bo.Firmware) {
			return &hint.Error{Err: hint.Errorf("{Firmware %s}: no such firmware", bo.Firmware), Fix: "use auto, " + strings.Join(boottest.Firmwares(), ", ")}
		}
	}
	switch bo.Accel {
	case "", "auto", "kvm", "tcg":
	default:
		return &hint.Error{Err: hint.Errorf("{Accel %s}: no such accelerator", bo.Accel), Fix: "use auto, kvm or tcg"}
	}
	if bo.Until != "" && boottest.Index(bo.Until) < boottest.Index(boottest.Stage1) {
		return &hint.Error{Err: hint.Errorf("{Until %s}: no such milestone", bo.Until), Fix: "use stage-1, root, stage-2 or multi-user"}
	}
	if bo.Timeout < 0 || bo.Timeout > 0 && bo.Timeout < 10*time.Second {
		return &hint.Error{Err: hint.Errorf("{Timeout %s}: no boot gets anywhere that fast", bo.Timeout), Fix: "give at least 10s (a boot under software emulation takes a minute or two)"}
	}
	if bo.MemoryMiB != 0 && bo.MemoryMiB < minBootMemory {
		return &hint.Error{Err: hint.Errorf("{BootMemory %dMiB}: NixOS's stage 1 needs more", bo.MemoryMiB), Fix: "give at least 256M"}
	}
	return nil
}

func (bo *BootTestOptions) defaults() {
	if bo.Until == "" {
		bo.Until = boottest.MultiUser
	}
	if bo.Timeout == 0 {
		bo.Timeout = DefaultBootTimeout
	}
	if bo.MemoryMiB == 0 {
		bo.MemoryMiB = DefaultBootMemory
	}
	if bo.Firmware == "" {
		bo.Firmware = "auto"
	}
}

// fill reads what the boot did into the report; timeout is the one it
// was given.
func (r *BootTestReport) fill(run *boottest.Run, timeout time.Duration) {
	c := run.Console
	r.Accel, r.TimedOut = run.Accel, run.TimedOut
	r.DurationMS = float64(run.Elapsed.Microseconds()) / 1000
	r.Reached = c.Furthest()
	r.Passed = c.Has(r.Until)
	for _, m := range boottest.Milestones {
		if d, ok := c.Reached[m]; ok {
			r.Milestones = append(r.Milestones, MilestoneTime{Name: m, MS: float64(d.Microseconds()) / 1000})
		}
	}
	r.FailedUnits = append(r.FailedUnits, c.FailedUnits...)
	if r.Passed {
		// A boot that got there went past what looked like trouble on
		// the way (stage 1 waits for a device that then appears): only
		// the units that failed are worth a line.
		for _, l := range c.Failure {
			if strings.Contains(l, "[FAILED]") {
				r.Failure = append(r.Failure, l)
			}
		}
	} else {
		r.Failure = append(r.Failure, c.Failure...)
	}
	if c.Entry != "" && boottest.GenerationOf(c.Entry) != 0 {
		r.Entry = c.Entry
	}
	if run.TimedOut && !r.Passed {
		r.Failure = append(r.Failure, fmt.Sprintf("no %s within the timeout (%s): the boot was stopped there, having reached %s", r.Until, timeout, cmpOr(string(r.Reached), "nothing")))
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// prepareBoot opens the target on the overlay (a snapshot session, kept
// in overlay), chooses the system and the firmware, gives the bootloader
// a serial console and the entry to boot in the overlay, and closes the
// session: the overlay is then the VM's disk.
func prepareBoot(ctx context.Context, bo *BootTestOptions, overlay string, r *BootTestReport) (_ boottest.Machine, err error) {
	o := bo.Options
	o.Snapshot, o.SnapshotOut, o.SkipUnmountable = true, overlay, true
	s, err := open(ctx, &o, false)
	if err != nil {
		return boottest.Machine{}, err
	}
	defer s.Close()
	defer func() { s.Outcome(0, err) }()
	root := s.Root()
	r.Target = s.Target()
	if r.Target.Kind == target.KindDirectory {
		return boottest.Machine{}, hint.Errorf("boot-test boots a disk or an image, not a directory ({Target %s}): give the disk the directory is on", r.Target.Arg)
	}
	if err := nixos.CheckRoot(root); err != nil {
		return boottest.Machine{}, err
	}
	sys, err := nixos.ResolveSystem(root, nixos.SystemChoice{Generation: bo.Generation})
	if err != nil {
		return boottest.Machine{}, err
	}
	r.Booted = &GenerationRef{Generation: sys.Generation, System: sys.StorePath}
	r.Arch = nixos.SystemArch(root, sys.StorePath)
	pf, ok := boottest.PlatformOf(r.Arch)
	if !ok {
		return boottest.Machine{}, &hint.Error{Subject: r.Target.Arg, Err: fmt.Errorf("generation %d is an %s system: boot-test boots %s systems only", sys.Generation, r.Arch, boottest.Arches())}
	}
	b := nixos.DetectBootloader(root, sys.StorePath)
	r.Bootloader = b
	m := boottest.Machine{Disk: overlay, Platform: pf}
	switch {
	case bo.Firmware == "efi", bo.Firmware == "auto" && b.Kind.EFI():
		m.EFI, r.Firmware = true, "efi"
	case bo.Firmware == pf.Firmware, bo.Firmware == "auto" && b.Kind.Known():
		r.Firmware = pf.Firmware
	case bo.Firmware != "auto":
		return m, hint.Errorf("{Firmware %s}: an %s machine boots by efi or %s", bo.Firmware, pf.Arch, pf.Firmware)
	default:
		return m, hint.Errorf("the target's bootloader is %s: nixrescue cannot tell which firmware boots it; give {Firmware %s} or {Firmware efi}", b.Kind, pf.Firmware)
	}
	entry, err := aimBootloader(s, b, bo.Generation, pf)
	if err != nil {
		return m, &hint.Error{Subject: r.Target.Arg, Err: err}
	}
	r.Entry = entry
	m.Interface, r.InterfaceWhy = diskInterface(s)
	r.Interface = m.Interface
	return m, nil
}

// errNoBootloader says no bootloader was found where the configuration's
// would be.
var errNoBootloader = errors.New("no bootloader installed")

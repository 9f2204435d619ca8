package commands

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"

	"github.com/nixrescue/nixrescue/runtime/engine"
	"github.com/nixrescue/nixrescue/runtime/hint"
	"github.com/nixrescue/nixrescue/runtime/nixos"
	"github.com/nixrescue/nixrescue/runtime/rootfs"
)

// RebuildOptions are rebuild's: a session whose command is nixos-rebuild
// boot --install-bootloader.
type RebuildOptions struct {
	RunOptions
	// NoInstallBootloader leaves out --install-bootloader (and
	// NIXOS_INSTALL_BOOTLOADER=1).
	NoInstallBootloader bool
	// Extra are more nixos-rebuild arguments.
	Extra []string
	// Flake, when set, is the flake to build (REF or REF#NAME, as
	// nixos-rebuild's --flake takes it) instead of what the target would
	// build.
	Flake string
	// BootTest, when set, boots the target after a rebuild that
	// succeeded (BootTest's options; its target is the rebuild's).
	BootTest *BootTestOptions
}

// Rebuild runs nixos-rebuild boot --install-bootloader (and Extra) in the
// recovery container of the target, its output streamed, and returns what
// it did and its exit status. Disk names the configuration gives the boot
// disk must map to the target's disk, and a directory target must have
// what its fstab mounts on /boot and /nix mounted, or nothing runs; the
// Nix sandbox is decided (auto by default). A failed download or a full
// filesystem in the output gets a hint once it is done.
func Rebuild(ctx context.Context, ro RebuildOptions) (*RunReport, int, error) {
	o := ro.RunOptions
	if err := rebuildCheck(o); err != nil {
		return nil, 0, err
	}
	o.Args = []string{"nixos-rebuild", "boot"}
	installing := !ro.NoInstallBootloader
	if installing {
		o.Args = append(o.Args, "--install-bootloader")
		o.ExtraEnv = append(o.ExtraEnv, "NIXOS_INSTALL_BOOTLOADER=1")
	}
	if err := flakeArgsCheck(&ro); err != nil {
		return nil, 0, err
	}
	o.Args = append(o.Args, ro.Extra...)
	if o.Sandbox == "" {
		o.Sandbox = SandboxAuto
	}
	o.StrictDiskAliases, o.RequireMounts, o.InstallsBootloader = true, true, installing
	s, err := open(ctx, &o.Options, true)
	if err != nil {
		return nil, 0, err
	}
	rep := newRunReport(s)
	var seen failures
	code, err := 0, hasRebuild(s.Root(), o.Container.System)
	if err == nil {
		rep.Configuration, err = buildsFrom(s.Root(), ro, &o)
	}
	if err == nil {
		if rep.Configuration.Kind == nixos.FlakeKind || rep.Configuration.ChosenBy == "--no-flake" {
			o.Notes = append(o.Notes, sourceNote(*rep.Configuration))
		}
		if len(o.NixConfig) > 0 {
			rep.NixSettings = o.NixConfig
			o.Notes = append(o.Notes, "the target's nix.conf does not turn on flakes: giving Nix "+strings.Join(o.NixConfig, "; ")+" for this session only (NIX_CONFIG); the target's nix.conf is unchanged")
		}
		code, err = runIn(ctx, s, o, rep, func(w io.Writer) io.Writer { return &failureWatch{w: w, seen: &seen} })
	}
	if err == nil {
		rep.Bootloader = bootloaderAfter(s.Root(), installing, code)
	}
	rep.CurrentAfter = currentRef(s.Root())
	esp := ""
	if err == nil && code != 0 {
		esp = missingESP(s, rep.CurrentAfter.system())
	}
	s.Outcome(code, err, rep.wrote()...)
	s.Close()
	rep.ended(s, &o.Options)
	rep.ExitStatus = code
	if code != 0 {
		seen.hint(o.Log, o.Container.NetworkNone)
	}
	bootloaderHints(o.Log, rep.Bootloader, esp)
	if err == nil && code == 0 && ro.BootTest != nil {
		bo := *ro.BootTest
		bo.Options = ro.Options
		bo.Container = engine.ContainerOptions{}
		o.Log.Info("the rebuild succeeded; now the boot test: " + s.Target().Arg + " boots in a throwaway VM")
		rep.BootTest, code, err = BootTest(ctx, bo)
	}
	return rep, code, err
}

// rebuildCheck refuses options a rebuild cannot take.
func rebuildCheck(o RunOptions) error {
	if o.ReadOnly {
		return writesRefusal("a rebuild writes the target (a new generation, its bootloader)")
	}
	if o.Container.HostDev {
		return hint.Errorf("a rebuild cannot use {HostDev}: the disk names of the configuration would lead to this host's own disks; leave /dev curated")
	}
	return nil
}

// bootloaderHints says what a rebuild or rollback left undone for an EFI
// bootloader: an ESP not mounted (esp, from missingESP), or no NVRAM
// entry made from a host that did not boot by EFI.
func bootloaderHints(log logger, step *BootloaderStep, esp string) {
	if esp != "" {
		log.Info(esp, "kind", "hint")
	}
	if n := noNVRAMEntry(step); n != "" {
		step.NVRAMEntry = "none: the host did not boot by EFI"
		log.Info(n, "kind", "hint")
	}
}

// flakeArgsCheck takes a --flake given among the extra arguments as
// ro.Flake, and refuses two.
func flakeArgsCheck(ro *RebuildOptions) error {
	for i, a := range ro.Extra {
		ref, ok := strings.CutPrefix(a, "--flake=")
		if a == "--flake" && i+1 < len(ro.Extra) {
			ref, ok = ro.Extra[i+1], true
		}
		if !ok {
			continue
		}
		if ro.Flake != "" {
			return hint.Errorf("the flake is given twice, {Flake %s} and after --: give it once", ro.Flake)
		}
		if slices.Contains(ro.Extra, "--no-flake") {
			return hint.Errorf("--flake and --no-flake after -- contradict each other: give one")
		}
		ro.Flake = ref
		if strings.HasPrefix(ref, ".") {
			return hint.Errorf("--flake %s after --: a relative path would be the container's, not yours: give the flake's directory as the target sees it (/etc/nixos), or another flake reference", ref)
		}
		n := 2
		if a != "--flake" {
			n = 1
		}
		ro.Extra = slices.Delete(slices.Clone(ro.Extra), i, i+n)
		return nil
	}
	if ro.Flake != "" && slices.Contains(ro.Extra, "--no-flake") {
		return hint.Errorf("{Flake %s} and --no-flake after -- contradict each other: give one", ro.Flake)
	}
	if strings.HasPrefix(ro.Flake, ".") {
		return hint.Errorf("{Flake %s}: a relative path would be the container's, not yours: give the flake's directory as the target sees it (/etc/nixos), or another flake reference", ro.Flake)
	}
	return nil
}

// buildsFrom decides what the rebuild builds, as nixos-rebuild would (a
// flake when --flake names one or /etc/nixos/flake.nix exists, its
// configuration named after the target's hostname), and gives it to
// nixos-rebuild explicitly: --flake REF#NAME, so that nothing depends on
// the container's hostname; for a flake, the Nix settings it needs for
// this session only (o.NixConfig).
func buildsFrom(root string, ro RebuildOptions, o *RunOptions) (*nixos.ConfigSource, error) {
	sys, err := nixos.ResolveSystem(root, o.Container.System)
	if err != nil {
		return nil, err
	}
	src, err := rebuildSource(root, ro, sys.Path)
	if err != nil || src.Kind != nixos.FlakeKind {
		return src, err
	}
	settings, err := nixos.FlakeSettings(root, sys.Path)
	if err != nil {
		return nil, err
	}
	o.NixConfig = append(o.NixConfig, settings...)
	o.Args = append(o.Args, "--flake", src.Ref())
	return src, nil
}

// rebuildSource is what a rebuild of the system (a path inside root)
// builds, or why it cannot.
func rebuildSource(root string, ro RebuildOptions, system string) (*nixos.ConfigSource, error) {
	if slices.Contains(ro.Extra, "--no-flake") {
		return &nixos.ConfigSource{Kind: nixos.ConfigurationKind, File: nixos.Configuration, ChosenBy: "--no-flake"}, nil
	}
	host, err := nixos.Hostname(root, system)
	if err != nil {
		return nil, err
	}
	src := nixos.RebuildSource(root, ro.Flake, host)
	if src.ChosenBy == "--flake" && strings.HasPrefix(src.Flake, "/") && !nixos.Exists(root, src.Flake) {
		return nil, hint.Errorf("{Flake %s}: the target has no %s (a path is the target's, not this host's): give a directory of the target that holds flake.nix", ro.Flake, src.Flake)
	}
	return &src, nil
}

// sourceNote says what nixos-rebuild builds.
func sourceNote(src nixos.ConfigSource) string {
	switch {
	case src.Kind != nixos.FlakeKind && src.ChosenBy == "--no-flake":
		return "nixos-rebuild builds " + src.File + " (--no-flake)"
	case src.Kind != nixos.FlakeKind:
		return "nixos-rebuild builds " + src.File
	case src.NameFrom == "hostname":
		return fmt.Sprintf("nixos-rebuild builds the flake %s, %s (named after the target's hostname, as nixos-rebuild names it; chosen by %s): passing --flake %s; give --flake REF#NAME for another", src.Flake, src.Attribute, src.ChosenBy, src.Ref())
	}
	return fmt.Sprintf("nixos-rebuild builds the flake %s, %s (chosen by %s): passing --flake %s", src.Flake, src.Attribute, src.ChosenBy, src.Ref())
}

// hasRebuild refuses a system without nixos-rebuild on its PATH.
func hasRebuild(root string, choice nixos.SystemChoice) error {
	sys, err := nixos.ResolveSystem(root, choice)
	if err != nil {
		return err
	}
	if rootfs.FindProgram(root, "nixos-rebuild", nixos.Env(sys.Path, "")) == "" {
		return hint.Errorf("the target's system %s has no nixos-rebuild (was it built with system.disableInstallerTools = true?): pick a generation that has it ({Generation N}), or build the system another way with nixrescue run", sys.StorePath)
	}
	return nil
}

// bootloaderAfter reads what a rebuild or rollback left for the
// bootloader.
func bootloaderAfter(root string, installing bool, code int) *BootloaderStep {
	sys, _ := currentGeneration(root)
	b := nixos.DetectBootloader(root, sys)
	step := &BootloaderStep{Kind: b.Kind, Devices: b.Devices, Action: "configured"}
	switch {
	case code != 0:
		step.Action = "failed"
	case installing:
		step.Action = "installed"
	}
	return step
}

// networkFailures are what Nix and curl print when a download cannot
// reach its server.
var networkFailures = []string{"unable to download", "Could not resolve host", "Couldn't resolve host",
	"Temporary failure in name resolution", "Network is unreachable", "Connection timed out", "Could not connect to server"}

// spaceFailures are what programs print when the filesystem is full
// (strerror(ENOSPC), and Nix's own words).
var spaceFailures = []string{"No space left on device", "not enough free disk space"}

// grubDriveFailure is what grub-install says when it cannot tell where a
// partition starts (no udevadm on its PATH, no HDIO_GETGEO answer).
var grubDriveFailure = []string{"cannot find a GRUB drive for /dev/loop"}

// failures are the kinds of failure a command's output reported.
type failures struct {
	mu                        sync.Mutex
	network, space, grubDrive bool
}

// hint says what to do about the failures seen.
func (f *failures) hint(log logger, networkNone bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case f.network && networkNone:
		log.Info(hint.Render("the command needed the network, which {NetworkNone} took away: drop it"), "kind", "hint")
	case f.network:
		log.Info(hint.Render("the command needed the network and could not reach it: check this host's network, or name a DNS server with {DNS IP}"), "kind", "hint")
	}
	if f.space {
		log.Info("a filesystem of the target is full: free space (nixrescue enter, then nix-collect-garbage, or remove old generations with nix-env -p "+nixos.SystemProfile+" --delete-generations old) and try again", "kind", "hint")
	}
	if f.grubDrive {
		log.Info("grub-install could not tell where a partition of the loop device starts: NixOS's installer puts no udevadm on its PATH, and a loop device's partitions do not answer the HDIO_GETGEO ioctl; where the kernel has device-mapper and dmsetup is installed, nixrescue maps an image's partitions so that they do (load dm_mod, install dmsetup), or repair the disk on a machine it is attached to", "kind", "hint")
	}
}

// failureWatch passes output on and notes whether it reported a network
// failure or a full filesystem.
type failureWatch struct {
	w    io.Writer
	tail []byte
	seen *failures
}

func (f *failureWatch) Write(p []byte) (int, error) {
	buf := append(f.tail, p...)
	f.seen.mu.Lock()
	f.seen.network = f.seen.network || slices.ContainsFunc(networkFailures, func(s string) bool { return bytes.Contains(buf, []byte(s)) })
	f.seen.space = f.seen.space || slices.ContainsFunc(spaceFailures, func(s string) bool { return bytes.Contains(buf, []byte(s)) })
	f.seen.grubDrive = f.seen.grubDrive || slices.ContainsFunc(grubDriveFailure, func(s string) bool { return bytes.Contains(buf, []byte(s)) })
	f.seen.mu.Unlock()
	if len(buf) > 256 {
		buf = buf[len(buf)-256:]
	}
	f.tail = append([]byte(nil), buf...)
	return f.w.Write(p)
}

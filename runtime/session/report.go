package session

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/nixrescue/nixrescue/runtime/backend"
	"github.com/nixrescue/nixrescue/runtime/nixos"
	"github.com/nixrescue/nixrescue/runtime/target"
	"github.com/nixrescue/nixrescue/specs"
)

// RunReport is what a session did, for --json. Its field names are
// stable; the README documents them.
type RunReport struct {
	Backend          string          `json:"backend"`
	BackendWhy       string          `json:"backend_why"`
	Target           target.Target   `json:"target"`
	SystemBefore     string          `json:"system_before,omitempty"`
	GenerationBefore int             `json:"generation_before,omitempty"`
	SystemAfter      string          `json:"system_after,omitempty"`
	GenerationAfter  int             `json:"generation_after,omitempty"`
	DiskAliases      []DiskAlias     `json:"disk_aliases"`
	Sandbox          *SandboxChoice  `json:"sandbox,omitempty"`
	Bootloader       *BootloaderStep `json:"bootloader,omitempty"`
	ExitStatus       int             `json:"exit_status"`
	OOMKilled        bool            `json:"oom_killed,omitempty"`
	Phases           []Phase         `json:"phases"`
}

// Phase is how long one step of the session took.
type Phase struct {
	Name string  `json:"name"`
	MS   float64 `json:"ms"`
}

// timer records phases.
type timer struct{ phases *[]Phase }

// start times a phase; call the result when it ends.
func (t timer) start(name string) func() {
	begin := time.Now()
	return func() {
		if t.phases == nil {
			return
		}
		ms := float64(time.Since(begin).Microseconds()) / 1000
		for i := range *t.phases {
			if (*t.phases)[i].Name == name { // a phase in several steps
				(*t.phases)[i].MS += ms
				return
			}
		}
		*t.phases = append(*t.phases, Phase{Name: name, MS: ms})
	}
}

// SandboxMode is --sandbox.
type SandboxMode string

const (
	SandboxAuto SandboxMode = "auto"
	SandboxOn   SandboxMode = "on"
	SandboxOff  SandboxMode = "off"
)

// SandboxChoice is what the session did about Nix's build sandbox, and
// why.
type SandboxChoice struct {
	Mode SandboxMode `json:"mode"` // what was asked
	On   bool        `json:"on"`   // whether builds are sandboxed
	Why  string      `json:"why"`
	// NixConfig is the NIX_CONFIG given to the command, if any.
	NixConfig string `json:"nix_config,omitempty"`
}

// BootloaderStep is what a rebuild did about the bootloader.
type BootloaderStep struct {
	Kind    string   `json:"kind"`
	Devices []string `json:"devices,omitempty"`
	// Action is "installed" (NIXOS_INSTALL_BOOTLOADER=1 and the rebuild
	// succeeded), "configured" (--no-install-bootloader), or "failed".
	Action string `json:"action"`
}

// chooseSandbox decides about Nix's build sandbox: auto probes, inside the
// container, what the sandbox does first (a private mount namespace of
// '/'), and turns it off for this session only when that fails. The target's
// nix.conf is never edited: on NixOS it is in the read-only store.
func chooseSandbox(ctx context.Context, c backend.Container, p *Prepared, mode SandboxMode, stderr io.Writer, fwd *forwarder) (*SandboxChoice, error) {
	ch := &SandboxChoice{Mode: mode}
	switch mode {
	case SandboxOn:
		ch.On, ch.Why, ch.NixConfig = true, "--sandbox on", "sandbox = true"
		return ch, nil
	case SandboxOff:
		ch.On, ch.Why, ch.NixConfig = false, "--sandbox off", "sandbox = false"
		return ch, nil
	case SandboxAuto:
	default:
		return nil, fmt.Errorf("--sandbox %q: use auto, on or off", mode)
	}
	var why bytes.Buffer
	code, err := fwd.run(ctx, c, backend.Process{Args: []string{specs.HelperPath, "probe-sandbox"}, Env: p.Env, Cwd: "/", Stdout: &why, Stderr: &why})
	if err != nil {
		return nil, fmt.Errorf("probe the Nix sandbox: %w", err)
	}
	if code == 0 {
		ch.On, ch.Why = true, "the sandbox's mount steps work in this container (a private '/' and pivot_root): the target's own setting applies"
		return ch, nil
	}
	ch.On, ch.NixConfig = false, "sandbox = false"
	ch.Why = fmt.Sprintf("the Nix build sandbox cannot work in this container (%s)", strings.TrimSpace(why.String()))
	fmt.Fprintf(stderr, "nixrescue: %s; building with sandbox = false for this session only (NIX_CONFIG); the target's nix.conf is unchanged\n", ch.Why)
	return ch, nil
}

// currentGeneration reads the system profile of root.
func currentGeneration(root string) (string, int) {
	s, err := nixos.ResolveSystem(root, nixos.SystemChoice{})
	if err != nil {
		return "", 0
	}
	return s.StorePath, s.Generation
}

// RebuildOptions are rebuild's: a session whose command is
// nixos-rebuild boot --install-bootloader.
type RebuildOptions struct {
	Options
	// NoInstallBootloader leaves out --install-bootloader (and
	// NIXOS_INSTALL_BOOTLOADER=1).
	NoInstallBootloader bool
	// Extra are more nixos-rebuild arguments.
	Extra []string
}

// Rebuild runs nixos-rebuild boot --install-bootloader (and Extra) in the
// recovery container of the target, output streamed, and returns its exit
// status. Disk names the configuration gives the boot disk must map to the
// target's disk, or nothing runs; the Nix sandbox is decided (auto by
// default); onReport gets the report once everything is torn down, in the
// process that ran the session.
func Rebuild(ctx context.Context, ro RebuildOptions, onReport func(*RunReport) error) (int, error) {
	o := ro.Options
	if o.HostDev {
		return ExitFailure, fmt.Errorf("rebuild cannot use --dev host: the disk names of the configuration would lead to this host's own disks; leave /dev curated")
	}
	o.Args = []string{"nixos-rebuild", "boot"}
	if !ro.NoInstallBootloader {
		o.Args = append(o.Args, "--install-bootloader")
		o.ExtraEnv = append(o.ExtraEnv, "NIXOS_INSTALL_BOOTLOADER=1")
	}
	o.Args = append(o.Args, ro.Extra...)
	if o.Sandbox == "" {
		o.Sandbox = SandboxAuto
	}
	o.StrictDiskAliases = true
	o.RequireMounts = true
	o.bootloaderStep, o.networkHint = true, true
	o.beforeContainer = func(root string) error {
		sys, err := nixos.ResolveSystem(root, o.System)
		if err != nil {
			return err
		}
		if findProgram(root, "nixos-rebuild", nixos.Env(sys.Path, "")) == "" {
			return fmt.Errorf("the target's system %s has no nixos-rebuild (was it built with system.disableInstallerTools = true?): pick a generation that has it (--generation N), or build the system another way with nixrescue run", sys.StorePath)
		}
		return nil
	}
	o.Report = &RunReport{}
	o.OnReport = onReport
	return Run(ctx, o)
}

// bootloaderAfter reads what a rebuild left for the bootloader.
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

// failures are the kinds of failure a command's output reported.
type failures struct{ network, space bool }

// failureWatch passes output on and notes whether it reported a network
// failure or a full filesystem.
type failureWatch struct {
	w    io.Writer
	tail []byte
	seen *failures
}

func (f *failureWatch) Write(p []byte) (int, error) {
	buf := append(f.tail, p...)
	for _, pat := range networkFailures {
		if bytes.Contains(buf, []byte(pat)) {
			f.seen.network = true
		}
	}
	for _, pat := range spaceFailures {
		if bytes.Contains(buf, []byte(pat)) {
			f.seen.space = true
		}
	}
	if len(buf) > 256 {
		buf = buf[len(buf)-256:]
	}
	f.tail = append([]byte(nil), buf...)
	return f.w.Write(p)
}

// spaceHint is said after a command failed on a full filesystem.
const spaceHint = "nixrescue: hint: a filesystem of the target is full: free space (nixrescue enter, then nix-collect-garbage, or remove old generations with nix-env -p /nix/var/nix/profiles/system --delete-generations old) and try again"

// networkHint is said after a command failed on the network.
func networkHint(o Options) string {
	if o.NetworkNone {
		return "nixrescue: hint: the command needed the network, which --network none took away: drop --network none"
	}
	return "nixrescue: hint: the command needed the network and could not reach it: check this host's network, or name a DNS server with --dns IP"
}

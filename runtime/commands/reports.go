package commands

import (
	"fmt"
	"strings"

	"github.com/nixrescue/nixrescue/runtime/engine"
	"github.com/nixrescue/nixrescue/runtime/nixos"
	"github.com/nixrescue/nixrescue/runtime/target"
)

// RunReport is what a session did (run, rebuild, rollback). Its JSON
// field names are stable (docs/json.md).
type RunReport struct {
	Backend    string        `json:"backend"`
	BackendWhy string        `json:"backend_why"`
	Target     target.Target `json:"target"`
	// CurrentBefore and CurrentAfter are the generation the system
	// profile pointed at before the session and after it.
	CurrentBefore *GenerationRef     `json:"current_before,omitempty"`
	CurrentAfter  *GenerationRef     `json:"current_after,omitempty"`
	DiskAliases   []target.DiskAlias `json:"disk_aliases"`
	Sandbox       *SandboxChoice     `json:"sandbox,omitempty"`
	Bootloader    *BootloaderStep    `json:"bootloader,omitempty"`
	// Configuration is what a rebuild built from: a flake and its
	// attribute, or configuration.nix.
	Configuration *nixos.ConfigSource `json:"configuration,omitempty"`
	// NixSettings are the Nix settings the command was given for this
	// session only (NIX_CONFIG) besides the sandbox's: a flake's
	// experimental features.
	NixSettings []string `json:"nix_settings,omitempty"`
	// Emulator is the binfmt_misc handler (qemu-user) that ran the
	// target's programs, when its architecture is not this host's.
	Emulator string `json:"emulator,omitempty"`
	// Snapshot says where a --snapshot session's writes went.
	Snapshot   *SnapshotOutcome `json:"snapshot,omitempty"`
	ExitStatus int              `json:"exit_status"`
	// Error and Fix are nixrescue's own failure, when it failed (the
	// front end fills them with ExitStatus).
	Error     string         `json:"error,omitempty"`
	Fix       string         `json:"fix,omitempty"`
	OOMKilled bool           `json:"oom_killed,omitempty"`
	Phases    []engine.Phase `json:"phases"`
	// Guards are what the session's protections cost, within its phases.
	Guards []engine.Phase `json:"guards"`
	// BootTest is rebuild --boot-test's: the target booted after.
	BootTest *BootTestReport `json:"boot_test,omitempty"`
}

// GenerationRef names a generation of the system profile and its system
// (a store path): the same shape wherever a report names one.
type GenerationRef struct {
	Generation int    `json:"generation"`
	System     string `json:"system"`
}

// system is g's system, "" for none.
func (g *GenerationRef) system() string {
	if g == nil {
		return ""
	}
	return g.System
}

// SnapshotOutcome is where a snapshot session's writes went: a throwaway
// overlay, discarded, or one kept in a file.
type SnapshotOutcome struct {
	// Kept is the overlay file that holds them, "" when they were
	// discarded.
	Kept string `json:"kept,omitempty"`
	// Discarded says they were thrown away with the overlay.
	Discarded bool `json:"discarded"`
}

// newRunReport begins the report of session s.
func newRunReport(s *engine.Session) *RunReport {
	r := &RunReport{Target: s.Target(), DiskAliases: []target.DiskAlias{}, Phases: []engine.Phase{}, Guards: []engine.Phase{}}
	r.Backend, r.BackendWhy = s.Backend()
	r.CurrentBefore = currentRef(s.Root())
	return r
}

// ended completes the report, the session closed: what the profile
// points at now was read before (after), and where the writes went.
func (r *RunReport) ended(s *engine.Session, o *Options) {
	r.Phases = append(r.Phases, s.Phases()...)
	r.Guards = append(r.Guards, s.Guards()...)
	if o.Snapshot {
		r.Snapshot = &SnapshotOutcome{Kept: o.SnapshotOut, Discarded: o.SnapshotOut == ""}
	}
}

// changed says whether the system profile was switched.
func (r *RunReport) changed() bool {
	return r.CurrentAfter != nil && (r.CurrentBefore == nil || *r.CurrentAfter != *r.CurrentBefore)
}

// wrote says what the session wrote to the target that nixrescue can
// tell, for the audit record: the system profile switched, the
// bootloader installed or configured.
func (r *RunReport) wrote() []string {
	var w []string
	if r.changed() {
		before := 0
		if r.CurrentBefore != nil {
			before = r.CurrentBefore.Generation
		}
		w = append(w, fmt.Sprintf("system profile switched from generation %d to %d (%s)", before, r.CurrentAfter.Generation, r.CurrentAfter.System))
	}
	if b := r.Bootloader; b != nil && b.Action != "failed" {
		on := ""
		if len(b.Devices) > 0 {
			on = " on " + strings.Join(b.Devices, ", ")
		}
		w = append(w, fmt.Sprintf("bootloader %s %s%s", b.Kind, b.Action, on))
	}
	return w
}

// SandboxMode says what to do about Nix's build sandbox.
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

// BootloaderStep is what a rebuild or a rollback did about the
// bootloader.
type BootloaderStep struct {
	Kind    nixos.Kind `json:"kind"`
	Devices []string   `json:"devices,omitempty"`
	// Action is "installed" (the rebuild installed it and succeeded),
	// "configured" (its configuration was written, the bootloader not
	// installed), or "failed".
	Action string `json:"action"`
	// NVRAMEntry is set when systemd-boot was installed but no EFI boot
	// entry could be made: why ("none: the host did not boot by EFI").
	NVRAMEntry string `json:"nvram_entry,omitempty"`
}

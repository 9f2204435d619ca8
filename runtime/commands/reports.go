package commands

import (
	"fmt"
	"strings"

	"github.com/nixrescue/nixrescue/runtime/engine"
	"github.com/nixrescue/nixrescue/runtime/target"
)

// RunReport is what a session did (run, rebuild, rollback). Its JSON
// field names are stable (docs/json.md).
type RunReport struct {
	Backend          string             `json:"backend"`
	BackendWhy       string             `json:"backend_why"`
	Target           target.Target      `json:"target"`
	SystemBefore     string             `json:"system_before,omitempty"`
	GenerationBefore int                `json:"generation_before,omitempty"`
	SystemAfter      string             `json:"system_after,omitempty"`
	GenerationAfter  int                `json:"generation_after,omitempty"`
	DiskAliases      []target.DiskAlias `json:"disk_aliases"`
	Sandbox          *SandboxChoice     `json:"sandbox,omitempty"`
	Bootloader       *BootloaderStep    `json:"bootloader,omitempty"`
	ExitStatus       int                `json:"exit_status"`
	OOMKilled        bool               `json:"oom_killed,omitempty"`
	Phases           []engine.Phase     `json:"phases"`
	// BootTest is rebuild --boot-test's: the target booted after.
	BootTest *BootTestReport `json:"boot_test,omitempty"`
}

// newRunReport begins the report of session s.
func newRunReport(s *engine.Session) *RunReport {
	r := &RunReport{Target: s.Target(), DiskAliases: []target.DiskAlias{}, Phases: []engine.Phase{}}
	r.Backend, r.BackendWhy = s.Backend()
	r.SystemBefore, r.GenerationBefore = currentGeneration(s.Root())
	return r
}

// ended completes the report, the session closed.
func (r *RunReport) ended(s *engine.Session) {
	r.Phases = append(r.Phases, s.Phases()...)
}

// wrote says what the session wrote to the target that nixrescue can
// tell, for the audit record: the system profile switched, the
// bootloader installed or configured.
func (r *RunReport) wrote() []string {
	var w []string
	if r.SystemAfter != r.SystemBefore || r.GenerationAfter != r.GenerationBefore {
		w = append(w, fmt.Sprintf("system profile switched from generation %d to %d (%s)", r.GenerationBefore, r.GenerationAfter, r.SystemAfter))
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
	Kind    string   `json:"kind"`
	Devices []string `json:"devices,omitempty"`
	// Action is "installed" (the rebuild installed it and succeeded),
	// "configured" (its configuration was written, the bootloader not
	// installed), or "failed".
	Action string `json:"action"`
	// NVRAMEntry is set when systemd-boot was installed but no EFI boot
	// entry could be made: why ("none: the host did not boot by EFI").
	NVRAMEntry string `json:"nvram_entry,omitempty"`
}

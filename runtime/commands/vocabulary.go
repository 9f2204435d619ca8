package commands

// The names the front end needs of the runtime's packages, given here so
// that it imports this package alone: the defaults its flags show, the
// values its options take, the parts of the reports it writes.

import (
	"github.com/nixrescue/nixrescue/runtime/audit"
	"github.com/nixrescue/nixrescue/runtime/boottest"
	"github.com/nixrescue/nixrescue/runtime/engine"
	"github.com/nixrescue/nixrescue/runtime/nixos"
	"github.com/nixrescue/nixrescue/runtime/policy"
	"github.com/nixrescue/nixrescue/runtime/state"
	"github.com/nixrescue/nixrescue/runtime/target"
)

// Defaults the flags show.
const (
	DefaultStateDir            = state.DefaultDir
	DefaultAuditFile           = audit.DefaultFile
	DefaultContainerdAddress   = engine.DefaultContainerdAddress
	DefaultContainerdNamespace = engine.DefaultContainerdNamespace
)

// Options' values.
type (
	// SystemChoice picks the system a session uses.
	SystemChoice = nixos.SystemChoice
	// EFIMode is efivarfs inside: auto, on or off.
	EFIMode = engine.EFIMode
	// Milestone is a point of a boot boot-test reads.
	Milestone = boottest.Milestone
	// Grant is what the host's policy lets a sudo caller do.
	Grant = policy.Grant
)

// MultiUser is boot-test's default goal.
const MultiUser = boottest.MultiUser

// The reports' parts.
type (
	Target    = target.Target
	Partition = target.Partition
	DiskAlias = target.DiskAlias
	// MountEntry is an entry of a mount plan.
	MountEntry = target.Entry
	LayerInfo  = engine.LayerInfo
	LayerKind  = engine.LayerKind
)

// The kinds of layer, and what a mount plan's entry does.
const (
	LayerLUKS  = engine.LayerLUKS
	LayerLVM   = engine.LayerLVM
	LayerMD    = engine.LayerMD
	LayerZFS   = engine.LayerZFS
	ActionSkip = target.ActionSkip
)

// RootGenerations lists the generations of a root mounted at dir (this
// host's path), for completions: nothing is opened.
func RootGenerations(dir string) ([]nixos.Generation, error) { return nixos.Generations(dir) }

// PlayRole plays the role a start of the binary that is not a command
// was started for (engine.PlayRole): call it first, from main's init.
func PlayRole() { engine.PlayRole() }

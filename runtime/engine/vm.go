package engine

import (
	"os"
	"path/filepath"

	"github.com/nixrescue/nixrescue/runtime/state"
	"github.com/nixrescue/nixrescue/runtime/target"
)

// VMSession is a boot test's record in the state directory: the VM's
// overlay and directory, and qemu's PID once it runs, so that cleanup ends
// a VM whose boot test was killed, and ps shows it.
type VMSession struct {
	st *state.Session
	vm *state.VM
}

// BeginVM records a boot test of t, by the command line command, in the
// state directory stateDir ("" is the default), and makes the VM's
// directory.
func BeginVM(stateDir string, t target.Target, command []string) (*VMSession, error) {
	dir, err := state.Open(stateDir)
	if err != nil {
		return nil, err
	}
	st, err := dir.Begin(t.Path, os.Getpid())
	if err != nil {
		return nil, err
	}
	v := &VMSession{st: st, vm: &state.VM{Overlay: state.OverlayPath(st.ID, "boot-test"), Dir: filepath.Join(st.Dir(), "vm")}}
	if err := st.Record(func(j *state.Journal) {
		j.VM, j.Caller, j.Phase, j.Backend = v.vm, state.ThisCaller(command), "attaching", "qemu"
		j.TargetArg, j.TargetKind = t.Arg, string(t.Kind)
	}); err != nil {
		v.End()
		return nil, err
	}
	if err := os.MkdirAll(v.vm.Dir, 0o700); err != nil {
		v.End()
		return nil, err
	}
	return v, nil
}

// Overlay is the VM disk's path: a qcow2 overlay on the target. Dir holds
// the VM's other files.
func (v *VMSession) Overlay() string { return v.vm.Overlay }
func (v *VMSession) Dir() string     { return v.vm.Dir }

// Started records qemu's PID.
func (v *VMSession) Started(pid int) error {
	return v.st.Record(func(j *state.Journal) { j.VM.PID = pid })
}

// Booting records that the VM boots, from what (Target.Where).
func (v *VMSession) Booting(where string) {
	_ = v.st.Record(func(j *state.Journal) { j.Phase, j.Disk = "booting", where })
}

// End removes the overlay and the record.
func (v *VMSession) End() {
	os.Remove(v.vm.Overlay)
	v.st.End()
}

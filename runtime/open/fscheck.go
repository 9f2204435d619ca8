package open

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/nixrescue/nixrescue/runtime/hint"
	"github.com/nixrescue/nixrescue/runtime/internal/hosttool"
	"github.com/nixrescue/nixrescue/runtime/target"
)

// checkFS reads what the filesystem on device (of type fsType, for mount
// point mp) says of itself before it is first mounted here
// (target.DeviceFSState), and does what the target's boot would: NixOS's
// stage 1 runs fsck -a on a filesystem before mounting it. With Fsck,
// the host's checker runs first (checkWith). A filesystem flagged with
// errors is not written without it: a session that would write to the
// target is refused, others warn. A journal or log left to replay is
// said: a look does not replay it (NoReplayOptions), a session that
// writes does, as the boot would.
func (op *Opened) checkFS(ctx context.Context, device, fsType, mp string) error {
	if op.checked[device] || !filepath.IsAbs(device) {
		// Checked already, or a layer's dataset (a ZFS pool's), which its
		// layer checks, not fsck.
		return nil
	}
	op.checked[device] = true
	st, err := target.DeviceFSState(device, fsType)
	if err != nil {
		return nil // the mount says what is wrong with it
	}
	what := fmt.Sprintf("%s (%s, for %s)", device, fsType, mp)
	if op.fsck {
		if err := op.checkWith(ctx, device, fsType, st, what); err != nil {
			return err
		}
		if st, err = target.DeviceFSState(device, fsType); err != nil {
			return nil
		}
	}
	op.recordState(device, st)
	if st.Errors != "" {
		if !op.mounter.ReadOnly && !op.overlaid {
			return &hint.Error{Subject: op.Target.Arg, Err: fmt.Errorf("%s is flagged with errors: %s", what, st.Errors),
				Fix: fmt.Sprintf("NixOS's boot would check it before mounting it: pass {Fsck} to have nixrescue run this host's %s on it first, or {ReadOnly} to look at it as it is", st.Check)}
		}
		op.warn("%s is flagged with errors: %s; NixOS's boot would check it first (a session that writes to it needs {Fsck})", what, st.Errors)
	}
	switch {
	case st.Replay == "":
	case op.mounter.ReadOnly:
		op.warn("%s was not shut down cleanly: its %s is not replayed for this read-only look, which sees it as it was at its last commit (a session that writes replays it)", what, st.Replay)
	default:
		op.warn("%s was not shut down cleanly: its %s is replayed now, as the machine's boot would", what, st.Replay)
	}
	return nil
}

// recordState keeps st on the partition of device, for the report.
func (op *Opened) recordState(device string, st target.FSState) {
	if st == (target.FSState{}) {
		return
	}
	if p := op.partition(device); p != nil {
		p.State = &st
	}
}

// checkWith runs the host's checker on device as the target's boot would
// (fsck -a): e2fsck -p on ext2, ext3 and ext4 (it replays the journal
// too), xfs_repair on an xfs a repair left unfinished. What it did is
// said; what it cannot repair alone stops the session.
func (op *Opened) checkWith(ctx context.Context, device, fsType string, st target.FSState, what string) error {
	var args []string
	switch {
	case fsType == "ext2" || fsType == "ext3" || fsType == "ext4":
		args = []string{"e2fsck", "-p", device}
	case st.Check == "xfs_repair":
		args = []string{"xfs_repair", device}
	default:
		return nil
	}
	out, err := hosttool.Combined(ctx, args[0], args[1:]...)
	var ee *hosttool.ExitError
	var missing *hosttool.MissingError
	code := 0
	switch {
	case errors.As(err, &missing):
		missing.Needs = hint.Render("{Fsck} needs")
		return &hint.Error{Subject: op.Target.Arg, Err: missing}
	case errors.As(err, &ee):
		code = ee.Code
	case err != nil:
		return fmt.Errorf("%s: %w", strings.Join(args, " "), err)
	}
	said := lastLine(string(out))
	// e2fsck: 1 corrected, 2 corrected (reboot: none here); 4 and up
	// left errors, or failed.
	if code >= 4 || args[0] == "xfs_repair" && code != 0 {
		return &hint.Error{Subject: op.Target.Arg, Err: fmt.Errorf("%s (%s) could not repair %s alone (exit %d): %s", args[0], strings.Join(args[1:len(args)-1], " "), what, code, said),
			Fix: "repair it by hand with " + args[0] + " and answer its questions" + op.byHand(device) + ", then run nixrescue again"}
	}
	op.warn("checked %s with %s: %s", what, strings.Join(args[:len(args)-1], " "), said)
	return nil
}

// byHand says how to reach device by hand when it is a partition of an
// image nixrescue attached: a loop device from its offset.
func (op *Opened) byHand(device string) string {
	p := op.partition(device)
	if op.Image == "" || p == nil || p.Number == 0 || p.Layer != "" {
		return " (" + device + " here)"
	}
	return fmt.Sprintf(" (partition %d of the image: losetup --find --show -o %d --sizelimit %d %s gives its device)", p.Number, p.Start, p.Size, op.Image)
}

// lastLine is the last line of s that says something.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

package open

import (
	"context"
	"errors"
	"os"
	"path/filepath"

	"github.com/nixrescue/nixrescue/runtime/hint"
	"github.com/nixrescue/nixrescue/runtime/image"
	"github.com/nixrescue/nixrescue/runtime/state"
	"github.com/nixrescue/nixrescue/runtime/target"
)

// exportImage has qemu-storage-daemon export the image t (or the disk,
// for a snapshot of one) as a raw file in the session's directory, behind
// a qcow2 overlay with Snapshot, and returns that file's path. An image a
// running VM holds is refused unless it is only read (ReadOnly, or
// Snapshot).
func (op *Opened) exportImage(ctx context.Context, t target.Target, to Options, s *Session, format image.Format, device bool) (string, error) {
	src, info, inspected, err := op.imageFacts(ctx, t, to, format, device)
	if err != nil {
		return "", err
	}
	if info.InUse && !to.ReadOnly && !to.Snapshot {
		return "", image.InUseError(t.Arg)
	}
	if info.InUse {
		op.warn("another program (a running VM?) is using %s: what the session sees may change under it", t.Path)
	}
	overlay, keep, err := overlayPath(to, s)
	if err != nil {
		return "", err
	}
	file := filepath.Join(s.State.Dir(), "export.raw")
	// Recorded first: a cleanup after a crash finds the daemon by its
	// export, and the overlay.
	rec := &state.Export{File: file, Overlay: overlay, KeepOverlay: keep}
	if err := s.State.Record(func(j *state.Journal) { j.Export = rec }); err != nil {
		return "", err
	}
	op.overlay, op.keepOverlay = overlay, keep
	e, err := image.Start(ctx, image.ExportOptions{Image: src, Format: info.Format, Device: device, ReadOnly: to.ReadOnly,
		Overlay: overlay, Size: info.VirtualSize, Share: info.InUse, File: file, Log: filepath.Join(s.State.Dir(), "qemu-storage-daemon.log")})
	// qemu-img's view of the image (its backing chain; a damaged or
	// incomplete image said plainly) was read meanwhile.
	if res := <-inspected; res.err != nil {
		op.export = e // stopped by Close
		if overlay != "" {
			os.Remove(overlay) // made for this session, which did not start
			op.overlay = ""
		}
		return "", res.err
	} else if res.info != nil {
		info.Backing, info.VirtualSize = res.info.Backing, res.info.VirtualSize
	}
	if err != nil {
		if overlay != "" {
			os.Remove(overlay) // made for this session, which did not start
			op.overlay = ""
		}
		// About the image as the user named it.
		var he *hint.Error
		if errors.As(err, &he) {
			return "", &hint.Error{Subject: t.Arg, Err: he.Err, Fix: he.Fix}
		}
		return "", &hint.Error{Subject: t.Arg, Err: err}
	}
	op.export = e
	if err := s.State.Record(func(j *state.Journal) { j.Export.PID = e.PID }); err != nil {
		return "", err
	}
	info.Overlay = overlay
	op.Format = &info
	return e.Path(), nil
}

// inspection is qemu-img's answer about an image, read beside the
// daemon's start.
type inspection struct {
	info *image.Info
	err  error
}

// imageFacts reads what a session must know of an image before qemu
// exports it, cheaply: its size (a raw image's length, a disk's, a qcow2's
// header), whether a qcow2 is encrypted (refused), whether another program
// holds it. qemu-img's fuller view (the backing chain, a check of a qcow2)
// comes on the channel, started here, read after the daemon's start; a
// snapshot of a format whose size only qemu-img reads waits for it.
func (op *Opened) imageFacts(ctx context.Context, t target.Target, to Options, format image.Format, device bool) (string, image.Info, <-chan inspection, error) {
	info := image.Info{Format: format}
	done := make(chan inspection, 1)
	if device {
		size, err := target.Size(op.image)
		info.VirtualSize = size
		done <- inspection{}
		return t.Disk, info, done, err
	}
	src, err := filepath.Abs(t.Path)
	if err != nil {
		return "", info, nil, err
	}
	info.InUse = image.InUse(src)
	switch format {
	case image.Raw:
		st, err := op.image.Stat()
		if err != nil {
			return "", info, nil, err
		}
		info.VirtualSize = st.Size()
		done <- inspection{}
		return src, info, done, nil
	case image.QCOW2:
		h, err := image.ReadQCOW2Header(op.image)
		if err != nil {
			return "", info, nil, &hint.Error{Subject: t.Arg, Err: err}
		}
		if h.Encrypted {
			return "", info, nil, &hint.Error{Subject: t.Arg, Err: errors.New("the image is an encrypted qcow2, which nixrescue does not open"),
				Fix: "decrypt it into a new image with qemu-img convert (its --object secret,… and --image-opts), and give that one"}
		}
		info.VirtualSize = h.VirtualSize
	}
	go func() {
		i, err := image.Inspect(ctx, src)
		if err == nil && format == image.QCOW2 {
			err = image.Check(ctx, src)
		}
		done <- inspection{info: &i, err: err}
	}()
	if info.VirtualSize == 0 && to.Snapshot {
		res := <-done
		if res.err != nil {
			return "", info, nil, res.err
		}
		info.VirtualSize = res.info.VirtualSize
		done <- res
	}
	return src, info, done, nil
}

// overlayPath is where a snapshot's overlay goes: SnapshotOut (which must
// not exist: nothing is overwritten), or a new file in state.OverlayDir, removed
// at the end. "" without a snapshot.
func overlayPath(to Options, s *Session) (path string, keep bool, err error) {
	switch {
	case to.SnapshotOut != "":
		p, err := filepath.Abs(to.SnapshotOut)
		if err != nil {
			return "", false, err
		}
		if _, err := os.Lstat(p); err == nil {
			return "", false, hint.Errorf("{SnapshotOut %s}: the file exists; name a new one (nothing is overwritten)", to.SnapshotOut)
		}
		if st, err := os.Stat(filepath.Dir(p)); err != nil || !st.IsDir() {
			return "", false, hint.Errorf("{SnapshotOut %s}: its directory %s does not exist", to.SnapshotOut, filepath.Dir(p))
		}
		return p, true, nil
	case to.Snapshot:
		return state.OverlayPath(s.State.ID, "snapshot"), false, nil
	}
	return "", false, nil
}

// snapshotDisk opens a disk (or a partition's disk) behind a snapshot: the
// disk is only read, its writes go to the overlay.
func (op *Opened) snapshotDisk(ctx context.Context, t target.Target, to Options, s *Session) error {
	f, err := os.Open(t.Disk)
	if err != nil {
		return &hint.Error{Subject: t.Arg, Err: err}
	}
	op.image = f
	exported, err := op.exportImage(ctx, t, to, s, image.Raw, true)
	if err != nil {
		return err
	}
	return op.attachRaw(ctx, t, to, s, exported)
}

// stopExport ends qemu's export and removes the overlay unless it is
// kept.
func (op *Opened) stopExport() error {
	err := op.export.Stop()
	op.export = nil
	if op.overlay != "" && !op.keepOverlay {
		if rerr := os.Remove(op.overlay); rerr != nil && !errors.Is(rerr, os.ErrNotExist) && err == nil {
			err = rerr
		}
	}
	return err
}

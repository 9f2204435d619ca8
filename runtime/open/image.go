package open

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/nixrescue/nixrescue/runtime/hint"
	"github.com/nixrescue/nixrescue/runtime/image"
	"github.com/nixrescue/nixrescue/runtime/state"
	"github.com/nixrescue/nixrescue/runtime/target"
)

// openExported has qemu-storage-daemon export the image t (or the disk,
// for a snapshot of one) behind a qcow2 overlay with Snapshot, and
// attaches the export: the kernel's nbd device on its NBD export where
// the kernel has nbd, else a loop device on its FUSE export's file.
func (op *Opened) openExported(ctx context.Context, t target.Target, to Options, s *Session, format image.Format, device bool) error {
	if err := op.exportImage(ctx, t, to, s, format, device); err != nil {
		return err
	}
	if r := op.export.ReaderAt(); r != nil {
		return op.attachNBD(ctx, t, to, s, r)
	}
	return op.attachRaw(ctx, t, to, s, op.export.Path())
}

// exportImage starts qemu-storage-daemon's export of the image t (or the
// disk) as its raw content, in the session's directory. An image a
// running VM holds is refused unless it is only read (ReadOnly, or
// Snapshot).
func (op *Opened) exportImage(ctx context.Context, t target.Target, to Options, s *Session, format image.Format, device bool) error {
	src, info, inspected, err := op.imageFacts(ctx, t, to, format, device)
	if err != nil {
		return err
	}
	if info.InUse && !to.ReadOnly && !to.Snapshot {
		return image.InUseError(t.Arg)
	}
	if info.InUse {
		op.warn("another program (a running VM?) is using %s: what the session sees may change under it", t.Path)
	}
	overlay, keep, err := overlayPath(to, s)
	if err != nil {
		return err
	}
	file, socket := filepath.Join(s.State.Dir(), "export.raw"), filepath.Join(s.State.Dir(), "export.nbd")
	// Recorded first: a cleanup after a crash finds the daemon by its
	// export, and the overlay.
	rec := &state.Export{File: file, Socket: socket, Overlay: overlay, KeepOverlay: keep}
	if err := s.State.Record(func(j *state.Journal) { j.Export = rec }); err != nil {
		return err
	}
	op.overlay, op.keepOverlay = overlay, keep
	e, err := image.Start(ctx, image.ExportOptions{Image: src, Format: info.Format, Device: device, ReadOnly: to.ReadOnly,
		Overlay: overlay, Size: info.VirtualSize, Share: info.InUse, File: file, Socket: socket, Log: filepath.Join(s.State.Dir(), "qemu-storage-daemon.log")})
	// qemu-img's view of the image (its backing chain; a damaged or
	// incomplete image said plainly) was read meanwhile.
	if res := <-inspected; res.err != nil {
		op.export = e // stopped by Close
		if overlay != "" {
			os.Remove(overlay) // made for this session, which did not start
			op.overlay = ""
		}
		return res.err
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
			return &hint.Error{Subject: t.Arg, Err: he.Err, Fix: he.Fix}
		}
		return &hint.Error{Subject: t.Arg, Err: err}
	}
	op.export = e
	if err := s.State.Record(func(j *state.Journal) { j.Export.PID, j.Export.Via = e.PID, e.Via() }); err != nil {
		return err
	}
	info.Overlay, info.Via = overlay, e.Via()
	op.Format = &info
	return nil
}

// attachNBD has the kernel attach the NBD export as a block device, with
// the logical sector size its partition table was written for (read
// through the export first), and takes its partitions.
func (op *Opened) attachNBD(ctx context.Context, t target.Target, to Options, s *Session, r io.ReaderAt) error {
	size := op.export.Size()
	table, err := target.ReadTable(readerFile{io.NewSectionReader(r, 0, size)}, size, 0)
	if err != nil {
		return &hint.Error{Subject: t.Arg, Err: err}
	}
	dev, err := op.export.Attach(cmp.Or(table.SectorSize, 512))
	if err != nil {
		return fmt.Errorf("attach %s: %w", t.Arg, err)
	}
	if err := s.State.Record(func(j *state.Journal) { j.Export.Device = dev }); err != nil {
		return err
	}
	flag := os.O_RDWR
	if to.ReadOnly {
		flag = os.O_RDONLY
	}
	f, err := os.OpenFile(dev, flag|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s (the export of %s): %w", dev, t.Arg, err)
	}
	op.Disk, op.diskDev = dev, f
	op.dmParts = mapsPartitions(to, table)
	if table.Type == "" {
		return op.bareFilesystem(ctx, t, dev, size)
	}
	return op.useTable(ctx, table, s)
}

// readerFile is an export read before it is attached, as the partition
// table's parser takes a disk.
type readerFile struct{ *io.SectionReader }

func (readerFile) Stat() (fs.FileInfo, error) { return nil, errors.ErrUnsupported }
func (readerFile) Close() error               { return nil }

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
		if !h.Backed {
			// All qemu-img info would add is the backing chain, which
			// there is none of: its check is all that is left to run.
			go func() {
				done <- inspection{info: &image.Info{Format: format, VirtualSize: h.VirtualSize}, err: image.Check(ctx, src)}
			}()
			return src, info, done, nil
		}
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
	return op.openExported(ctx, t, to, s, image.Raw, true)
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

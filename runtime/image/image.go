// Package image opens disk images of every format qemu reads (qcow2 with
// its backing chain and compressed clusters, VMDK, VDI, VHDX, VHD, raw)
// through qemu's own block layer: qemu-storage-daemon exports the image's
// raw content over NBD, which the kernel's nbd driver attaches as a block
// device where it is loaded (export_nbd.go), or else as a file over FUSE,
// to which a session attaches a loop device as it does to a raw image. With a snapshot, a qcow2 overlay is put
// in front of the image (or disk), so that every write goes to the
// overlay and the image stays byte for byte as it was.
//
// The format is told by the image's content, never its name. qemu's image
// locking is kept: an image a running VM holds is refused for writing,
// and said to be in use.
package image

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/nixrescue/nixrescue/runtime/hint"
	"github.com/nixrescue/nixrescue/runtime/internal/hosttool"
)

// Format is an image format, as qemu names its drivers.
type Format string

const (
	Raw   Format = "raw"
	QCOW2 Format = "qcow2"
	QCOW  Format = "qcow"
	QED   Format = "qed"
	VMDK  Format = "vmdk"
	VDI   Format = "vdi"
	VHDX  Format = "vhdx"
	VPC   Format = "vpc" // VHD
)

// Detect tells an image's format by its content: the magic numbers of
// each format's header (a fixed VHD's footer is at the end); anything
// else is raw.
func Detect(f io.ReaderAt, size int64) Format {
	head := make([]byte, 512)
	n, _ := f.ReadAt(head, 0)
	head = head[:n]
	switch {
	case bytes.HasPrefix(head, []byte("QFI\xfb")):
		if len(head) >= 8 && head[7] == 1 {
			return QCOW
		}
		return QCOW2
	case bytes.HasPrefix(head, []byte("QED\x00")):
		return QED
	case bytes.HasPrefix(head, []byte("KDMV")), bytes.HasPrefix(head, []byte("COWD")),
		bytes.HasPrefix(head, []byte("# Disk DescriptorFile")):
		return VMDK
	case len(head) >= 0x44 && bytes.Equal(head[0x40:0x44], []byte{0x7f, 0x10, 0xda, 0xbe}):
		return VDI
	case bytes.HasPrefix(head, []byte("vhdxfile")):
		return VHDX
	case bytes.HasPrefix(head, []byte("conectix")):
		return VPC
	}
	if size >= 512 {
		foot := make([]byte, 8)
		if _, err := f.ReadAt(foot, size-512); err == nil && string(foot) == "conectix" {
			return VPC
		}
	}
	return Raw
}

// QCOW2Header is what a qcow2 image's header says, read without qemu:
// its virtual size, whether it is encrypted (crypt_method), and whether it
// has a backing file (a non-zero backing_file_offset).
type QCOW2Header struct {
	VirtualSize int64
	Encrypted   bool
	Backed      bool
}

// ReadQCOW2Header reads the header of a qcow2 image (QEMU's qcow2.txt:
// big-endian, backing_file_offset at byte 8, the size at 24, crypt_method
// at 32).
func ReadQCOW2Header(f io.ReaderAt) (QCOW2Header, error) {
	b := make([]byte, 36)
	if _, err := f.ReadAt(b, 0); err != nil {
		return QCOW2Header{}, fmt.Errorf("read the qcow2 header: %w", err)
	}
	if !bytes.HasPrefix(b, []byte("QFI\xfb")) {
		return QCOW2Header{}, errors.New("not a qcow2 image")
	}
	return QCOW2Header{VirtualSize: int64(binary.BigEndian.Uint64(b[24:])), Encrypted: binary.BigEndian.Uint32(b[32:]) != 0,
		Backed: binary.BigEndian.Uint64(b[8:]) != 0}, nil
}

// Info is what qemu-img says of an image.
type Info struct {
	Format      Format `json:"format"`
	VirtualSize int64  `json:"virtual_size"`
	// Backing is the backing chain, nearest first: each file and its
	// format.
	Backing []Backing `json:"backing,omitempty"`
	// Encrypted images (qcow2 with LUKS or AES inside) are not opened.
	Encrypted bool `json:"encrypted,omitempty"`
	// InUse says another program holds qemu's lock on the image (a
	// running VM).
	InUse bool `json:"in_use"`
	// Overlay is the snapshot's overlay, when the session has one.
	Overlay string `json:"overlay,omitempty"`
	// Via is how the session reads it: qemu-storage-daemon's export
	// over NBD (ViaNBD) or FUSE (ViaFUSE).
	Via string `json:"export,omitempty"`
}

// How an export is reached (Info.Via).
const (
	ViaNBD  = "nbd"
	ViaFUSE = "fuse"
)

// Backing is an image a qcow2 image is layered on.
type Backing struct {
	File   string `json:"file"`
	Format Format `json:"format"`
}

// tool finds a qemu program, or says which package has it.
func tool(name string) (string, error) {
	return hosttool.Look(name, "opens disk images other than raw")
}

// Inspect reads an image's format, size and backing chain (qemu-img info
// --backing-chain, sharing the image with whoever holds it), and whether
// another program holds it.
func Inspect(ctx context.Context, path string) (Info, error) {
	img, err := tool("qemu-img")
	if err != nil {
		return Info{}, err
	}
	out, err := hosttool.Run(ctx, nil, img, "info", "--force-share", "--backing-chain", "--output=json", path)
	if err != nil {
		if missing := missingBacking(ctx, img, path); missing != "" {
			return Info{}, &hint.Error{Subject: path, Err: fmt.Errorf("its backing file %s is missing", missing),
				Fix: "put it back there, or point the image at where it is now: qemu-img rebase -u -b NEWPATH " + path}
		}
		return Info{}, qemuError(path, err)
	}
	var chain []struct {
		Format          Format `json:"format"`
		VirtualSize     int64  `json:"virtual-size"`
		Filename        string `json:"filename"`
		Encrypted       bool   `json:"encrypted"`
		BackingFilename string `json:"full-backing-filename"`
	}
	if err := json.Unmarshal(out, &chain); err != nil || len(chain) == 0 {
		return Info{}, fmt.Errorf("read qemu-img info of %s: %v", path, err)
	}
	i := Info{Format: chain[0].Format, VirtualSize: chain[0].VirtualSize}
	for _, c := range chain {
		i.Encrypted = i.Encrypted || c.Encrypted
	}
	for _, c := range chain[1:] {
		i.Backing = append(i.Backing, Backing{File: c.Filename, Format: c.Format})
	}
	i.InUse = InUse(path)
	return i, nil
}

// InUse tells whether another program holds a lock on the file at path:
// qemu locks bytes of the images it opens (a running VM); nixrescue and
// the tools it runs take none. It asks the kernel whether a write lock on
// the whole file would conflict (F_OFD_GETLK), which sees open-file-
// description and POSIX locks alike. (Not by reading /proc/locks: the
// kernel takes its lock of all file locks for writing to list them, and
// that waits for an RCU grace period, 5-10 ms, on every session.)
func InUse(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: io.SeekStart}
	if err := unix.FcntlFlock(f.Fd(), unix.F_OFD_GETLK, &lk); err != nil {
		return false
	}
	return lk.Type != unix.F_UNLCK
}

// missingBacking is the backing file an image names that is not there
// (qemu-img info of the image alone), "" when there is none such.
func missingBacking(ctx context.Context, img, path string) string {
	out, err := hosttool.Run(ctx, nil, img, "info", "--force-share", "--output=json", path)
	if err != nil {
		return ""
	}
	var top struct {
		Backing string `json:"full-backing-filename"`
	}
	if json.Unmarshal(out, &top) != nil || top.Backing == "" {
		return ""
	}
	if _, err := os.Stat(top.Backing); err != nil {
		return top.Backing
	}
	return missingBacking(ctx, img, top.Backing)
}

// qemuError turns what a qemu program said into an error that names the
// image and what to do.
func qemuError(path string, err error) error {
	var ee *hosttool.ExitError
	msg := err.Error()
	if errors.As(err, &ee) && ee.Output != "" {
		msg = ee.Output
	}
	return interpret(path, msg)
}

// interpret reads qemu's message about an image it could not open.
func interpret(path, msg string) error {
	first := strings.TrimPrefix(strings.SplitN(msg, "\n", 2)[0], "qemu-img: ")
	switch {
	case strings.Contains(msg, "Could not open backing file"):
		missing := msg
		if i := strings.Index(msg, "Could not open '"); i >= 0 {
			missing = msg[i+len("Could not open '"):]
			missing = missing[:strings.IndexByte(missing+"'", '\'')]
		}
		return &hint.Error{Subject: path, Err: fmt.Errorf("its backing file %s cannot be opened", missing),
			Fix: "put it back where the image says it is, or point the image at it: qemu-img rebase -u -b NEWPATH " + path}
	case strings.Contains(msg, "lock"):
		return InUseError(path)
	case strings.Contains(msg, "Unknown driver"), strings.Contains(msg, "not supported"), strings.Contains(msg, "Unsupported"):
		return &hint.Error{Subject: path, Err: fmt.Errorf("qemu cannot read its format (%s)", first),
			Fix: "convert it with the tool that made it to raw or qcow2"}
	}
	return &hint.Error{Subject: path, Err: errors.New(first),
		Fix: "check it with qemu-img check " + path + " (a truncated or damaged image), or copy it again"}
}

// InUseError refuses to write to an image another program holds
// (subject names it).
func InUseError(subject string) error {
	return &hint.Error{Subject: subject, Err: errors.New("another program is using the image (qemu's lock is held: a running VM?)"),
		Fix: "shut that VM down, or pass {ReadOnly} or {Snapshot} to work on what it has written so far"}
}

// Check runs qemu-img check on a qcow2 image: a truncated or damaged one
// is refused before anything is attached.
func Check(ctx context.Context, path string) error {
	img, err := tool("qemu-img")
	if err != nil {
		return err
	}
	out, err := hosttool.Combined(ctx, img, "check", "--force-share", "--output=json", path)
	var r struct {
		Corruptions int `json:"corruptions"`
		CheckErrors int `json:"check-errors"`
	}
	if jerr := json.Unmarshal(out, &r); jerr == nil && r.Corruptions == 0 && r.CheckErrors == 0 {
		return nil
	}
	if err == nil {
		err = errors.New(strings.TrimSpace(string(out)))
	}
	if r.Corruptions > 0 || r.CheckErrors > 0 {
		return &hint.Error{Subject: path, Err: fmt.Errorf("qemu-img check finds it damaged (%d corruptions, %d errors: a truncated or broken copy)", r.Corruptions, r.CheckErrors),
			Fix: "copy it again, or repair it with qemu-img check -r all on a copy"}
	}
	var ee *hosttool.ExitError
	if errors.As(err, &ee) {
		return &hint.Error{Subject: path, Err: fmt.Errorf("qemu-img check finds it damaged (%s)", strings.TrimPrefix(strings.SplitN(strings.TrimSpace(string(out)), "\n", 2)[0], "qemu-img: ")),
			Fix: "copy it again (a truncated copy?), or repair a copy with qemu-img check -r all"}
	}
	return err
}

// Package layers opens what lies between a target's partitions and its
// filesystems: LUKS encryption (cryptsetup), LVM (lvm2, confined to the
// target's devices) and md RAID (mdadm), with the rescue host's own tools,
// under names of the session's own; and closes them in reverse. It goes
// bottom-up, as NixOS's initrd does at boot, because the fstab that
// names the layers is inside them.
//
// Nothing of the host's is touched: LVM scans only the devices it is
// given (--devices), devices a host already uses (a holder in sysfs: an
// open LUKS mapping, an assembled array, an active volume group) are
// refused with the name they are in use under, and the files the tools
// would leave on the host (cryptsetup's and LVM's locks, LVM's metadata
// backups, mdadm's map) are either not made or removed. Keys go to
// cryptsetup on a pipe, never in an argument, and are cleared after use.
package layers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nixrescue/nixrescue/runtime/internal/hosttool"
)

// Kind is a layer's kind.
type Kind string

const (
	LUKS Kind = "luks"
	LVM  Kind = "lvm"
	MD   Kind = "md"
	ZFS  Kind = "zfs"
)

// KindOf is the layer a device holds, by blkid's TYPE ("" for none).
func KindOf(fsType string) Kind {
	switch fsType {
	case "crypto_LUKS":
		return LUKS
	case "LVM2_member":
		return LVM
	case "linux_raid_member":
		return MD
	case "zfs_member":
		return ZFS
	}
	return ""
}

// Opened is a layer a session opened: what a teardown, or a cleanup after
// a crash, closes. Its field names are the journal's.
type Opened struct {
	Kind Kind `json:"kind"`
	// Name is the device-mapper name (LUKS), the volume group (LVM) or
	// the array's device (md, /dev/md/NAME).
	Name string `json:"name"`
	// Devices are those it was opened from: LVM's --devices.
	Devices []string `json:"devices"`
	// MadeRunDir is a directory under /run the tool made (mdadm's), to
	// remove when the layer is closed.
	MadeRunDir string `json:"made_run_dir,omitempty"`
	// ID identifies it whatever name it was opened under: a ZFS pool's
	// GUID.
	ID string `json:"id,omitempty"`
}

// Info is a layer of the target as inspect shows it: what it is on, its
// state, and what it gives.
type Info struct {
	Kind Kind `json:"kind"`
	// On are the devices it is on: a LUKS or RAID member, LVM's physical
	// volumes.
	On []string `json:"on"`
	// State is locked or open (LUKS), active (LVM), assembled or
	// degraded (md).
	State string `json:"state"`
	// Name is the target's name for it: the configuration's for a LUKS
	// volume, the volume group's, the array's.
	Name string `json:"name,omitempty"`
	// Device is this host's device for an open LUKS volume or an array
	// (/dev/dm-N, /dev/mdN); Mapping is an open LUKS volume's
	// device-mapper name on this host, the session's own.
	Device  string `json:"device,omitempty"`
	Mapping string `json:"mapping,omitempty"`
	// Volumes are an active volume group's logical volumes, by this
	// host's devices (/dev/dm-N), in the order of VG.LVs that hold data.
	Volumes []string     `json:"volumes,omitempty"`
	LUKS    *Header      `json:"luks,omitempty"`
	VG      *VolumeGroup `json:"vg,omitempty"`
	Array   *Array       `json:"array,omitempty"`
	Pool    *Pool        `json:"pool,omitempty"`
	// Locked are a pool's encrypted datasets left locked: no key was
	// given.
	Locked []string `json:"locked,omitempty"`
}

// Close closes an opened layer: cryptsetup close, vgchange -an, mdadm
// --stop. A layer that is gone already is no error. A layer still busy
// (what was mounted on it goes with the last process of a killed
// session's namespace, a moment after) is tried again for a few seconds.
func Close(ctx context.Context, o Opened) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := closeOnce(ctx, o)
		if err == nil || time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Layer is one kind of storage layer, from finding it on the target's
// devices to closing it: LUKS, LVM and md implement it (luks.go, lvm.go,
// md.go), registered in Kinds. A session opens layers bottom-up, read-only
// first, recording each in its journal before it opens it (runtime/open);
// its teardown, and a cleanup after a crash (runtime/recovery), close them
// in reverse through Close. A kind that is no block device fits too: its
// Volumes may be datasets (a ZFS pool's).
type Layer interface {
	// Kind is the kind, as KindOf reads it from blkid's TYPE.
	Kind() Kind
	// Keyed says it opens with a key (LUKS): one at a time, while no
	// root has turned up or when the target's configuration names it.
	Keyed() bool
	// Find reads the metadata of members (the target's devices of this
	// kind, none in use) and returns the layers they make, unopened.
	Find(ctx context.Context, members []string) ([]Found, error)
	// Describe is what inspect shows of a layer found, not opened.
	Describe(f Found) Info
	// Usable says why f cannot be opened from this host, before a key is
	// asked for; nil when it can.
	Usable(f Found) error
	// Planned is the journal's record of f opened under name (the
	// session's own), written before Open: a crash in Open is undone too.
	Planned(f Found, name string) Opened
	// Open opens f under name, read-only when asked. When it fails
	// after opening something, Result.Opened says what, for the session
	// to close; it is zero when nothing stays open.
	Open(ctx context.Context, f Found, name string, o OpenOptions) (Result, error)
	// ReadWrite makes o, opened read-only, writable.
	ReadWrite(ctx context.Context, o Opened) error
	// Close closes o; one that is gone already is no error.
	Close(ctx context.Context, o Opened) error
}

// Found is a layer found on the target's devices, not opened: its
// members, and what its kind read of them.
type Found struct {
	Kind    Kind
	Members []string
	Header  *Header      // LUKS
	Group   *VolumeGroup // LVM
	Array   *Array       // md
	Pool    *Pool        // ZFS
}

// What says what f is, for people: a LUKS volume's version, cipher and
// how it opens; another kind's name.
func (f Found) What() string {
	if f.Header != nil {
		return f.Header.Describe()
	}
	if f.Pool != nil {
		return f.Pool.Describe()
	}
	return describeKind(f.Kind)
}

// OpenOptions say how a layer is opened.
type OpenOptions struct {
	ReadOnly bool
	// Key opens a Keyed layer (given to its tool on a pipe).
	Key []byte
	// Unlock asks for keys a layer that is not Keyed may need inside
	// (a ZFS pool's encrypted datasets): the session's keys' Unlock.
	Unlock func(prompt string, open func(key []byte) error) error
	// AltRoot is the session's root directory, which a layer that mounts
	// by itself would mount under (a ZFS pool's altroot).
	AltRoot string
}

// Result is a layer opened: its journal record as it is now (an array
// recorded by the name asked for is its kernel device after), the volumes
// it gives, what inspect shows of it, and what a user should know.
type Result struct {
	Opened   Opened
	Volumes  []Volume
	Info     Info
	Warnings []string
}

// Volume is what a layer gives the filesystems: a block device of this
// host's, and the names the target's configuration may call it by; or a
// dataset (a ZFS pool's), by its name, with its filesystem type.
type Volume struct {
	Device string
	Names  []string
	// Dataset and Type are a dataset's; Device is empty then.
	Dataset, Type string
}

// Kinds are the kinds of layer nixrescue opens, in the order each round
// opens them (an array may hold physical volumes; a keyed layer comes
// last). A new kind is one more entry and the file that implements it.
var Kinds = []Layer{mdLayer{}, lvmLayer{}, zfsLayer{}, luksLayer{}}

// Of is the Layer of kind k; nil for a kind nixrescue does not open.
func Of(k Kind) Layer {
	for _, l := range Kinds {
		if l.Kind() == k {
			return l
		}
	}
	return nil
}

// ReadWrite makes an opened layer writable.
func ReadWrite(ctx context.Context, o Opened) error {
	l := Of(o.Kind)
	if l == nil {
		return fmt.Errorf("a layer of kind %q cannot be made writable", o.Kind)
	}
	return l.ReadWrite(ctx, o)
}

func closeOnce(ctx context.Context, o Opened) error {
	var err error
	if l := Of(o.Kind); l != nil {
		err = l.Close(ctx, o)
	}
	if o.MadeRunDir != "" {
		removeEmptyRunDir(o.MadeRunDir)
	}
	if err != nil {
		return fmt.Errorf("close %s %s: %w", o.Kind, o.Name, err)
	}
	return nil
}

// removeEmptyRunDir removes a directory a tool made under /run once it
// holds nothing that matters (mdadm's map, empty once its arrays are
// stopped).
func removeEmptyRunDir(dir string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if st, err := os.Stat(filepath.Join(dir, e.Name())); err != nil || st.Size() > 0 {
			return
		}
	}
	_ = os.RemoveAll(dir)
}

func describeKind(k Kind) string {
	switch k {
	case LUKS:
		return "LUKS encryption"
	case LVM:
		return "an LVM physical volume"
	case MD:
		return "a Linux software RAID (md) member"
	case ZFS:
		return "a ZFS pool member"
	}
	return string(k)
}

// run runs tool (hosttool.Run) for a layer of kind on device: when the
// host lacks it, the error says what needed it.
func run(ctx context.Context, stdin io.Reader, device string, kind Kind, tool string, args ...string) ([]byte, error) {
	out, err := hosttool.Run(ctx, stdin, tool, args...)
	var missing *hosttool.MissingError
	if errors.As(err, &missing) {
		missing.Needs = fmt.Sprintf("opening %s (%s) needs", device, describeKind(kind))
	}
	return out, err
}

// failed is err said as what failed (a format and its arguments), or
// alone when it is a missing program, which says it all.
func failed(err error, format string, a ...any) error {
	var missing *hosttool.MissingError
	if err == nil || errors.As(err, &missing) {
		return err
	}
	return fmt.Errorf(format+": %w", append(a, err)...)
}

// Holders are the devices the host stacked on device (sysfs holders/): an
// open LUKS mapping, an array, an LVM volume, each by its /dev name
// (/dev/mapper/NAME for device-mapper, /dev/mdN for md).
func Holders(device string) []string {
	name := filepath.Base(device)
	entries, err := os.ReadDir(filepath.Join("/sys/class/block", name, "holders"))
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range entries {
		out = append(out, DeviceName(e.Name()))
	}
	return out
}

// DeviceName is the /dev name of a kernel block device name: dm-N by its
// device-mapper name, others as they are.
func DeviceName(kernel string) string {
	if b, err := os.ReadFile(filepath.Join("/sys/class/block", kernel, "dm/name")); err == nil {
		return "/dev/mapper/" + strings.TrimSpace(string(b))
	}
	return "/dev/" + kernel
}

// OpenOnHostError says a device the target needs is already open on this
// host (its layer set up by someone else): a session never shares one.
type OpenOnHostError struct {
	Device  string
	Kind    Kind
	Holders []string
}

func (e *OpenOnHostError) Error() string {
	return fmt.Sprintf("%s (%s) is already open on this host as %s: nixrescue uses none of it", e.Device, describeKind(e.Kind), strings.Join(e.Holders, ", "))
}

// udevRunning tells whether udev manages /dev here: then LVM waits for it
// to make the nodes; without it (an initramfs), LVM makes them.
func udevRunning() bool {
	_, err := os.Stat("/run/udev/control")
	return err == nil
}

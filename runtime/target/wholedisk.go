package target

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/nixrescue/nixrescue/runtime/mount"
)

// NotWholeDiskError says a device cannot take a bootloader's boot code
// (GRUB for BIOS writes its first sector and the gap after it): it is a
// part of a disk, or of an image, or a layer over one, or a disk holding
// a filesystem where a partition table would be. Written there, the boot
// code lands on a filesystem.
type NotWholeDiskError struct {
	// Device is the device that was to be the disk.
	Device string
	// Is says what it is instead ("a loop device of /x/disk.img from
	// byte 1048576").
	Is string
	// Disk is the image file or whole disk it is a part of, when there
	// is one: what to pass as the target instead.
	Disk string
	// Undo says what to end first to pass Disk (what was made of it by
	// hand holds it), "" for nothing; Why why nixrescue needs no such
	// thing.
	Undo, Why string
}

func (e *NotWholeDiskError) Error() string {
	return fmt.Sprintf("%s is %s, not a whole disk", e.Device, e.Is)
}

// Fix says what to pass instead, words mentioning options.
func (e *NotWholeDiskError) Fix() string {
	if e.Disk == "" {
		return "pass the whole disk, or its image, as {Target}"
	}
	fix := "pass " + e.Disk + " as {Target}"
	if e.Undo != "" {
		fix = e.Undo + ", then " + fix
	}
	if e.Why != "" {
		fix += ": " + e.Why
	}
	return fix
}

// CheckWholeDisk returns why device (a /dev path) is not a disk a
// bootloader can go on, or nil: a partition, a loop device on a part of
// its file (an offset or a size limit: a partition of an image attached
// by hand), a device-mapper or md device, or a device with no partition
// table at its start (a filesystem image).
func CheckWholeDisk(device string) *NotWholeDiskError {
	name := filepath.Base(device)
	if real, err := filepath.EvalSymlinks(device); err == nil {
		name = filepath.Base(real)
	}
	sys := filepath.Join("/sys/class/block", name)
	if _, err := os.Stat(filepath.Join(sys, "partition")); err == nil {
		parent, _ := filepath.EvalSymlinks(filepath.Join(sys, ".."))
		return &NotWholeDiskError{Device: device, Is: "a partition of /dev/" + filepath.Base(parent), Disk: "/dev/" + filepath.Base(parent)}
	}
	if e := loopPart(device, name); e != nil {
		return e
	}
	for _, kind := range []string{"dm", "md"} {
		if _, err := os.Stat(filepath.Join(sys, kind)); err != nil {
			continue
		}
		what := map[string]string{"dm": "a device-mapper device (LUKS, LVM)", "md": "an md RAID array"}[kind]
		e := &NotWholeDiskError{Device: device, Is: what,
			Undo: "unmount what is mounted from it and close it (cryptsetup close, vgchange -an, mdadm --stop)", Why: "nixrescue opens LUKS, LVM and md itself"}
		if disks := disksUnder(name); len(disks) > 0 {
			e.Is += " on " + strings.Join(disks, " and ")
			if len(disks) == 1 {
				e.Disk = disks[0]
			}
		}
		return e
	}
	f, err := os.Open(device)
	if err != nil {
		return nil // the bootloader's own error says more
	}
	defer f.Close()
	size, err := Size(f)
	if err != nil {
		return nil
	}
	if t, err := ReadTable(f, size, SectorSize(f)); err == nil && t.Type == "" {
		e := &NotWholeDiskError{Device: device, Is: "a device with no partition table (a filesystem image, or a partition copied whole)"}
		if file := mount.BackingFile(name); file != "" {
			e.Is = "a loop device of " + file + ", which has no partition table (a filesystem image, or a partition copied whole)"
		}
		return e
	}
	return nil
}

// loopPart says what loop device name is when it maps a part of its file
// (LOOP_SET_STATUS's offset or size limit, as losetup -o makes), or nil.
func loopPart(device, name string) *NotWholeDiskError {
	if !strings.HasPrefix(name, "loop") {
		return nil
	}
	dir := filepath.Join("/sys/block", name, "loop")
	offset, err1 := readInt(filepath.Join(dir, "offset"))
	limit, err2 := readInt(filepath.Join(dir, "sizelimit"))
	if err1 != nil || err2 != nil || offset == 0 && limit == 0 {
		return nil
	}
	file := mount.BackingFile(name)
	is := fmt.Sprintf("a loop device of %s from byte %d", file, offset)
	if limit > 0 {
		is += fmt.Sprintf(" for %d bytes", limit)
	}
	return &NotWholeDiskError{Device: device, Is: is + " (a part of that image, attached by hand)", Disk: file,
		Undo: "unmount what is mounted from " + device + " and detach it (losetup -d " + device + ")", Why: "nixrescue attaches the image and its partitions itself"}
}

// disksUnder are the whole disks (/dev paths) under the device-mapper
// or md device name (lowestDevices).
func disksUnder(name string) []string {
	var disks []string
	for _, n := range lowestDevices(name) {
		disk := n
		if real, err := filepath.EvalSymlinks(filepath.Join("/sys/class/block", n)); err == nil {
			if _, err := os.Stat(filepath.Join(real, "partition")); err == nil {
				disk = filepath.Base(filepath.Dir(real))
			}
		}
		if d := "/dev/" + disk; !slices.Contains(disks, d) {
			disks = append(disks, d)
		}
	}
	return disks
}

// lowestDevices are the kernel names of the block devices at the bottom
// of block device name's stack: what a device-mapper or md device is
// made of (sysfs's slaves), layer by layer; name itself when nothing is
// under it.
func lowestDevices(name string) []string {
	var out []string
	seen := map[string]bool{}
	var walk func(n string)
	walk = func(n string) {
		if seen[n] {
			return
		}
		seen[n] = true
		slaves, _ := os.ReadDir(filepath.Join("/sys/class/block", n, "slaves"))
		if len(slaves) == 0 {
			out = append(out, n)
			return
		}
		for _, s := range slaves {
			walk(s.Name())
		}
	}
	walk(name)
	return out
}

package target

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/nixrescue/nixrescue/runtime/mount"
)

// Serial is the serial number of the whole disk disk (/dev/sdb), as the
// kernel or udev knows it: virtio's serial, NVMe's and some SCSI
// drivers' device/serial, the SCSI unit serial page (VPD 0x80) of SATA
// and SAS disks, or udev's ID_SERIAL_SHORT. "" when none is known (a loop
// device has none).
func Serial(disk string) string {
	name := filepath.Base(disk)
	sys := filepath.Join("/sys/class/block", name)
	for _, f := range []string{"serial", "device/serial"} {
		if b, err := os.ReadFile(filepath.Join(sys, f)); err == nil {
			if s := strings.TrimSpace(string(b)); s != "" {
				return s
			}
		}
	}
	if b, err := os.ReadFile(filepath.Join(sys, "device/vpd_pg80")); err == nil && len(b) > 4 {
		// Page header (4 bytes), then the serial, space-padded.
		if s := strings.TrimSpace(string(bytes.Trim(b[4:], "\x00"))); s != "" {
			return s
		}
	}
	dev, err := os.ReadFile(filepath.Join(sys, "dev"))
	if err != nil {
		return ""
	}
	f, err := os.Open("/run/udev/data/b" + strings.TrimSpace(string(dev)))
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "E:ID_SERIAL_SHORT="); ok {
			return v
		}
	}
	return ""
}

// Where says what t is on, for people and the audit trail: the image
// file, the disk and its serial number (or a loop device's file), or the
// directory.
func (t Target) Where() string {
	switch t.Kind {
	case KindImage:
		return "image " + t.Path
	case KindDisk, KindPartition:
		if s := Serial(t.Disk); s != "" {
			return fmt.Sprintf("disk %s (serial %s)", t.Disk, s)
		}
		if f := mount.BackingFile(filepath.Base(t.Disk)); f != "" {
			return fmt.Sprintf("disk %s (loop device of %s)", t.Disk, f)
		}
		return "disk " + t.Disk
	}
	return "directory " + t.Path
}

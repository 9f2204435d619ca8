package target

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// DiskIDs are what the target's disk is known by among udev's
// /dev/disk/by-id names, so that an fstab entry naming a partition by
// such a name (by-id/ata-MODEL_SERIAL-part3) is taken for the target's
// only when it names the target's disk: the same partition number on
// another disk of the machine is another filesystem.
type DiskIDs struct {
	// Names are by-id names (without /dev/disk/by-id/) known to lead to
	// the disk: this host's udev links, and the names the user or the
	// configuration gives it (DiskAlias, boot.loader.grub.device).
	Names []string `json:"names,omitempty"`
	// Serial is the disk's serial number, which udev's names of it end
	// with (ata-MODEL_SERIAL, nvme-MODEL_SERIAL, virtio-SERIAL): a rescue
	// host without udev has no links, but sysfs has the serial.
	Serial string `json:"serial,omitempty"`
}

// Has tells whether by-id name id (no -partN) names the disk.
func (d DiskIDs) Has(id string) bool {
	if slices.Contains(d.Names, id) {
		return true
	}
	if d.Serial == "" {
		return false
	}
	// udev replaces blanks and other odd bytes with _ in these names.
	s := strings.Map(func(r rune) rune {
		if r <= ' ' || r == '/' {
			return '_'
		}
		return r
	}, strings.TrimSpace(d.Serial))
	return strings.HasSuffix(id, "_"+s) || strings.HasSuffix(id, "-"+s)
}

// Describe lists the disk's names for messages.
func (d DiskIDs) Describe() string {
	var s []string
	for _, n := range d.Names {
		s = append(s, "by-id/"+n)
	}
	if d.Serial != "" {
		s = append(s, "serial "+d.Serial)
	}
	if len(s) == 0 {
		return "none known"
	}
	return strings.Join(s, ", ")
}

// With adds the by-id names among names (/dev/disk/by-id/NAME) to d.
func (d DiskIDs) With(names ...string) DiskIDs {
	out := DiskIDs{Names: slices.Clone(d.Names), Serial: d.Serial}
	for _, n := range names {
		if id, ok := strings.CutPrefix(filepath.Clean(n), "/dev/disk/by-id/"); ok && !strings.Contains(id, "/") && !slices.Contains(out.Names, id) {
			out.Names = append(out.Names, id)
		}
	}
	return out
}

// HostDiskIDs are the names this host knows disk (a /dev path) by: the
// by-id links udev made for it, and its serial number (Serial). A loop
// device has neither.
func HostDiskIDs(disk string) DiskIDs {
	d := DiskIDs{Serial: Serial(disk)}
	if disk == "" {
		return d
	}
	real, err := filepath.EvalSymlinks(disk)
	if err != nil {
		return d
	}
	entries, _ := os.ReadDir("/dev/disk/by-id")
	for _, e := range entries {
		if dest, err := filepath.EvalSymlinks(filepath.Join("/dev/disk/by-id", e.Name())); err == nil && dest == real {
			d.Names = append(d.Names, unescapeUdev(e.Name()))
		}
	}
	return d
}

// byIDPartition splits a by-id name into the disk's id and the
// partition number: ata-X-part3 → ata-X, 3. ok is false for a name of a
// whole disk or a filesystem.
func byIDPartition(name string) (disk, number string, ok bool) {
	m := idPartRE().FindStringSubmatchIndex(name)
	if m == nil {
		return "", "", false
	}
	return name[:m[0]], name[m[2]:m[3]], true
}

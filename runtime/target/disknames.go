package target

import (
	"path/filepath"

	"github.com/nixrescue/nixrescue/runtime/internal/lazyre"
)

// The names Linux gives disks and partitions, as a NixOS configuration
// writes them (boot.loader.grub.device, the fstab).

var (
	wholeDiskRE = lazyre.New(`^/dev/(?:[shv]d[a-z]+|xvd[a-z]+|nvme[0-9]+n[0-9]+|mmcblk[0-9]+|disk/by-(?:id|path|diskseq)/[^/]+)$`)
	partNameRE  = lazyre.New(`^/dev/(?:[shv]d[a-z]+[0-9]+|xvd[a-z]+[0-9]+|nvme[0-9]+n[0-9]+p[0-9]+|mmcblk[0-9]+p[0-9]+|disk/by-(?:id|path)/[^/]+-part[0-9]+|disk/by-(?:uuid|label|partuuid|partlabel)/.+)$`)
	diskOfPart  = lazyre.New(`^(/dev/(?:[shv]d[a-z]+|xvd[a-z]+))[0-9]+$|^(/dev/(?:nvme[0-9]+n[0-9]+|mmcblk[0-9]+))p[0-9]+$`)
)

// IsWholeDiskName tells whether name names a whole disk (as GRUB's device
// must).
func IsWholeDiskName(name string) bool { return wholeDiskRE().MatchString(filepath.Clean(name)) }

// IsPartitionName tells whether name names a partition or a filesystem.
func IsPartitionName(name string) bool { return partNameRE().MatchString(filepath.Clean(name)) }

// DiskOfPartitionName returns the disk of a /dev/sdXN-style partition
// name, or "".
func DiskOfPartitionName(name string) string {
	m := diskOfPart().FindStringSubmatch(name)
	if m == nil {
		return ""
	}
	if m[1] != "" {
		return m[1]
	}
	return m[2]
}

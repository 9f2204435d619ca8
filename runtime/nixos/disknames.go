package nixos

import (
	"path/filepath"
	"strings"

	"github.com/nixrescue/nixrescue/runtime/internal/lazyre"
	"github.com/nixrescue/nixrescue/runtime/rootfs"
)

// configFiles are where a NixOS configuration usually names its boot disk.
var configFiles = []string{"/etc/nixos/configuration.nix", "/etc/nixos/hardware-configuration.nix"}

var (
	grubDeviceRE  = lazyre.New(`grub\.device\s*=\s*"([^"]*)"`)
	grubDevicesRE = lazyre.New(`grub\.devices\s*=\s*\[([^\]]*)\]`)
	quotedRE      = lazyre.New(`"([^"]*)"`)
)

// ConfiguredGrubDevices reads the disks the configuration in /etc/nixos
// (resolved inside root) gives boot.loader.grub.device or .devices, the
// way they are usually written. The next rebuild installs GRUB there.
func ConfiguredGrubDevices(root string) []string {
	var out []string
	for _, f := range configFiles {
		b, err := rootfs.ReadHead(root, f, maxScript)
		if err != nil {
			continue
		}
		text := stripNixComments(string(b))
		for _, m := range grubDeviceRE().FindAllStringSubmatch(text, -1) {
			out = append(out, m[1])
		}
		for _, m := range grubDevicesRE().FindAllStringSubmatch(text, -1) {
			for _, q := range quotedRE().FindAllStringSubmatch(m[1], -1) {
				out = append(out, q[1])
			}
		}
	}
	return out
}

// stripNixComments drops # line comments (not inside strings; good
// enough for the lines that name disks).
func stripNixComments(s string) string {
	var b strings.Builder
	for _, line := range strings.Split(s, "\n") {
		if i := strings.Index(line, "#"); i >= 0 && strings.Count(line[:i], `"`)%2 == 0 {
			line = line[:i]
		}
		b.WriteString(line + "\n")
	}
	return b.String()
}

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

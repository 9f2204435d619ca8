package nixos

import (
	"strings"

	"github.com/nixrescue/nixrescue/runtime/internal/lazyre"
	"github.com/nixrescue/nixrescue/runtime/rootfs"
)

// configFiles are where a NixOS configuration usually names its boot disk.
var configFiles = []string{Configuration, HardwareConfiguration}

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

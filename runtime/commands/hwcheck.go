package commands

import (
	"fmt"
	"slices"
	"strings"

	"github.com/nixrescue/nixrescue/runtime/internal/lazyre"
)

// fileSystemRE finds the fileSystems entries nixos-generate-config
// writes: fileSystems."MP" = { device = "DEV"; fsType = "T"; options = [ … ]; };
var (
	fileSystemRE = lazyre.New(`fileSystems\."((?:[^"\\]|\\.)*)"\s*=\s*\{([^}]*)\}`)
	attrRE       = lazyre.New(`(device|fsType)\s*=\s*"((?:[^"\\]|\\.)*)"`)
	optionsRE    = lazyre.New(`options\s*=\s*\[([^\]]*)\]`)
	quotedRE     = lazyre.New(`"((?:[^"\\]|\\.)*)"`)
)

// UnbootableMounts lists the fileSystems entries of a generated
// hardware configuration that a machine could not mount at boot: a
// filesystem mounted from a file with the loop option, which
// nixos-generate-config writes for a mount whose source is a loop device
// (it names the loop device's backing file, a file of the host it ran
// on), or any disk filesystem whose device is a path outside /dev. Each
// is said in a line.
func UnbootableMounts(generated string) []string {
	var out []string
	for _, m := range fileSystemRE().FindAllStringSubmatch(generated, -1) {
		attrs := map[string]string{}
		for _, a := range attrRE().FindAllStringSubmatch(m[2], -1) {
			attrs[a[1]] = a[2]
		}
		var options []string
		if o := optionsRE().FindStringSubmatch(m[2]); o != nil {
			for _, q := range quotedRE().FindAllStringSubmatch(o[1], -1) {
				options = append(options, q[1])
			}
		}
		dev, fsType := attrs["device"], attrs["fsType"]
		// A bind mount names a directory of the machine; tmpfs and the
		// like name no device.
		bind := fsType == "none" || slices.Contains(options, "bind") || fsType == "tmpfs"
		switch {
		case slices.Contains(options, "loop"):
			out = append(out, fmt.Sprintf("fileSystems.%q is %s mounted with the loop option: a file of this host (nixos-generate-config saw a loop device as its source), not a device of the machine", m[1], dev))
		case !bind && strings.HasPrefix(dev, "/") && !strings.HasPrefix(dev, "/dev/"):
			out = append(out, fmt.Sprintf("fileSystems.%q is on %s, a file, not a device of the machine", m[1], dev))
		}
	}
	return out
}

// Package debs unpacks the Debian packages that hack/install-deps
// downloads into the cache but never installs: Debian's kernel, for the
// rescue host in a VM (hack/vm), and systemd-boot, for the UEFI fixtures
// (hack/fixture). Installing them would touch this host: systemd-boot's
// setup runs bootctl on the host's ESP.
package debs

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// Cache is the directory hack/install-deps downloads into:
// $NIXRESCUE_CACHE, or /var/cache/nixrescue.
func Cache() string {
	if d := os.Getenv("NIXRESCUE_CACHE"); d != "" {
		return d
	}
	return "/var/cache/nixrescue"
}

// File is the downloaded .deb of the package whose name matches pattern
// (a shell pattern: "linux-image-[0-9]*-amd64"), the newest version when
// there are several.
func File(pattern string) (string, error) { return Native.File(pattern) }

// File is the downloaded .deb of a's package whose name matches pattern.
func (a Arch) File(pattern string) (string, error) {
	files, err := filepath.Glob(filepath.Join(a.dir(), pattern+"_*.deb"))
	if err != nil {
		return "", err
	}
	if len(files) == 0 {
		return "", fmt.Errorf("%s has no %s package: run hack/install-deps", a.dir(), pattern)
	}
	sort.Slice(files, func(i, j int) bool { return versionLess(files[i], files[j]) })
	return files[len(files)-1], nil
}

// versionLess orders two .deb files by version, as dpkg does.
func versionLess(a, b string) bool {
	va, vb := debVersion(a), debVersion(b)
	return exec.Command("dpkg", "--compare-versions", va, "lt", vb).Run() == nil
}

// debVersion is the version in a .deb's name (name_version_arch.deb),
// with the epoch colon that apt writes as %3a.
func debVersion(file string) string {
	f := strings.Split(strings.TrimSuffix(filepath.Base(file), ".deb"), "_")
	if len(f) < 2 {
		return "0"
	}
	return strings.ReplaceAll(f[1], "%3a", ":")
}

// Unpack returns the directory the package matching pattern is unpacked
// in (dpkg-deb -x: its files, no maintainer scripts run), unpacking it
// the first time. Unpacking goes to a new directory renamed into place,
// so that a run killed half-way leaves nothing that looks finished.
func Unpack(pattern string) (string, error) { return Native.Unpack(pattern) }

// Unpack returns the directory a's package matching pattern is unpacked
// in, as Unpack.
func (a Arch) Unpack(pattern string) (string, error) {
	deb, err := a.File(pattern)
	if err != nil {
		return "", err
	}
	return unpackOnce(filepath.Join(Cache(), "unpacked", strings.TrimSuffix(filepath.Base(deb), ".deb")), deb)
}

// unpackOnce returns dir, which holds the packages debs unpacked together
// (dpkg-deb -x: their files, no maintainer scripts run), unpacking them
// the first time into a new directory renamed into place, so that a run
// killed half-way leaves nothing that looks finished.
func unpackOnce(dir string, debs ...string) (string, error) {
	if _, err := os.Stat(dir); err == nil {
		return dir, nil
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), ".unpack-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	for _, deb := range debs {
		if out, err := exec.Command("dpkg-deb", "-x", deb, tmp).CombinedOutput(); err != nil {
			return "", fmt.Errorf("dpkg-deb -x %s: %v: %s", deb, err, bytes.TrimSpace(out))
		}
	}
	if err := os.Rename(tmp, dir); err != nil {
		if _, serr := os.Stat(dir); serr == nil {
			return dir, nil // another run unpacked it meanwhile
		}
		return "", err
	}
	return dir, nil
}

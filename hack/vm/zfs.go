package vm

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/nixrescue/nixrescue/hack/debs"
)

// ZFSDebTools are OpenZFS's programs, from the zfsutils-linux
// hack/install-deps downloaded (bookworm-backports'), for a rescue host
// that opens ZFS pools.
var ZFSDebTools = []DebTool{{"zfsutils-linux", "/sbin/zpool"}, {"zfsutils-linux", "/sbin/zfs"}, {"zfsutils-linux", "/sbin/zdb"}}

// ZFSLibraries are the packages of the libraries they need.
var ZFSLibraries = []string{"libnvpair3linux", "libuutil3linux", "libzfs6linux", "libzpool6linux"}

// ZFSModules returns OpenZFS's kernel modules (spl.ko, then zfs.ko) for
// k, built from the zfs-dkms source hack/install-deps downloaded with
// the package's own configure and make against Debian's headers of k, as
// DKMS would build them on a Debian machine; cached under the cache's
// zfs/KERNEL-ZFSVERSION, so that only the first run (a few minutes on
// two cores) builds them.
func ZFSModules(k *Kernel) ([]string, error) {
	deb, err := debs.File("zfs-dkms")
	if err != nil {
		return nil, err
	}
	version := strings.Split(filepath.Base(deb), "_")[1]
	dir := filepath.Join(debs.Cache(), "zfs", k.Version+"-"+version)
	mods := []string{filepath.Join(dir, "spl.ko"), filepath.Join(dir, "zfs.ko")}
	if _, err := os.Stat(mods[1]); err == nil {
		return mods, nil
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return nil, err
	}
	work, err := os.MkdirTemp(filepath.Dir(dir), ".build-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	src, err := unpackZFSBuildTree(k, work)
	if err != nil {
		return nil, err
	}
	headers := filepath.Join(work, "usr/src/linux-headers-"+k.Version)
	common := filepath.Join(work, "usr/src/linux-headers-"+strings.TrimSuffix(k.Version, "-amd64")+"-common")
	script := `set -e
./configure --disable-dependency-tracking --prefix=/usr --with-config=kernel --with-linux="$COMMON" --with-linux-obj="$HEADERS" > build.log 2>&1
make -j"$(nproc)" -C module >> build.log 2>&1
strip --strip-debug module/spl.ko module/zfs.ko`
	cmd := exec.Command("sh", "-c", script)
	cmd.Dir, cmd.Env = src, append(os.Environ(), "COMMON="+common, "HEADERS="+headers)
	if out, err := cmd.CombinedOutput(); err != nil {
		log, _ := os.ReadFile(filepath.Join(src, "build.log"))
		return nil, fmt.Errorf("build OpenZFS %s for %s (gcc and make: hack/install-deps): %v: %s\n%s", version, k.Version, err, bytes.TrimSpace(out), tail(log, 2000))
	}
	out := filepath.Join(work, "out")
	if err := os.Mkdir(out, 0o755); err != nil {
		return nil, err
	}
	for _, m := range []string{"spl.ko", "zfs.ko"} {
		if err := copyTo(filepath.Join(src, "module", m), filepath.Join(out, m), 0o644); err != nil {
			return nil, err
		}
	}
	if err := os.Rename(out, dir); err != nil && !os.IsExist(err) {
		return nil, err
	}
	return mods, nil
}

// unpackZFSBuildTree unpacks the zfs-dkms source and Debian's headers of
// k into work, and points the headers' Makefile (which includes the
// common headers by their installed path) at the unpacked ones. It
// returns the source's directory.
func unpackZFSBuildTree(k *Kernel, work string) (string, error) {
	flavourless := strings.TrimSuffix(k.Version, "-amd64")
	for _, pattern := range []string{"zfs-dkms", "linux-headers-" + k.Version, "linux-headers-" + flavourless + "-common", "linux-kbuild-[0-9]*"} {
		f, err := debs.File(pattern)
		if err != nil {
			return "", err
		}
		if out, err := exec.Command("dpkg-deb", "-x", f, work).CombinedOutput(); err != nil {
			return "", fmt.Errorf("dpkg-deb -x %s: %v: %s", f, err, bytes.TrimSpace(out))
		}
	}
	makefile := filepath.Join(work, "usr/src/linux-headers-"+k.Version, "Makefile")
	common := filepath.Join(work, "usr/src/linux-headers-"+flavourless+"-common")
	if err := os.WriteFile(makefile, []byte("include "+common+"/Makefile\n"), 0o644); err != nil {
		return "", err
	}
	srcs, err := filepath.Glob(filepath.Join(work, "usr/src/zfs-*"))
	if err != nil || len(srcs) != 1 {
		return "", fmt.Errorf("the zfs-dkms package has no one usr/src/zfs-VERSION")
	}
	return srcs[0], nil
}

// tail is the last n bytes of b.
func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

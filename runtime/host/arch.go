package host

import (
	"bufio"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
)

// Arch is this host's architecture as Nix names it (the first part of
// x86_64-linux, aarch64-linux).
func Arch() string {
	switch runtime.GOARCH {
	case "amd64":
		return "x86_64"
	case "arm64":
		return "aarch64"
	case "386":
		return "i686"
	}
	return runtime.GOARCH
}

// BinfmtDir is where binfmt_misc is mounted.
const BinfmtDir = "/proc/sys/fs/binfmt_misc"

// Emulator says how this host runs programs of architecture arch (as Nix
// names it): "" natively; else the binfmt_misc handler that runs them
// (qemu-user), usable inside a container only with its F flag (the
// interpreter opened when it was registered: the target has none of
// this host's files). ok is false when nothing runs them.
func Emulator(arch string) (handler string, ok bool) {
	if arch == Arch() || arch == "i686" && Arch() == "x86_64" {
		return "", true
	}
	entries, err := os.ReadDir(BinfmtDir)
	if err != nil {
		return "", false
	}
	for _, e := range entries {
		if !strings.Contains(e.Name(), arch) {
			continue
		}
		f, err := os.Open(filepath.Join(BinfmtDir, e.Name()))
		if err != nil {
			continue
		}
		enabled, fixed := readBinfmt(f)
		f.Close()
		if enabled && fixed {
			return e.Name(), true
		}
	}
	return "", false
}

// readBinfmt reads a binfmt_misc handler's entry: whether it is enabled
// and has the F flag.
func readBinfmt(r io.Reader) (enabled, fixed bool) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		l := sc.Text()
		switch {
		case l == "enabled":
			enabled = true
		case strings.HasPrefix(l, "flags: "):
			fixed = strings.Contains(strings.TrimPrefix(l, "flags: "), "F")
		}
	}
	return enabled, fixed
}

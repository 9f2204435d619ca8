package debs

import (
	"bufio"
	"bytes"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Arch is a Debian architecture whose packages hack/install-deps
// downloads: this host's own (amd64), or arm64 for the aarch64 fixtures
// and rescue host, which run here through qemu-user.
type Arch struct {
	// Name is Debian's name (amd64, arm64); Nix is the architecture as a
	// NixOS system's name has it (x86_64, aarch64).
	Name, Nix string
	// Triplet is the multiarch directory of its libraries.
	Triplet string
	// Loader is glibc's dynamic loader, the ELF interpreter its programs
	// name.
	Loader string
	// Qemu is qemu-user's program that runs it on this host ("" for the
	// host's own).
	Qemu string
}

// The architectures of hack/install-deps's downloads.
var (
	Native = Arch{Name: "amd64", Nix: "x86_64", Triplet: "x86_64-linux-gnu", Loader: "/lib64/ld-linux-x86-64.so.2"}
	Arm64  = Arch{Name: "arm64", Nix: "aarch64", Triplet: "aarch64-linux-gnu", Loader: "/lib/ld-linux-aarch64.so.1", Qemu: "qemu-aarch64-static"}
)

// ArchOf is the architecture of a NixOS system's architecture name
// (x86_64, aarch64); "" is this host's.
func ArchOf(nix string) (Arch, error) {
	switch nix {
	case "", Native.Nix:
		return Native, nil
	case Arm64.Nix:
		return Arm64, nil
	}
	return Arch{}, fmt.Errorf("no Debian packages of %s here (x86_64 and aarch64 only)", nix)
}

// dir is where a's packages are downloaded.
func (a Arch) dir() string {
	if a.Name == Native.Name {
		return filepath.Join(Cache(), "debs")
	}
	return filepath.Join(Cache(), "debs-"+a.Name)
}

// Sysroot is a directory holding all of a's downloaded library packages
// (lib*, zlib1g), unpacked together as they would be installed: where a's
// programs find their libraries on this host. Unpacked once, into a new
// directory renamed into place.
func (a Arch) Sysroot() (string, error) {
	libs, err := filepath.Glob(filepath.Join(a.dir(), "lib*_"+a.Name+".deb"))
	zlib, _ := filepath.Glob(filepath.Join(a.dir(), "zlib1g_*_"+a.Name+".deb"))
	libs = append(libs, zlib...)
	if err != nil || len(libs) == 0 {
		return "", fmt.Errorf("%s has no library packages: run hack/install-deps", a.dir())
	}
	return unpackOnce(filepath.Join(Cache(), "unpacked", "sysroot-"+a.Name), libs...)
}

// LibraryDirs are the directories of sysroot where a's libraries are.
func (a Arch) LibraryDirs(sysroot string) []string {
	return []string{filepath.Join(sysroot, "lib", a.Triplet), filepath.Join(sysroot, "usr/lib", a.Triplet)}
}

// Libraries lists the libraries an ELF program of a needs, as files of
// this host (the interpreter among them): ldd's answer, for a foreign
// architecture from its own loader's --list (run by qemu-user), searching
// libPath first, then a's sysroot. A static program needs none.
func (a Arch) Libraries(file string, libPath []string) ([]string, error) {
	if dynamic, err := isDynamic(file); err != nil || !dynamic {
		return nil, err
	}
	var cmd *exec.Cmd
	loader := "" // a foreign loader's file here
	if a.Qemu == "" {
		cmd = exec.Command("ldd", file)
		if len(libPath) > 0 {
			cmd.Env = append(os.Environ(), "LD_LIBRARY_PATH="+strings.Join(libPath, ":"))
		}
	} else {
		root, err := a.Sysroot()
		if err != nil {
			return nil, err
		}
		dirs := append(append([]string{}, libPath...), a.LibraryDirs(root)...)
		loader = filepath.Join(root, "lib", a.Triplet, filepath.Base(a.Loader))
		cmd = exec.Command(a.Qemu, loader, "--library-path", strings.Join(dirs, ":"), "--list", file)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("list the libraries of %s: %v: %s", file, err, bytes.TrimSpace(stderr.Bytes()))
	}
	return parseLdd(out, a, loader)
}

// isDynamic tells whether an ELF file names an interpreter (a static
// program, or a file that is no ELF, needs no library).
func isDynamic(file string) (bool, error) {
	f, err := elf.Open(file)
	if err != nil {
		if _, ok := err.(*elf.FormatError); ok {
			return false, nil
		}
		return false, err
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return true, nil
		}
	}
	return false, nil
}

// parseLdd reads ldd's (the loader's --list) lines: the libraries found,
// and the interpreter (loader, when not ""; a foreign one names itself as
// the program sees it); one that was not found is an error.
func parseLdd(out []byte, a Arch, loader string) ([]string, error) {
	var libs []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) >= 3 && f[1] == "=>" && strings.HasPrefix(f[2], "/"):
			libs = append(libs, f[2])
		case len(f) >= 3 && f[1] == "=>" && f[2] == "not":
			return nil, fmt.Errorf("%s (%s) is not among the libraries here: run hack/install-deps", f[0], a.Name)
		case len(f) >= 1 && strings.HasPrefix(f[0], "/") && loader != "":
			libs = append(libs, loader)
		case len(f) >= 1 && strings.HasPrefix(f[0], "/"):
			libs = append(libs, f[0])
		}
	}
	return libs, nil
}

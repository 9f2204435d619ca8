package vm

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/nixrescue/nixrescue/hack/debs"
)

// Kernel is Debian's kernel package, unpacked.
type Kernel struct {
	// Version is the modules' directory name: 6.1.0-57-amd64.
	Version string
	// Image is the kernel (vmlinuz, an EFI stub too).
	Image string
	// Tree is where the package is unpacked: Tree/lib/modules/Version.
	Tree string
	// Arch is its architecture.
	Arch debs.Arch
}

// DebianKernel unpacks the kernel hack/install-deps downloaded (the one
// Debian's linux-image-amd64 depends on) and indexes its modules (depmod
// -b), once.
func DebianKernel() (*Kernel, error) { return DebianKernelFor(debs.Native) }

// DebianKernelFor is DebianKernel of architecture a (arm64's: an
// uncompressed Image, an EFI stub too, that U-Boot boots as it is).
func DebianKernelFor(a debs.Arch) (*Kernel, error) {
	tree, err := a.Unpack("linux-image-[0-9]*-" + a.Name)
	if err != nil {
		return nil, err
	}
	mods, err := os.ReadDir(filepath.Join(tree, "lib/modules"))
	if err != nil || len(mods) != 1 {
		return nil, fmt.Errorf("%s: expected one lib/modules/VERSION", tree)
	}
	k := &Kernel{Version: mods[0].Name(), Tree: tree, Arch: a, Image: filepath.Join(tree, "boot", "vmlinuz-"+mods[0].Name())}
	if _, err := os.Stat(k.Image); err != nil {
		return nil, fmt.Errorf("the kernel package has no image: %w", err)
	}
	if _, err := os.Stat(filepath.Join(tree, "lib/modules", k.Version, "modules.dep")); err != nil {
		if out, err := exec.Command("depmod", "-b", tree, k.Version).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("depmod (install kmod: hack/install-deps): %v: %s", err, bytes.TrimSpace(out))
		}
	}
	return k, nil
}

// softDependencies are modules a mount needs that modprobe
// --show-depends does not list: ext4's checksums need crc32c, vfat's
// file names a code page and a character set.
var softDependencies = map[string][]string{
	"ext4": {"crc32c_generic"},
	"vfat": {"nls_cp437", "nls_ascii"},
}

// moduleFiles lists the .ko files (paths inside the tree) that loading
// names needs, dependencies first, each once.
func (k *Kernel) moduleFiles(names []string) ([]string, error) {
	seen := map[string]bool{}
	var files []string
	var add func(name string) error
	add = func(name string) error {
		for _, soft := range softDependencies[name] {
			if err := add(soft); err != nil {
				return err
			}
		}
		out, err := exec.Command("modprobe", "-d", k.Tree, "-S", k.Version, "--show-depends", name).CombinedOutput()
		if err != nil {
			return fmt.Errorf("modprobe --show-depends %s: %v: %s", name, err, bytes.TrimSpace(out))
		}
		sc := bufio.NewScanner(bytes.NewReader(out))
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) < 2 || f[0] != "insmod" {
				continue // builtin
			}
			rel := strings.TrimPrefix(f[1], strings.TrimSuffix(k.Tree, "/"))
			if !seen[rel] {
				seen[rel] = true
				files = append(files, rel)
			}
		}
		return nil
	}
	for _, n := range names {
		if err := add(n); err != nil {
			return nil, err
		}
	}
	return files, nil
}

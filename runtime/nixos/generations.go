package nixos

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nixrescue/nixrescue/runtime/internal/lazyre"
	"github.com/nixrescue/nixrescue/runtime/rootfs"
)

// Generation is one generation of the system profile.
type Generation struct {
	Number int `json:"number"`
	// Date is when the generation was made (the link's time).
	Date time.Time `json:"date"`
	// StorePath is the system it names; Missing when the store no longer
	// has it.
	StorePath    string `json:"store_path"`
	Missing      bool   `json:"missing,omitempty"`
	NixOSVersion string `json:"nixos_version,omitempty"`
	Kernel       string `json:"kernel,omitempty"`
	Current      bool   `json:"current"`
}

// maxGenerations bounds how many generation links are read.
const maxGenerations = 100000

var genLinkRE = lazyre.New(`^system-([0-9]{1,9})-link$`)

// Generations lists the system profile's generations, oldest first.
func Generations(root string) ([]Generation, error) {
	dir, err := rootfs.Join(root, path.Dir(SystemProfile))
	if err != nil {
		return nil, fmt.Errorf("resolve the profile directory: %w", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read the system profiles: %w", err)
	}
	current := generationOf(root, SystemProfile)
	var gens []Generation
	for _, e := range entries {
		m := genLinkRE().FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		if len(gens) >= maxGenerations {
			return nil, fmt.Errorf("more than %d system generations: not a profile nixrescue can list", maxGenerations)
		}
		n, _ := strconv.Atoi(m[1])
		g := Generation{Number: n, Current: n == current}
		link := filepath.Join(dir, e.Name())
		if st, err := os.Lstat(link); err == nil {
			g.Date = st.ModTime().UTC()
		}
		full, err := rootfs.Join(root, GenerationLink(n))
		if err != nil {
			g.Missing = true
			gens = append(gens, g)
			continue
		}
		rel, _ := filepath.Rel(root, full)
		g.StorePath = "/" + filepath.ToSlash(rel)
		if _, err := os.Stat(full); err != nil {
			g.Missing = true
		}
		g.NixOSVersion, g.Kernel = describeSystem(root, g.StorePath)
		gens = append(gens, g)
	}
	sort.Slice(gens, func(i, j int) bool { return gens[i].Number < gens[j].Number })
	return gens, nil
}

var (
	systemNameRE = lazyre.New(`-nixos-system-.*-([0-9]{2}\.[0-9]{2}[^-/]*)$`)
	kernelNameRE = lazyre.New(`^/nix/store/[0-9a-z]{32}-linux-([0-9][^/]*)/`)
)

// IsNixOSSystem tells whether p (inside root) is a NixOS system: what
// switch-to-configuration and the bootloader need of it.
func IsNixOSSystem(root, p string) bool {
	return Exists(root, p+"/bin/switch-to-configuration") && Exists(root, p+"/nixos-version")
}

// CurrentGeneration is the generation the system profile points at, 0
// when it points at no generation link.
func CurrentGeneration(root string) int { return generationOf(root, SystemProfile) }

// SwitchGeneration points the system profile at generation n, as
// nix-env --switch-generation does: a new link made beside it and renamed
// over it, so the profile is never missing. The profile directory is
// resolved inside root.
func SwitchGeneration(root string, n int) error {
	_, err := withProfileDir(root, func(fd int) (string, error) {
		tmp := fmt.Sprintf(".system-%d.nixrescue-tmp", os.Getpid())
		_ = unix.Unlinkat(fd, tmp, 0)
		if err := unix.Symlinkat(fmt.Sprintf("system-%d-link", n), fd, tmp); err != nil {
			return "", fmt.Errorf("make the profile link: %w", err)
		}
		if err := unix.Renameat(fd, tmp, fd, path.Base(SystemProfile)); err != nil {
			_ = unix.Unlinkat(fd, tmp, 0)
			return "", fmt.Errorf("switch the profile: %w", err)
		}
		return "", nil
	})
	return err
}

// describeSystem reads the NixOS version and kernel version of a system
// as the store paths name them.
func describeSystem(root, system string) (version, kernel string) {
	if m := systemNameRE().FindStringSubmatch(system); m != nil {
		version = m[1]
	}
	if k, err := rootfs.Readlink(root, system+"/kernel"); err == nil {
		if m := kernelNameRE().FindStringSubmatch(k); m != nil {
			kernel = m[1]
		}
	}
	return version, kernel
}

// DeleteGeneration removes generation n's link from the system profile,
// as nix-env --delete-generations does (its system stays in the store
// until garbage collection), and returns where it pointed, for
// RestoreGeneration. The current generation is never deleted.
func DeleteGeneration(root string, n int) (string, error) {
	if n == CurrentGeneration(root) {
		return "", fmt.Errorf("generation %d is the current one: it is not deleted", n)
	}
	return withProfileDir(root, func(fd int) (string, error) {
		name := fmt.Sprintf("system-%d-link", n)
		dest, err := readlinkat(fd, name)
		if err != nil {
			return "", fmt.Errorf("read generation %d's link: %w", n, err)
		}
		if err := unix.Unlinkat(fd, name, 0); err != nil {
			return "", fmt.Errorf("delete generation %d: %w", n, err)
		}
		return dest, nil
	})
}

// RestoreGeneration makes generation n's link again, pointing at dest.
func RestoreGeneration(root string, n int, dest string) error {
	_, err := withProfileDir(root, func(fd int) (string, error) {
		return "", unix.Symlinkat(dest, fd, fmt.Sprintf("system-%d-link", n))
	})
	return err
}

// withProfileDir runs fn on the profile directory, resolved inside root.
func withProfileDir(root string, fn func(fd int) (string, error)) (string, error) {
	dir, err := rootfs.Join(root, path.Dir(SystemProfile))
	if err != nil {
		return "", err
	}
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", fmt.Errorf("open the profile directory: %w", err)
	}
	defer unix.Close(fd)
	return fn(fd)
}

func readlinkat(fd int, name string) (string, error) {
	b := make([]byte, 4096)
	n, err := unix.Readlinkat(fd, name, b)
	if err != nil {
		return "", err
	}
	return string(b[:n]), nil
}

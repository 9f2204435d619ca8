// Package nixos holds what nixrescue knows about a NixOS root: how to tell
// one, its system profile and generations, which system a session
// activates, the environment NixOS programs expect, and the hostname.
//
// Every path of the target is resolved inside the root
// (runtime/rootfs), never against the host: the
// target's links are absolute and mean the target's own files.
package nixos

import (
	"errors"
	"fmt"
	"os"
	"path"
	"strconv"
	"strings"

	"github.com/nixrescue/nixrescue/runtime/hint"
	"github.com/nixrescue/nixrescue/runtime/internal/lazyre"
	"github.com/nixrescue/nixrescue/runtime/rootfs"
)

// Paths inside a NixOS root, each named here only.
const (
	SystemProfile = "/nix/var/nix/profiles/system"
	// ProfilesDir holds the profiles: the system's generations, default.
	ProfilesDir   = "/nix/var/nix/profiles"
	NixOSMarker   = "/etc/NIXOS"
	HostnameFile  = "/etc/hostname"
	Configuration = "/etc/nixos/configuration.nix"
	// GrubConfig is the menu install-grub.pl writes; LoaderConf
	// systemd-boot's loader configuration on the ESP mounted at /boot.
	GrubConfig = "/boot/grub/grub.cfg"
	LoaderConf = "/boot/loader/loader.conf"
	// Flake is the flake nixos-rebuild builds instead when it exists.
	Flake = "/etc/nixos/flake.nix"
	// HardwareConfiguration is what nixos-generate-config writes.
	HardwareConfiguration = "/etc/nixos/hardware-configuration.nix"
	// SystemFstab is the fstab the system profile's etc holds (the
	// system's own, when /etc/fstab is a link into the store).
	SystemFstab = SystemProfile + "/etc/fstab"
	// DefaultHostname is NixOS's default networking.hostName.
	DefaultHostname = "nixos"
)

// ErrNotNixOS says a directory holds no NixOS root.
var ErrNotNixOS = errors.New("not a NixOS root")

// IsRoot tells whether dir, a filesystem discovery probes, holds a NixOS
// root: /etc/NIXOS, or an /etc beside a system profile (a btrfs top level
// that only holds a nix subvolume is not a root). A tree already mounted
// needs less (CheckRoot): an ephemeral root gets its /etc at activation.
func IsRoot(dir string) bool {
	return exists(dir, NixOSMarker) || exists(dir, "/etc") && exists(dir, SystemProfile)
}

func exists(dir, p string) bool { _, err := rootfs.Lstat(dir, p); return err == nil }

// CheckRoot returns nil when root is a directory holding a mounted NixOS
// root: /etc/NIXOS, or a system profile (a tmpfs root with its /nix, as
// stage 1 leaves it, has no /etc yet); it says otherwise why not.
func CheckRoot(root string) error {
	st, err := os.Stat(root)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return &hint.Error{Subject: root, Err: errors.New("no such directory"), Fix: "mount the NixOS root there first, or name the right directory"}
	case err != nil:
		return &hint.Error{Subject: root, Err: err}
	case !st.IsDir():
		return &hint.Error{Subject: root, Err: errors.New("not a directory"), Fix: "name the directory where the NixOS root is mounted"}
	}
	if exists(root, NixOSMarker) || exists(root, SystemProfile) {
		return nil
	}
	return &hint.Error{Subject: root, Err: ErrNotNixOS, Fix: "it has neither " + NixOSMarker + " nor " + SystemProfile + "; mount the NixOS root partition there"}
}

// System is the NixOS system a session activates.
type System struct {
	// Path is how the target names it: a profile link or a store path.
	Path string
	// StorePath is where Path leads inside the root.
	StorePath string
	// Generation is the profile generation, or 0 when Path is not one.
	Generation int
}

// SystemChoice is what the user asked for: a path, a generation, or
// (both empty) the current system profile.
type SystemChoice struct {
	Path       string
	Generation int
}

// GenerationLink is the profile link of generation n.
func GenerationLink(n int) string {
	return fmt.Sprintf("%s-%d-link", SystemProfile, n)
}

// ResolveSystem finds the system to activate inside root.
func ResolveSystem(root string, c SystemChoice) (System, error) {
	var s System
	switch {
	case c.Path != "" && c.Generation != 0:
		return s, hint.Errorf("{System} and {Generation} both name a system: give one")
	case c.Path != "":
		if !path.IsAbs(c.Path) {
			return s, hint.Errorf("{System %s}: give the path as the target sees it, starting with /nix/store or /nix/var/nix/profiles", c.Path)
		}
		s.Path = path.Clean(c.Path)
	case c.Generation < 0:
		return s, hint.Errorf("{Generation %d}: generations are numbered from 1", c.Generation)
	case c.Generation > 0:
		s.Path = GenerationLink(c.Generation)
		s.Generation = c.Generation
	default:
		s.Path = SystemProfile
	}
	if _, err := rootfs.Lstat(root, path.Dir(s.Path)); err != nil && c.Generation > 0 {
		return s, fmt.Errorf("generation %d: the target has no system profile directory: %w", c.Generation, err)
	}
	full, err := rootfs.Join(root, s.Path)
	if err != nil {
		return s, fmt.Errorf("resolve %s inside the target: %w", s.Path, err)
	}
	if s.StorePath, err = rootfs.Resolve(root, s.Path); err != nil {
		return s, fmt.Errorf("resolve %s inside the target: %w", s.Path, err)
	}
	if _, err := rootfs.Lstat(root, s.Path); errors.Is(err, os.ErrNotExist) {
		switch {
		case c.Generation > 0:
			return s, fmt.Errorf("generation %d does not exist in the target (no %s): pick one that does", c.Generation, s.Path)
		case c.Path != "":
			return s, hint.Errorf("{System %s} does not exist in the target", s.Path)
		default:
			return s, hint.Errorf("the target has no system profile (%s): name a system with {System PATH}", s.Path)
		}
	}
	st, err := os.Stat(full)
	if err != nil {
		return s, hint.Errorf("%s points to %s, which does not exist in the target: pick another system with {Generation N} or {System PATH}", s.Path, s.StorePath)
	}
	if !st.IsDir() {
		return s, hint.Errorf("%s leads to %s, which is not a system directory: pick another with {Generation N} or {System PATH}", s.Path, s.StorePath)
	}
	if s.Generation == 0 {
		s.Generation = generationOf(root, s.Path)
	}
	return s, nil
}

// generationOf follows the profile link to its generation link, if any.
func generationOf(root, p string) int {
	if p != SystemProfile {
		return 0
	}
	link, err := rootfs.Readlink(root, p)
	if err != nil {
		return 0
	}
	m := genLinkRE().FindStringSubmatch(path.Base(link))
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// Exists tells whether p (inside root) leads to something, links resolved
// inside root.
func Exists(root, p string) bool {
	full, err := rootfs.Join(root, p)
	if err != nil {
		return false
	}
	_, err = os.Stat(full)
	return err == nil
}

// maxHostnameFile bounds what is read of the target's /etc/hostname.
const maxHostnameFile = 4096

var hostnameRE = lazyre.New(`^[A-Za-z0-9]([A-Za-z0-9.-]{0,62})$`)

// Hostname reads the target's hostname from /etc/hostname, resolved inside
// root, else from the etc of its system (system, a path inside root; ""
// for none), which activation links /etc/hostname to: a root made afresh
// at each boot has no /etc before it; DefaultHostname when neither has
// one.
func Hostname(root, system string) (string, error) {
	b, err := rootfs.ReadHead(root, HostnameFile, maxHostnameFile)
	if errors.Is(err, os.ErrNotExist) && system != "" {
		b, err = rootfs.ReadHead(root, system+"/etc/hostname", maxHostnameFile)
	}
	if errors.Is(err, os.ErrNotExist) {
		return DefaultHostname, nil
	} else if err != nil {
		return "", fmt.Errorf("read the target's /etc/hostname: %w: fix or remove the file", err)
	}
	name, _, _ := strings.Cut(string(b), "\n")
	name = strings.TrimSpace(name)
	if name == "" {
		return DefaultHostname, nil
	}
	if !hostnameRE().MatchString(name) {
		return "", fmt.Errorf("the target's /etc/hostname holds %.40q, not a hostname: fix the file", name)
	}
	return name, nil
}

// SystemArch is the architecture a NixOS system at storePath (inside
// root) is built for, as its system file says ("x86_64" of
// x86_64-linux), or "" when it does not say.
func SystemArch(root, storePath string) string {
	b, err := rootfs.ReadHead(root, storePath+"/system", 64)
	if err != nil {
		return ""
	}
	arch, _, _ := strings.Cut(strings.TrimSpace(string(b)), "-")
	return arch
}

package nixos

import (
	"encoding/xml"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
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

// Bootloader is what the system's configuration installs.
type Bootloader struct {
	// Kind is grub-bios, grub-efi, systemd-boot, or unknown.
	Kind string `json:"kind"`
	// Devices are the disks GRUB for BIOS installs to, as the target names
	// them (boot.loader.grub.devices).
	Devices []string `json:"devices,omitempty"`
	// Installer is the store path of the system's installBootLoader.
	Installer string `json:"installer,omitempty"`
	// Config is GRUB's grub-config.xml, when GRUB.
	Config string `json:"config,omitempty"`
	// ESP is where the configuration mounts the EFI system partition
	// it installs to (boot.loader.efi.efiSysMountPoint), for systemd-boot
	// and GRUB with efiSupport.
	ESP string `json:"esp,omitempty"`
}

// DefaultESP is boot.loader.efi.efiSysMountPoint's default.
const DefaultESP = "/boot"

// espRE matches where systemd-boot-builder.py (as substituted by
// systemd-boot.nix) says the ESP is: EFI_SYS_MOUNT_POINT = "/boot", or
// = Path("/boot") in newer ones.
var espRE = lazyre.New(`EFI_SYS_MOUNT_POINT\s*=\s*(?:Path\()?["']?(/[^"')\s]*)`)

// storeRefRE matches a store path and a path inside it.
var storeRefRE = lazyre.New(`/nix/store/[0-9a-z]{32}-[A-Za-z0-9+._?=-]+(/[A-Za-z0-9+._?=/-]+)?`)

// maxScript bounds what is read of a script to find store paths in it.
const maxScript = 1 << 20

// DetectBootloader reads the system's switch-to-configuration for the
// installBootLoader it runs (nixos/modules/system/activation/top-level.nix
// substitutes it), and, for GRUB, the grub-config.xml that install-grub.sh
// hands to install-grub.pl.
func DetectBootloader(root, system string) Bootloader {
	b := Bootloader{Kind: "unknown"}
	for _, ref := range storeRefs(root, system+"/bin/switch-to-configuration") {
		switch {
		case strings.HasSuffix(ref, "install-grub.sh"):
			b.Installer = ref
			b.Kind = "grub-bios"
			for _, cfg := range storeRefs(root, ref) {
				if strings.HasSuffix(cfg, "grub-config.xml") {
					b.Config = cfg
					b.Devices, b.Kind, b.ESP = readGrubConfig(root, cfg)
				}
			}
			return b
		case strings.Contains(ref, "systemd-boot"):
			b.Installer, b.Kind, b.ESP = ref, "systemd-boot", systemdBootESP(root, ref)
			return b
		}
	}
	return b
}

// systemdBootESP reads where systemd-boot's installer puts the ESP: in
// the installer, or in a file it names (install-systemd-boot.sh runs
// the substituted systemd-boot-builder.py).
func systemdBootESP(root, installer string) string {
	for _, f := range append([]string{installer}, storeRefs(root, installer)...) {
		b, err := rootfs.ReadHead(root, f, maxScript)
		if err != nil {
			continue
		}
		if m := espRE().FindSubmatch(b); m != nil {
			return string(m[1])
		}
	}
	return DefaultESP
}

// storeRefs lists the store paths named in a file of the target.
func storeRefs(root, p string) []string {
	b, err := rootfs.ReadHead(root, p, maxScript)
	if err != nil {
		return nil
	}
	return storeRefRE().FindAllString(string(b), -1)
}

// readGrubConfig reads the devices, EFI support and ESP of a
// grub-config.xml (builtins.toXML of the GRUB module's settings).
func readGrubConfig(root, p string) ([]string, string, string) {
	f, err := rootfs.Open(root, p)
	if err != nil {
		return nil, "grub-bios", ""
	}
	defer f.Close()
	type value struct {
		Value string `xml:"value,attr"`
	}
	type attr struct {
		Name   string  `xml:"name,attr"`
		Bool   *value  `xml:"bool"`
		String *value  `xml:"string"`
		List   []value `xml:"list>string"`
	}
	var doc struct {
		Attrs []attr `xml:"attrs>attr"`
	}
	if err := xml.NewDecoder(io.LimitReader(f, maxScript)).Decode(&doc); err != nil {
		return nil, "grub-bios", ""
	}
	kind, esp := "grub-bios", DefaultESP
	var devices []string
	for _, a := range doc.Attrs {
		switch a.Name {
		case "devices":
			for _, v := range a.List {
				if v.Value != "nodev" {
					devices = append(devices, v.Value)
				}
			}
		case "efiSupport":
			if a.Bool != nil && a.Bool.Value == "true" {
				kind = "grub-efi"
			}
		case "efiSysMountPoint":
			if a.String != nil && a.String.Value != "" {
				esp = a.String.Value
			}
		}
	}
	if kind != "grub-efi" {
		esp = ""
	}
	return devices, kind, esp
}

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
	dir, err := rootfs.Join(root, path.Dir(SystemProfile))
	if err != nil {
		return err
	}
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open the profile directory: %w", err)
	}
	defer unix.Close(fd)
	tmp := fmt.Sprintf(".system-%d.nixrescue-tmp", os.Getpid())
	_ = unix.Unlinkat(fd, tmp, 0)
	if err := unix.Symlinkat(fmt.Sprintf("system-%d-link", n), fd, tmp); err != nil {
		return fmt.Errorf("make the profile link: %w", err)
	}
	if err := unix.Renameat(fd, tmp, fd, path.Base(SystemProfile)); err != nil {
		_ = unix.Unlinkat(fd, tmp, 0)
		return fmt.Errorf("switch the profile: %w", err)
	}
	return nil
}

package nixos

// The bootloaders NixOS installs, as one registry: each kind's name, the
// firmware that starts it, the architectures it serves and the file that
// holds its menu; and how a system's kind is read from what its
// switch-to-configuration runs.

import (
	"encoding/xml"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/nixrescue/nixrescue/runtime/internal/lazyre"
	"github.com/nixrescue/nixrescue/runtime/rootfs"
)

// Kind names a kind of bootloader.
type Kind string

// The kinds nixrescue knows, and the one it does not.
const (
	GRUBBIOS      Kind = "grub-bios"
	GRUBEFI       Kind = "grub-efi"
	SystemdBoot   Kind = "systemd-boot"
	UnknownLoader Kind = "unknown"
)

// Loader is what nixrescue knows of a kind of bootloader.
type Loader struct {
	Kind Kind
	// EFI says UEFI firmware starts it (from an ESP, through an NVRAM
	// entry or the fallback path); else a BIOS, from the disk's boot
	// sector.
	EFI bool
	// Arches are the CPU architectures (as a system's name has them:
	// x86_64, aarch64 …) it boots here.
	Arches []string
	// Menu is the file, inside the target's root, that holds its entries
	// and its default.
	Menu string
	// EFIBinary is its loader's file name on the ESP, %s the
	// architecture's UEFI name (x64, aa64); "" for a BIOS loader.
	EFIBinary string
	// ReadDefault reads, from Menu in root, the entry it boots by
	// default and its generation (gens maps systems to numbers); false
	// when there is no Menu.
	ReadDefault func(root string, gens []Generation) (BootDefault, bool)
	// Entries reads its menu from root's /boot: its entries, the default
	// marked; false when the menu is not there.
	Entries func(root string, b Bootloader, gens []Generation) ([]BootEntry, bool)
	// FileDirs are the directories (inside the root) where its installer
	// copies kernels and initrds.
	FileDirs func(b Bootloader) []string
}

// EFIBinaryFor is l's loader file on the ESP for the UEFI architecture
// efiArch (grubx64.efi).
func (l Loader) EFIBinaryFor(efiArch string) string { return fmt.Sprintf(l.EFIBinary, efiArch) }

// Loaders are the kinds nixrescue knows: a new kind is one more entry
// (its menu, how its default and entries are read), its installer in
// Installers, and boot-test's aim of its menu
// (runtime/commands/boottest_aim.go); extlinux.go adds one so.
var Loaders = []Loader{
	{Kind: GRUBBIOS, Arches: []string{"x86_64", "i686"}, Menu: GrubConfig, ReadDefault: grubDefault, Entries: grubEntries, FileDirs: grubFileDirs},
	{Kind: GRUBEFI, EFI: true, Arches: []string{"x86_64", "aarch64"}, Menu: GrubConfig, EFIBinary: "grub%s.efi", ReadDefault: grubDefault, Entries: grubEntries, FileDirs: grubFileDirs},
	{Kind: SystemdBoot, EFI: true, Arches: []string{"x86_64", "aarch64"}, Menu: LoaderConf, EFIBinary: "systemd-boot%s.efi", ReadDefault: sdbootDefault, Entries: sdbootEntries, FileDirs: sdbootFileDirs},
}

// LoaderOf is what nixrescue knows of kind k; ok is false for a kind it
// does not know.
func LoaderOf(k Kind) (l Loader, ok bool) {
	i := slices.IndexFunc(Loaders, func(l Loader) bool { return l.Kind == k })
	if i < 0 {
		return Loader{Kind: k}, false
	}
	return Loaders[i], true
}

// EFI tells whether UEFI firmware starts a bootloader of kind k.
func (k Kind) EFI() bool {
	l, _ := LoaderOf(k)
	return l.EFI
}

// Known tells whether nixrescue knows kind k.
func (k Kind) Known() bool {
	_, ok := LoaderOf(k)
	return ok
}

// Bootloader is what the system's configuration installs.
type Bootloader struct {
	// Kind is one of Loaders' kinds, or UnknownLoader.
	Kind Kind `json:"kind"`
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
	for _, ref := range storeRefs(root, system+"/bin/switch-to-configuration") {
		for _, in := range Installers {
			if in.Is(ref) {
				return in.Read(root, ref)
			}
		}
	}
	return Bootloader{Kind: UnknownLoader}
}

// Installer is a bootloader installer NixOS's modules make (one may
// install more than one kind: install-grub.sh, GRUB for BIOS or EFI).
type Installer struct {
	// Is tells whether a store path is this installer.
	Is func(ref string) bool
	// Read reads what the installer at ref installs, from root.
	Read func(root, ref string) Bootloader
}

// Installers are the installers DetectBootloader knows: a new kind of
// bootloader is one more entry here, and one in Loaders.
var Installers = []Installer{
	{Is: func(ref string) bool { return strings.HasSuffix(ref, "install-grub.sh") }, Read: readGRUBInstaller},
	{Is: func(ref string) bool { return strings.Contains(ref, "systemd-boot") }, Read: func(root, ref string) Bootloader {
		return Bootloader{Installer: ref, Kind: SystemdBoot, ESP: systemdBootESP(root, ref)}
	}},
}

// readGRUBInstaller reads install-grub.sh's grub-config.xml: GRUB for
// BIOS, or for EFI, its devices and ESP.
func readGRUBInstaller(root, ref string) Bootloader {
	b := Bootloader{Installer: ref, Kind: GRUBBIOS}
	for _, cfg := range storeRefs(root, ref) {
		if strings.HasSuffix(cfg, "grub-config.xml") {
			b.Config = cfg
			b.Devices, b.Kind, b.ESP = readGrubConfig(root, cfg)
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
func readGrubConfig(root, p string) ([]string, Kind, string) {
	f, err := rootfs.Open(root, p)
	if err != nil {
		return nil, GRUBBIOS, ""
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
		return nil, GRUBBIOS, ""
	}
	kind, esp := GRUBBIOS, DefaultESP
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
				kind = GRUBEFI
			}
		case "efiSysMountPoint":
			if a.String != nil && a.String.Value != "" {
				esp = a.String.Value
			}
		}
	}
	if kind != GRUBEFI {
		esp = ""
	}
	return devices, kind, esp
}

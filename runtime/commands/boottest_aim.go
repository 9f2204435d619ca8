package commands

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/nixrescue/nixrescue/runtime/internal/lazyre"

	"github.com/nixrescue/nixrescue/runtime/boottest"
	"github.com/nixrescue/nixrescue/runtime/engine"
	"github.com/nixrescue/nixrescue/runtime/internal/hosttool"
	"github.com/nixrescue/nixrescue/runtime/nixos"
	"github.com/nixrescue/nixrescue/runtime/rootfs"
	"github.com/nixrescue/nixrescue/runtime/target"
)

// files reads and writes a filesystem of the target in the overlay: the
// mounted tree, or a FAT filesystem this kernel cannot mount, through
// mtools.
type files interface {
	read(p string) ([]byte, error)
	write(p string, b []byte) error
	exists(p string) bool
}

// mounted is a filesystem mounted under root at dir.
type mounted struct{ root, dir string }

func (m mounted) read(p string) ([]byte, error) {
	return rootfs.ReadFile(m.root, path.Join(m.dir, p), 1<<20)
}

func (m mounted) write(p string, b []byte) error {
	full, err := rootfs.Join(m.root, path.Join(m.dir, p))
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		return err
	}
	return os.WriteFile(full, b, 0o644)
}

func (m mounted) exists(p string) bool {
	_, err := rootfs.Lstat(m.root, path.Join(m.dir, p))
	return err == nil
}

// fat is a FAT filesystem on a device, read and written with mtools.
type fat struct{ device string }

func (f fat) mtools(args ...string) ([]byte, error) {
	out, err := hosttool.RunCommand(context.Background(), hosttool.Command{Name: args[0], Args: append([]string{"-i", f.device}, args[1:]...), Env: []string{"MTOOLS_SKIP_CHECK=1"}})
	var missing *hosttool.MissingError
	if errors.As(err, &missing) {
		missing.Needs = "reads the ESP where this kernel cannot mount it (vfat)"
	}
	return out, err
}

func (f fat) read(p string) ([]byte, error) { return f.mtools("mtype", "::"+p) }

func (f fat) write(p string, b []byte) error {
	tmp, err := os.CreateTemp("", "nixrescue-esp-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	tmp.Close()
	_, err = f.mtools("mcopy", "-o", tmp.Name(), "::"+p)
	return err
}

func (f fat) exists(p string) bool {
	_, err := f.mtools("mdir", "-b", "::"+p)
	return err == nil
}

// esp is the target's ESP at mountpoint: mounted, or on the device the
// plan had to leave out (a kernel without vfat).
func esp(s *engine.Session, mountpoint string) (files, error) {
	for _, e := range s.Layout().Plan {
		if e.Mountpoint != mountpoint {
			continue
		}
		if e.Action == target.ActionMount {
			return mounted{root: s.Root(), dir: mountpoint}, nil
		}
		if e.Device != "" {
			return fat{device: e.Device}, nil
		}
	}
	return nil, fmt.Errorf("nothing is mounted on %s, where the configuration puts the ESP", mountpoint)
}

// aimer checks that a kind of bootloader is installed on the target and,
// in the overlay only, gives it the platform's serial console and the
// entry of generation (0: its default) to boot at once; it returns the
// entry.
type aimer func(s *engine.Session, b nixos.Bootloader, generation int, pf boottest.Platform) (string, error)

// aimers are boot-test's, one for each kind of bootloader it boots.
var aimers = map[nixos.Kind]aimer{
	nixos.GRUBBIOS:    aimGRUB,
	nixos.GRUBEFI:     aimGRUB,
	nixos.SystemdBoot: aimSystemdBoot,
	nixos.Extlinux:    aimExtlinux,
}

// aimBootloader aims the system's bootloader (aimers), and returns the
// entry it boots.
func aimBootloader(s *engine.Session, b nixos.Bootloader, generation int, pf boottest.Platform) (string, error) {
	aim, ok := aimers[b.Kind]
	if !ok {
		return "", fmt.Errorf("the target's bootloader is %s, which boot-test does not know how to aim", b.Kind)
	}
	return aim(s, b, generation, pf)
}

// aimGRUB aims GRUB for BIOS (its boot code must be in the disk's boot
// sector) or for EFI (its loader copied to the fallback path): grub.cfg
// gets a serial terminal and the entry as its default.
func aimGRUB(s *engine.Session, b nixos.Bootloader, generation int, pf boottest.Platform) (string, error) {
	root := mounted{root: s.Root(), dir: "/"}
	if b.Kind == nixos.GRUBBIOS && !grubInBootSector(s.Layout().Disk) {
		return "", fmt.Errorf("%w: the configuration's GRUB for BIOS is not in the disk's boot sector (run nixrescue rebuild first)", errNoBootloader)
	}
	if b.Kind == nixos.GRUBEFI {
		if err := fallbackLoader(s, b, pf); err != nil {
			return "", err
		}
	}
	cfg, err := root.read(nixos.GrubConfig)
	if err != nil {
		return "", fmt.Errorf("%w: the target has no %s (run nixrescue rebuild first)", errNoBootloader, nixos.GrubConfig)
	}
	patched, entry, err := boottest.PatchGrub(string(cfg), generation, pf.Serial())
	if err != nil {
		return "", fmt.Errorf("GRUB's configuration: %w", err)
	}
	return entry, root.write(nixos.GrubConfig, []byte(patched))
}

// aimSystemdBoot aims systemd-boot on the ESP: its loader at the fallback
// path, loader.conf's default and no timeout, the entry's options with a
// serial console.
func aimSystemdBoot(s *engine.Session, b nixos.Bootloader, generation int, pf boottest.Platform) (string, error) {
	if err := fallbackLoader(s, b, pf); err != nil {
		return "", err
	}
	f, err := esp(s, b.ESP)
	if err != nil {
		return "", err
	}
	conf, err := f.read("/loader/loader.conf")
	if err != nil {
		return "", fmt.Errorf("%w: the ESP has no loader/loader.conf (run nixrescue rebuild first)", errNoBootloader)
	}
	entry := nixos.LoaderConfDefault(string(conf))
	if generation > 0 {
		entry = fmt.Sprintf("nixos-generation-%d.conf", generation)
	}
	text, err := f.read("/loader/entries/" + entry)
	if err != nil {
		return "", fmt.Errorf("systemd-boot has no entry %s on the ESP", entry)
	}
	if err := f.write("/loader/entries/"+entry, []byte(boottest.PatchLoaderEntry(string(text), pf.Serial()))); err != nil {
		return "", err
	}
	return entry, f.write("/loader/loader.conf", []byte(boottest.PatchLoaderConf(string(conf), entry)))
}

// aimExtlinux aims U-Boot's extlinux.conf on /boot: the default entry
// (nixos-default) or generation's (nixos-N-default), at once, with a
// serial console.
func aimExtlinux(s *engine.Session, _ nixos.Bootloader, generation int, pf boottest.Platform) (string, error) {
	root := mounted{root: s.Root(), dir: "/"}
	conf, err := root.read(nixos.ExtlinuxConf)
	if err != nil {
		return "", fmt.Errorf("%w: /boot has no %s (run nixrescue rebuild first)", errNoBootloader, strings.TrimPrefix(nixos.ExtlinuxConf, "/boot/"))
	}
	menu := nixos.ParseExtlinux(string(conf))
	label := menu.Default
	if generation > 0 {
		if label = menu.LabelOf(generation); label == "" {
			return "", fmt.Errorf("extlinux.conf has no entry of generation %d", generation)
		}
	}
	patched, err := boottest.PatchExtlinux(string(conf), label, pf.Serial())
	if err != nil {
		return "", err
	}
	return label, root.write(nixos.ExtlinuxConf, []byte(patched))
}

// grubInBootSector tells whether the disk's first sector holds GRUB's
// boot code (its boot.img names itself).
func grubInBootSector(disk string) bool {
	b, _ := readBootSector(disk)
	return bytes.Contains(b, []byte("GRUB"))
}

// fallbackLoader puts the bootloader at the firmware's removable-media
// path (EFI/BOOT/BOOTX64.EFI on x86_64) in the overlay, when only its own
// path holds it: the VM's firmware has a fresh variable store, without
// the NVRAM entry the target machine has.
func fallbackLoader(s *engine.Session, b nixos.Bootloader, pf boottest.Platform) error {
	mountpoint := b.ESP
	f, err := esp(s, mountpoint)
	if err != nil {
		return err
	}
	fallback := pf.EFIFallback()
	l, _ := nixos.LoaderOf(b.Kind)
	name := l.EFIBinaryFor(pf.EFIArch)
	if f.exists(fallback) {
		return nil
	}
	for _, dir := range espDirs(s, f, mountpoint) {
		if b, err := f.read("/EFI/" + dir + "/" + name); err == nil {
			return f.write(fallback, b)
		}
	}
	return fmt.Errorf("%w: the ESP on %s has neither %s nor EFI/*/%s (run nixrescue rebuild first)", errNoBootloader, mountpoint, fallback, name)
}

// espDirs lists the directories under the ESP's EFI/.
func espDirs(s *engine.Session, f files, mountpoint string) []string {
	switch v := f.(type) {
	case mounted:
		entries, _ := rootfs.ReadDir(v.root, path.Join(v.dir, "EFI"))
		var out []string
		for _, e := range entries {
			out = append(out, e.Name())
		}
		return out
	case fat:
		out, _ := v.mtools("mdir", "-b", "::/EFI")
		var dirs []string
		for _, l := range strings.Split(string(out), "\n") {
			if l = strings.TrimSpace(l); l != "" {
				dirs = append(dirs, path.Base(strings.TrimSuffix(l, "/")))
			}
		}
		return dirs
	}
	return nil
}

var availableModulesRE = lazyre.New(`availableKernelModules\s*=\s*\[([^\]]*)\]`)

// interfaceOfInitrd is the disk controller a hardware configuration's
// initrd modules name (boot.initrd.availableKernelModules), when they
// name exactly one kind: "" otherwise.
func interfaceOfInitrd(hardwareConfig string) string {
	var kinds []string
	for _, m := range availableModulesRE().FindAllStringSubmatch(hardwareConfig, -1) {
		for _, mod := range strings.Fields(strings.ReplaceAll(m[1], `"`, " ")) {
			k := map[string]string{"nvme": "nvme", "ahci": "ahci", "virtio_blk": "virtio", "virtio_pci": "virtio", "virtio_scsi": "virtio"}[mod]
			if k != "" && !slices.Contains(kinds, k) {
				kinds = append(kinds, k)
			}
		}
	}
	if len(kinds) == 1 {
		return kinds[0]
	}
	return ""
}

// diskInterface chooses the VM disk's controller as the target machine's:
// a disk's own (sysfs), else what hardware-configuration.nix loads in the
// initrd when it names one kind only; else virtio. It says why.
func diskInterface(s *engine.Session) (string, string) {
	if t := s.Target(); t.Kind == target.KindDisk || t.Kind == target.KindPartition {
		if link, err := os.Readlink("/sys/block/" + filepath.Base(t.Disk) + "/device"); err == nil {
			switch {
			case strings.Contains(link, "nvme"):
				return "nvme", "the disk is on NVMe here"
			case strings.Contains(link, "virtio"):
				return "virtio", "the disk is on virtio here"
			case strings.Contains(link, "ata"), strings.Contains(link, "target"):
				return "ahci", "the disk is on SATA/SCSI here"
			}
		}
	}
	b, err := rootfs.ReadFile(s.Root(), nixos.HardwareConfiguration, 1<<20)
	if k := interfaceOfInitrd(string(b)); err == nil && k != "" {
		return k, "hardware-configuration.nix loads " + k + " in the initrd"
	}
	return "virtio", "nixrescue cannot tell the target machine's: the default"
}

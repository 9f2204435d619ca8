package open

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/nixrescue/nixrescue/runtime/hint"
	"github.com/nixrescue/nixrescue/runtime/mount"
	"github.com/nixrescue/nixrescue/runtime/nixos"
	"github.com/nixrescue/nixrescue/runtime/target"
)

// grubDevices are the disks the target at root installs GRUB for BIOS
// on: those its current system (system) names in grub-config.xml and
// those /etc/nixos names for the next, without "nodev".
func grubDevices(root, system string) []string {
	devices := nixos.ConfiguredGrubDevices(root)
	if system != "" {
		devices = append(devices, nixos.DetectBootloader(root, system).Devices...)
	}
	devices = slices.DeleteFunc(devices, func(d string) bool { return d == "" || d == "nodev" })
	slices.Sort(devices)
	return slices.Compact(devices)
}

// GRUBInstallProblem says why GRUB for BIOS cannot be installed from
// this host on the disk of the target, whose configuration installs it
// on a disk, or nil. NixOS's installer (install-grub.pl) runs
// grub-install with a PATH of its own, without udevadm, so grub-install
// finds where a partition starts only through the HDIO_GETGEO ioctl,
// which the partitions of a loop device do not answer: "cannot find a
// GRUB drive for /dev/loop0p2". nixrescue maps an image's partitions with
// device-mapper instead, whose maps answer it, where the kernel has
// device-mapper and dmsetup is installed.
//
// A session opened with InstallsBootloader is refused so while its
// target is still read-only (Target); a directory's, by the engine's Prepare.
func (op *Opened) GRUBInstallProblem() error {
	disk := op.Disk
	if disk == "" {
		disk, _, _ = target.MountedDisk(op.RootDir)
	}
	// A session that writes maps the partitions with device-mapper where
	// it can (dmParts); a read-only one does not, but would.
	mapped := op.dmParts || op.Table != "" && mount.DMPartitionsAvailable() == nil
	if !strings.HasPrefix(filepath.Base(disk), "loop") || mapped || target.CheckWholeDisk(disk) != nil {
		return nil // no disk for GRUB at all: the disk aliases say why
	}
	sys, _ := nixos.ResolveSystem(op.RootDir, nixos.SystemChoice{})
	devices := grubDevices(op.RootDir, sys.StorePath)
	if len(devices) == 0 {
		return nil
	}
	why, fix := "this kernel has no device-mapper to map them with", "load device-mapper (modprobe dm_mod) and install dmsetup, then run nixrescue again: it then maps the partitions with it"
	if !errors.Is(mount.DMPartitionsAvailable(), mount.ErrNoDeviceMapper) {
		why, fix = "dmsetup, which would map them with device-mapper, is not installed", "install dmsetup, then run nixrescue again"
	}
	if op.Target.Kind != target.KindImage {
		why, fix = "its partitions are those of a loop device", "detach it and pass the image itself as {Target}, on a host whose kernel has device-mapper"
	}
	return &hint.Error{Subject: op.Target.Arg,
		Err: fmt.Errorf("GRUB for BIOS cannot be installed on %s (here %s, the loop device of %s) from this host: NixOS's installer finds where a partition starts through udevadm, which is not on its PATH, or the HDIO_GETGEO ioctl, which the partitions of a loop device do not answer, and %s",
			strings.Join(devices, " and "), disk, mount.BackingFile(filepath.Base(disk)), why),
		Fix: fix + "; or pass {NoInstallBootloader} to rebuild without installing GRUB (its configuration is written all the same), or repair the disk on a machine it is attached to"}
}

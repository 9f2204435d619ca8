package engine

import (
	"slices"

	"github.com/nixrescue/nixrescue/runtime/layers"
	"github.com/nixrescue/nixrescue/runtime/nixos"
	"github.com/nixrescue/nixrescue/runtime/target"
)

// zfsControl is the device of ZFS's control (/dev/zfs), which the
// target's own zpool, zfs and libzfs talk to the kernel through.
const zfsControl = "/dev/zfs"

// zfsControlNeeded says why the container needs /dev/zfs, "" when it
// does not: only when the target's repair asks ZFS itself, which is GRUB
// on a ZFS root (its installer's grub-probe asks libzfs which pool and
// dataset hold /boot, and grub-mkconfig's root=ZFS=). systemd-boot and
// activation do not, and the pools stay out of the container's reach.
func zfsControlNeeded(root, system string, parts []target.Partition) string {
	if !slices.ContainsFunc(parts, func(p target.Partition) bool { return p.Layer == string(layers.ZFS) }) {
		return ""
	}
	switch nixos.DetectBootloader(root, system).Kind {
	case nixos.GRUBBIOS, nixos.GRUBEFI:
		return "the root is on ZFS and GRUB's installer (grub-probe) asks ZFS where /boot is"
	}
	return ""
}

package session

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	rspec "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/nixrescue/nixrescue/runtime/target"
)

// resolveTarget says what the session works on: the TARGET argument, or
// the --root directory (which Prepare checks, with its own messages).
func (o Options) resolveTarget() (target.Target, error) {
	if o.Target == "" {
		if o.Root == "" {
			return target.Target{}, errors.New("no target given: name a disk, a partition, an image or the directory where the NixOS root is mounted")
		}
		abs, err := filepath.Abs(o.Root)
		if err != nil {
			return target.Target{}, fmt.Errorf("resolve --root: %w", err)
		}
		return target.Target{Arg: o.Root, Path: abs, Kind: target.KindDirectory}, nil
	}
	return target.Resolve(o.Target)
}

// curateDev decides the devices of the container's /dev: the target's
// disk and partitions (for a directory, those of the filesystem mounted
// there, if any), with /dev/disk links for them in the session's
// directory.
func (l *live) curateDev() error {
	var disk string
	var parts []target.Partition
	var why error
	if op := l.s.opened; op != nil && op.Disk != "" {
		disk, parts = op.Disk, op.Partitions
	} else {
		disk, parts, why = mountedDisk(l.prepared.Root)
	}
	devs, err := devicesFor(disk, parts)
	if err != nil {
		return err
	}
	if disk == "" {
		if l.o.StrictDiskAliases {
			return fmt.Errorf("nixrescue cannot tell which disk the bootloader goes on (%v): name the disk (or image) as TARGET", why)
		}
		return nil
	}
	links := filepath.Join(l.s.dir(), "dev-disk")
	if err := writeDiskLinks(links, disk, parts); err != nil {
		return err
	}
	var aliases []DiskAlias
	if op := l.s.opened; op != nil && op.Root != nil {
		aliases = op.Aliases // checked while the target was still read-only
	} else {
		var err error
		aliases, err = checkedDiskAliases(l.prepared.Root, l.prepared.System.StorePath, nil, l.o.DiskAliases, disk, l.o.StrictDiskAliases,
			func(p string) { fmt.Fprintf(l.o.Stderr, "nixrescue: warning: %s\n", p) })
		if err != nil {
			return err
		}
	}
	extra, err := aliasDevices(aliases, disk, parts, links)
	if err != nil {
		return err
	}
	l.aliases = aliases
	l.prepared.Devices, l.prepared.DiskLinks = append(devs, extra...), links
	return nil
}

// devicesFor lists disk and its partitions as spec devices.
func devicesFor(disk string, parts []target.Partition) ([]rspec.LinuxDevice, error) {
	if disk == "" {
		return nil, nil
	}
	var devs []rspec.LinuxDevice
	for _, d := range append([]string{disk}, partDevices(parts, disk)...) {
		maj, min, err := target.DeviceNumber(d)
		if err != nil {
			return nil, fmt.Errorf("curate /dev: %w", err)
		}
		mode := os.FileMode(0o660)
		uid, gid := uint32(0), uint32(6) // root:disk, as udev makes them
		devs = append(devs, rspec.LinuxDevice{Path: d, Type: "b", Major: int64(maj), Minor: int64(min), FileMode: &mode, UID: &uid, GID: &gid})
	}
	return devs, nil
}

func partDevices(parts []target.Partition, disk string) []string {
	var out []string
	for _, p := range parts {
		if p.Device != "" && p.Device != disk {
			out = append(out, p.Device)
		}
	}
	return out
}

// mountedDisk finds the disk whose filesystem is mounted at dir
// (target.DiskBehind), with its partitions and their filesystems; the
// error says why there is none (a root that is only a directory of the
// host's own filesystem brings no disk in).
func mountedDisk(dir string) (string, []target.Partition, error) {
	disk, err := target.DiskBehind(dir)
	if err != nil {
		return "", nil, err
	}
	parts, _ := target.KernelPartitions(disk)
	// A device blkid failed on only goes without its filesystem.
	probes, _ := target.ProbeDevices(context.Background(), target.Probed(parts))
	for i := range parts {
		parts[i].FS = probes[parts[i].Device].FS
	}
	return disk, parts, nil
}

// writeDiskLinks makes dir a /dev/disk for the target's devices:
// by-uuid, by-label, by-partuuid, by-partlabel (named as udev names them)
// and by-id (the host's by-id links that lead to them), each pointing at
// ../../NAME.
func writeDiskLinks(dir, disk string, parts []target.Partition) error {
	ours := append([]string{disk}, partDevices(parts, disk)...)
	link := func(kind, name, dev string) error {
		if name == "" {
			return nil
		}
		if kind != "by-id" { // the host's by-id names are escaped already
			name = target.EscapeUdev(name)
		}
		d := filepath.Join(dir, kind)
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
		err := os.Symlink("../../"+filepath.Base(dev), filepath.Join(d, name))
		if errors.Is(err, os.ErrExist) {
			return nil // two filesystems with one label: the first wins, as with udev
		}
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("curate /dev/disk: %w", err)
	}
	for _, p := range parts {
		if p.Device == "" {
			continue
		}
		for _, l := range [][2]string{{"by-uuid", p.UUID}, {"by-label", p.Label}, {"by-partuuid", p.PartUUID}, {"by-partlabel", p.PartLabel}} {
			if err := link(l[0], l[1], p.Device); err != nil {
				return fmt.Errorf("curate /dev/disk: %w", err)
			}
		}
	}
	ids, _ := os.ReadDir("/dev/disk/by-id")
	for _, id := range ids {
		dest, err := filepath.EvalSymlinks(filepath.Join("/dev/disk/by-id", id.Name()))
		if err == nil && slices.Contains(ours, dest) {
			if err := link("by-id", id.Name(), dest); err != nil {
				return fmt.Errorf("curate /dev/disk: %w", err)
			}
		}
	}
	return nil
}

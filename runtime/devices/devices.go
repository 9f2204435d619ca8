// Package devices makes the curated /dev of a recovery container: the
// target's disk and its partitions as device nodes, under the names this
// host gives them and under the names the target's configuration knows
// its disk by (target.DiskAlias), with /dev/disk/by-uuid, by-label,
// by-partuuid, by-partlabel and by-id links for them; nothing else of the
// host's disks. A configuration that names the boot disk /dev/sda then
// finds the target's disk there, whatever it is called on this host, and
// never one of this host's own disks.
package devices

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	rspec "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/nixrescue/nixrescue/runtime/mount"
	"github.com/nixrescue/nixrescue/runtime/target"
)

// Curated is a container's curated /dev: its block devices, and the
// host directory of /dev/disk links bound at /dev/disk.
type Curated struct {
	Devices []rspec.LinuxDevice
	Links   string
}

// Curate writes the /dev/disk links of disk, its partitions and its
// aliases into links (a directory it makes) and returns the curated /dev.
func Curate(links, disk string, parts []target.Partition, aliases []target.DiskAlias) (Curated, error) {
	devs, err := Nodes(disk, parts)
	if err != nil {
		return Curated{}, err
	}
	if err := writeLinks(links, disk, parts); err != nil {
		return Curated{}, err
	}
	byPath := map[string]rspec.LinuxDevice{}
	for _, d := range devs {
		byPath[d.Path] = d
	}
	// A partition's node is at its name inside, when it has one.
	nodeOf := func(p target.Partition) rspec.LinuxDevice { return byPath[cmp.Or(p.Inside, p.Device)] }
	out := slices.Clone(devs)
	for _, a := range aliases {
		if rest, ok := strings.CutPrefix(a.Name, "/dev/disk/"); ok {
			if err := aliasLinks(links, rest, disk, parts); err != nil {
				return Curated{}, err
			}
			continue
		}
		d := byPath[disk]
		d.Path = a.Name
		out = append(out, d)
		for _, p := range parts {
			if p.Device == "" || p.Device == disk || p.Number == 0 {
				continue
			}
			pd := nodeOf(p)
			pd.Path = mount.PartitionPath(a.Name, p.Number)
			out = append(out, pd)
		}
	}
	return Curated{Devices: out, Links: links}, nil
}

// Nodes lists disk and its partitions as spec devices, root:disk 0660 as
// udev makes them.
func Nodes(disk string, parts []target.Partition) ([]rspec.LinuxDevice, error) {
	if disk == "" {
		return nil, nil
	}
	var devs []rspec.LinuxDevice
	node := func(path, dev string) error {
		maj, min, err := target.DeviceNumber(dev)
		if err != nil {
			return fmt.Errorf("curate /dev: %w", err)
		}
		mode := os.FileMode(0o660)
		uid, gid := uint32(0), uint32(6)
		devs = append(devs, rspec.LinuxDevice{Path: path, Type: "b", Major: int64(maj), Minor: int64(min), FileMode: &mode, UID: &uid, GID: &gid})
		return nil
	}
	if err := node(disk, disk); err != nil {
		return nil, err
	}
	for _, p := range parts {
		if p.Device != "" && p.Device != disk {
			if err := node(cmp.Or(p.Inside, p.Device), p.Device); err != nil {
				return nil, err
			}
		}
	}
	// A device a layer opened, under the names the target's
	// configuration gives it (/dev/mapper/cryptroot, /dev/vg/root). Not
	// device-mapper's control: it would reach the host's mappings too,
	// and grub-install (cryptodisk, LVM, md) finds what it needs in sysfs.
	for _, p := range parts {
		for _, n := range p.Names {
			if n != p.Device && p.Device != "" {
				if err := node(n, p.Device); err != nil {
					return nil, err
				}
			}
		}
	}
	return devs, nil
}

// CharNode is the host's character device at path (a control device:
// /dev/zfs) as a spec device, root's alone (0600).
func CharNode(path string) (rspec.LinuxDevice, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return rspec.LinuxDevice{}, fmt.Errorf("curate /dev: %w", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFCHR {
		return rspec.LinuxDevice{}, fmt.Errorf("curate /dev: %s is not a character device", path)
	}
	mode := os.FileMode(0o600)
	uid, gid := uint32(0), uint32(0)
	return rspec.LinuxDevice{Path: path, Type: "c", Major: int64(unix.Major(st.Rdev)), Minor: int64(unix.Minor(st.Rdev)), FileMode: &mode, UID: &uid, GID: &gid}, nil
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

// writeLinks makes dir a /dev/disk for the target's devices: by-uuid,
// by-label, by-partuuid, by-partlabel (named as udev names them) and by-id
// (the host's by-id links that lead to them), each pointing at ../../NAME.
func writeLinks(dir, disk string, parts []target.Partition) error {
	ours := append([]string{disk}, partDevices(parts, disk)...)
	link := func(kind, name, dev string) error {
		if name == "" {
			return nil
		}
		if kind != "by-id" { // the host's by-id names are escaped already
			name = target.EscapeUdev(name)
		}
		return symlinkTo(filepath.Join(dir, kind), name, "/dev/disk/"+kind, dev)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("curate /dev/disk: %w", err)
	}
	for _, p := range parts {
		if p.Device == "" {
			continue
		}
		for _, l := range [][2]string{{"by-uuid", p.UUID}, {"by-label", p.Label}, {"by-partuuid", p.PartUUID}, {"by-partlabel", p.PartLabel}} {
			if err := link(l[0], l[1], cmp.Or(p.Inside, p.Device)); err != nil {
				return err
			}
		}
	}
	ids, _ := os.ReadDir("/dev/disk/by-id")
	for _, id := range ids {
		dest, err := filepath.EvalSymlinks(filepath.Join("/dev/disk/by-id", id.Name()))
		if err == nil && slices.Contains(ours, dest) {
			if err := link("by-id", id.Name(), dest); err != nil {
				return err
			}
		}
	}
	return nil
}

// aliasLinks makes /dev/disk/KIND/NAME (and NAME-partN) in the links
// directory lead to the target's disk and partitions.
func aliasLinks(links, rel, disk string, parts []target.Partition) error {
	dir := filepath.Join(links, filepath.Dir(rel))
	name := filepath.Base(rel)
	if err := symlink(dir, name, disk); err != nil {
		return err
	}
	for _, p := range parts {
		if p.Device != "" && p.Device != disk && p.Number > 0 {
			if err := symlink(dir, fmt.Sprintf("%s-part%d", name, p.Number), cmp.Or(p.Inside, p.Device)); err != nil {
				return err
			}
		}
	}
	return nil
}

// symlink makes dir/name lead to ../../BASE of dev. A name that is there
// already stays: two filesystems with one label, the first wins, as with
// udev.
func symlink(dir, name, dev string) error {
	return symlinkTo(dir, name, "/dev/disk/"+filepath.Base(dir), "/dev/"+filepath.Base(dev))
}

// symlinkTo makes dir/name (which is at inside in the container) lead to
// dev, relative to it, as udev makes links: ../../vda1,
// ../../mapper/cryptroot.
func symlinkTo(dir, name, inside, dev string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("curate /dev/disk: %w", err)
	}
	rel, err := filepath.Rel(inside, dev)
	if err != nil {
		return fmt.Errorf("curate /dev/disk: %w", err)
	}
	err = os.Symlink(rel, filepath.Join(dir, name))
	if err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("curate /dev/disk: %w", err)
	}
	return nil
}

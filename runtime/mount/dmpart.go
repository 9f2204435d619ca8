package mount

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/nixrescue/nixrescue/runtime/internal/hosttool"
)

// Partitions of a loop device as device-mapper maps.
//
// grub-install, as NixOS runs it (install-grub.pl puts only coreutils,
// util-linux, mdadm and the like on PATH: no udevadm), finds where a
// partition starts through the HDIO_GETGEO ioctl, which the partitions of
// a loop device do not answer: "cannot find a GRUB drive for
// /dev/loop0p2". A device-mapper linear map of the partition's bytes
// answers it with the geometry it was given, whose start is set to the
// partition's (dmsetup setgeometry). Nothing of the image changes: a map
// is the kernel's view of its bytes.

// DMPartitionsAvailable says whether this host can map partitions with
// device-mapper: nil when its kernel has device-mapper (loaded:
// nixrescue loads no module) and dmsetup is installed, else
// ErrNoDeviceMapper or a *hosttool.MissingError for dmsetup.
func DMPartitionsAvailable() error {
	if _, err := os.Stat("/sys/class/misc/device-mapper"); err != nil {
		return ErrNoDeviceMapper
	}
	if _, err := exec.LookPath("dmsetup"); err != nil {
		return &hosttool.MissingError{What: "dmsetup"}
	}
	return nil
}

// ErrNoDeviceMapper says this host's kernel has no device-mapper.
var ErrNoDeviceMapper = errors.New("this kernel has no device-mapper (modprobe dm_mod loads it)")

// DMPartitionName is the device-mapper name of partition n of session
// id's disk: cleanup finds a killed session's maps by its prefix
// (DMPartitionPrefix).
func DMPartitionName(id string, n int) string { return fmt.Sprintf("%s%d", DMPartitionPrefix(id), n) }

// DMPartitionPrefix starts the names of session id's maps.
func DMPartitionPrefix(id string) string { return id + "-p" }

// geometry sectors and heads of the maps: a cylinder holds 255*63.
const geoHeads, geoSectors = 255, 63

// MapPartition makes the device-mapper map name of the bytes [start,
// start+size) of disk, its geometry's start the partition's, and returns
// its device (/dev/dm-N, which devtmpfs makes).
func MapPartition(ctx context.Context, name, disk string, start, size int64) (string, error) {
	if start%512 != 0 || size%512 != 0 {
		return "", fmt.Errorf("map %s: not in 512-byte sectors", name)
	}
	first := start / 512
	cyl := (first + geoHeads*geoSectors) / (geoHeads * geoSectors)
	if cyl > 65535 {
		return "", fmt.Errorf("map %s: it starts at sector %d, beyond what a disk geometry can say", name, first)
	}
	table := fmt.Sprintf("0 %d linear %s %d", size/512, disk, first)
	if err := dmsetup(ctx, "create", name, "--table", table); err != nil {
		return "", err
	}
	if err := dmsetup(ctx, "setgeometry", name, fmt.Sprint(cyl), fmt.Sprint(geoHeads), fmt.Sprint(geoSectors), fmt.Sprint(first)); err != nil {
		_ = UnmapPartition(ctx, name)
		return "", err
	}
	dev := DMDevice(name)
	if dev == "" {
		_ = UnmapPartition(ctx, name)
		return "", fmt.Errorf("map %s: the kernel shows no device for it", name)
	}
	f, err := openWhenPresent(dev, os.O_RDONLY)
	if err != nil {
		_ = UnmapPartition(ctx, name)
		return "", err
	}
	f.Close()
	return dev, nil
}

// UnmapPartition removes map name, waiting out a brief user (a process
// that just exited, udev's look at a new device).
func UnmapPartition(ctx context.Context, name string) error {
	deadline := time.Now().Add(3 * time.Second)
	for {
		err := dmsetup(ctx, "remove", name)
		if err == nil || DMDevice(name) == "" {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// DMMaps lists the device-mapper maps whose name starts with prefix.
func DMMaps(prefix string) []string {
	var out []string
	for _, m := range dmDevices() {
		if strings.HasPrefix(m.name, prefix) {
			out = append(out, m.name)
		}
	}
	return out
}

// DMDevice is the kernel's device (/dev/dm-N) of the device-mapper device
// called name, "" when there is none. The kernel name is what a session
// mounts and names: inside the container, tools that follow a device to
// sysfs (nixos-generate-config, grub-probe) find it there, as they do
// udev's /dev/mapper links on a booted system.
func DMDevice(name string) string {
	for _, m := range dmDevices() {
		if m.name == name {
			return "/dev/" + m.kernel
		}
	}
	return ""
}

// dmDevice is a device-mapper device: its kernel name (dm-N) and its
// own.
type dmDevice struct{ kernel, name string }

// dmDevices lists the device-mapper devices, from sysfs: a rescue host
// may have no udev to make /dev/mapper.
func dmDevices() []dmDevice {
	var out []dmDevice
	names, _ := filepath.Glob("/sys/block/dm-*/dm/name")
	for _, n := range names {
		if b, err := os.ReadFile(n); err == nil {
			out = append(out, dmDevice{kernel: filepath.Base(filepath.Dir(filepath.Dir(n))), name: strings.TrimSpace(string(b))})
		}
	}
	return out
}

// dmsetup runs dmsetup with args. --noudevsync: a rescue host may run no
// udev to wait for, and the maps are reached by their /dev/dm-N.
func dmsetup(ctx context.Context, args ...string) error {
	if _, err := hosttool.Run(ctx, nil, "dmsetup", append([]string{"--noudevsync"}, args...)...); err != nil {
		return fmt.Errorf("dmsetup %s: %w", args[0], err)
	}
	return nil
}

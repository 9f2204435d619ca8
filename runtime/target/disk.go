package target

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/nixrescue/nixrescue/runtime/internal/hosttool"
)

// Partition is a volume of the target, what a filesystem is mounted
// from: a partition of its disk (Number), a block device a layer made
// from others (Layer, Parents: a LUKS mapping, a logical volume, an
// array), or a dataset of a layer (Dataset: a ZFS pool's, which has no
// block device). Its JSON is inspect's "partitions".
type Partition struct {
	Number int `json:"number"`
	// Device is the host's block device for it, once there is one.
	Device string `json:"device,omitempty"`
	// Dataset is a layer's dataset, by its name (pool/dataset), mounted
	// with its type (FS.Type); such a volume has no Device.
	Dataset string `json:"dataset,omitempty"`
	// Start and Size are in bytes.
	Start int64 `json:"start"`
	Size  int64 `json:"size"`
	// From the partition table.
	PartUUID  string `json:"partuuid,omitempty"`
	PartLabel string `json:"partlabel,omitempty"`
	PartType  string `json:"parttype,omitempty"`
	// Extended marks an MBR extended partition: the container of the
	// logical partitions (5, 6, …), holding no filesystem of its own.
	Extended bool `json:"extended,omitempty"`
	// From the filesystem, as blkid reads it.
	FS
	// State is what the filesystem says of itself (ReadFSState), when a
	// session read it before mounting it and it said something.
	State *FSState `json:"state,omitempty"`
	// Layer is what nixrescue opened to make this device (luks, lvm,
	// md), from the devices Parents; empty for a partition of the disk.
	Layer   string   `json:"layer,omitempty"`
	Parents []string `json:"parents,omitempty"`
	// Names are its names inside the container besides Device: those the
	// target's configuration uses (/dev/mapper/cryptroot, /dev/vg/root,
	// /dev/md/boot).
	Names []string `json:"names,omitempty"`
	// Inside is its name inside the container instead of Device, when
	// this host's name would mislead the tools there: a device-mapper
	// map of an image's partition (/dev/dm-N here) is there the disk's
	// partition by the kernel's name for one (/dev/loop0p2), which
	// grub-install takes for a partition of /dev/loop0.
	Inside string `json:"inside,omitempty"`
}

// Source is what a mount of the volume names: its device, or its dataset.
func (p Partition) Source() string { return cmp.Or(p.Device, p.Dataset) }

// FS is what blkid finds on a device.
type FS struct {
	Type  string `json:"fstype,omitempty"`
	UUID  string `json:"uuid,omitempty"`
	Label string `json:"label,omitempty"`
}

// Probed lists the devices of parts worth probing for a filesystem: those
// with a device, but for a partition whose type says it holds none (a BIOS
// boot partition holds GRUB's core image: a run of blkid on it learns
// nothing; nor on an extended partition's container).
func Probed(parts []Partition) []string {
	var devs []string
	for _, p := range parts {
		if p.Device != "" && p.PartType != "bios_grub" && !p.Extended {
			devs = append(devs, p.Device)
		}
	}
	return devs
}

// Probe is what blkid finds on a device or image: a filesystem, or a
// partition table (PTType).
type Probe struct {
	FS
	PTType string
	// Version and usage, for unsupported volume layers (crypto, raid).
	Usage string
}

// ProbeDevice runs blkid's low-level probe (no cache) on path.
func ProbeDevice(ctx context.Context, path string) (Probe, error) {
	probes, err := ProbeDevices(ctx, []string{path})
	return probes[path], err
}

// ProbeDevices probes several devices, each with its own run of blkid,
// as many at once as there are CPUs: blkid stops at the first device of a
// list where it finds nothing (a BIOS boot partition), and a run's time is
// mostly its reads of the device, which go on side by side. A device where
// nothing is recognised has a zero Probe. A device blkid failed on is left
// out of the map, and the error names it (the first such); the others'
// answers are there all the same.
func ProbeDevices(ctx context.Context, paths []string) (map[string]Probe, error) {
	return probeEach(paths, runtime.NumCPU(), func(p string) ([]byte, error) { return runBlkid(ctx, p) })
}

// probeEach runs probe (blkid on one device) on each of paths, at most
// limit at once.
func probeEach(paths []string, limit int, probe func(string) ([]byte, error)) (map[string]Probe, error) {
	type answer struct {
		probe Probe
		err   error
	}
	answers := make([]answer, len(paths))
	sem := make(chan struct{}, max(limit, 1))
	var wg sync.WaitGroup
	for i, p := range paths {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			out, err := probe(p)
			answers[i] = answer{probe: parseBlkidUdev(out), err: err}
		}()
	}
	wg.Wait()
	probes := map[string]Probe{}
	var first error
	for i, a := range answers {
		if a.err != nil {
			first = cmp.Or(first, a.err)
			continue
		}
		probes[paths[i]] = a.probe
	}
	return probes, first
}

// parseBlkidUdev reads what blkid -o udev prints for one device. Its
// _ENC values keep a label or UUID whole, escaping only bytes udev would
// (\x20 for a space), where the export format shell-quotes them
// ("my\ data") and prints bytes above 127 as M- sequences, which cannot
// be read back (a label "données" is not "donn M-CM-)es").
func parseBlkidUdev(out []byte) Probe {
	var p Probe
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if !ok {
			continue
		}
		switch k {
		case "ID_FS_TYPE":
			p.Type = v
		case "ID_FS_UUID_ENC":
			p.UUID = unescapeUdev(v)
		case "ID_FS_LABEL_ENC":
			p.Label = unescapeUdev(v)
		case "ID_PART_TABLE_TYPE":
			p.PTType = v
		case "ID_FS_USAGE":
			p.Usage = v
		}
	}
	return p
}

// runBlkid runs blkid's low-level probe on path and returns what it
// printed (its udev format, parseBlkidUdev); its status 2 (nothing
// recognised) is no error.
// --no-part-details: nixrescue reads partition tables itself, and the
// PART_ENTRY_* details cost blkid a read of the whole disk's table.
func runBlkid(ctx context.Context, path string) ([]byte, error) {
	out, err := hosttool.Run(ctx, nil, "blkid", "-p", "--no-part-details", "-o", "udev", path)
	var ee *hosttool.ExitError
	if err == nil || errors.As(err, &ee) && ee.Code == 2 {
		return out, nil
	}
	return nil, fmt.Errorf("probe %s: %w", path, err)
}

// KernelPartitions lists the partitions the kernel knows of disk (a /dev
// path), from sysfs.
func KernelPartitions(disk string) ([]Partition, error) {
	name := filepath.Base(disk)
	entries, err := os.ReadDir(filepath.Join("/sys/block", name))
	if err != nil {
		return nil, fmt.Errorf("read partitions of %s: %w", disk, err)
	}
	var parts []Partition
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), name) {
			continue
		}
		dir := filepath.Join("/sys/block", name, e.Name())
		num, err1 := readInt(filepath.Join(dir, "partition"))
		start, err2 := readInt(filepath.Join(dir, "start"))
		size, err3 := readInt(filepath.Join(dir, "size"))
		if err1 != nil || err2 != nil || err3 != nil {
			continue
		}
		// sysfs counts 512-byte sectors whatever the device's sector size.
		parts = append(parts, Partition{Number: int(num), Device: "/dev/" + e.Name(), Start: start * 512, Size: size * 512})
	}
	sort.Slice(parts, func(i, j int) bool { return parts[i].Number < parts[j].Number })
	return parts, nil
}

func readInt(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
}

// Unsupported says which volume layers nixrescue cannot open yet.
func Unsupported(fsType string) string {
	switch fsType {
	case "zfs_member":
		return "a ZFS pool member"
	case "bcache":
		return "bcache"
	}
	return ""
}

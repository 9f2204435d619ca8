package target

import (
	"slices"
	"strings"
	"testing"
)

const nixosFstab = `# This is a generated file.  Do not edit!
/dev/disk/by-uuid/47c65953-a858-4596-8414-5ffa98acaf41 / ext4 defaults 0 1
/dev/disk/by-label/boot /boot vfat fmask=0077,dmask=0077 0 2
UUID=9a7395f1-bfce-4e13-8a9d-e9ab8f4e824e /nix btrfs subvol=nix,compress=zstd,noatime 0 0
PARTUUID=f29562e4-4dbc-405d-b0f9-d57d69adf4b8 /home ext4 defaults,nofail
/dev/sda4 /srv ext4 defaults
/dev/disk/by-id/ata-Samsung_SSD_860-part5 /var/lib ext4
/dev/disk/by-label/my\x20data /data\040dir ext4 noauto
tmpfs /tmp tmpfs mode=1777
server:/export /net nfs4 defaults
/swapfile none swap sw
/persist/etc /etc/ssh none bind
`

func TestParseFstab(t *testing.T) {
	entries, err := ParseFstab(strings.NewReader(nixosFstab))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 11 {
		t.Fatalf("%d entries", len(entries))
	}
	e := entries[6]
	if e.Mountpoint != "/data dir" || !e.HasOption("noauto") || e.Line != 8 {
		t.Errorf("escaped entry: %+v", e)
	}
	if !slices.Contains(entries[2].Options, "subvol=nix") {
		t.Errorf("subvol option: %v", entries[2].Options)
	}
	if !slices.Equal(entries[5].Options, []string{"defaults"}) {
		t.Errorf("missing options field: %v", entries[5].Options)
	}
}

func TestParseFstabRefusesJunk(t *testing.T) {
	for name, in := range map[string]string{
		"binary":     "UUID=x / ext4 defaults\n\x00\x01\x02\xff\xfe\n",
		"two fields": "/dev/sda1 /\n",
		"long line":  strings.Repeat("x", 5000) + " / ext4\n",
		"many lines": strings.Repeat("# c\n", 10001),
		"not utf8":   "/dev/sda1 /\xff ext4\n",
	} {
		if _, err := ParseFstab(strings.NewReader(in)); err == nil {
			t.Errorf("%s: accepted", name)
		} else if strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: error is not one line: %q", name, err)
		}
	}
}

func TestSource(t *testing.T) {
	for spec, want := range map[string][2]string{
		"UUID=abc":                       {"uuid", "abc"},
		`LABEL="nixos"`:                  {"label", "nixos"},
		"/dev/disk/by-label/my\\x20data": {"label", "my data"},
		"/dev/disk/by-partuuid/1234":     {"partuuid", "1234"},
		"PARTLABEL=root":                 {"partlabel", "root"},
		"/dev/disk/by-id/ata-X-part2":    {"id", "ata-X-part2"},
		"/dev/sda2":                      {"path", "/dev/sda2"},
		"tmpfs":                          {"other", "tmpfs"},
	} {
		k, v := Source(spec)
		if string(k) != want[0] || v != want[1] {
			t.Errorf("%s: %s %q, want %v", spec, k, v, want)
		}
	}
	if EscapeUdev("my data/x") != `my\x20data\x2fx` {
		t.Errorf("EscapeUdev: %s", EscapeUdev("my data/x"))
	}
}

var disk = []Partition{
	{Number: 1, Device: "/dev/loop3p1", PartType: "bios_grub", PartUUID: "aaaa"},
	{Number: 2, Device: "/dev/loop3p2", PartUUID: "f29562e4-4dbc-405d-b0f9-d57d69adf4b8", PartLabel: "boot", FS: FS{Type: "vfat", UUID: "1234-ABCD", Label: "boot"}},
	{Number: 3, Device: "/dev/loop3p3", PartUUID: "cccc", PartLabel: "root", FS: FS{Type: "ext4", UUID: "47c65953-a858-4596-8414-5ffa98acaf41", Label: "nixos"}},
	{Number: 4, Device: "/dev/loop3p4", FS: FS{Type: "ext4", UUID: "dddd"}},
	{Number: 5, Device: "/dev/loop3p5", FS: FS{Type: "ext4", UUID: "eeee"}},
}

// samsung are the by-id names of the disk of the tests.
var samsung = DiskIDs{Names: []string{"ata-Samsung_SSD_860"}}

func TestMapSource(t *testing.T) {
	for spec, want := range map[string]string{
		"/dev/disk/by-uuid/47C65953-A858-4596-8414-5FFA98ACAF41": "/dev/loop3p3",
		"LABEL=boot": "/dev/loop3p2",
		"PARTUUID=F29562E4-4DBC-405D-B0F9-D57D69ADF4B8": "/dev/loop3p2",
		"PARTLABEL=root": "/dev/loop3p3",
		"/dev/sda4":      "/dev/loop3p4",
		"/dev/nvme0n1p5": "/dev/loop3p5",
		"/dev/disk/by-id/ata-Samsung_SSD_860-part5": "/dev/loop3p5",
		"3":            "/dev/loop3p3",
		"/dev/loop3p2": "/dev/loop3p2",
	} {
		found, how := MapSource(spec, disk, samsung)
		if len(found) != 1 || found[0].Device != want {
			t.Errorf("%s: %v (%s), want %s", spec, found, how, want)
		}
	}
	for _, spec := range []string{"UUID=nope", "LABEL=", "/dev/sdb9", "/dev/mapper/vg-root", "tmpfs"} {
		if found, _ := MapSource(spec, disk, samsung); len(found) > 0 {
			t.Errorf("%s mapped to %v", spec, found)
		}
	}
	// A by-id name of another disk of the machine: partition 3 there is
	// not partition 3 here. Nor is any by-id name of a disk whose names
	// are not known (an image).
	for _, ids := range []DiskIDs{samsung, {}} {
		if found, how := MapSource("/dev/disk/by-id/ata-OTHER_DISK_123-part3", disk, ids); len(found) > 0 || how != HowOtherDisk {
			t.Errorf("another disk's by-id name (ids %+v): %v (%s)", ids, found, how)
		}
	}
	if found, _ := MapSource("/dev/disk/by-id/ata-Samsung_SSD_860-part5", disk, DiskIDs{}); len(found) > 0 {
		t.Errorf("a by-id name mapped on a disk of no known names: %v", found)
	}
	// udev's names end with the serial sysfs has.
	if found, _ := MapSource("/dev/disk/by-id/nvme-Samsung_SSD_970_EVO_S4EWNX0R123456-part2", disk, DiskIDs{Serial: "S4EWNX0R123456"}); len(found) != 1 || found[0].Number != 2 {
		t.Errorf("by serial: %v", found)
	}
	if found, _ := MapSource("/dev/disk/by-id/virtio-vd0001-part3", disk, DiskIDs{Serial: "vd0001"}); len(found) != 1 || found[0].Number != 3 {
		t.Errorf("virtio by serial: %v", found)
	}
	if found, _ := MapSource("/dev/disk/by-id/virtio-xvd0001-part3", disk, DiskIDs{Serial: "vd0001"}); len(found) != 0 {
		t.Errorf("a serial that only ends the same: %v", found)
	}
	named := append(slices.Clone(disk), Partition{Number: 0, Device: "/dev/dm-0", Names: []string{"/dev/dm-0", "/dev/mapper/cryptroot"}})
	if found, _ := MapSource("/dev/disk/by-id/dm-name-cryptroot", named, DiskIDs{}); len(found) != 1 || found[0].Device != "/dev/dm-0" {
		t.Errorf("dm-name-: %v", found)
	}
	// One label on two filesystems: both, never a guess.
	twice := append(slices.Clone(disk), Partition{Number: 6, Device: "/dev/loop3p6", FS: FS{Type: "ext4", Label: "boot"}})
	if found, _ := MapSource("LABEL=boot", twice, samsung); len(found) != 2 {
		t.Errorf("a label on two filesystems: %v", found)
	}
	// An extended partition's container holds no filesystem.
	ext := []Partition{{Number: 2, PartType: "0x05", Extended: true}, {Number: 5, Device: "/dev/sdb5"}}
	if found, _ := MapSource("2", ext, samsung); len(found) != 0 {
		t.Errorf("the extended container mapped: %v", found)
	}
	if found, _ := MapSource("/dev/sda5", ext, samsung); len(found) != 1 || found[0].Device != "/dev/sdb5" {
		t.Errorf("a logical partition by number: %v", found)
	}
}

func TestParseOverride(t *testing.T) {
	o, err := ParseOverride("/dev/sdb1:/boot/")
	if err != nil || o.Spec != "/dev/sdb1" || o.Mountpoint != "/boot" {
		t.Errorf("%+v %v", o, err)
	}
	for _, bad := range []string{"/dev/sdb1", "/dev/sdb1:boot", ":/boot", "x:"} {
		if _, err := ParseOverride(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

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
		p, how, ok := MapSource(spec, disk)
		if !ok || p.Device != want {
			t.Errorf("%s: %s (%s, %v), want %s", spec, p.Device, how, ok, want)
		}
	}
	for _, spec := range []string{"UUID=nope", "LABEL=", "/dev/sdb9", "/dev/mapper/vg-root", "tmpfs"} {
		if p, _, ok := MapSource(spec, disk); ok {
			t.Errorf("%s mapped to %s", spec, p.Device)
		}
	}
}

func TestBuildPlan(t *testing.T) {
	entries, err := ParseFstab(strings.NewReader(nixosFstab))
	if err != nil {
		t.Fatal(err)
	}
	plan := BuildPlan(entries, disk, []Override{{Spec: "4", Mountpoint: "/srv", Origin: "--mount"}})
	got := map[string]string{}
	for _, e := range plan {
		got[e.Mountpoint] = string(e.Action) + " " + e.Device + " " + e.Reason
	}
	want := map[string]string{
		"/boot":     "mount /dev/loop3p2 ",
		"/nix":      "skip  not on the target disk: pass --mount DEVICE:/nix",
		"/home":     "mount /dev/loop3p2 ",
		"/srv":      "mount /dev/loop3p4 ",
		"/var/lib":  "mount /dev/loop3p5 ",
		"/data dir": "skip  noauto",
		"/tmp":      "skip  not a disk filesystem (tmpfs)",
		"/net":      "skip  network filesystem",
		"none":      "skip  swap",
		"/etc/ssh":  "skip  bind mount",
	}
	for mp, w := range want {
		if got[mp] != w {
			t.Errorf("%s: %q, want %q", mp, got[mp], w)
		}
	}
	if _, ok := got["/"]; ok {
		t.Error("the root is in the plan: it is mounted first, apart")
	}
	// Parents first.
	for i := 1; i < len(plan); i++ {
		if strings.Count(plan[i].Mountpoint, "/") < strings.Count(plan[i-1].Mountpoint, "/") {
			t.Errorf("%s after %s", plan[i].Mountpoint, plan[i-1].Mountpoint)
		}
	}
	missing := Unmapped(plan)
	if len(missing) != 1 || missing[0].Mountpoint != "/nix" {
		t.Errorf("unmapped %+v", missing)
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

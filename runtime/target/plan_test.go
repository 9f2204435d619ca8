package target

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// fstab parses an fstab for a test.
func fstab(t *testing.T, text string) []FstabEntry {
	t.Helper()
	e, err := ParseFstab(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// mustFstab parses an fstab of a table of cases.
func mustFstab(text string) []FstabEntry {
	e, err := ParseFstab(strings.NewReader(text))
	if err != nil {
		panic(err)
	}
	return e
}

// summary is one plan entry in a line: what a test compares.
func summary(e Entry) string {
	s := fmt.Sprintf("%s %s %s [%s]", e.Mountpoint, e.Action, e.Device, strings.Join(e.Options, ","))
	for _, d := range e.Dropped {
		s += " -" + d.Option
	}
	if e.Reason != "" {
		s += " (" + e.Reason + ")"
	}
	return s
}

var (
	btrfsDisk = []Partition{
		{Number: 1, Device: "/dev/loop1p1", PartType: "bios_grub"},
		{Number: 2, Device: "/dev/loop1p2", FS: FS{Type: "btrfs", UUID: "b7"}},
	}
	// zfsVolumes are a pool member and the datasets a ZFS layer gives:
	// volumes with no block device.
	zfsVolumes = []Partition{
		{Number: 1, Device: "/dev/loop2p1", FS: FS{Type: "vfat", UUID: "B00T-0001"}},
		{Number: 2, Device: "/dev/loop2p2", FS: FS{Type: "zfs_member", Label: "rpool"}},
		{Dataset: "rpool/root", FS: FS{Type: "zfs"}, Layer: "zfs", Parents: []string{"/dev/loop2p2"}},
		{Dataset: "rpool/nix", FS: FS{Type: "zfs"}, Layer: "zfs", Parents: []string{"/dev/loop2p2"}},
		{Dataset: "rpool/home", FS: FS{Type: "zfs"}, Layer: "zfs", Parents: []string{"/dev/loop2p2"}},
	}
	renamedPool = []Partition{{Dataset: "s1-zfs0/root", Names: []string{"rpool/root"}, FS: FS{Type: "zfs"}, Layer: "zfs"}}
	btrfsRoot   = Found{Partition: btrfsDisk[1], Subvol: "root"}
	btrfsNix    = Found{Partition: btrfsDisk[1], Subvol: "nix"}
	ext4Root    = Found{Partition: disk[2]}
)

// (Messages mention options in hint's default words here; the CLI's
// tests see its flags.)

// planCases are MakePlan's cases (TestMakePlan).
var planCases = []struct {
	name      string
	in        PlanInput
	want      []string
	warnings  []string
	err       error
	errSays   string
	errFixSay string
}{
	{
		name: "no fstab: the root alone",
		in:   PlanInput{Partitions: disk, Root: ext4Root},
		want: []string{"/ mount /dev/loop3p3 []"},
	},
	{
		name: "the root's own options, boot-only ones dropped",
		in: PlanInput{Partitions: disk, Root: ext4Root, Fstab: mustFstab(
			"UUID=47c65953-a858-4596-8414-5ffa98acaf41 / ext4 noatime,commit=60,x-systemd.device-timeout=5s,ro 0 1\n" +
				"LABEL=boot /boot vfat fmask=0077,dmask=0077,nofail 0 2\n")},
		want: []string{
			"/ mount /dev/loop3p3 [noatime,commit=60] -x-systemd.device-timeout=5s -ro",
			"/boot mount /dev/loop3p2 [fmask=0077,dmask=0077] -nofail",
		},
	},
	{
		name: "btrfs: root and /nix subvolumes, their fstab options, /home",
		in: PlanInput{Partitions: btrfsDisk, Root: btrfsRoot, Nix: &btrfsNix, Fstab: mustFstab(
			"UUID=b7 / btrfs subvol=root,compress=zstd,noatime 0 0\n" +
				"UUID=b7 /nix btrfs subvol=nix,compress=zstd,noatime 0 0\n" +
				"UUID=b7 /home btrfs subvol=home,compress=zstd 0 0\n")},
		want: []string{
			"/ mount /dev/loop1p2 [compress=zstd,noatime,subvol=root]",
			"/nix mount /dev/loop1p2 [compress=zstd,noatime,subvol=nix] (mounted first: it holds the store, where the fstab is)",
			"/home mount /dev/loop1p2 [subvol=home,compress=zstd]",
		},
	},
	{
		name: "btrfs: the fstab's subvolume differs from where the root was found",
		in:   PlanInput{Partitions: btrfsDisk, Root: btrfsRoot, Fstab: mustFstab("UUID=b7 / btrfs subvol=@,noatime 0 0\n")},
		want: []string{"/ mount /dev/loop1p2 [noatime,subvol=root] -subvol=@"},
	},
	{
		name: "/nix found elsewhere than the fstab says",
		in: PlanInput{Partitions: disk, Root: ext4Root, Nix: &Found{Partition: disk[3]}, Fstab: mustFstab(
			"UUID=eeee /nix ext4 noatime 0 0\n")},
		want: []string{
			"/ mount /dev/loop3p3 []",
			"/nix mount /dev/loop3p4 []",
			"/nix skip /dev/loop3p5 [noatime] (the store is on /dev/loop3p4)",
		},
		warnings: []string{"the fstab mounts UUID=eeee on /nix, but the store was found on /dev/loop3p4: that one is mounted"},
	},
	{
		name: "/nix found, the fstab has none",
		in:   PlanInput{Partitions: disk, Root: ext4Root, Nix: &Found{Partition: disk[3]}},
		want: []string{"/ mount /dev/loop3p3 []", "/nix mount /dev/loop3p4 []"},
	},
	{
		name:     "the fstab's root is elsewhere",
		in:       PlanInput{Partitions: disk, Root: ext4Root, Fstab: mustFstab("UUID=dddd / ext4 defaults 0 1\n")},
		want:     []string{"/ mount /dev/loop3p3 []"},
		warnings: []string{"the fstab's root UUID=dddd is not /dev/loop3p3, where the NixOS root was found"},
	},
	{
		name:    "an entry on no partition of the disk",
		in:      PlanInput{Partitions: disk, Root: ext4Root, Fstab: mustFstab("UUID=nope /data ext4 defaults 0 2\n")},
		err:     ErrNotOnDisk,
		errSays: "the fstab mounts UUID=nope on /data, which is not on the target disk: pass Mount=DEVICE:/data, or mark the entry nofail",
	},
	{
		name: "an entry on no partition, nofail",
		in:   PlanInput{Partitions: disk, Root: ext4Root, Fstab: mustFstab("UUID=nope /data ext4 nofail 0 2\n")},
		want: []string{"/ mount /dev/loop3p3 []", "/data skip  [] -nofail (not on the target disk (nofail))"},
	},
	{
		name: "a partition of another disk by its by-id name",
		in: PlanInput{Partitions: disk, Root: ext4Root, DiskIDs: samsung,
			Fstab: mustFstab("/dev/disk/by-id/ata-OTHER_DISK_123-part3 /data ext4 defaults 0 2\n")},
		err:     ErrNotOnDisk,
		errSays: "the fstab mounts /dev/disk/by-id/ata-OTHER_DISK_123-part3 on /data, a partition of another disk, which is not on the target disk (whose by-id names are: by-id/ata-Samsung_SSD_860): pass DiskAlias=/dev/disk/by-id/ata-OTHER_DISK_123 if that disk is this one, Mount=DEVICE:/data, or mark the entry nofail",
	},
	{
		name: "a partition of another disk by its by-id name, nofail; of this one, mounted",
		in: PlanInput{Partitions: disk, Root: ext4Root, DiskIDs: samsung,
			Fstab: mustFstab("/dev/disk/by-id/ata-OTHER_DISK_123-part3 /data ext4 nofail 0 2\n/dev/disk/by-id/ata-Samsung_SSD_860-part2 /boot vfat defaults 0 2\n")},
		want: []string{"/ mount /dev/loop3p3 []", "/data skip  [] -nofail (not on the target disk: a partition of disk by-id/ata-OTHER_DISK_123 (nofail))", "/boot mount /dev/loop3p2 []"},
	},
	{
		name: "one label on two filesystems",
		in: PlanInput{Partitions: append(slices.Clone(disk), Partition{Number: 6, Device: "/dev/loop3p6", FS: FS{Type: "ext4", Label: "boot"}}),
			Root: ext4Root, Fstab: mustFstab("LABEL=boot /boot vfat defaults 0 2\n")},
		err:     ErrAmbiguous,
		errSays: "the fstab's LABEL=boot (for /boot) names more than one partition, /dev/loop3p2 and /dev/loop3p6: choose one with Mount=DEVICE:/boot",
	},
	{
		name: "one label on two filesystems, nofail",
		in: PlanInput{Partitions: append(slices.Clone(disk), Partition{Number: 6, Device: "/dev/loop3p6", FS: FS{Type: "ext4", Label: "boot"}}),
			Root: ext4Root, Fstab: mustFstab("LABEL=boot /boot vfat nofail 0 2\n")},
		want: []string{"/ mount /dev/loop3p3 []", "/boot skip  [] -nofail (names /dev/loop3p2 and /dev/loop3p6: ambiguous (nofail))"},
	},
	{
		name: "--boot and --mount in place of the fstab's, parents first",
		in: PlanInput{Partitions: disk, Root: ext4Root, Fstab: mustFstab(
			"LABEL=boot /boot vfat defaults 0 2\nUUID=eeee /srv/data ext4 defaults 0 2\n"),
			Overrides: []Override{{Spec: "4", Mountpoint: "/boot", Origin: OriginBoot}, {Spec: "/dev/sdc1", Mountpoint: "/srv", Origin: OriginMount}}},
		want: []string{
			"/ mount /dev/loop3p3 []",
			"/boot mount /dev/loop3p4 []",
			"/srv mount /dev/sdc1 []",
			"/srv/data mount /dev/loop3p5 []",
		},
	},
	{
		name:    "--mount of a partition the disk does not have",
		in:      PlanInput{Partitions: disk, Root: ext4Root, Overrides: []Override{{Spec: "9", Mountpoint: "/boot", Origin: OriginMount}}},
		errSays: "Mount=9:/boot: the disk has no partition 9 (it has 1, 2, 3, 4, 5): name one of those",
	},
	{
		name:    "--mount of a label nothing has",
		in:      PlanInput{Partitions: disk, Root: ext4Root, Overrides: []Override{{Spec: "LABEL=nope", Mountpoint: "/boot", Origin: OriginMount}}},
		err:     ErrNoOverride,
		errSays: "Mount=LABEL=nope:/boot names no partition of the target disk",
	},
	{
		name:    "--mount over the root",
		in:      PlanInput{Partitions: disk, Root: ext4Root, Overrides: []Override{{Spec: "4", Mountpoint: "/", Origin: OriginMount}}},
		errSays: "Mount=4:/: the root is found, not mounted by the Mount option: choose it with RootPart=N",
	},
	{
		name: "skipped entries say why",
		in: PlanInput{Partitions: disk, Root: ext4Root, Fstab: mustFstab(
			"tmpfs /tmp tmpfs mode=1777\nserver:/x /net nfs4 defaults\n/swapfile none swap sw\nUUID=dddd /opt ext4 noauto\nrel /etc/x none bind\n/persist/y /etc/y none bind,noauto\n")},
		want: []string{
			"/ mount /dev/loop3p3 []",
			"none skip  [sw] (swap)",
			"/tmp skip  [mode=1777] (not a disk filesystem (tmpfs))",
			"/net skip  [] (network filesystem)",
			"/opt skip  [] -noauto (noauto)",
			"/etc/x skip  [bind] (bind mount of a relative path)",
			"/etc/y skip  [bind] -noauto (noauto)",
		},
	},
	{
		// Binds (impermanence's): mounted as systemd does, after what
		// they bind from.
		name: "bind mounts, last",
		in: PlanInput{Partitions: disk, Root: ext4Root, Fstab: mustFstab(
			"/persist/etc/nixos /etc/nixos none bind 0 0\n/persist/var/lib /var/lib none rbind,x-gvfs-hide 0 0\nUUID=dddd /persist ext4 defaults 0 2\n")},
		want: []string{
			"/ mount /dev/loop3p3 []",
			"/persist mount /dev/loop3p4 []",
			"/etc/nixos mount  []",
			"/var/lib mount  [] -x-gvfs-hide",
		},
	},
	{
		// ZFS datasets are volumes: mapped by name (legacy mountpoints and
		// zfsutil ones alike), mounted from the dataset, no device.
		name: "datasets of a layer",
		in: PlanInput{Partitions: zfsVolumes, Root: Found{Partition: zfsVolumes[2]}, Nix: &Found{Partition: zfsVolumes[3]}, Fstab: mustFstab(
			"rpool/root / zfs defaults,zfsutil 0 0\nrpool/nix /nix zfs zfsutil 0 0\nrpool/home /home zfs defaults 0 0\nUUID=B00T-0001 /boot vfat umask=0077 0 2\nrpool/gone /srv zfs nofail 0 0\n")},
		want: []string{
			"/ mount rpool/root [] -zfsutil",
			"/nix mount rpool/nix [] -zfsutil (mounted first: it holds the store, where the fstab is)",
			"/home mount rpool/home []",
			"/boot mount /dev/loop2p1 [umask=0077]",
			"/srv skip  [] -nofail (not on the target disk (nofail))",
		},
	},
	{
		// A pool imported under a temporary name (one of its name is
		// imported on the host): the fstab's names lead to its datasets.
		name: "datasets of a pool imported under another name",
		in: PlanInput{Partitions: renamedPool, Root: Found{Partition: renamedPool[0]}, Fstab: mustFstab(
			"rpool/root / zfs zfsutil 0 0\n")},
		want: []string{"/ mount s1-zfs0/root [] -zfsutil"},
	},
	{
		// A dataset the fstab names that no layer gave.
		name:    "a missing dataset",
		in:      PlanInput{Partitions: zfsVolumes, Root: Found{Partition: zfsVolumes[2]}, Fstab: mustFstab("rpool/root / zfs zfsutil 0 0\nrpool/data /data zfs defaults 0 0\n")},
		err:     ErrNotOnDisk,
		errSays: "the fstab mounts rpool/data on /data, which is not on the target disk",
	},
	{
		// Impermanence: / is a tmpfs, the system on /nix.
		name: "an ephemeral root",
		in: PlanInput{Partitions: disk, Root: Found{Partition: disk[3], Ephemeral: true}, Nix: &Found{Partition: disk[3]}, Fstab: mustFstab(
			"none / tmpfs defaults,size=2G,mode=755 0 0\nUUID=dddd /nix ext4 defaults 0 2\n")},
		want: []string{
			"/ mount  [size=2G,mode=755]",
			"/nix mount /dev/loop3p4 [] (mounted first: it holds the store, where the fstab is)",
		},
	},
}

// TestMakePlan: every case the session's mount step meets, without root
// or a disk (planCases): the plan as a pure function of what was found,
// the fstab and the overrides.
func TestMakePlan(t *testing.T) {
	cases := planCases
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			pl, err := MakePlan(c.in)
			if c.errSays != "" || c.err != nil {
				var pe *PlanError
				if !errors.As(err, &pe) || (c.err != nil && !errors.Is(err, c.err)) || (c.errSays != "" && !strings.HasPrefix(err.Error(), c.errSays)) {
					t.Fatalf("error %v, want one saying %q (%v)", err, c.errSays, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, e := range pl.Entries {
				got = append(got, summary(e))
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("plan:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(c.want, "\n  "))
			}
			if !slices.Equal(pl.Warnings, c.warnings) {
				t.Errorf("warnings %q, want %q", pl.Warnings, c.warnings)
			}
			for _, e := range pl.Entries {
				for _, d := range e.Dropped {
					if d.Reason == "" {
						t.Errorf("%s: option %s dropped without a reason", e.Mountpoint, d.Option)
					}
				}
			}
		})
	}
}

func TestChooseRoot(t *testing.T) {
	two := []Found{{Partition: disk[2]}, {Partition: disk[3]}}
	cases := []struct {
		name      string
		roots     []Found
		want      string
		partition int
		got       string
		errSays   string
	}{
		{name: "the only one", roots: two[:1], got: "/dev/loop3p3"},
		{name: "two", roots: two, errSays: "disk.img: 2 NixOS roots found: 3 (/dev/loop3p3), 4 (/dev/loop3p4): choose one with RootPart=N"},
		{name: "two, one chosen", roots: two, want: "4", got: "/dev/loop3p4"},
		{name: "chosen by device", roots: two, want: "/dev/loop3p3", got: "/dev/loop3p3"},
		{name: "a partition with no root", roots: two, want: "2", errSays: "disk.img: RootPart=2 holds no NixOS root: name one of 3 (/dev/loop3p3), 4 (/dev/loop3p4)"},
		{name: "a partition the disk lacks", roots: two, want: "9", errSays: "disk.img: RootPart=9: the disk has no partition 9 (it has 1, 2, 3, 4, 5)"},
		{name: "a partition chosen on a disk with no root", roots: nil, want: "3", errSays: "disk.img: no NixOS root found (no /etc/NIXOS or /nix/var/nix/profiles/system) on "},
		{name: "a partition target", roots: two, partition: 4, got: "/dev/loop3p4"},
		{name: "a partition target with no root", roots: two[1:], partition: 2, errSays: "disk.img: partition 2 of /dev/loop3 (/dev/loop3p2"},
		{name: "a partition target with no root, one elsewhere", roots: two[1:], partition: 2, errSays: "holds no NixOS root: a partition as the target must be the root's: name the root's partition, 4 (/dev/loop3p4), or the whole disk, /dev/loop3"},
		{name: "a partition target on a disk with none", partition: 2, errSays: "disk.img: no NixOS root found"},
		{name: "none", errSays: "disk.img: no NixOS root found"},
	}
	for _, c := range cases {
		f, err := ChooseRoot("disk.img", "/dev/loop3", c.roots, disk, c.want, c.partition)
		switch {
		case c.errSays != "" && (err == nil || !strings.Contains(err.Error(), c.errSays)):
			t.Errorf("%s: %v, want an error saying %q", c.name, err, c.errSays)
		case c.errSays == "" && (err != nil || f.Partition.Device != c.got):
			t.Errorf("%s: %s %v, want %s", c.name, f.Partition.Device, err, c.got)
		}
	}
}

func TestMissingMounts(t *testing.T) {
	tab := fstab(t, "UUID=47c65953-a858-4596-8414-5ffa98acaf41 / ext4 defaults 0 1\n"+
		"LABEL=boot /boot vfat defaults 0 2\n"+
		"UUID=nope /nix ext4 defaults 0 2\n"+
		"UUID=dddd /home ext4 defaults 0 2\n"+
		"UUID=eeee /boot/efi vfat noauto 0 2\n")
	mounted := func(mp string) bool { return mp == "/nix" }
	got := MissingMounts(tab, disk, DiskIDs{}, mounted)
	if len(got) != 1 || got[0].Mountpoint != "/boot" || got[0].Device != "/dev/loop3p2" || got[0].Type != "vfat" {
		t.Errorf("%+v: want /boot alone, on /dev/loop3p2", got)
	}
	// Without the disk's partitions (a directory on no disk), the entry
	// is still missing; which partition it is is not known.
	got = MissingMounts(tab, nil, DiskIDs{}, func(string) bool { return false })
	if len(got) != 2 || got[0].Device != "" || got[1].Mountpoint != "/nix" {
		t.Errorf("%+v: want /boot and /nix, on no known device", got)
	}
}

func TestESPCandidates(t *testing.T) {
	parts := []Partition{
		{Number: 1, Device: "/dev/vda1", PartType: "bios_grub"},
		{Number: 2, Device: "/dev/vda2", FS: FS{Type: "vfat"}},
		{Number: 3, Device: "/dev/vda3", PartType: "esp", FS: FS{Type: "vfat"}},
		{Number: 4, Device: "/dev/vda4", FS: FS{Type: "ext4"}},
		{Number: 5, PartType: "esp"}, // no device
	}
	got := ESPCandidates(parts)
	if len(got) != 2 || got[0].Number != 3 || got[1].Number != 2 {
		t.Errorf("candidates %+v: want the ESP-typed partition 3, then the vfat one, 2", got)
	}
	if got := ESPCandidates([]Partition{{Number: 1, Device: "/dev/sda1", PartType: "0xef"}}); len(got) != 1 {
		t.Errorf("an MBR ESP (0xef): %+v", got)
	}
}

func TestNoRootErrorNamesWhatItCannotOpen(t *testing.T) {
	e := &NoRootError{Target: "/dev/sda", Parts: []Partition{
		{Number: 1, Device: "/dev/sda1", FS: FS{Type: "vfat"}},
		{Number: 2, Device: "/dev/sda2", FS: FS{Type: "zfs_member", Label: "rpool"}},
	}}
	for _, want := range []string{"/dev/sda2 holds a member of the ZFS pool \"rpool\"", "zpool import -N -R /mnt rpool", "pass /mnt"} {
		if !strings.Contains(e.Error(), want) {
			t.Errorf("%q lacks %q", e.Error(), want)
		}
	}
}

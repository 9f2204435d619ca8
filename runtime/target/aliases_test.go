package target

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// TestDiskAliases: every case of the names a configuration gives its boot
// disk, mapped to the target's disk without root or a disk.
func TestDiskAliases(t *testing.T) {
	const disk = "/dev/loop7"
	cases := []struct {
		name     string
		in       AliasNames
		aliases  []string // NAME<-SOURCE
		problems []string // what each problem says
	}{
		{name: "nothing named", in: AliasNames{}},
		{name: "the current system's GRUB device", in: AliasNames{Current: []string{"/dev/sda"}},
			aliases: []string{"/dev/sda<-grub-config.xml"}},
		{name: "the next system's, the same disk", in: AliasNames{Current: []string{"/dev/sda"}, Configured: []string{"/dev/sda"}},
			aliases: []string{"/dev/sda<-grub-config.xml"}},
		{name: "by-id", in: AliasNames{Configured: []string{"/dev/disk/by-id/ata-X"}},
			aliases: []string{"/dev/disk/by-id/ata-X<-configuration.nix"}},
		{name: "nodev (GRUB for EFI)", in: AliasNames{Configured: []string{"nodev"}}},
		{name: "a partition for GRUB", in: AliasNames{Configured: []string{"/dev/sda1"}},
			problems: []string{"boot.loader.grub.device /dev/sda1 (configuration.nix) is a partition"}},
		{name: "a name nixrescue cannot tell", in: AliasNames{Configured: []string{"/dev/mapper/x"}},
			problems: []string{"is not a disk name nixrescue can map: pass {DiskAlias NAME}"}},
		{name: "two disks for one", in: AliasNames{Configured: []string{"/dev/sda", "/dev/sdb"}},
			problems: []string{"installs GRUB on /dev/sda and /dev/sdb, but the target is one disk (/dev/loop7)"}},
		{name: "two disks, both said to be this one", in: AliasNames{Explicit: []string{"/dev/sda", "/dev/sdb"}, Configured: []string{"/dev/sda", "/dev/sdb"}},
			aliases: []string{"/dev/sda<---disk-alias", "/dev/sdb<---disk-alias"}},
		{name: "an alias that is no disk", in: AliasNames{Explicit: []string{"/dev/sda2"}},
			problems: []string{"{DiskAlias /dev/sda2} is not the name of a whole disk"}},
		{name: "the fstab's names of one disk", in: AliasNames{Fstab: mustFstab("/dev/vda1 /boot ext4 defaults\n/dev/vda2 / ext4 defaults\n")},
			aliases: []string{"/dev/vda<-fstab"}},
		{name: "the fstab's names of two disks", in: AliasNames{Fstab: mustFstab("/dev/vda1 /boot ext4 defaults\n/dev/vdb2 / ext4 defaults\n")}},
		{name: "a device that is no disk: nothing leads to it, GRUB's disk is a problem", in: AliasNames{Current: []string{"/dev/sda"}, Explicit: []string{"/dev/sdb"},
			Fstab: mustFstab("/dev/sda1 /boot ext4 defaults\n"), NotDisk: &NotWholeDiskError{Device: disk, Is: "a loop device of /x.img from byte 512", Disk: "/x.img", Undo: "detach it"}},
			problems: []string{"the configuration installs GRUB on /dev/sdb and /dev/sda, which here would be /dev/loop7, a loop device of /x.img from byte 512, not a whole disk: its boot code would be written over a filesystem; detach it, then pass /x.img as {Target}"}},
		{name: "a device that is no disk, and no GRUB device", in: AliasNames{Configured: []string{"nodev"}, NotDisk: &NotWholeDiskError{Device: disk, Is: "an md RAID array"}}},
	}
	for _, c := range cases {
		aliases, problems := DiskAliases(c.in, disk)
		var got []string
		for _, a := range aliases {
			if a.Device != disk {
				t.Errorf("%s: %s leads to %s", c.name, a.Name, a.Device)
			}
			got = append(got, fmt.Sprintf("%s<-%s", a.Name, a.Source))
		}
		if !slices.Equal(got, c.aliases) {
			t.Errorf("%s: aliases %q, want %q", c.name, got, c.aliases)
		}
		if len(problems) != len(c.problems) {
			t.Errorf("%s: problems %q, want %q", c.name, problems, c.problems)
			continue
		}
		for i, p := range problems {
			if !strings.Contains(p, c.problems[i]) {
				t.Errorf("%s: problem %q, want one saying %q", c.name, p, c.problems[i])
			}
		}
	}
}

func TestDiskNames(t *testing.T) {
	for name, want := range map[string][3]any{
		"/dev/sda":              {true, false, ""},
		"/dev/sda2":             {false, true, "/dev/sda"},
		"/dev/nvme0n1":          {true, false, ""},
		"/dev/nvme0n1p3":        {false, true, "/dev/nvme0n1"},
		"/dev/vdb":              {true, false, ""},
		"/dev/disk/by-id/ata-X": {true, false, ""},
		"/dev/disk/by-uuid/1-2": {false, true, ""},
		"/dev/mapper/root":      {false, false, ""},
	} {
		if IsWholeDiskName(name) != want[0] || IsPartitionName(name) != want[1] || DiskOfPartitionName(name) != want[2] {
			t.Errorf("%s: whole %v, partition %v, disk %q; want %v", name, IsWholeDiskName(name), IsPartitionName(name), DiskOfPartitionName(name), want)
		}
	}
}

package mount

import (
	"testing"

	"golang.org/x/sys/unix"
)

func TestFlags(t *testing.T) {
	flags, data := Flags([]string{"defaults", "ro", "noatime", "nofail", "x-systemd.automount", "subvol=root", "compress=zstd", "rw", "nosuid", "comment=x", "errors=remount-ro"})
	if flags != unix.MS_NOATIME|unix.MS_NOSUID {
		t.Errorf("flags %#x", flags)
	}
	if data != "subvol=root,compress=zstd,errors=remount-ro" {
		t.Errorf("data %q", data)
	}
}

func TestPartitionPath(t *testing.T) {
	for disk, want := range map[string]string{"/dev/sdb": "/dev/sdb2", "/dev/loop0": "/dev/loop0p2", "/dev/nvme0n1": "/dev/nvme0n1p2", "/dev/vda": "/dev/vda2"} {
		if got := PartitionPath(disk, 2); got != want {
			t.Errorf("%s: %s, want %s", disk, got, want)
		}
	}
}

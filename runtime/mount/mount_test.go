package mount

import (
	"strings"
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

func TestRootIsInitramfs(t *testing.T) {
	disk := "22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n"
	initramfs := "1 1 0:2 / / rw - rootfs rootfs rw\n"
	switchedRoot := initramfs + "25 1 254:0 / / rw - ext4 /dev/vda rw\n"
	for in, want := range map[string]bool{disk: false, initramfs: true, switchedRoot: false} {
		got, err := RootIsInitramfs(strings.NewReader(in))
		if err != nil || got != want {
			t.Errorf("%q: got %v %v, want %v", in, got, err, want)
		}
	}
	if _, err := RootIsInitramfs(strings.NewReader("garbage\n")); err == nil {
		t.Error("malformed mountinfo accepted")
	}
}

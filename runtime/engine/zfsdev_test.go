package engine

import (
	"testing"

	"github.com/nixrescue/nixrescue/hack/fixture"
	"github.com/nixrescue/nixrescue/runtime/target"
)

// TestZFSControlNeeded: /dev/zfs only for GRUB on a ZFS root.
func TestZFSControlNeeded(t *testing.T) {
	zfs := []target.Partition{{Dataset: "rpool/root", Layer: "zfs", FS: target.FS{Type: "zfs"}}}
	for _, c := range []struct {
		loader string
		parts  []target.Partition
		want   bool
	}{
		{fixture.BootGRUB, zfs, true},
		{fixture.BootSystemd, zfs, false},
		{fixture.BootGRUB, []target.Partition{{Device: "/dev/vda2", FS: target.FS{Type: "ext4"}}}, false},
	} {
		root := t.TempDir()
		l, err := fixture.Build(root, fixture.Options{Bootloader: c.loader})
		if err != nil {
			t.Fatal(err)
		}
		if got := zfsControlNeeded(root, l.Systems[len(l.Systems)-1], c.parts) != ""; got != c.want {
			t.Errorf("%s on %+v: %v", c.loader, c.parts, got)
		}
	}
}

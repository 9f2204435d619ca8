package target

import (
	"errors"
	"strings"
	"testing"
)

// What blkid -p -o udev printed here: an ext4 whose label has a space,
// a non-ASCII letter and a backslash, and a GPT disk.
const blkidExt4 = `ID_FS_LABEL=my_dätä\x
ID_FS_LABEL_ENC=my\x20dätä\x5cx
ID_FS_UUID=8b5419c1-16b7-4165-ad74-09c260aab6f7
ID_FS_UUID_ENC=8b5419c1-16b7-4165-ad74-09c260aab6f7
ID_FS_VERSION=1.0
ID_FS_BLOCK_SIZE=1024
ID_FS_TYPE=ext4
ID_FS_USAGE=filesystem
`

func TestParseBlkidUdev(t *testing.T) {
	p := parseBlkidUdev([]byte(blkidExt4))
	if p.Type != "ext4" || p.Label != "my dätä\\x" || p.UUID != "8b5419c1-16b7-4165-ad74-09c260aab6f7" || p.Usage != "filesystem" {
		t.Errorf("ext4: %+v", p)
	}
	p = parseBlkidUdev([]byte("ID_PART_TABLE_UUID=9986117e-55ce-864b-b5a9-51d94c6763a8\nID_PART_TABLE_TYPE=gpt\n"))
	if p.PTType != "gpt" || p.Type != "" {
		t.Errorf("gpt: %+v", p)
	}
	if p := parseBlkidUdev(nil); p != (Probe{}) {
		t.Errorf("nothing recognised: %+v", p)
	}
}

// Every device gets its answer, whatever the others hold, and an error
// names its device.
func TestProbeEach(t *testing.T) {
	found := map[string]string{"/dev/loop0p2": "ext4", "/dev/loop0p3": "btrfs", "/dev/loop0p5": "vfat"}
	paths := []string{"/dev/loop0p1", "/dev/loop0p2", "/dev/loop0p3", "/dev/loop0p4", "/dev/loop0p5", "/dev/loop0p6"}
	probe := func(p string) ([]byte, error) {
		if t, ok := found[p]; ok {
			return []byte("ID_FS_TYPE=" + t + "\nID_FS_USAGE=filesystem\n"), nil
		}
		return nil, nil
	}
	got, err := probeEach(paths, 2, probe)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range paths {
		if pr, ok := got[p]; !ok || pr.Type != found[p] {
			t.Errorf("%s: %+v (answered %v), want type %q", p, pr, ok, found[p])
		}
	}
	got, err = probeEach(paths, 2, func(p string) ([]byte, error) {
		if p == "/dev/loop0p4" {
			return nil, errors.New("blkid /dev/loop0p4: failed")
		}
		return probe(p)
	})
	if err == nil || !strings.Contains(err.Error(), "/dev/loop0p4") {
		t.Errorf("error %v, want one naming /dev/loop0p4", err)
	}
	// The others are answered all the same; the failed one is left out.
	for _, p := range paths {
		if pr, ok := got[p]; ok != (p != "/dev/loop0p4") || pr.Type != found[p] {
			t.Errorf("with loop0p4 failing, %s: %+v (answered %v)", p, pr, ok)
		}
	}
}

// A BIOS boot partition, and a partition with no device yet, are not
// probed; every other one is, in order.
func TestProbed(t *testing.T) {
	parts := []Partition{
		{Number: 1, Device: "/dev/loop0p1", PartType: "bios_grub"},
		{Number: 2, Device: "/dev/loop0p2", PartType: "linux"},
		{Number: 3},
		{Number: 4, Device: "/dev/loop0p4", PartType: "esp"},
	}
	got := strings.Join(Probed(parts), " ")
	if want := "/dev/loop0p2 /dev/loop0p4"; got != want {
		t.Errorf("probed %q, want %q", got, want)
	}
}

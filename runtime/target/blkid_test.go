package target

import (
	"errors"
	"strings"
	"testing"
)

// What blkid -p -o export printed here for three loop devices: an ext4, one
// with nothing recognised (no block), a GPT disk.
const blkidThree = `DEVNAME=/dev/loop0
LABEL=one
UUID=fcb34233-86fd-418d-813e-915510b5e386
VERSION=1.0
BLOCK_SIZE=1024
TYPE=ext4
USAGE=filesystem
DEVNAME=/dev/loop2
PTUUID=0b5c1f45-7d7c-4d1c-9c55-3f7d0a0a3b1e
PTTYPE=gpt
`

func TestParseBlkidExportSeveralDevices(t *testing.T) {
	paths := []string{"/dev/loop0", "/dev/loop1", "/dev/loop2"}
	got, err := parseBlkidExport([]byte(blkidThree), paths)
	if err != nil {
		t.Fatal(err)
	}
	if p := got["/dev/loop0"]; p.Type != "ext4" || p.Label != "one" || p.UUID != "fcb34233-86fd-418d-813e-915510b5e386" || p.Usage != "filesystem" {
		t.Errorf("loop0: %+v", p)
	}
	if p, ok := got["/dev/loop1"]; ok {
		t.Errorf("loop1 has nothing recognised, got %+v", p)
	}
	if p := got["/dev/loop2"]; p.PTType != "gpt" || p.Type != "" {
		t.Errorf("loop2: %+v", p)
	}
}

func TestParseBlkidExportRefusesAnUnaskedDevice(t *testing.T) {
	if _, err := parseBlkidExport([]byte("DEVNAME=/dev/sda1\nTYPE=ext4\n"), []string{"/dev/loop0p1"}); err == nil {
		t.Fatal("no error for a device not asked about")
	}
}

// Every device gets its answer, whatever the others hold, and an error
// names its device.
func TestProbeEach(t *testing.T) {
	found := map[string]string{"/dev/loop0p2": "ext4", "/dev/loop0p3": "btrfs", "/dev/loop0p5": "vfat"}
	paths := []string{"/dev/loop0p1", "/dev/loop0p2", "/dev/loop0p3", "/dev/loop0p4", "/dev/loop0p5", "/dev/loop0p6"}
	probe := func(p string) ([]byte, error) {
		if t, ok := found[p]; ok {
			return []byte("DEVNAME=" + p + "\nTYPE=" + t + "\nUSAGE=filesystem\n"), nil
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

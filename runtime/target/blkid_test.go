package target

import "testing"

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

// fakeBlkid answers as blkid -p does: for each device in order, what it
// finds, stopping at the first where it finds nothing.
func fakeBlkid(found map[string]string, runs *int) func([]string) ([]byte, bool, error) {
	return func(paths []string) ([]byte, bool, error) {
		*runs++
		var out string
		for _, p := range paths {
			t, ok := found[p]
			if !ok {
				return []byte(out), true, nil
			}
			out += "DEVNAME=" + p + "\nTYPE=" + t + "\nUSAGE=filesystem\n\n"
		}
		return []byte(out), false, nil
	}
}

// A partition that holds nothing (a BIOS boot partition) stops blkid: the
// probe goes on after it, and every device gets its answer.
func TestProbeAllGoesOnAfterAnEmptyDevice(t *testing.T) {
	found := map[string]string{"/dev/loop0p2": "ext4", "/dev/loop0p3": "btrfs", "/dev/loop0p5": "vfat"}
	paths := []string{"/dev/loop0p1", "/dev/loop0p2", "/dev/loop0p3", "/dev/loop0p4", "/dev/loop0p5", "/dev/loop0p6"}
	runs := 0
	got, err := probeAll(paths, fakeBlkid(found, &runs))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range paths {
		pr, ok := got[p]
		if !ok {
			t.Errorf("%s: no answer", p)
		}
		if pr.Type != found[p] {
			t.Errorf("%s: type %q, want %q", p, pr.Type, found[p])
		}
	}
	if runs != 3 {
		t.Errorf("%d runs of blkid, want 3 (one, then one after each empty device but the last)", runs)
	}
	runs = 0
	if _, err := probeAll([]string{"/dev/loop0p2", "/dev/loop0p3"}, fakeBlkid(found, &runs)); err != nil || runs != 1 {
		t.Errorf("all found: %d runs (%v), want 1", runs, err)
	}
}

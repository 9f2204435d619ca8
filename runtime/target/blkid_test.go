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

package target

import (
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixrescue/nixrescue/hack/testenv"
)

func TestReadTableMBR(t *testing.T) {
	p := filepath.Join(t.TempDir(), "mbr.img")
	b := make([]byte, 8<<20)
	binary.LittleEndian.PutUint32(b[440:], 0x1234abcd)
	entry := func(i int, typ byte, start, size uint32) {
		e := b[446+16*i:]
		e[4] = typ
		binary.LittleEndian.PutUint32(e[8:], start)
		binary.LittleEndian.PutUint32(e[12:], size)
	}
	entry(0, 0x83, 2048, 4096)
	entry(1, 0x83, 6144, 8192)
	b[510], b[511] = 0x55, 0xaa
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	f, _ := os.Open(p)
	defer f.Close()
	table, err := ReadTable(f, int64(len(b)), 512)
	if err != nil {
		t.Fatal(err)
	}
	if table.Type != "dos" || len(table.Partitions) != 2 {
		t.Fatalf("%+v", table)
	}
	if p := table.Partitions[1]; p.Number != 2 || p.Start != 6144*512 || p.Size != 8192*512 || p.PartType != "0x83" {
		t.Errorf("partition 2: %+v", p)
	}
	// Cut short: the second partition runs past the end.
	if _, err := ReadTable(f, 10000*512, 512); err == nil || !strings.Contains(err.Error(), "truncated") {
		t.Errorf("truncated: %v", err)
	}
}

func TestReadTableGPTAndBare(t *testing.T) {
	if _, err := exec.LookPath("sgdisk"); err != nil {
		if testenv.Enabled() {
			t.Fatal("sgdisk is missing: run hack/install-deps")
		}
		t.Skip("sgdisk is missing (NIXRESCUE_INTEGRATION unset)")
	}
	p := filepath.Join(t.TempDir(), "gpt.img")
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	os.Truncate(p, 64<<20)
	out, err := exec.Command("sgdisk", "-n1:2048:+1M", "-t1:EF02", "-n2:0:+20M", "-c2:boot", "-u2:11111111-2222-4333-8444-555555555555", "-n3:0:0", "-t3:8304", p).CombinedOutput()
	if err != nil {
		t.Fatalf("sgdisk: %v %s", err, out)
	}
	f, _ := os.Open(p)
	defer f.Close()
	table, err := ReadTable(f, 64<<20, 512)
	if err != nil {
		t.Fatal(err)
	}
	if table.Type != "gpt" || len(table.Partitions) != 3 {
		t.Fatalf("%+v", table)
	}
	p1, p2, p3 := table.Partitions[0], table.Partitions[1], table.Partitions[2]
	if p1.PartType != "bios_grub" || p1.Start != 1<<20 || p1.Size != 1<<20 {
		t.Errorf("p1 %+v", p1)
	}
	if p2.PartLabel != "boot" || p2.PartUUID != "11111111-2222-4333-8444-555555555555" || p2.Size != 20<<20 {
		t.Errorf("p2 %+v", p2)
	}
	if p3.PartType != "root-x86-64" {
		t.Errorf("p3 %+v", p3)
	}
	// Nothing at all: no table (a bare filesystem is told by blkid).
	empty := filepath.Join(t.TempDir(), "empty.img")
	os.WriteFile(empty, make([]byte, 1<<20), 0o644)
	e, _ := os.Open(empty)
	defer e.Close()
	if table, err := ReadTable(e, 1<<20, 512); err != nil || table.Type != "" {
		t.Errorf("empty: %+v %v", table, err)
	}
}

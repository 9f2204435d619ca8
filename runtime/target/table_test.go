package target

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/diskfs/go-diskfs/partition/gpt"
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
	testenv.RequireTool(t, "sgdisk")
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

// TestReadTableLogicalPartitions: an MBR whose extended partition holds
// two logical ones, in a chain of two extended boot records: they are
// numbered 5 and 6 as the kernel numbers them, and the extended
// container is listed, marked, for what it is.
func TestReadTableLogicalPartitions(t *testing.T) {
	b := make([]byte, 10<<20)
	binary.LittleEndian.PutUint32(b[440:], 0x0badcafe)
	entry := func(sector int64, i int, typ byte, start, size uint32) {
		e := b[sector*512+446+16*int64(i):]
		e[4] = typ
		binary.LittleEndian.PutUint32(e[8:], start)
		binary.LittleEndian.PutUint32(e[12:], size)
		b[sector*512+510], b[sector*512+511] = 0x55, 0xaa
	}
	entry(0, 0, 0x83, 2048, 2048)
	entry(0, 1, 0x05, 4096, 16384)
	// The first record: a logical partition 2048 sectors after it, and the
	// next record 8192 sectors into the extended partition.
	entry(4096, 0, 0x83, 2048, 4096)
	entry(4096, 1, 0x05, 8192, 6144)
	entry(4096+8192, 0, 0x82, 2048, 2048)
	table, err := ReadTable(memFile{bytes.NewReader(b)}, int64(len(b)), 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range table.Partitions {
		got = append(got, fmt.Sprintf("%d %s %d+%d %s ext=%v", p.Number, p.PartType, p.Start/512, p.Size/512, p.PartUUID, p.Extended))
	}
	want := []string{
		"1 0x83 2048+2048 0badcafe-01 ext=false",
		"2 0x05 4096+16384 0badcafe-02 ext=true",
		"5 0x83 6144+4096 0badcafe-05 ext=false",
		"6 0x82 14336+2048 0badcafe-06 ext=false",
	}
	if table.Type != "dos" || !slices.Equal(got, want) {
		t.Errorf("%s:\n%s\nwant\n%s", table.Type, strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if devs := Probed([]Partition{{Number: 2, Device: "/dev/sdb2", Extended: true}, {Number: 5, Device: "/dev/sdb5"}}); !slices.Equal(devs, []string{"/dev/sdb5"}) {
		t.Errorf("probed %v: the extended container holds no filesystem", devs)
	}
	// A chain that loops back on itself ends.
	entry(4096+8192, 1, 0x05, 0, 16384)
	if table, err := ReadTable(memFile{bytes.NewReader(b)}, int64(len(b)), 0); err != nil || len(table.Partitions) != 4 {
		t.Errorf("looping chain: %v %v", table.Partitions, err)
	}
}

// writeGPT writes a GPT for sector-byte sectors with one partition to a
// disk image in memory (go-diskfs's writer).
func writeGPT(t *testing.T, size int64, sector int) []byte {
	t.Helper()
	p := filepath.Join(t.TempDir(), "disk.img")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	first := uint64(1<<20) / uint64(sector)
	table := &gpt.Table{LogicalSectorSize: sector, PhysicalSectorSize: sector, ProtectiveMBR: true,
		Partitions: []*gpt.Partition{{Index: 1, Start: first, End: first + uint64(4<<20)/uint64(sector) - 1, Type: gpt.LinuxFilesystem, Name: "root"}}}
	if err := table.Write(f, size); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestReadTable4K: a GPT written for 4096-byte sectors (a 4Kn disk's,
// copied into a file) is read as such, not called corrupt.
func TestReadTable4K(t *testing.T) {
	b := writeGPT(t, 16<<20, 4096)
	table, err := ReadTable(memFile{bytes.NewReader(b)}, int64(len(b)), 0)
	if err != nil {
		t.Fatal(err)
	}
	if table.Type != "gpt" || table.SectorSize != 4096 || len(table.Partitions) != 1 {
		t.Fatalf("%+v", table)
	}
	if p := table.Partitions[0]; p.Start != 1<<20 || p.Size != 4<<20 || p.PartLabel != "root" {
		t.Errorf("partition %+v", p)
	}
	if len(table.Warnings) != 0 {
		t.Errorf("warnings %q", table.Warnings)
	}
	// The same disk's own sector size, when a device says it.
	if table, err := ReadTable(memFile{bytes.NewReader(b)}, int64(len(b)), 4096); err != nil || table.SectorSize != 4096 {
		t.Errorf("at 4096: %+v %v", table, err)
	}
}

// TestReadTableBackupGPT: a GPT whose backup is missing, damaged, or
// not at the end of the disk is read, with a warning naming the fix.
func TestReadTableBackupGPT(t *testing.T) {
	const size = 16 << 20
	good := writeGPT(t, size, 512)
	read := func(b []byte, size int64) Table {
		t.Helper()
		table, err := ReadTable(memFile{bytes.NewReader(b)}, size, 0)
		if err != nil || table.Type != "gpt" || len(table.Partitions) != 1 {
			t.Fatalf("%+v %v", table, err)
		}
		return table
	}
	if w := read(good, size).Warnings; len(w) != 0 {
		t.Errorf("a whole GPT: warnings %q", w)
	}
	missing := slices.Clone(good)
	clear(missing[len(missing)-33*512:])
	if w := read(missing, size).Warnings; len(w) != 1 || !strings.Contains(w[0], "backup header (sector 32767) is missing or damaged") || !strings.Contains(w[0], "sgdisk -e") {
		t.Errorf("backup zeroed: %q", w)
	}
	differs := slices.Clone(good)
	differs[len(differs)-512+88] ^= 0xff // the backup's entries checksum
	if w := read(differs, size).Warnings; len(w) != 1 || !strings.Contains(w[0], "missing or damaged") {
		t.Errorf("backup header changed: %q", w)
	}
	grown := append(slices.Clone(good), make([]byte, 1<<20)...)
	if w := read(grown, size+1<<20).Warnings; len(w) != 1 || !strings.Contains(w[0], "not at the end of the disk") {
		t.Errorf("disk grown: %q", w)
	}
	primary := slices.Clone(good)
	primary[512+16] ^= 0xff // the primary header's checksum
	if w := read(primary, size).Warnings; len(w) != 1 || !strings.Contains(w[0], "primary header is damaged") {
		t.Errorf("primary damaged: %q", w)
	}
}

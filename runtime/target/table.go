package target

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"sort"
	"strings"

	"github.com/diskfs/go-diskfs/backend"
	"github.com/diskfs/go-diskfs/partition/gpt"
	"github.com/diskfs/go-diskfs/partition/mbr"
	"golang.org/x/sys/unix"
)

// Table is a partition table read from a disk or image.
type Table struct {
	// Type is "gpt", "dos" (MBR), or "" for a bare filesystem.
	Type string
	// SectorSize is the logical sector size the table was written for:
	// a loop device for the image must have it.
	SectorSize int
	Partitions []Partition
	// Warnings are what is wrong with the table that does not stop its
	// use: a GPT whose backup is missing or differs.
	Warnings []string
}

// Known GPT partition types, for messages and for telling a BIOS boot
// partition (which holds GRUB's core.img and no filesystem) from a broken
// one.
var gptTypeNames = map[string]string{
	"21686148-6449-6E6F-744E-656564454649": "bios_grub",
	"C12A7328-F81F-11D2-BA4B-00A0C93EC93B": "esp",
	"0FC63DAF-8483-4772-8E79-3D69D8477DE4": "linux",
	"0657FD6D-A4AB-43C4-84E5-0933C84B4F4F": "swap",
	"E6D6D379-F507-44C2-A23C-238F2A3DF928": "lvm",
	"CA7D7CCB-63ED-4C53-861C-1742536059CC": "luks",
	"6A898CC3-1DD2-11B2-99A6-080020736631": "zfs",
	"4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709": "root-x86-64",
}

// SectorSizes are the logical sector sizes an image file's GPT is tried
// with, in order: a disk's own is known (BLKSSZGET), a file's is not, and
// a GPT written for 4096-byte sectors (a 4Kn disk's, copied to a file)
// reads as garbage at 512.
var SectorSizes = []int{512, 4096}

// ReadTable reads the partition table of f (a disk or image of size
// bytes) written for the logical sector size sector; 0 tries each of
// SectorSizes and takes the one whose GPT header checksums. A table whose
// partitions run past the end is a truncated image, and an error.
func ReadTable(f backend.File, size int64, sector int) (t Table, err error) {
	sizes := SectorSizes
	if sector != 0 {
		sizes = []int{sector}
	}
	// The table comes from a disk nobody vouches for: whatever the parser
	// makes of it, a panic is not an answer.
	defer func() {
		if r := recover(); r != nil {
			t, err = Table{}, fmt.Errorf("the partition table is unreadable (%v): the disk is damaged or not partitioned as it claims", r)
		}
	}()
	found := false
	for _, s := range sizes {
		if size < int64(3*s) {
			continue
		}
		if g, err := gpt.Read(f, s, s); err == nil {
			t = gptTable(g, s)
			t.Warnings = checkGPTBackup(f, size, s, g.RecoveredFromBackup)
			found = true
			break
		}
	}
	if !found {
		m, err := mbr.Read(f, 512, 512)
		if err != nil {
			return Table{}, nil
		}
		if t, err = mbrTable(f, m, size); err != nil {
			return t, err
		}
	}
	sort.Slice(t.Partitions, func(i, j int) bool { return t.Partitions[i].Number < t.Partitions[j].Number })
	for _, p := range t.Partitions {
		if p.Start+p.Size > size {
			return t, fmt.Errorf("partition %d ends at byte %d but the disk has %d bytes: the image is truncated or damaged (copy it again)", p.Number, p.Start+p.Size, size)
		}
	}
	return t, nil
}

// gptTable is g's partitions, for sector-byte sectors.
func gptTable(g *gpt.Table, sector int) Table {
	t := Table{Type: "gpt", SectorSize: sector}
	for _, p := range g.Partitions {
		if p.Type == gpt.Unused {
			continue
		}
		typ := strings.ToUpper(string(p.Type))
		if name, ok := gptTypeNames[typ]; ok {
			typ = name
		}
		t.Partitions = append(t.Partitions, Partition{
			Number:    p.Index,
			Start:     int64(p.Start) * int64(sector),
			Size:      (int64(p.End) - int64(p.Start) + 1) * int64(sector),
			PartUUID:  strings.ToLower(p.GUID),
			PartLabel: p.Name,
			PartType:  typ,
		})
	}
	return t
}

// gptHeader is what checkGPTBackup compares of a GPT header (UEFI 2.10,
// 5.3.2).
type gptHeader struct {
	myLBA, alternateLBA, entriesLBA uint64
	entries, entrySize              uint32
	entriesCRC                      uint32
	diskGUID                        [16]byte
}

// readGPTHeader reads and checks the GPT header at lba: its signature and
// its own checksum.
func readGPTHeader(f backend.File, lba uint64, sector int) (gptHeader, error) {
	var h gptHeader
	b := make([]byte, sector)
	if n, err := f.ReadAt(b, int64(lba)*int64(sector)); n != len(b) {
		return h, fmt.Errorf("read sector %d: %v", lba, err)
	}
	if !bytes.Equal(b[:8], []byte("EFI PART")) {
		return h, errors.New("no GPT signature")
	}
	size := binary.LittleEndian.Uint32(b[12:])
	if size < 92 || int(size) > sector {
		return h, fmt.Errorf("header size %d", size)
	}
	want := binary.LittleEndian.Uint32(b[16:])
	hdr := append([]byte(nil), b[:size]...)
	binary.LittleEndian.PutUint32(hdr[16:], 0)
	if crc32.ChecksumIEEE(hdr) != want {
		return h, errors.New("header checksum mismatch")
	}
	h.myLBA = binary.LittleEndian.Uint64(b[24:])
	h.alternateLBA = binary.LittleEndian.Uint64(b[32:])
	copy(h.diskGUID[:], b[56:72])
	h.entriesLBA = binary.LittleEndian.Uint64(b[72:])
	h.entries = binary.LittleEndian.Uint32(b[80:])
	h.entrySize = binary.LittleEndian.Uint32(b[84:])
	h.entriesCRC = binary.LittleEndian.Uint32(b[88:])
	return h, nil
}

// checkGPTBackup says what is wrong with the GPT's second copy, which
// firmware and partitioning tools fall back to when the first is damaged:
// missing, damaged, different from the first, or not at the end of the
// disk (the disk or image grew). recovered says the first copy was bad
// and the table came from the backup.
func checkGPTBackup(f backend.File, size int64, sector int, recovered bool) []string {
	const fix = "repair it with sgdisk -e (or gdisk's w) before relying on it"
	if recovered {
		return []string{"the GPT's primary header is damaged: the table was read from its backup at the end of the disk; " + fix}
	}
	primary, err := readGPTHeader(f, 1, sector)
	if err != nil {
		return nil // gpt.Read took it; nothing more to say
	}
	last := uint64(size/int64(sector)) - 1
	backup, err := readGPTHeader(f, primary.alternateLBA, sector)
	switch {
	case primary.alternateLBA > last:
		return []string{fmt.Sprintf("the GPT's backup header is said to be at sector %d, past the end of the disk (%d sectors): the image was cut short or the disk shrank; %s", primary.alternateLBA, last+1, fix)}
	case err != nil:
		return []string{fmt.Sprintf("the GPT's backup header (sector %d) is missing or damaged (%v); %s", primary.alternateLBA, err, fix)}
	case backup.myLBA != primary.alternateLBA || backup.alternateLBA != 1 || backup.diskGUID != primary.diskGUID ||
		backup.entriesCRC != primary.entriesCRC || backup.entries != primary.entries || backup.entrySize != primary.entrySize:
		return []string{"the GPT's backup header differs from the primary one (another partitioning was half written?); " + fix}
	}
	if n := int64(backup.entries) * int64(backup.entrySize); n > 0 && n <= 1<<20 {
		b := make([]byte, n)
		if r, _ := f.ReadAt(b, int64(backup.entriesLBA)*int64(sector)); int64(r) != n || crc32.ChecksumIEEE(b) != backup.entriesCRC {
			return []string{"the GPT's backup partition entries are damaged; " + fix}
		}
	}
	if primary.alternateLBA != last {
		return []string{fmt.Sprintf("the GPT's backup header is at sector %d, not at the end of the disk (sector %d): the disk or image grew; move it with sgdisk -e", primary.alternateLBA, last)}
	}
	return nil
}

// MBR partition types of extended partitions (containers of logical
// partitions), as the kernel's msdos parser knows them.
var extendedTypes = []mbr.Type{mbr.ExtendedCHS, mbr.ExtendedLBA, mbr.LinuxExtended}

func isExtended(t byte) bool {
	for _, e := range extendedTypes {
		if byte(e) == t {
			return true
		}
	}
	return false
}

// mbrTable is m's primary partitions and, in an extended partition, its
// logical ones, numbered from 5 as the kernel numbers them.
func mbrTable(f backend.File, m *mbr.Table, size int64) (Table, error) {
	t := Table{Type: "dos", SectorSize: 512}
	var sig [4]byte
	if n, _ := f.ReadAt(sig[:], 440); n != 4 {
		return t, errors.New("the MBR is unreadable: the disk is too short")
	}
	disk := fmt.Sprintf("%08x", binary.LittleEndian.Uint32(sig[:]))
	for _, p := range m.Partitions {
		if p.Type == mbr.Empty || p.Size == 0 {
			continue
		}
		if p.Type == mbr.GPTProtective {
			return t, errors.New("the disk has a protective MBR but its GPT is unreadable (corrupt or truncated)")
		}
		part := Partition{
			Number:   p.Index,
			Start:    int64(p.Start) * 512,
			Size:     int64(p.Size) * 512,
			PartUUID: fmt.Sprintf("%s-%02x", disk, p.Index),
			PartType: fmt.Sprintf("0x%02x", uint8(p.Type)),
		}
		if isExtended(byte(p.Type)) {
			part.Extended = true
			t.Partitions = append(t.Partitions, part)
			logical, err := logicalPartitions(f, int64(p.Start), int64(p.Size), size, disk)
			if err != nil {
				return t, err
			}
			t.Partitions = append(t.Partitions, logical...)
			continue
		}
		t.Partitions = append(t.Partitions, part)
	}
	return t, nil
}

// maxLogical bounds the chain of extended boot records, as the kernel's
// parser does (a loop in a damaged chain must end).
const maxLogical = 100

// logicalPartitions walks the chain of extended boot records of the
// extended partition at sector first (of sectors sectors), as the kernel's
// msdos parser does (block/partitions/msdos.c, parse_extended): each
// record's data entries are logical partitions relative to the record,
// numbered from 5 in chain order; its first extended entry, relative to
// the extended partition's start, leads to the next record.
func logicalPartitions(f backend.File, first, sectors, size int64, disk string) ([]Partition, error) {
	var out []Partition
	n := 5
	this, thisSize := first, sectors
	seen := map[int64]bool{}
	for range maxLogical {
		if seen[this] || this*512+512 > size {
			break
		}
		seen[this] = true
		b := make([]byte, 512)
		if r, _ := f.ReadAt(b, this*512); r != len(b) || b[510] != 0x55 || b[511] != 0xaa {
			break
		}
		next := int64(-1)
		var nextSize int64
		for i := 0; i < 4; i++ {
			e := b[446+16*i:]
			typ := e[4]
			start := int64(binary.LittleEndian.Uint32(e[8:]))
			count := int64(binary.LittleEndian.Uint32(e[12:]))
			if count == 0 {
				continue
			}
			if isExtended(typ) {
				if next < 0 {
					next, nextSize = first+start, count
				}
				continue
			}
			// The kernel ignores what the 3rd and 4th entries hold when it
			// does not fit in the record's stretch: often garbage.
			if i >= 2 && (start+count > thisSize || this+start+count > first+sectors) {
				continue
			}
			out = append(out, Partition{
				Number:   n,
				Start:    (this + start) * 512,
				Size:     count * 512,
				PartUUID: fmt.Sprintf("%s-%02x", disk, n),
				PartType: fmt.Sprintf("0x%02x", typ),
			})
			n++
		}
		if next < 0 {
			break
		}
		this, thisSize = next, nextSize
	}
	return out, nil
}

// Size is the size in bytes of a block device or file.
func Size(f *os.File) (int64, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	if st.Mode().IsRegular() {
		return st.Size(), nil
	}
	n, err := unix.IoctlGetUint64(int(f.Fd()), unix.BLKGETSIZE64)
	return int64(n), err
}

// SectorSize is the logical sector size of a block device, or 0 for a
// file (which has none: ReadTable finds out).
func SectorSize(f *os.File) int {
	if st, err := f.Stat(); err == nil && st.Mode().IsRegular() {
		return 0
	}
	n, err := unix.IoctlGetInt(int(f.Fd()), unix.BLKSSZGET)
	if err != nil || n <= 0 {
		return 512
	}
	return n
}

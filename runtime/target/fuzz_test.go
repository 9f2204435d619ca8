package target

import (
	"bytes"
	"io/fs"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// The parsers of what a target's disk holds are fuzzed: the fstab and the
// partition table come from disks nobody vouches for. Seed corpora are in
// testdata/fuzz; hack/test runs each target for a short while, and the
// README says how to run them longer.

// FuzzParseFstab: any input gives entries or an error, never a panic or a
// hang, and what it gives is sane.
func FuzzParseFstab(f *testing.F) {
	f.Add([]byte("/dev/disk/by-uuid/0a1b / ext4 defaults 0 1\n"))
	f.Add([]byte("LABEL=boot /boot vfat fmask=0077,dmask=0077 0 2\n# comment\n\n"))
	f.Add([]byte("/dev/sda1 /mnt/with\\040space ext4 rw\t0 0\n"))
	f.Add([]byte("none /run tmpfs\n/a\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		entries, err := ParseFstab(bytes.NewReader(data))
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error of more than one line: %q", err)
			}
			return
		}
		for _, e := range entries {
			if e.Spec == "" || e.Mountpoint == "" || e.Type == "" {
				t.Errorf("entry with an empty field: %+v", e)
			}
			for _, s := range append([]string{e.Spec, e.Mountpoint, e.Type}, e.Options...) {
				if !utf8.ValidString(s) {
					t.Errorf("invalid UTF-8 in %+v", e)
				}
			}
		}
		if len(entries) > maxFstabLines {
			t.Errorf("%d entries, more than the bound %d", len(entries), maxFstabLines)
		}
	})
}

// memFile is a disk image in memory, for the partition-table parser.
type memFile struct{ *bytes.Reader }

func (memFile) Close() error { return nil }
func (m memFile) Stat() (fs.FileInfo, error) {
	return memInfo{size: m.Size()}, nil
}

type memInfo struct{ size int64 }

func (i memInfo) Name() string       { return "disk.img" }
func (i memInfo) Size() int64        { return i.size }
func (i memInfo) Mode() fs.FileMode  { return 0o644 }
func (i memInfo) ModTime() time.Time { return time.Time{} }
func (i memInfo) IsDir() bool        { return false }
func (i memInfo) Sys() any           { return nil }

// FuzzReadTable: any first sectors of a disk give a table or an error,
// never a panic, and every partition of a table lies inside the disk.
func FuzzReadTable(f *testing.F) {
	mbr := make([]byte, 1024)
	mbr[446+4], mbr[446+8], mbr[446+12] = 0x83, 1, 2
	mbr[510], mbr[511] = 0x55, 0xaa
	f.Add(mbr, int64(1<<20))
	f.Add(mbr, int64(512))
	f.Add(make([]byte, 4096), int64(4096))
	f.Fuzz(func(t *testing.T, data []byte, size int64) {
		if size < int64(len(data)) {
			size = int64(len(data))
		}
		table, err := ReadTable(memFile{bytes.NewReader(data)}, size, 512)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error of more than one line: %q", err)
			}
			return
		}
		for _, p := range table.Partitions {
			if p.Start < 0 || p.Size <= 0 || p.Start+p.Size > size {
				t.Errorf("partition outside the disk of %d bytes: %+v", size, p)
			}
		}
	})
}

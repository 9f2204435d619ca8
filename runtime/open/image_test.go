package open

import (
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nixrescue/nixrescue/runtime/image"
	"github.com/nixrescue/nixrescue/runtime/internal/hosttool/hosttooltest"
	"github.com/nixrescue/nixrescue/runtime/target"
)

// TestImageFactsAskQemuImgInfoOnlyForABackingChain: a qcow2 whose header
// names no backing file gets qemu-img check alone (its size from the
// header); one on a backing file gets qemu-img info for the chain too,
// and the chain comes back.
func TestImageFactsAskQemuImgInfoOnlyForABackingChain(t *testing.T) {
	dir := t.TempDir()
	// qemu-img is looked up on PATH; the record answers for it.
	if err := os.WriteFile(filepath.Join(dir, "qemu-img"), []byte("#!/bin/sh\nexit 99\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir)
	qemuImg := filepath.Join(dir, "qemu-img")
	for _, backed := range []bool{false, true} {
		path := filepath.Join(dir, map[bool]string{false: "alone.qcow2", true: "over.qcow2"}[backed])
		head := make([]byte, 512)
		copy(head, "QFI\xfb\x00\x00\x00\x03")
		if backed {
			binary.BigEndian.PutUint64(head[8:], 0x200) // backing_file_offset
		}
		binary.BigEndian.PutUint64(head[24:], 64<<20)
		if err := os.WriteFile(path, head, 0o644); err != nil {
			t.Fatal(err)
		}
		rec := &hosttooltest.Record{AnswerPrefix: map[string]hosttooltest.Answer{
			qemuImg + " check ": {Stdout: `{"corruptions": 0, "check-errors": 0}`},
			qemuImg + " info ":  {Stdout: `[{"format": "qcow2", "virtual-size": 67108864, "filename": "` + path + `"}, {"format": "raw", "virtual-size": 67108864, "filename": "/srv/base.raw"}]`},
		}}
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		op := &Opened{image: f}
		_, info, done, err := op.imageFacts(rec.Context(context.Background()), target.Target{Arg: path, Path: path}, Options{}, image.QCOW2, false)
		if err != nil {
			t.Fatal(err)
		}
		res := <-done
		f.Close()
		var ran []string
		for _, c := range rec.Calls() {
			ran = append(ran, strings.Fields(strings.TrimPrefix(c, qemuImg))[0])
		}
		want := []string{"check"}
		if backed {
			want = []string{"info", "check"}
		}
		if res.err != nil || info.VirtualSize != 64<<20 || !slices.Equal(ran, want) || len(rec.Unexpected()) > 0 {
			t.Errorf("backed %v: ran qemu-img %v (want %v), size %d, %v, unexpected %v", backed, ran, want, info.VirtualSize, res.err, rec.Unexpected())
		}
		if backed && (res.info == nil || len(res.info.Backing) != 1 || res.info.Backing[0].File != "/srv/base.raw") {
			t.Errorf("the backing chain: %+v", res.info)
		}
	}
}

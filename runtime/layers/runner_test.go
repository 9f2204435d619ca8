package layers

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/nixrescue/nixrescue/runtime/internal/hosttool"
	"github.com/nixrescue/nixrescue/runtime/internal/hosttool/hosttooltest"
)

// The layers' programs, answered from a record: what each runs, with
// which arguments, and how their answers and failures are read. No root,
// no cryptsetup, lvm or mdadm needed.

func TestReadHeaderAndAMissingCryptsetup(t *testing.T) {
	line := "cryptsetup luksDump --disable-locks /dev/vdb2"
	rec := &hosttooltest.Record{Answers: map[string]hosttooltest.Answer{line: {Stdout: luks2Dump}}}
	h, err := ReadHeader(rec.Context(context.Background()), "/dev/vdb2")
	if err != nil || h.UUID != "fbc98a37-b9df-4dd1-8fd3-159bc871659f" || h.Version != 2 {
		t.Fatalf("%+v %v", h, err)
	}
	rec = &hosttooltest.Record{Answers: map[string]hosttooltest.Answer{line: {Missing: true}}}
	_, err = ReadHeader(rec.Context(context.Background()), "/dev/vdb2")
	var missing *hosttool.MissingError
	if !errors.As(err, &missing) || err.Error() != "this host has no cryptsetup, which opening /dev/vdb2 (LUKS encryption) needs: install cryptsetup (Debian: cryptsetup-bin)" {
		t.Errorf("no cryptsetup: %v", err)
	}
	rec = &hosttooltest.Record{Answers: map[string]hosttooltest.Answer{line: {Code: 1, Stderr: "Device /dev/vdb2 is not a valid LUKS device."}}}
	_, err = ReadHeader(rec.Context(context.Background()), "/dev/vdb2")
	if err == nil || err.Error() != "read the LUKS header of /dev/vdb2: cryptsetup: Device /dev/vdb2 is not a valid LUKS device." {
		t.Errorf("a failure: %v", err)
	}
}

func TestOpenLUKSGivesTheKeyOnStdinOnly(t *testing.T) {
	line := "cryptsetup open --type luks --disable-locks --key-file=- --readonly /dev/vdb2 s-luks0"
	rec := &hosttooltest.Record{Answers: map[string]hosttooltest.Answer{line: {}}}
	ctx := rec.Context(context.Background())
	if err := OpenLUKS(ctx, "/dev/vdb2", "s-luks0", []byte("sekrit"), true); err != nil {
		t.Fatal(err)
	}
	if got := rec.Stdin(line); got != "sekrit" {
		t.Errorf("stdin %q", got)
	}
	for _, c := range rec.Calls() {
		if strings.Contains(c, "sekrit") {
			t.Errorf("the key is in the command line: %s", c)
		}
	}
	// cryptsetup's status 2 is a key that opens no slot.
	rec.Answers[line] = hosttooltest.Answer{Code: 2, Stderr: "No key available with this passphrase."}
	if err := OpenLUKS(ctx, "/dev/vdb2", "s-luks0", []byte("wrong"), true); !errors.Is(err, ErrBadKey) {
		t.Errorf("a wrong key: %v", err)
	}
}

func TestScanLVMReadsOnlyTheTargetsDevices(t *testing.T) {
	args := " --devices /dev/vdb2,/dev/vdc1 --nolocking --config " + lvmConfig("")
	pvs := "lvm pvs --reportformat json --units b --nosuffix -o pv_name,vg_name,vg_uuid,pv_count" + args
	lvs := "lvm lvs --reportformat json --units b --nosuffix -o vg_name,lv_name,lv_path,lv_dm_path,lv_size,lv_attr" + args
	rec := &hosttooltest.Record{Answers: map[string]hosttooltest.Answer{
		pvs: {Stdout: `{"report": [{"pv": [{"pv_name": "/dev/vdb2", "vg_name": "vg", "vg_uuid": "U", "pv_count": "2"}, {"pv_name": "/dev/vdc1", "vg_name": "", "vg_uuid": "", "pv_count": "0"}]}]}`},
		lvs: {Stdout: `{"report": [{"lv": [{"vg_name": "vg", "lv_name": "root", "lv_path": "/dev/vg/root", "lv_dm_path": "/dev/mapper/vg-root", "lv_size": "1048576", "lv_attr": "-wi-a-----"},
			{"vg_name": "vg", "lv_name": "pool", "lv_path": "", "lv_dm_path": "/dev/mapper/vg-pool", "lv_size": "1048576", "lv_attr": "twi-a-tz--"}]}]}`},
	}}
	groups, err := ScanLVM(rec.Context(context.Background()), []string{"/dev/vdb2", "/dev/vdc1"})
	if err != nil || len(groups) != 1 {
		t.Fatalf("%+v %v %q", groups, err, rec.Unexpected())
	}
	g := groups[0]
	if g.Name != "vg" || g.PVCount != 2 || len(g.PVs) != 1 || len(g.LVs) != 2 || !g.LVs[0].Data || g.LVs[1].Data || g.LVs[0].Size != 1<<20 {
		t.Errorf("%+v", g)
	}
}

func TestExamineMD(t *testing.T) {
	line := "mdadm --examine --export /dev/vdb1"
	rec := &hosttooltest.Record{Answers: map[string]hosttooltest.Answer{line: {Stdout: "MD_LEVEL=raid1\nMD_DEVICES=2\nMD_UUID=3f1a:22b0:8c41:9d1e\nMD_NAME=nixos:boot\n"}}}
	a, err := ExamineMD(rec.Context(context.Background()), "/dev/vdb1")
	if err != nil || a.UUID != "3f1a:22b0:8c41:9d1e" || a.Devices != 2 || len(a.Members) != 1 || !a.Degraded() {
		t.Errorf("%+v %v", a, err)
	}
	rec.Answers[line] = hosttooltest.Answer{Missing: true}
	if _, err := ExamineMD(rec.Context(context.Background()), "/dev/vdb1"); err == nil || !strings.Contains(err.Error(), "which opening /dev/vdb1 (a Linux software RAID (md) member) needs: install mdadm") {
		t.Errorf("no mdadm: %v", err)
	}
}

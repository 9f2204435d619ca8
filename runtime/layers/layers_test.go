package layers

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const luks2Dump = `LUKS header information
Version:       	2
Epoch:         	5
Metadata area: 	16384 [bytes]
Keyslots area: 	16744448 [bytes]
UUID:          	fbc98a37-b9df-4dd1-8fd3-159bc871659f
Label:         	nixos-root
Subsystem:     	(no subsystem)
Flags:       	(no flags)

Data segments:
  0: crypt
	offset: 16777216 [bytes]
	length: (whole device)
	cipher: aes-xts-plain64
	sector: 512 [bytes]

Keyslots:
  0: luks2
	Key:        512 bits
	Priority:   normal
	Cipher:     aes-xts-plain64
	PBKDF:      argon2id
  1: luks2
	Key:        512 bits
	PBKDF:      pbkdf2
Tokens:
  0: systemd-tpm2
	tpm2-pcrs:  7
	Keyslot:    1
Digests:
  0: pbkdf2
	Hash:       sha256
`

const luks1Dump = `LUKS header information for /dev/vda2

Version:       	1
Cipher name:   	aes
Cipher mode:   	xts-plain64
Hash spec:     	sha256
Payload offset:	4096
MK bits:       	512
UUID:          	0a6b0d12-9e7c-4b62-8b8a-2c1d9f3b7e41

Key Slot 0: ENABLED
	Iterations:         	1000
Key Slot 1: DISABLED
Key Slot 2: ENABLED
	Iterations:         	1000
Key Slot 3: DISABLED
`

func TestParseDump(t *testing.T) {
	h, err := ParseDump([]byte(luks2Dump))
	want := Header{Version: 2, UUID: "fbc98a37-b9df-4dd1-8fd3-159bc871659f", Label: "nixos-root", Cipher: "aes-xts-plain64",
		Keyslots: []int{0, 1}, Tokens: []Token{{Type: "systemd-tpm2", Keyslots: []int{1}}}}
	if err != nil || !reflect.DeepEqual(h, want) {
		t.Errorf("LUKS2: %+v %v", h, err)
	}
	if h.HardwareOnly() {
		t.Error("keyslot 0 takes a passphrase: not hardware-only")
	}
	h.Keyslots = []int{1}
	if !h.HardwareOnly() {
		t.Error("only keyslot 1, bound to the TPM: hardware-only")
	}
	h, err = ParseDump([]byte(luks1Dump))
	want = Header{Version: 1, UUID: "0a6b0d12-9e7c-4b62-8b8a-2c1d9f3b7e41", Cipher: "aes-xts-plain64", Keyslots: []int{0, 2}}
	if err != nil || !reflect.DeepEqual(h, want) {
		t.Errorf("LUKS1: %+v %v", h, err)
	}
	if _, err := ParseDump([]byte("Device /dev/vda2 is not a valid LUKS device.\n")); err == nil {
		t.Error("not a dump: want an error")
	}
}

func TestParseLUKSNames(t *testing.T) {
	conf := `{ config, lib, ... }:
{
  # boot.initrd.luks.devices."commented".device = "/dev/sdz9";
  boot.initrd.luks.devices."luks-0a6b0d12".device = "/dev/disk/by-uuid/0a6b0d12";
  boot.initrd.luks.devices.cryptswap.device = "/dev/disk/by-partlabel/swap";
  boot.initrd.luks.devices.root = {
    device = "/dev/disk/by-uuid/fbc98a37";
    preLVM = true;
  };
  boot.initrd = {
    luks.devices = {
      home = { device = "/dev/vdb1"; allowDiscards = true; };
      "data-disk" = {
        keyFile = "/key";
        device = "/dev/disk/by-label/data";
      };
    };
  };
  boot.initrd.luks.devices = [ { name = "old"; device = "/dev/sda3"; } ];
}
`
	got := ParseLUKSNames(conf)
	want := []LUKSName{{"luks-0a6b0d12", "/dev/disk/by-uuid/0a6b0d12"}, {"cryptswap", "/dev/disk/by-partlabel/swap"},
		{"root", "/dev/disk/by-uuid/fbc98a37"}, {"home", "/dev/vdb1"}, {"data-disk", "/dev/disk/by-label/data"}, {"old", "/dev/sda3"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
}

func TestParseExamineAndGroup(t *testing.T) {
	a := ParseExamine([]byte("MD_LEVEL=raid1\nMD_DEVICES=2\nMD_NAME=nixos:boot\nMD_UUID=accb6fa0:3a45c7ee:ce563384:9dc4d472\nMD_EVENTS=12\n"))
	if a.Level != "raid1" || a.Devices != 2 || a.Name != "boot" || a.UUID != "accb6fa0:3a45c7ee:ce563384:9dc4d472" {
		t.Errorf("%+v", a)
	}
	a.Members = []string{"/dev/vda2"}
	b := a
	b.Members = []string{"/dev/vdb2"}
	c := Array{UUID: "other", Devices: 2, Members: []string{"/dev/vda3"}}
	g := GroupArrays([]Array{a, c, b})
	if len(g) != 2 || !reflect.DeepEqual(g[0].Members, []string{"/dev/vda2", "/dev/vdb2"}) || g[0].Degraded() || !g[1].Degraded() {
		t.Errorf("%+v", g)
	}
}

func TestLVMConfig(t *testing.T) {
	c := lvmConfig("vg")
	for _, want := range []string{"use_devicesfile=0", `hints="none"`, "backup=0", "archive=0", `read_only_volume_list=[ "vg" ]`} {
		if !strings.Contains(c, want) {
			t.Errorf("config lacks %s: %s", want, c)
		}
	}
	if dmEscape("my-vg") != "my--vg" {
		t.Error(dmEscape("my-vg"))
	}
}

func TestKeysStdinLeavesTheRest(t *testing.T) {
	in := strings.NewReader("s3cret\nthe command's input\n")
	k, err := NewKeys([]string{"-"}, in)
	if err != nil {
		t.Fatal(err)
	}
	var tried []string
	err = k.Unlock("", func(key []byte) error {
		tried = append(tried, string(key))
		if string(key) == "s3cret" {
			return nil
		}
		return ErrBadKey
	})
	rest, _ := io.ReadAll(in)
	if err != nil || len(tried) != 1 || string(rest) != "the command's input\n" {
		t.Errorf("err %v, tried %q, rest %q", err, tried, rest)
	}
	k.Clear()
	if string(k.fromStdin) == "s3cret" {
		t.Error("the passphrase is still there after Clear")
	}
}

func TestKeysFilesThenBad(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	os.WriteFile(a, []byte("wrong"), 0o600)
	os.WriteFile(b, []byte("right\n"), 0o600)
	k, err := NewKeys([]string{a, b}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var tried []string
	open := func(want string) func([]byte) error {
		return func(key []byte) error {
			tried = append(tried, string(key))
			if string(key) == want {
				return nil
			}
			return ErrBadKey
		}
	}
	// A key file is the key as it is, newline and all.
	if err := k.Unlock("", open("right\n")); err != nil || len(tried) != 2 {
		t.Errorf("err %v tried %q", err, tried)
	}
	if err := k.Unlock("", open("none of them")); !errors.Is(err, ErrBadKey) {
		t.Errorf("no key fits: %v", err)
	}
	if _, err := NewKeys([]string{dir}, nil); err == nil || !strings.Contains(err.Error(), "is a directory") {
		t.Errorf("a directory: %v", err)
	}
	if _, err := NewKeys([]string{filepath.Join(dir, "missing")}, nil); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("missing: %v", err)
	}
	k, _ = NewKeys(nil, nil)
	k.Prompt = func(string) ([]byte, error) { return nil, ErrNoKey }
	if err := k.Unlock("", open("x")); !errors.Is(err, ErrNoKey) {
		t.Errorf("no key and no terminal: %v", err)
	}
	prompts := 0
	k.Prompt = func(string) ([]byte, error) { prompts++; return []byte("typo"), nil }
	if err := k.Unlock("", open("x")); !errors.Is(err, ErrBadKey) || prompts != 3 {
		t.Errorf("three tries: %v after %d", err, prompts)
	}
}

// TestEveryOpenedKindCloses: each kind a session opens has its Layer, by
// which teardown and a cleanup after a crash close it, once in Kinds,
// the keyed ones last.
func TestEveryOpenedKindCloses(t *testing.T) {
	for _, k := range []Kind{LUKS, LVM, MD, ZFS} {
		if Of(k) == nil {
			t.Errorf("no Layer for %s", k)
		}
	}
	seen, keyed := map[Kind]bool{}, false
	for _, l := range Kinds {
		if seen[l.Kind()] || keyed && !l.Keyed() {
			t.Errorf("Kinds: %s twice, or after a keyed kind", l.Kind())
		}
		seen[l.Kind()], keyed = true, keyed || l.Keyed()
	}
	if err := ReadWrite(context.Background(), Opened{Kind: "bcache"}); err == nil {
		t.Error("a kind with no Layer was made writable")
	}
}

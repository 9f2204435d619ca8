package layers

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/nixrescue/nixrescue/runtime/internal/lazyre"

	"github.com/nixrescue/nixrescue/runtime/hint"
	"github.com/nixrescue/nixrescue/runtime/internal/hosttool"
	"github.com/nixrescue/nixrescue/runtime/mount"
)

// Header is what a LUKS header tells without a key.
type Header struct {
	Version int    `json:"version"`
	UUID    string `json:"uuid"`
	Label   string `json:"label,omitempty"`
	Cipher  string `json:"cipher"`
	// Keyslots are the slots in use, by number.
	Keyslots []int `json:"keyslots"`
	// Tokens are LUKS2 tokens: systemd-tpm2, systemd-fido2, … and the
	// keyslots each unlocks.
	Tokens []Token `json:"tokens,omitempty"`
}

// Token is a LUKS2 token.
type Token struct {
	Type     string `json:"type"`
	Keyslots []int  `json:"keyslots"`
}

// ReadHeader reads the LUKS header of device (cryptsetup luksDump: no key
// needed, nothing written).
func ReadHeader(ctx context.Context, device string) (Header, error) {
	out, err := run(ctx, nil, device, LUKS, "cryptsetup", "luksDump", "--disable-locks", device)
	if err != nil {
		return Header{}, failed(err, "read the LUKS header of %s", device)
	}
	return ParseDump(out)
}

var (
	dumpFieldRE   = lazyre.New(`^([A-Za-z][A-Za-z ]*):\s*(.*)$`)
	luks1SlotRE   = lazyre.New(`^Key Slot (\d+): ENABLED`)
	luks2ItemRE   = lazyre.New(`^  (\d+): (\S+)`)
	luks2KeyslotR = lazyre.New(`^\s+Keyslot:\s+(\d+)`)
	luks2CipherRE = lazyre.New(`^\s+cipher:\s+(\S+)`)
)

// ParseDump reads cryptsetup luksDump's text, of a LUKS1 or a LUKS2
// header.
func ParseDump(out []byte) (Header, error) {
	var h Header
	var cipherName, cipherMode, section string
	var tok *Token
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if m := luks1SlotRE().FindStringSubmatch(line); m != nil {
			n, _ := strconv.Atoi(m[1])
			h.Keyslots = append(h.Keyslots, n)
			continue
		}
		if m := dumpFieldRE().FindStringSubmatch(line); m != nil {
			key, v := m[1], strings.TrimSpace(m[2])
			switch key {
			case "Version":
				h.Version, _ = strconv.Atoi(v)
			case "UUID":
				h.UUID = v
			case "Label":
				if v != "(no label)" {
					h.Label = v
				}
			case "Cipher name":
				cipherName = v
			case "Cipher mode":
				cipherMode = v
			}
			section = key
			if v != "" {
				section = ""
			}
			continue
		}
		switch section {
		case "Keyslots":
			if m := luks2ItemRE().FindStringSubmatch(line); m != nil {
				n, _ := strconv.Atoi(m[1])
				h.Keyslots = append(h.Keyslots, n)
			}
		case "Tokens":
			if m := luks2ItemRE().FindStringSubmatch(line); m != nil {
				h.Tokens = append(h.Tokens, Token{Type: m[2], Keyslots: []int{}})
				tok = &h.Tokens[len(h.Tokens)-1]
			} else if m := luks2KeyslotR().FindStringSubmatch(line); m != nil && tok != nil {
				n, _ := strconv.Atoi(m[1])
				tok.Keyslots = append(tok.Keyslots, n)
			}
		case "Data segments":
			if m := luks2CipherRE().FindStringSubmatch(line); m != nil && h.Cipher == "" {
				h.Cipher = m[1]
			}
		}
	}
	if h.Cipher == "" && cipherName != "" {
		h.Cipher = cipherName + "-" + cipherMode
	}
	if h.Version == 0 || h.UUID == "" {
		return h, errors.New("cryptsetup luksDump printed no LUKS version and UUID")
	}
	if h.Keyslots == nil {
		h.Keyslots = []int{}
	}
	return h, nil
}

// hardwareTokens are LUKS2 token types that unlock with hardware, which
// nixrescue cannot use yet.
var hardwareTokens = map[string]bool{"systemd-tpm2": true, "systemd-fido2": true, "systemd-pkcs11": true}

// HardwareOnly tells whether every keyslot of h is one a hardware token
// (TPM2, FIDO2, PKCS#11) unlocks: no passphrase or key file can open it.
func (h Header) HardwareOnly() bool {
	if len(h.Keyslots) == 0 {
		return false
	}
	bound := map[int]bool{}
	for _, t := range h.Tokens {
		if hardwareTokens[t.Type] {
			for _, k := range t.Keyslots {
				bound[k] = true
			}
		}
	}
	for _, k := range h.Keyslots {
		if !bound[k] {
			return false
		}
	}
	return true
}

// Describe is the header in a few words: LUKS2, its label and UUID.
func (h Header) Describe() string {
	s := fmt.Sprintf("LUKS%d", h.Version)
	if h.Label != "" {
		s += fmt.Sprintf(" %q", h.Label)
	}
	return s + " " + h.UUID
}

// ErrBadKey says a key did not open a volume.
var ErrBadKey = errors.New("no key slot opens with this key")

// OpenLUKS opens device as /dev/mapper/name with key (given on a pipe),
// read-only when asked. ErrBadKey when the key is wrong.
func OpenLUKS(ctx context.Context, device, name string, key []byte, readOnly bool) error {
	args := []string{"open", "--type", "luks", "--disable-locks", "--key-file=-"}
	if readOnly {
		args = append(args, "--readonly")
	}
	_, err := run(ctx, bytes.NewReader(key), device, LUKS, "cryptsetup", append(args, device, name)...)
	var te *hosttool.ExitError
	// cryptsetup's status 2: no permission, a wrong passphrase or key.
	if errors.As(err, &te) && te.Code == 2 {
		return ErrBadKey
	}
	return failed(err, "open %s", device)
}

// OpenOnHost names the device-mapper devices of the host that map the
// LUKS volume uuid (their dm uuid is CRYPT-LUKSn-UUID-NAME).
func OpenOnHost(uuid string) []string {
	want := strings.ReplaceAll(strings.ToLower(uuid), "-", "")
	dirs, _ := filepath.Glob("/sys/class/block/dm-*")
	var out []string
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "dm/uuid"))
		if err != nil {
			continue
		}
		f := strings.SplitN(strings.TrimSpace(string(b)), "-", 4)
		if len(f) >= 3 && f[0] == "CRYPT" && strings.HasPrefix(f[1], "LUKS") && strings.ToLower(f[2]) == want {
			out = append(out, DeviceName(filepath.Base(d)))
		}
	}
	return out
}

// luksLayer is LUKS's Layer: each volume opens with a key.
type luksLayer struct{}

func (luksLayer) Kind() Kind  { return LUKS }
func (luksLayer) Keyed() bool { return true }
func (luksLayer) Describe(f Found) Info {
	return Info{Kind: LUKS, On: f.Members, State: "locked", LUKS: f.Header}
}
func (luksLayer) Planned(f Found, name string) Opened {
	return Opened{Kind: LUKS, Name: name, Devices: f.Members}
}

// Find reads each volume's header: no key needed, nothing written.
func (luksLayer) Find(ctx context.Context, members []string) ([]Found, error) {
	var out []Found
	for _, m := range members {
		h, err := ReadHeader(ctx, m)
		if err != nil {
			return nil, err
		}
		out = append(out, Found{Kind: LUKS, Members: []string{m}, Header: &h})
	}
	return out, nil
}

// Usable refuses a volume this host has open already (the target's data
// would be written through two mappings), and one that opens only with a
// hardware token.
func (luksLayer) Usable(f Found) error {
	dev, h := f.Members[0], f.Header
	if open := OpenOnHost(h.UUID); len(open) > 0 {
		return &hint.Error{Err: &OpenOnHostError{Device: dev, Kind: LUKS, Holders: open},
			Fix: fmt.Sprintf("close it (cryptsetup close %s), or pass its opened device as the target", filepath.Base(open[0]))}
	}
	if h.HardwareOnly() {
		return &hint.Error{Err: fmt.Errorf("%s (%s) opens only with a TPM2, FIDO2 or PKCS#11 token, which nixrescue does not support yet", dev, h.Describe()),
			Fix: "open it yourself (systemd-cryptsetup attach NAME " + dev + ") and pass the opened device as the target"}
	}
	return nil
}

// Open opens the volume as /dev/mapper/NAME with the key (ErrBadKey when
// it opens no slot).
func (luksLayer) Open(ctx context.Context, f Found, name string, o OpenOptions) (Result, error) {
	dev := f.Members[0]
	if err := OpenLUKS(ctx, dev, name, o.Key, o.ReadOnly); err != nil {
		return Result{}, err
	}
	opened := Opened{Kind: LUKS, Name: name, Devices: f.Members}
	mapped := mount.DMDevice(name)
	if mapped == "" {
		return Result{Opened: opened}, fmt.Errorf("opened %s as %s, but the kernel has no such device-mapper device", dev, name)
	}
	return Result{Opened: opened,
		Info:    Info{Kind: LUKS, On: f.Members, State: "open", Device: mapped, Mapping: "/dev/mapper/" + name, LUKS: f.Header},
		Volumes: []Volume{{Device: mapped, Names: []string{"/dev/mapper/" + name}}}}, nil
}

func (luksLayer) Close(ctx context.Context, o Opened) error {
	if _, err := os.Stat(filepath.Join("/dev/mapper", o.Name)); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	_, err := hosttool.Run(ctx, nil, "cryptsetup", "close", "--disable-locks", o.Name)
	return err
}

// ReadWrite does nothing: a session that writes opens its volumes
// writable (dm-crypt maps cannot change mode).
func (luksLayer) ReadWrite(context.Context, Opened) error { return nil }

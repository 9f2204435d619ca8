package doctor

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
	"unicode/utf16"

	"github.com/nixrescue/nixrescue/runtime/nixos"
	"github.com/nixrescue/nixrescue/runtime/target"
)

// LoadOption is a firmware boot entry (a Boot#### variable, UEFI 2.10
// §3.1.3 EFI_LOAD_OPTION): its description and, from its device path, the
// GPT partition and the file it starts.
type LoadOption struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	// PartUUID is the partition's GUID of its hard drive node, lower
	// case; "" when it names none (a network or removable entry).
	PartUUID string `json:"partuuid,omitempty"`
	Path     string `json:"path,omitempty"`
}

// globalVariable is the GUID of the UEFI global variables (Boot####).
const globalVariable = "8be4df61-93ca-11d2-aa0d-00e098032b8c"

// ReadLoadOptions reads the Boot#### variables of an efivarfs directory.
func ReadLoadOptions(efivars string) ([]LoadOption, error) {
	names, err := filepath.Glob(filepath.Join(efivars, "Boot[0-9A-F][0-9A-F][0-9A-F][0-9A-F]-"+globalVariable))
	if err != nil {
		return nil, err
	}
	out := []LoadOption{}
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil || len(b) < 4 {
			continue
		}
		// efivarfs puts the variable's 4 attribute bytes first.
		o, err := ParseLoadOption(b[4:])
		if err != nil {
			continue
		}
		o.Name = strings.TrimSuffix(filepath.Base(n), "-"+globalVariable)
		out = append(out, o)
	}
	return out, nil
}

// ParseLoadOption reads an EFI_LOAD_OPTION.
func ParseLoadOption(b []byte) (LoadOption, error) {
	var o LoadOption
	if len(b) < 6 {
		return o, errors.New("a load option shorter than its header")
	}
	listLen := int(binary.LittleEndian.Uint16(b[4:6]))
	rest := b[6:]
	var desc []uint16
	for len(rest) >= 2 {
		c := binary.LittleEndian.Uint16(rest)
		rest = rest[2:]
		if c == 0 {
			break
		}
		desc = append(desc, c)
	}
	o.Description = string(utf16.Decode(desc))
	if listLen > len(rest) {
		return o, fmt.Errorf("a device path of %d bytes in %d", listLen, len(rest))
	}
	list := rest[:listLen]
	for len(list) >= 4 {
		typ, sub, n := list[0], list[1], int(binary.LittleEndian.Uint16(list[2:4]))
		if n < 4 || n > len(list) {
			return o, errors.New("a device path node of a bad length")
		}
		node := list[4:n]
		switch {
		case typ == 0x7f && sub == 0xff:
			return o, nil
		case typ == 4 && sub == 1 && len(node) >= 38 && node[37] == 2:
			// Hard drive: number, start, size, the GPT signature (a
			// GUID, its first three fields little-endian), format 2.
			o.PartUUID = guid(node[20:36])
		case typ == 4 && sub == 4:
			var u []uint16
			for i := 0; i+1 < len(node); i += 2 {
				if c := binary.LittleEndian.Uint16(node[i:]); c != 0 {
					u = append(u, c)
				}
			}
			o.Path = string(utf16.Decode(u))
		}
		list = list[n:]
	}
	return o, nil
}

// guid formats a GUID as it is stored (mixed endian), lower case.
func guid(b []byte) string {
	return fmt.Sprintf("%08x-%04x-%04x-%x-%x", binary.LittleEndian.Uint32(b[0:4]), binary.LittleEndian.Uint16(b[4:6]),
		binary.LittleEndian.Uint16(b[6:8]), b[8:10], b[10:16])
}

// checkNVRAM reports, on a host booted by EFI that repairs a disk (not an
// image: this host's firmware is that disk's machine's then), an ESP no
// firmware boot entry names: after a firmware update or a CMOS reset the
// machine boots it only by the fallback path, if that is there.
func checkNVRAM(f *Facts) []Finding {
	if !f.HostEFI || f.Image || f.Disk == "" || f.BootEntries == nil || !f.Bootloader.Kind.EFI() {
		return nil
	}
	esp := f.Bootloader.ESPMount()
	var part *target.Partition
	for _, e := range f.Plan {
		for i, p := range f.Partitions {
			if path.Clean(e.Mountpoint) == esp && e.Device != "" && p.Source() == e.Device {
				part = &f.Partitions[i]
			}
		}
	}
	if part == nil || part.PartUUID == "" {
		return nil
	}
	var ev []string
	for _, o := range f.BootEntries {
		if strings.EqualFold(o.PartUUID, part.PartUUID) {
			return nil
		}
		ev = append(ev, fmt.Sprintf("%s %q: %s", o.Name, o.Description, orDefault(o.PartUUID, "no partition")))
	}
	ev = append([]string{fmt.Sprintf("the ESP is partition %d, PARTUUID %s", part.Number, part.PartUUID), fmt.Sprintf("this machine's firmware has %d boot entries; none names it", len(f.BootEntries))}, ev...)
	arch := strings.ToUpper(orDefault(f.EFIArch, "x64"))
	fallback := path.Join(esp, "EFI/BOOT/BOOT"+arch+".EFI")
	fix := f.Command("rebuild") + "    # from this host, booted by EFI: the installer makes the entry (unless boot.loader.efi.canTouchEfiVariables is false)"
	if nixos.Exists(f.Root, fallback) {
		return []Finding{finding("nvram-no-entry", Warning, "no firmware boot entry names this disk's ESP: the firmware boots it only through the fallback path", append(ev, fallback+" is there"), fix)}
	}
	return []Finding{finding("nvram-no-entry", Fatal, "no firmware boot entry names this disk's ESP, and it has no fallback loader: the firmware does not boot it", append(ev, fallback+" is not there"), fix)}
}

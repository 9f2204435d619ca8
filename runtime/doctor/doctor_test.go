package doctor

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode/utf16"

	"github.com/nixrescue/nixrescue/runtime/nixos"
	"github.com/nixrescue/nixrescue/runtime/target"
)

// write makes files under root, by path.
func write(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for p, content := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func ids(fs []Finding) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.ID+":"+string(f.Severity))
	}
	return out
}

// sdbootRoot is a root whose ESP at /boot has systemd-boot's entries for
// generations 1 to 3 (3 the default), each with its kernel and initrd,
// and one file no entry names.
func sdbootRoot(t *testing.T) (string, []nixos.Generation, []nixos.BootEntry) {
	root := t.TempDir()
	files := map[string]string{"/boot/loader/loader.conf": "timeout 5\ndefault nixos-generation-3.conf\n", "/boot/EFI/nixos/orphan.efi": "xxxx"}
	var gens []nixos.Generation
	for _, n := range []string{"1", "2", "3"} {
		files["/boot/loader/entries/nixos-generation-"+n+".conf"] = "title NixOS\nlinux /EFI/nixos/k" + n + ".efi\ninitrd /EFI/nixos/i" + n + ".efi\noptions init=/nix/store/x/init\n"
		files["/boot/EFI/nixos/k"+n+".efi"] = strings.Repeat("k", 1000)
		files["/boot/EFI/nixos/i"+n+".efi"] = strings.Repeat("i", 2000)
		gens = append(gens, nixos.Generation{Number: int(n[0] - '0')})
	}
	write(t, root, files)
	entries, ok := nixos.ReadBootEntries(root, nixos.Bootloader{Kind: nixos.SystemdBoot}, gens)
	if !ok || len(entries) != 3 {
		t.Fatalf("entries: %v %+v", ok, entries)
	}
	return root, gens, entries
}

// TestPlanPruneNeverRemovesAKeptEntrysFile: whatever is kept, the current
// generation and the default are, and no file a kept entry names is
// among those removed; files no entry names are.
func TestPlanPruneNeverRemovesAKeptEntrysFile(t *testing.T) {
	root, gens, entries := sdbootRoot(t)
	b := nixos.Bootloader{Kind: nixos.SystemdBoot}
	for keep := 1; keep <= 4; keep++ {
		for _, current := range []int{1, 2, 3} {
			p := PlanPrune(root, b, gens, current, entries, keep)
			if !slices.Contains(p.Kept, current) || !slices.Contains(p.Kept, 3) || slices.Contains(p.Delete, current) {
				t.Errorf("keep %d, current %d: %+v", keep, current, p)
			}
			for _, e := range entries {
				if !slices.Contains(p.Kept, e.Generation) {
					continue
				}
				for _, f := range e.Files {
					if slices.Contains(p.Unreferenced, f) {
						t.Errorf("keep %d: %s, of kept generation %d, is to be removed", keep, f, e.Generation)
					}
				}
			}
			if !slices.Contains(p.Unreferenced, "/boot/EFI/nixos/orphan.efi") {
				t.Errorf("keep %d: the orphan stays: %v", keep, p.Unreferenced)
			}
		}
	}
	p := PlanPrune(root, b, gens, 3, entries, 1)
	if strings.Join(p.Unreferenced, " ") == "" || p.Bytes != 4+2*3000 || len(p.Delete) != 2 {
		t.Errorf("keep 1: %+v", p)
	}
}

// TestBootSpace: a /boot with less room than the current kernel and
// initrd is fatal, its fix the prune that keeps the most generations
// that leaves room for two; with room for one more, a warning; on the
// root's filesystem, nothing (the space check speaks).
func TestBootSpace(t *testing.T) {
	root, gens, entries := sdbootRoot(t)
	write(t, root, map[string]string{"/nix/store/s/kernel": strings.Repeat("k", 1000), "/nix/store/s/initrd": strings.Repeat("i", 2000)})
	f := &Facts{Root: root, Target: "/dev/sda", System: "/nix/store/s", Generation: 3, Generations: gens, Entries: entries, EntriesRead: true,
		Bootloader: nixos.Bootloader{Kind: nixos.SystemdBoot, ESP: "/boot"}}
	for _, c := range []struct {
		avail uint64
		want  string
	}{{100, "boot-full:fatal prune /dev/sda {Keep 1}"}, {4000, "boot-nearly-full:warning prune /dev/sda {Keep 2}"}, {7000, ""}} {
		f.Space = func(p string) Space {
			if p == "/" {
				return Space{Mountpoint: "/", Device: 1, Avail: 1 << 30, Size: 1 << 31}
			}
			return Space{Mountpoint: "/boot", Device: 2, Avail: c.avail, Size: 1 << 20}
		}
		got := ""
		for _, fd := range checkBootSpace(f) {
			got = fd.ID + ":" + string(fd.Severity) + " " + strings.TrimPrefix(strings.Join(fd.Fix, "; "), "nixrescue ")
		}
		if got != c.want {
			t.Errorf("avail %d: %q, want %q", c.avail, got, c.want)
		}
	}
	f.Space = func(string) Space { return Space{Mountpoint: "/", Device: 1, Avail: 10} }
	if fs := checkBootSpace(f); len(fs) != 0 {
		t.Errorf("/boot on the root's filesystem: %+v", fs)
	}
}

// TestFstabMissing: an fstab entry that names no filesystem is fatal (a
// warning when nofail), and the filesystem of its type that nothing
// mounts is proposed by its UUID; one that cannot be told says what to
// edit.
func TestFstabMissing(t *testing.T) {
	parts := []target.Partition{
		{Number: 1, Device: "/dev/loop0p1", FS: target.FS{Type: "ext4", UUID: "new-boot", Label: "boot"}},
		{Number: 2, Device: "/dev/loop0p2", FS: target.FS{Type: "ext4", UUID: "root"}},
	}
	plan := []target.Entry{
		{Mountpoint: "/", Device: "/dev/loop0p2", Action: target.ActionMount, Origin: target.OriginDiscovered},
		{Mountpoint: "/boot", Spec: "UUID=old-boot", Type: "ext4", Action: target.ActionSkip, Unresolved: true, Origin: target.OriginFstab},
		{Mountpoint: "/data", Spec: "UUID=gone", Type: "xfs", Action: target.ActionSkip, Unresolved: true, NoFail: true, Origin: target.OriginFstab},
	}
	fs := checkFstab(&Facts{Target: "disk.img", Partitions: parts, Plan: plan, NoGRUBInstall: "no device-mapper"})
	if got := ids(fs); strings.Join(got, " ") != "fstab-missing:fatal fstab-missing:warning" {
		t.Fatalf("%v", got)
	}
	if fs[0].Fix[0] != "nixrescue hardware-config disk.img {Mount UUID=new-boot:/boot} {Write}" ||
		fs[0].Fix[1] != "nixrescue rebuild disk.img {Mount UUID=new-boot:/boot} {NoInstallBootloader}" {
		t.Errorf("the fix: %q", fs[0].Fix)
	}
	if !strings.HasPrefix(fs[1].Fix[0], "nixrescue enter disk.img    # correct or remove fileSystems.\"/data\"") {
		t.Errorf("no candidate: %q", fs[1].Fix)
	}
}

// TestBootloaderChecks: GRUB's boot code gone from the disk the
// configuration names, an ESP without systemd-boot's file, a missing
// menu, and a default entry's missing file are fatal; an entry of a
// generation that is gone is a warning; a healthy ESP gives nothing.
func TestBootloaderChecks(t *testing.T) {
	sector := make([]byte, 512)
	f := &Facts{Root: t.TempDir(), Target: "/dev/sda", Disk: "/dev/sda", System: "/nix/store/s",
		Bootloader: nixos.Bootloader{Kind: nixos.GRUBBIOS, Devices: []string{"/dev/disk/by-id/ata-X"}},
		Aliases:    []target.DiskAlias{{Name: "/dev/disk/by-id/ata-X", Device: "/dev/sda"}},
		BootSector: func(string) ([]byte, error) { return sector, nil }}
	if got := strings.Join(ids(checkBootloader(f)), " "); got != "bootcode-missing:fatal boot-menu-missing:fatal" {
		t.Errorf("GRUB gone: %s", got)
	}
	copy(sector[0x180:], "GRUB ")
	write(t, f.Root, map[string]string{"/boot/grub/grub.cfg": "menuentry 'NixOS - Configuration 9' {\n  linux /kernels/k\n  initrd /kernels/i\n}\n", "/boot/kernels/k": "k"})
	if got := checkBootloader(f); len(got) != 0 {
		t.Errorf("GRUB there: %+v", got)
	}
	f.Entries, f.EntriesRead = nixos.ReadBootEntries(f.Root, f.Bootloader, nil)
	f.Generations = []nixos.Generation{{Number: 1}}
	if got := strings.Join(ids(checkEntries(f)), " "); got != "boot-files-missing:fatal boot-entry-stale:warning" {
		t.Errorf("entries: %s (%+v)", got, f.Entries)
	}

	root, gens, entries := sdbootRoot(t)
	sd := &Facts{Root: root, Target: "/dev/sda", System: "/nix/store/s", Generations: gens, Entries: entries, EntriesRead: true,
		Bootloader: nixos.Bootloader{Kind: nixos.SystemdBoot, ESP: "/boot"}, Plan: []target.Entry{{Mountpoint: "/boot", Action: target.ActionMount}}}
	if got := strings.Join(ids(checkBootloader(sd)), " "); got != "bootloader-missing:fatal" {
		t.Errorf("no systemd-boot on the ESP: %s", got)
	}
	write(t, root, map[string]string{"/boot/EFI/systemd/systemd-bootx64.efi": "MZ"})
	if got := append(checkBootloader(sd), checkEntries(sd)...); len(got) != 0 {
		t.Errorf("a healthy ESP: %+v", got)
	}
	sd.Plan = nil
	sd.Partitions = []target.Partition{{Number: 1, Device: "/dev/sda1", PartType: "esp", FS: target.FS{Type: "vfat", UUID: "AB-CD"}}}
	fs := checkBootloader(sd)
	if len(fs) != 1 || fs[0].ID != "esp-not-mounted" || fs[0].Fix[0] != "nixrescue hardware-config /dev/sda {Mount UUID=AB-CD:/boot} {Write}" {
		t.Errorf("no ESP in the fstab: %+v", fs)
	}
}

// loadOption encodes an EFI_LOAD_OPTION naming a GPT partition and a
// file, as firmware stores it.
func loadOption(desc string, partGUID []byte, file string) []byte {
	var b []byte
	b = binary.LittleEndian.AppendUint32(b, 1)
	var dp []byte
	hd := make([]byte, 42)
	hd[0], hd[1] = 4, 1
	binary.LittleEndian.PutUint16(hd[2:], 42)
	copy(hd[24:40], partGUID)
	hd[40], hd[41] = 2, 2
	dp = append(dp, hd...)
	u := utf16.Encode([]rune(file + "\x00"))
	fp := []byte{4, 4, 0, 0}
	binary.LittleEndian.PutUint16(fp[2:], uint16(4+2*len(u)))
	for _, c := range u {
		fp = binary.LittleEndian.AppendUint16(fp, c)
	}
	dp = append(dp, fp...)
	dp = append(dp, 0x7f, 0xff, 4, 0)
	b = binary.LittleEndian.AppendUint16(b, uint16(len(dp)))
	for _, c := range utf16.Encode([]rune(desc + "\x00")) {
		b = binary.LittleEndian.AppendUint16(b, c)
	}
	return append(b, dp...)
}

// TestNVRAM: Boot#### variables are read (the partition's GUID in its
// mixed-endian form), and an ESP none names is fatal without a fallback
// loader, a warning with one; an image is not this machine's.
func TestNVRAM(t *testing.T) {
	guid := []byte{0x78, 0x56, 0x34, 0x12, 0x34, 0x12, 0x78, 0x56, 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0}
	dir := t.TempDir()
	other := append([]byte{7, 0, 0, 0}, loadOption("Windows Boot Manager", make([]byte, 16), `\EFI\Microsoft\Boot\bootmgfw.efi`)...)
	if err := os.WriteFile(filepath.Join(dir, "Boot0000-"+globalVariable), other, 0o644); err != nil {
		t.Fatal(err)
	}
	opts, err := ReadLoadOptions(dir)
	if err != nil || len(opts) != 1 || opts[0].Description != "Windows Boot Manager" || opts[0].Path != `\EFI\Microsoft\Boot\bootmgfw.efi` {
		t.Fatalf("%v %+v", err, opts)
	}
	o, err := ParseLoadOption(loadOption("Linux Boot Manager", guid, `\EFI\systemd\systemd-bootx64.efi`))
	if err != nil || o.PartUUID != "12345678-1234-5678-1234-56789abcdef0" {
		t.Fatalf("%v %+v", err, o)
	}
	root := t.TempDir()
	f := &Facts{Root: root, Target: "/dev/sda", Disk: "/dev/sda", HostEFI: true, BootEntries: opts,
		Bootloader: nixos.Bootloader{Kind: nixos.SystemdBoot, ESP: "/boot"},
		Partitions: []target.Partition{{Number: 1, Device: "/dev/sda1", PartUUID: "12345678-1234-5678-1234-56789ABCDEF0"}},
		Plan:       []target.Entry{{Mountpoint: "/boot", Device: "/dev/sda1", Action: target.ActionMount}}}
	if got := strings.Join(ids(checkNVRAM(f)), " "); got != "nvram-no-entry:fatal" {
		t.Errorf("no entry, no fallback: %s", got)
	}
	write(t, root, map[string]string{"/boot/EFI/BOOT/BOOTX64.EFI": "MZ"})
	if got := strings.Join(ids(checkNVRAM(f)), " "); got != "nvram-no-entry:warning" {
		t.Errorf("no entry, a fallback: %s", got)
	}
	f.BootEntries = append(f.BootEntries, o)
	if got := checkNVRAM(f); len(got) != 0 {
		t.Errorf("an entry names it: %+v", got)
	}
	f.BootEntries, f.Image = opts, true
	if got := checkNVRAM(f); len(got) != 0 {
		t.Errorf("an image: %+v", got)
	}
}

// TestSpaceAndState: a root with less than 16 MiB free is fatal, one
// nearly full a warning; a filesystem flagged with errors is fatal, one
// with a journal to replay worth knowing; no configuration a warning;
// findings come gravest first.
func TestSpaceAndState(t *testing.T) {
	root := t.TempDir()
	f := &Facts{Root: root, Target: "vm.img",
		Partitions: []target.Partition{{Number: 2, Device: "/dev/loop0p2", FS: target.FS{Type: "ext4", Label: "boot"}, State: &target.FSState{Errors: "2 errors since", Check: "e2fsck", Replay: "journal"}}},
		Plan:       []target.Entry{{Mountpoint: "/boot", Device: "/dev/loop0p2", Action: target.ActionMount}},
		Space: func(string) Space {
			return Space{Mountpoint: "/", Device: 1, Avail: 8 << 20, Size: 1 << 30, HasInodes: true, Inodes: 100000, InodesFree: 90000}
		},
		Bootloader: nixos.Bootloader{Kind: nixos.UnknownLoader}}
	got := strings.Join(ids(Diagnose(f)), " ")
	if got != "fs-errors:fatal root-full:fatal no-configuration:warning fs-unclean:info" {
		t.Errorf("%s", got)
	}
	f.Space = func(string) Space { return Space{Mountpoint: "/", Device: 1, Avail: 50 << 20, Size: 1 << 30} }
	if got := strings.Join(ids(checkSpace(f)), " "); got != "space-low:warning" {
		t.Errorf("nearly full: %s", got)
	}
	if Quote("my disk.img") != `'my disk.img'` || Quote("/dev/sda") != "/dev/sda" {
		t.Error("Quote")
	}
}

// TestLUKSMissing: a LUKS device of the configuration that is on no
// partition is fatal, and the LUKS volume the configuration does not
// name is said; one that is there is nothing.
func TestLUKSMissing(t *testing.T) {
	f := &Facts{Target: "/dev/sda", Partitions: []target.Partition{
		{Number: 2, Device: "/dev/sda2", FS: target.FS{Type: "crypto_LUKS", UUID: "1111"}},
		{Number: 3, Device: "/dev/sda3", FS: target.FS{Type: "crypto_LUKS", UUID: "2222"}}},
		LUKS: []LUKSDevice{{Name: "cryptroot", Device: "/dev/disk/by-uuid/1111"}, {Name: "cryptdata", Device: "/dev/disk/by-uuid/9999"}}}
	fs := checkLUKS(f)
	if len(fs) != 1 || fs[0].ID != "luks-missing" || !strings.Contains(fs[0].Summary, "cryptdata") ||
		!strings.Contains(strings.Join(fs[0].Evidence, "\n"), "partition 3 is a LUKS volume (UUID 2222) the configuration does not name") {
		t.Errorf("%+v", fs)
	}
}

// TestSystemIncomplete: a current system without its initrd is fatal, and
// the fix is the newest whole generation; a whole one is nothing.
func TestSystemIncomplete(t *testing.T) {
	root := t.TempDir()
	write(t, root, map[string]string{
		"/nix/store/s1/kernel": "k", "/nix/store/s1/initrd": "i", "/nix/store/s1/init": "",
		"/nix/store/s2/kernel": "k", "/nix/store/s2/init": "",
		"/nix/store/s3/kernel": "k", "/nix/store/s3/init": ""})
	f := &Facts{Root: root, Target: "vm.img", System: "/nix/store/s3", Generation: 3,
		Generations: []nixos.Generation{{Number: 1, StorePath: "/nix/store/s1"}, {Number: 2, StorePath: "/nix/store/s2"}, {Number: 3, StorePath: "/nix/store/s3"}}}
	fs := checkSystem(f)
	if len(fs) != 1 || fs[0].ID != "system-incomplete" || fs[0].Fix[0] != "nixrescue rollback vm.img {Generation 1}" ||
		!strings.Contains(strings.Join(fs[0].Evidence, "\n"), "/nix/store/s3/initrd is missing") {
		t.Errorf("%+v", fs)
	}
	f.System, f.Generation = "/nix/store/s1", 1
	if fs := checkSystem(f); len(fs) != 0 {
		t.Errorf("a whole system: %+v", fs)
	}
}

// TestNixFull: a /nix of its own that is full is nix-full; the root, on
// another filesystem with room, is nothing.
func TestNixFull(t *testing.T) {
	f := &Facts{Target: "vm.img", Space: func(p string) Space {
		if p == "/nix" {
			return Space{Mountpoint: "/nix", Device: 2, Avail: 1 << 20, Size: 1 << 30}
		}
		return Space{Mountpoint: "/", Device: 1, Avail: 1 << 30, Size: 2 << 30}
	}}
	if got := strings.Join(ids(checkSpace(f)), " "); got != "nix-full:fatal" {
		t.Errorf("%s", got)
	}
}

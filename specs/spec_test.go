package specs

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	rspec "github.com/opencontainers/runtime-spec/specs-go"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// hostCaps is a bounding set without CAP_SYS_RESOURCE, as on this project's
// test machines.
var hostCaps = []string{"CAP_SYS_ADMIN", "CAP_CHOWN", "CAP_MKNOD", "CAP_DAC_OVERRIDE", "CAP_SETUID", "CAP_SETGID"}

func baseOptions() Options {
	return Options{
		Root:         "/mnt",
		Hostname:     "nixfixture",
		Env:          []string{"PATH=/run/current-system/sw/bin", "HOME=/root", "IN_NIXOS_ENTER=1"},
		Capabilities: hostCaps,
		NoFile:       20000,
		HelperSource: "/usr/local/bin/nixrescue",
		ResolvSource: "/run/nixrescue/sessions/nixrescue-0123456789ab/resolv.conf",
		ResolvDests:  []string{"/etc/resolv.conf"},
		CgroupsPath:  "/nixrescue-0123456789ab",
	}
}

func TestRecoveryGolden(t *testing.T) {
	cases := map[string]func(*Options){
		"default": func(*Options) {},
		"efi-isolated-offline": func(o *Options) {
			o.EFIVars, o.IsolatePIDs, o.NetworkNone = true, true, true
		},
		"nixos-chain-bundle": func(o *Options) {
			o.Args = []string{"/bin/sh", "-c", "true"}
			o.ResolvSource = "resolv.conf"
			o.ResolvDests = []string{"/nix/store/40nsqgkhbcbczinpy1yc87696p9zccnf-etc/etc/resolv.conf", "/run/systemd/resolve/stub-resolv.conf"}
			o.CgroupsPath = ""
		},
		"no-dns": func(o *Options) {
			o.ResolvSource, o.ResolvDests = "", nil
		},
		"host-dev": func(o *Options) {
			o.HostDev = true
		},
		"curated-disk": func(o *Options) {
			o.Devices = []rspec.LinuxDevice{
				{Path: "/dev/loop3", Type: "b", Major: 7, Minor: 3},
				{Path: "/dev/loop3p2", Type: "b", Major: 259, Minor: 1},
			}
			o.DiskLinks = "/run/nixrescue/sessions/nixrescue-0123456789ab/dev-disk"
		},
	}
	for name, change := range cases {
		t.Run(name, func(t *testing.T) {
			o := baseOptions()
			change(&o)
			s, err := Recovery(o)
			if err != nil {
				t.Fatal(err)
			}
			got, err := json.MarshalIndent(s, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			golden := filepath.Join("testdata", name+".json")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./specs -update to write it)", err)
			}
			if string(got) != string(want) {
				t.Errorf("spec differs from %s (go test ./specs -update rewrites it after a deliberate change):\n%s", golden, got)
			}
		})
	}
}

func namespaces(s *rspec.Spec) []rspec.LinuxNamespaceType {
	var out []rspec.LinuxNamespaceType
	for _, ns := range s.Linux.Namespaces {
		out = append(out, ns.Type)
	}
	return out
}

func TestRecoveryNamespaces(t *testing.T) {
	s, err := Recovery(baseOptions())
	if err != nil {
		t.Fatal(err)
	}
	ns := namespaces(s)
	for _, want := range []rspec.LinuxNamespaceType{rspec.MountNamespace, rspec.UTSNamespace, rspec.IPCNamespace} {
		if !slices.Contains(ns, want) {
			t.Errorf("no new %s namespace: %v", want, ns)
		}
	}
	// systemd ≥ 257 takes a PID namespace for a container; the host's
	// network is needed for downloads.
	for _, not := range []rspec.LinuxNamespaceType{rspec.PIDNamespace, rspec.CgroupNamespace, rspec.NetworkNamespace, rspec.UserNamespace} {
		if slices.Contains(ns, not) {
			t.Errorf("a new %s namespace by default: %v", not, ns)
		}
	}
	o := baseOptions()
	o.IsolatePIDs, o.NetworkNone = true, true
	s, _ = Recovery(o)
	ns = namespaces(s)
	if !slices.Contains(ns, rspec.PIDNamespace) || !slices.Contains(ns, rspec.NetworkNamespace) {
		t.Errorf("--isolate-pids --network none: %v", ns)
	}
}

func TestRecoveryTmpfsBeforeBindsUnderThem(t *testing.T) {
	o := baseOptions()
	o.ResolvDests = []string{"/run/systemd/resolve/stub-resolv.conf", "/tmp/x/resolv.conf"}
	s, err := Recovery(o)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, m := range s.Mounts {
		for _, dir := range []string{"/run", "/tmp"} {
			if strings.HasPrefix(m.Destination, dir+"/") && !seen[dir] {
				t.Errorf("%s is mounted before the tmpfs on %s", m.Destination, dir)
			}
		}
		if m.Type == "tmpfs" {
			seen[m.Destination] = true
		}
	}
	if !seen["/run"] || !seen["/tmp"] {
		t.Errorf("no tmpfs on /run and /tmp: %+v", s.Mounts)
	}
}

func TestRecoveryNothingMaskedNoContainerMarkers(t *testing.T) {
	o := baseOptions()
	o.EFIVars = true
	s, err := Recovery(o)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Linux.MaskedPaths) > 0 || len(s.Linux.ReadonlyPaths) > 0 {
		t.Errorf("masked %v, read-only %v", s.Linux.MaskedPaths, s.Linux.ReadonlyPaths)
	}
	for _, e := range s.Process.Env {
		if strings.HasPrefix(e, "container=") {
			t.Errorf("environment has %s: systemd would take the session for a container", e)
		}
	}
	if s.Process.NoNewPrivileges {
		t.Error("NoNewPrivileges is set: setuid wrappers would break")
	}
	if s.Root.Readonly {
		t.Error("rootfs is read-only")
	}
}

func TestWithHostDev(t *testing.T) {
	s, err := Generate(WithHostDev())
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Mounts) == 0 || s.Mounts[0].Destination != "/dev" || s.Mounts[0].Source != "/dev" || !slices.Contains(s.Mounts[0].Options, "rbind") {
		t.Fatalf("first mount is not the host's /dev bound recursively: %+v", s.Mounts)
	}
	var dests []string
	for _, m := range s.Mounts {
		dests = append(dests, m.Destination)
	}
	for _, want := range []string{"/dev/pts", "/dev/shm", "/dev/mqueue"} {
		if !slices.Contains(dests, want) {
			t.Errorf("no %s: %v", want, dests)
		}
	}
	blockAllowed := false
	for _, r := range s.Linux.Resources.Devices {
		if r.Allow && r.Type == "b" && r.Major == nil && r.Minor == nil && r.Access == "rwm" {
			blockAllowed = true
		}
	}
	if !blockAllowed {
		t.Errorf("block devices not allowed: %+v", s.Linux.Resources.Devices)
	}
}

func TestWithSys(t *testing.T) {
	for _, efi := range []bool{false, true} {
		s, err := Generate(WithSys(efi))
		if err != nil {
			t.Fatal(err)
		}
		hasEFI := slices.ContainsFunc(s.Mounts, func(m rspec.Mount) bool {
			return m.Type == "efivarfs" && m.Destination == "/sys/firmware/efi/efivars"
		})
		if hasEFI != efi {
			t.Errorf("WithSys(%v): efivarfs mounted = %v", efi, hasEFI)
		}
		// sysfs read-only (the host's devices and kernel are not the
		// target's to change), efivarfs writable (a bootloader install).
		if s.Mounts[0].Destination != "/sys" || !slices.Contains(s.Mounts[0].Options, "ro") || slices.Contains(s.Mounts[0].Options, "rw") {
			t.Errorf("WithSys(%v): /sys is %+v", efi, s.Mounts[0])
		}
		if efi && !slices.Contains(s.Mounts[1].Options, "rw") {
			t.Errorf("WithSys(true): efivarfs is %+v", s.Mounts[1])
		}
	}
}

func TestWithCapabilitiesSortsAndFillsSets(t *testing.T) {
	s, err := Generate(WithCapabilities([]string{"CAP_SYS_ADMIN", "CAP_CHOWN"}))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"CAP_CHOWN", "CAP_SYS_ADMIN"}
	c := s.Process.Capabilities
	for name, got := range map[string][]string{"bounding": c.Bounding, "effective": c.Effective, "permitted": c.Permitted} {
		if !slices.Equal(got, want) {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
}

func TestWithNoFileLimitReplaces(t *testing.T) {
	s, err := Generate(WithNoFileLimit(1024), WithNoFileLimit(20000))
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Process.Rlimits) != 1 || s.Process.Rlimits[0].Soft != 20000 || s.Process.Rlimits[0].Hard != 20000 {
		t.Errorf("rlimits %+v", s.Process.Rlimits)
	}
}

func TestWithCPUQuotaAndPidsLimit(t *testing.T) {
	s, err := Generate(WithCPUQuota(1.5), WithPidsLimit(128))
	if err != nil {
		t.Fatal(err)
	}
	c := s.Linux.Resources.CPU
	if c == nil || c.Quota == nil || *c.Quota != 150000 || c.Period == nil || *c.Period != 100000 {
		t.Errorf("cpu %+v, want quota 150000 over 100000 us", c)
	}
	if p := s.Linux.Resources.Pids; p == nil || p.Limit == nil || *p.Limit != 128 {
		t.Errorf("pids %+v, want 128", p)
	}
	for _, bad := range []SpecOpt{WithCPUQuota(0.001), WithCPUQuota(-1), WithPidsLimit(0)} {
		if _, err := Generate(bad); err == nil {
			t.Error("an out-of-range limit accepted")
		}
	}
	r, err := Recovery(Options{Root: "/mnt", HelperSource: "/nixrescue", CPUs: 0.5, PidsLimit: 64})
	if err != nil {
		t.Fatal(err)
	}
	if *r.Linux.Resources.CPU.Quota != 50000 || *r.Linux.Resources.Pids.Limit != 64 {
		t.Errorf("recovery spec resources %+v", r.Linux.Resources)
	}
}

func TestWithMemoryLimit(t *testing.T) {
	s, err := Generate(WithMemoryLimit(64<<20, 0))
	if err != nil {
		t.Fatal(err)
	}
	if m := s.Linux.Resources.Memory; m == nil || m.Limit == nil || *m.Limit != 64<<20 || m.Swap != nil {
		t.Errorf("memory %+v (swap left to the host unless given)", m)
	}
	s, err = Generate(WithMemoryLimit(64<<20, 64<<20))
	if err != nil {
		t.Fatal(err)
	}
	if m := s.Linux.Resources.Memory; m.Swap == nil || *m.Swap != 64<<20 {
		t.Errorf("memory %+v, want swap 64 MiB (no swap beyond the limit)", m)
	}
	if _, err := Generate(WithMemoryLimit(0, 0)); err == nil {
		t.Error("a limit of 0 accepted")
	}
	// Without MemoryLimit, Recovery sets no memory resource.
	r, err := Recovery(Options{Root: "/mnt", HelperSource: "/nixrescue"})
	if err != nil {
		t.Fatal(err)
	}
	if r.Linux.Resources != nil && r.Linux.Resources.Memory != nil {
		t.Errorf("memory limited by default: %+v", r.Linux.Resources.Memory)
	}
}

func TestWithResolvConfReadOnlyAtEachDest(t *testing.T) {
	s, err := Generate(WithResolvConf("/host/resolv.conf", []string{"/etc/resolv.conf", "/run/x/resolv.conf"}))
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Mounts) != 2 {
		t.Fatalf("mounts %+v", s.Mounts)
	}
	for _, m := range s.Mounts {
		if m.Source != "/host/resolv.conf" || !slices.Contains(m.Options, "ro") || !slices.Contains(m.Options, "bind") {
			t.Errorf("resolv.conf mount %+v", m)
		}
	}
}

func TestOptionErrors(t *testing.T) {
	if _, err := Generate(WithRoot("relative")); err == nil {
		t.Error("relative root accepted")
	}
	if _, err := Generate(WithMount(rspec.Mount{Destination: "dev"})); err == nil {
		t.Error("relative mount destination accepted")
	}
	if _, err := Generate(WithArgs()); err == nil {
		t.Error("empty args accepted")
	}
	if _, err := Recovery(Options{}); err == nil {
		t.Error("no root accepted")
	}
	o := baseOptions()
	o.HelperSource = ""
	if _, err := Recovery(o); err == nil {
		t.Error("no args and no helper accepted")
	}
}

func TestWithCuratedDev(t *testing.T) {
	devs := []rspec.LinuxDevice{{Path: "/dev/sdb", Type: "b", Major: 8, Minor: 16}, {Path: "/dev/sdb2", Type: "b", Major: 8, Minor: 18}}
	s, err := Generate(WithCuratedDev(devs, "/links"))
	if err != nil {
		t.Fatal(err)
	}
	if s.Mounts[0].Destination != "/dev" || s.Mounts[0].Type != "tmpfs" {
		t.Errorf("/dev is not a tmpfs of its own: %+v", s.Mounts[0])
	}
	if !slices.ContainsFunc(s.Mounts, func(m rspec.Mount) bool {
		return m.Destination == "/dev/disk" && m.Source == "/links" && slices.Contains(m.Options, "ro")
	}) {
		t.Errorf("no read-only /dev/disk links: %+v", s.Mounts)
	}
	if !slices.Equal(s.Linux.Devices, devs) {
		t.Errorf("devices %+v", s.Linux.Devices)
	}
	// Only the target's block devices: no wildcard block rule.
	var blocks []string
	for _, r := range s.Linux.Resources.Devices {
		if r.Allow && r.Type == "b" {
			if r.Major == nil || r.Minor == nil {
				t.Errorf("a wildcard block rule: %+v", r)
				continue
			}
			blocks = append(blocks, fmt.Sprintf("%d:%d", *r.Major, *r.Minor))
		}
	}
	if !slices.Equal(blocks, []string{"8:16", "8:18"}) {
		t.Errorf("allowed block devices %v", blocks)
	}
	if _, err := Generate(WithCuratedDev([]rspec.LinuxDevice{{Path: "/etc/passwd", Type: "b"}}, "")); err == nil {
		t.Error("a device outside /dev accepted")
	}
}

package specs

import (
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"

	rspec "github.com/opencontainers/runtime-spec/specs-go"
)

// SpecOpt changes a spec in place. Options are applied in order, and the
// order of mount options is the order of the mounts in the spec.
type SpecOpt func(*rspec.Spec) error

// Generate returns a bare spec with every option applied in order.
func Generate(opts ...SpecOpt) (*rspec.Spec, error) {
	s := bare()
	for _, o := range opts {
		if err := o(s); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// bare is the smallest valid spec: root user, cwd /, no mounts, no
// namespaces, nothing else. Options add the rest.
func bare() *rspec.Spec {
	return &rspec.Spec{
		Version: rspec.Version,
		Root:    &rspec.Root{},
		Process: &rspec.Process{
			User: rspec.User{UID: 0, GID: 0},
			Cwd:  "/",
		},
		Linux: &rspec.Linux{},
	}
}

// WithRoot makes dir the container's rootfs, writable: recovery edits the
// target in place.
func WithRoot(dir string) SpecOpt {
	return func(s *rspec.Spec) error {
		if !path.IsAbs(dir) {
			return fmt.Errorf("rootfs %q is not an absolute path", dir)
		}
		s.Root = &rspec.Root{Path: dir, Readonly: false}
		return nil
	}
}

// WithHostname sets the hostname seen inside (a new UTS namespace is needed
// for it; WithNamespaces adds one).
func WithHostname(name string) SpecOpt {
	return func(s *rspec.Spec) error {
		s.Hostname = name
		return nil
	}
}

// WithArgs sets the container's first process.
func WithArgs(args ...string) SpecOpt {
	return func(s *rspec.Spec) error {
		if len(args) == 0 {
			return errors.New("process args are empty")
		}
		s.Process.Args = slices.Clone(args)
		return nil
	}
}

// WithEnv replaces the whole environment: nothing of the host's leaks in.
func WithEnv(env []string) SpecOpt {
	return func(s *rspec.Spec) error {
		s.Process.Env = slices.Clone(env)
		return nil
	}
}

// WithCapabilities gives the process these capabilities, bounding,
// effective and permitted alike. Callers pass the host's bounding set: a
// fixed full list fails on hosts whose bounding set lacks some.
func WithCapabilities(caps []string) SpecOpt {
	return func(s *rspec.Spec) error {
		c := slices.Clone(caps)
		slices.Sort(c)
		s.Process.Capabilities = &rspec.LinuxCapabilities{
			Bounding:  c,
			Effective: slices.Clone(c),
			Permitted: slices.Clone(c),
		}
		// Setuid wrappers (/run/wrappers) need privileges to be gainable.
		s.Process.NoNewPrivileges = false
		return nil
	}
}

// WithNoFileLimit sets RLIMIT_NOFILE, soft and hard: builds open many files.
func WithNoFileLimit(n uint64) SpecOpt {
	return func(s *rspec.Spec) error {
		s.Process.Rlimits = slices.DeleteFunc(s.Process.Rlimits, func(r rspec.POSIXRlimit) bool {
			return r.Type == "RLIMIT_NOFILE"
		})
		s.Process.Rlimits = append(s.Process.Rlimits, rspec.POSIXRlimit{Type: "RLIMIT_NOFILE", Soft: n, Hard: n})
		return nil
	}
}

// WithNamespace adds a new namespace of type t (once).
func WithNamespace(t rspec.LinuxNamespaceType) SpecOpt {
	return func(s *rspec.Spec) error {
		for _, ns := range s.Linux.Namespaces {
			if ns.Type == t {
				return nil
			}
		}
		s.Linux.Namespaces = append(s.Linux.Namespaces, rspec.LinuxNamespace{Type: t})
		return nil
	}
}

// WithCgroupsPath names the container's cgroup.
func WithCgroupsPath(p string) SpecOpt {
	return func(s *rspec.Spec) error {
		s.Linux.CgroupsPath = p
		return nil
	}
}

// WithRootfsPropagation sets the propagation of the container's mounts.
// rslave: host mounts reach the container, nothing goes back.
func WithRootfsPropagation(p string) SpecOpt {
	return func(s *rspec.Spec) error {
		s.Linux.RootfsPropagation = p
		return nil
	}
}

// WithMount appends a mount.
func WithMount(m rspec.Mount) SpecOpt {
	return func(s *rspec.Spec) error {
		if !path.IsAbs(m.Destination) {
			return fmt.Errorf("mount destination %q is not absolute", m.Destination)
		}
		m.Options = slices.Clone(m.Options)
		s.Mounts = append(s.Mounts, m)
		return nil
	}
}

// WithProc mounts a fresh /proc.
func WithProc() SpecOpt {
	return WithMount(rspec.Mount{Destination: "/proc", Type: "proc", Source: "proc",
		Options: []string{"nosuid", "noexec", "nodev"}})
}

// WithSys mounts a sysfs at /sys, read-only (as systemd-nspawn does: the
// target's scripts run as root in the host's network namespace, and a
// writable sysfs would let them change the host's devices and kernel),
// and efivarfs at /sys/firmware/efi/efivars, writable, when efivars is
// true: what a bootloader install writes. Nothing is masked: bootctl,
// grub-install and nixos-generate-config read /sys.
func WithSys(efivars bool) SpecOpt {
	return func(s *rspec.Spec) error {
		if err := WithMount(rspec.Mount{Destination: "/sys", Type: "sysfs", Source: "sysfs",
			Options: []string{"nosuid", "noexec", "nodev", "ro"}})(s); err != nil {
			return err
		}
		if !efivars {
			return nil
		}
		return WithMount(rspec.Mount{Destination: "/sys/firmware/efi/efivars", Type: "efivarfs", Source: "efivarfs",
			Options: []string{"nosuid", "noexec", "nodev", "rw"}})(s)
	}
}

// WithHostDev binds the host's /dev recursively (live device nodes and the
// /dev/disk links udev keeps), then a private devpts, /dev/shm and
// /dev/mqueue on top, and allows block devices in the device cgroup.
func WithHostDev() SpecOpt {
	return func(s *rspec.Spec) error {
		mounts := append([]rspec.Mount{{Destination: "/dev", Type: "bind", Source: "/dev", Options: []string{"rbind", "rslave", "nosuid"}}}, devSubMounts()...)
		for _, m := range mounts {
			if err := WithMount(m)(s); err != nil {
				return err
			}
		}
		return WithDeviceRules(RecoveryDeviceRules())(s)
	}
}

// WithCuratedDev gives the container a /dev of its own: a tmpfs with the
// usual nodes (the runtime makes null, zero, full, random, urandom, tty
// and the ptmx, fd and std* links), a private devpts, /dev/shm and
// /dev/mqueue, plus devices (the target's disk and partitions), and, when
// diskLinks is set, that host directory bound read-only at /dev/disk (the
// by-uuid, by-label, by-partuuid and by-id links for those devices). No
// other disk of the host is visible, and the device cgroup allows only
// these block devices.
func WithCuratedDev(devices []rspec.LinuxDevice, diskLinks string) SpecOpt {
	return func(s *rspec.Spec) error {
		mounts := append([]rspec.Mount{{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=0755", "size=65536k"}}}, devSubMounts()...)
		for _, m := range mounts {
			if err := WithMount(m)(s); err != nil {
				return err
			}
		}
		if diskLinks != "" {
			if err := WithBind(diskLinks, "/dev/disk", true)(s); err != nil {
				return err
			}
		}
		rules := curatedCharRules()
		for _, d := range devices {
			if !path.IsAbs(d.Path) || !strings.HasPrefix(d.Path, "/dev/") {
				return fmt.Errorf("device %q is not under /dev", d.Path)
			}
			s.Linux.Devices = append(s.Linux.Devices, d)
			major, minor := d.Major, d.Minor
			rules = append(rules, rspec.LinuxDeviceCgroup{Allow: true, Type: d.Type, Major: &major, Minor: &minor, Access: "rwm"})
		}
		return WithDeviceRules(rules)(s)
	}
}

// curatedCharRules deny everything, then allow the character devices of a
// curated /dev.
func curatedCharRules() []rspec.LinuxDeviceCgroup {
	rules := []rspec.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}
	for _, r := range RecoveryDeviceRules() {
		if r.Allow && r.Type == "c" {
			rules = append(rules, r)
		}
	}
	return rules
}

// devSubMounts are what every /dev of ours has on top: a private devpts
// (its own ptmx, so the container's ptys are its own), /dev/shm and
// /dev/mqueue.
func devSubMounts() []rspec.Mount {
	return []rspec.Mount{
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts",
			Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
		{Destination: "/dev/shm", Type: "tmpfs", Source: "shm",
			Options: []string{"nosuid", "noexec", "nodev", "mode=1777"}},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue",
			Options: []string{"nosuid", "noexec", "nodev"}},
	}
}

// WithDeviceRules replaces the device cgroup rules.
func WithDeviceRules(rules []rspec.LinuxDeviceCgroup) SpecOpt {
	return func(s *rspec.Spec) error {
		if s.Linux.Resources == nil {
			s.Linux.Resources = &rspec.LinuxResources{}
		}
		s.Linux.Resources.Devices = slices.Clone(rules)
		return nil
	}
}

// RecoveryDeviceRules denies everything, then allows every block device
// (grub-install writes the disk, mkfs and fsck work on partitions) and the
// character devices a shell, a build and the device-mapper and loop tools
// need.
func RecoveryDeviceRules() []rspec.LinuxDeviceCgroup {
	char := func(major, minor int64) rspec.LinuxDeviceCgroup {
		r := rspec.LinuxDeviceCgroup{Allow: true, Type: "c", Major: &major, Access: "rwm"}
		if minor >= 0 {
			r.Minor = &minor
		}
		return r
	}
	return []rspec.LinuxDeviceCgroup{
		{Allow: false, Access: "rwm"},
		{Allow: true, Type: "b", Access: "rwm"},
		char(1, 3), char(1, 5), char(1, 7), char(1, 8), char(1, 9), // null zero full random urandom
		char(5, 0), char(5, 1), char(5, 2), // tty console ptmx
		char(136, -1),                                                             // pts
		char(10, 200), char(10, 229), char(10, 234), char(10, 236), char(10, 237), // tun fuse btrfs-control mapper/control loop-control
	}
}

// WithMemoryLimit limits the memory (and, when swap is not 0, memory plus
// swap) of the container's processes, in bytes: past it the kernel's OOM
// killer kills one of them.
func WithMemoryLimit(limit, swap int64) SpecOpt {
	return func(s *rspec.Spec) error {
		if limit <= 0 {
			return fmt.Errorf("memory limit %d: must be positive", limit)
		}
		if s.Linux.Resources == nil {
			s.Linux.Resources = &rspec.LinuxResources{}
		}
		m := &rspec.LinuxMemory{Limit: &limit}
		if swap != 0 {
			m.Swap = &swap
		}
		s.Linux.Resources.Memory = m
		return nil
	}
}

// CPUPeriod is the period of a CPU quota, in microseconds: the kernel's
// default, and what docker run --cpus uses.
const CPUPeriod = 100000

// WithCPUQuota lets the container's processes use cpus CPUs' worth of
// time together (1.5: one and a half), as a CFS quota over CPUPeriod;
// past it the kernel throttles them until the next period.
func WithCPUQuota(cpus float64) SpecOpt {
	return func(s *rspec.Spec) error {
		quota := int64(cpus * CPUPeriod)
		if quota < 1000 {
			return fmt.Errorf("cpu quota of %g CPUs: must be at least 0.01", cpus)
		}
		if s.Linux.Resources == nil {
			s.Linux.Resources = &rspec.LinuxResources{}
		}
		period := uint64(CPUPeriod)
		s.Linux.Resources.CPU = &rspec.LinuxCPU{Quota: &quota, Period: &period}
		return nil
	}
}

// WithPidsLimit caps the number of processes and threads in the
// container: past it fork and clone fail (EAGAIN), inside only.
func WithPidsLimit(n int64) SpecOpt {
	return func(s *rspec.Spec) error {
		if n <= 0 {
			return fmt.Errorf("pids limit %d: must be positive", n)
		}
		if s.Linux.Resources == nil {
			s.Linux.Resources = &rspec.LinuxResources{}
		}
		s.Linux.Resources.Pids = &rspec.LinuxPids{Limit: &n}
		return nil
	}
}

// WithTmpfs mounts a fresh tmpfs; mode is its permission bits.
func WithTmpfs(dest, mode string) SpecOpt {
	return WithMount(rspec.Mount{Destination: dest, Type: "tmpfs", Source: "tmpfs",
		Options: []string{"nosuid", "nodev", "mode=" + mode}})
}

// WithBind binds a host file or directory into the container. A read-only
// bind is remounted read-only by the runtime.
func WithBind(src, dest string, readonly bool) SpecOpt {
	opts := []string{"bind", "rprivate"}
	if readonly {
		opts = append(opts, "ro")
	}
	return WithMount(rspec.Mount{Destination: dest, Type: "bind", Source: src, Options: opts})
}

// WithResolvConf binds the host-side file src, read-only, at each of dests:
// the places inside the root where the target's /etc/resolv.conf leads
// (already resolved inside the root by the caller). Binding at the end of
// the chain leaves the target's links as they are.
func WithResolvConf(src string, dests []string) SpecOpt {
	return func(s *rspec.Spec) error {
		for _, d := range dests {
			if err := WithBind(src, d, true)(s); err != nil {
				return err
			}
		}
		return nil
	}
}

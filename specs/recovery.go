package specs

import (
	"errors"

	rspec "github.com/opencontainers/runtime-spec/specs-go"
)

// HelperPath is where the nixrescue binary is bound inside the container.
// It serves as the container's first process (it holds the container open
// and, as PID 1 of a private PID namespace, reaps zombies) and probes
// whether Nix's build sandbox can work there. It lives on the container's own /run tmpfs, so nothing is written to the
// target.
const HelperPath = "/run/nixrescue/nixrescue"

// Options is everything a recovery container's spec depends on. The caller
// gathers these facts from the host and the target; Recovery itself reads
// nothing.
type Options struct {
	// Root is the mounted NixOS root on the host.
	Root string
	// Hostname is the target's, from its /etc/hostname.
	Hostname string
	// Env is the complete environment of the container's processes.
	Env []string
	// Args is the container's first process; empty means the helper in
	// its hold mode.
	Args []string
	// Capabilities is the host's bounding set, as CAP_… names.
	Capabilities []string
	// NoFile is RLIMIT_NOFILE (soft and hard); 0 leaves it unset.
	NoFile uint64
	// NetworkNone gives the container a network namespace of its own with
	// only loopback.
	NetworkNone bool
	// IsolatePIDs gives the container a PID namespace of its own.
	IsolatePIDs bool
	// EFIVars mounts efivarfs at /sys/firmware/efi/efivars.
	EFIVars bool
	// HelperSource is the host path of the binary bound at HelperPath;
	// empty binds nothing.
	HelperSource string
	// ResolvSource is the host-side resolv.conf to inject; ResolvDests are
	// the paths inside the root where the target's /etc/resolv.conf leads.
	ResolvSource string
	ResolvDests  []string
	// CgroupsPath names the container's cgroup.
	CgroupsPath string
	// HostDev binds the host's /dev instead of a curated one.
	HostDev bool
	// Devices go into a curated /dev (the target's disk and partitions);
	// DiskLinks is a host directory of by-* links for them, bound at
	// /dev/disk.
	Devices   []rspec.LinuxDevice
	DiskLinks string
	// MemoryLimit, in bytes, is what the container's processes may use
	// together (0: no limit); MemorySwap, when set, is memory and swap
	// together (the host must account swap in its memory cgroup).
	MemoryLimit int64
	MemorySwap  int64
	// CPUs is a CPU quota, in CPUs (0: none); PidsLimit caps the
	// container's processes and threads (0: none).
	CPUs      float64
	PidsLimit int64
}

// HoldSocket is where, on the container's own /run, the hold listens for
// nixrescue's control connection when the runtime could not hand it one
// (containerd; see runtime/backend/holdctl).
const HoldSocket = "/run/nixrescue/control.sock"

// HoldArgs are the arguments of the helper's hold mode.
func HoldArgs() []string { return []string{HelperPath, "hold", "--listen", HoldSocket} }

// Recovery builds the spec of a recovery container. The order of the
// mounts matters: /run and /tmp are fresh tmpfs before anything is bound
// under them, so that a resolv.conf chain leading into /run lands on the
// container's tmpfs and never on the target or the host.
func Recovery(o Options) (*rspec.Spec, error) {
	if o.Root == "" {
		return nil, errors.New("no root directory given")
	}
	args := o.Args
	if len(args) == 0 {
		if o.HelperSource == "" {
			return nil, errors.New("no process args and no helper to hold the container")
		}
		args = HoldArgs()
	}
	opts := []SpecOpt{
		WithRoot(o.Root),
		WithHostname(o.Hostname),
		WithArgs(args...),
		WithEnv(o.Env),
		WithCapabilities(o.Capabilities),
		WithNamespace(rspec.MountNamespace),
		WithNamespace(rspec.UTSNamespace),
		WithNamespace(rspec.IPCNamespace),
		WithRootfsPropagation("rslave"),
		WithProc(),
		withDev(o),
		WithSys(o.EFIVars),
		WithTmpfs("/run", "0755"),
		WithTmpfs("/tmp", "1777"),
	}
	if o.NoFile > 0 {
		opts = append(opts, WithNoFileLimit(o.NoFile))
	}
	if o.NetworkNone {
		opts = append(opts, WithNamespace(rspec.NetworkNamespace))
	}
	if o.IsolatePIDs {
		opts = append(opts, WithNamespace(rspec.PIDNamespace))
	}
	if o.HelperSource != "" {
		opts = append(opts, WithBind(o.HelperSource, HelperPath, true))
	}
	if o.ResolvSource != "" {
		opts = append(opts, WithResolvConf(o.ResolvSource, o.ResolvDests))
	}
	if o.CgroupsPath != "" {
		opts = append(opts, WithCgroupsPath(o.CgroupsPath))
	}
	if o.MemoryLimit > 0 {
		opts = append(opts, WithMemoryLimit(o.MemoryLimit, o.MemorySwap))
	}
	if o.CPUs > 0 {
		opts = append(opts, WithCPUQuota(o.CPUs))
	}
	if o.PidsLimit > 0 {
		opts = append(opts, WithPidsLimit(o.PidsLimit))
	}
	return Generate(opts...)
}

func withDev(o Options) SpecOpt {
	if o.HostDev {
		return WithHostDev()
	}
	return WithCuratedDev(o.Devices, o.DiskLinks)
}

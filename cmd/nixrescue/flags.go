package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	units "github.com/docker/go-units"
	"github.com/spf13/cobra"

	"github.com/nixrescue/nixrescue/runtime/commands"
	"github.com/nixrescue/nixrescue/runtime/hint"
)

// Annotations of the commands, read by the test that keeps
// runtime/privatens (C, before Go starts) in step with them.
const (
	kindAnnotation = "nixrescue.kind"
	kindSession    = "session"   // opens a target
	kindContainer  = "container" // opens a target and runs a container on it
)

// targetFlags are the flags of every command that opens a target.
type targetFlags struct {
	root         string
	readOnly     bool
	rootPart     string
	mounts       []string
	boot         string
	force        bool
	dev          string
	stateDir     string
	system       string
	gen          int
	aliases      []string
	mountMissing bool
	fsck         bool
	keyFiles     []string
	snapshot     bool
	snapshotOut  string
	auditLog     string
}

func (f *targetFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.root, "root", "/mnt", "directory where the NixOS root is already mounted (when no TARGET is given)")
	fl.BoolVar(&f.readOnly, "read-only", false, "attach and mount everything read-only (no activation: it writes)")
	fl.StringVar(&f.rootPart, "root-part", "", "partition `N` (or device) holding the root, when a disk has several")
	fl.StringArrayVar(&f.mounts, "mount", nil, "mount `DEV:PATH` instead of (or besides) the fstab's entry for PATH (repeatable; DEV may be a partition number)")
	fl.StringVar(&f.boot, "boot", "", "mount `DEV` on /boot (same as --mount DEV:/boot)")
	fl.BoolVar(&f.force, "force", false, "open a target even when it is mounted read-write elsewhere on this host, or an image whose mode forbids writing")
	fl.StringVar(&f.dev, "dev", "curated", "the container's /dev: curated (the target's disk only) or host")
	fl.StringVar(&f.system, "system", "", "system to use, as the target names it (default: the system profile)")
	fl.IntVar(&f.gen, "generation", 0, "use generation `N` of the system profile")
	fl.StringArrayVar(&f.aliases, "disk-alias", nil, "another `NAME` of the target's disk, as the target machine saw it (e.g. /dev/sda; repeatable)")
	fl.BoolVar(&f.mountMissing, "mount-missing", false, "for a directory target: mount what its fstab puts on /boot, /boot/efi, /efi or /nix when nothing is mounted there and it is on the same disk (for the session only)")
	fl.BoolVar(&f.fsck, "fsck", false, "check each ext2/3/4 filesystem with this host's e2fsck -p before mounting it, as the target's boot would (needed for one the kernel flagged with errors; an xfs whose repair did not finish gets xfs_repair)")
	fl.StringArrayVar(&f.keyFiles, "key-file", nil, "a `FILE` holding a key of the target's LUKS volumes, tried on each (repeatable); - reads a passphrase from standard input; with none, the terminal asks")
	fl.BoolVar(&f.snapshot, "snapshot", false, "leave the image or disk as it is: every write goes to a throwaway qcow2 overlay")
	fl.StringVar(&f.snapshotOut, "snapshot-out", "", "with --snapshot, keep the overlay in `FILE` (new): a qcow2 on the target, to boot or apply later (qemu-img commit)")
	fl.StringVar(&f.auditLog, "audit-log", "", "where the session's audit records go: journal, syslog, or a `FILE` of JSON lines (default: the journal when it runs, else syslog, else "+commands.DefaultAuditFile+"); one that cannot be written stops the session")
	fl.StringVar(&f.stateDir, "state-dir", commands.DefaultStateDir, "where session state is kept on the host")
	_ = fl.MarkHidden("state-dir")
	if cmd.Annotations == nil {
		cmd.Annotations = map[string]string{kindAnnotation: kindSession}
	}
}

// apply puts the flags into o; target is the TARGET argument or "".
func (f *targetFlags) apply(cmd *cobra.Command, o *commands.Options, target string) error {
	if target != "" && cmd.Flags().Changed("root") {
		return errors.New("give either TARGET or --root DIR, not both")
	}
	o.Target = target
	if target == "" {
		o.Root, o.RootIsDefault = f.root, !cmd.Flags().Changed("root")
	}
	o.ReadOnly, o.RootPart, o.Mounts, o.Boot, o.Force = f.readOnly, f.rootPart, f.mounts, f.boot, f.force
	o.StateDir = f.stateDir
	o.AuditLog, o.Command, o.Policy = f.auditLog, os.Args, grant
	o.Container.System = commands.SystemChoice{Path: f.system, Generation: f.gen}
	o.DiskAliases = f.aliases
	o.MountMissing, o.Fsck = f.mountMissing, f.fsck
	o.KeyFiles, o.KeyStdin = f.keyFiles, os.Stdin
	o.Snapshot, o.SnapshotOut = f.snapshot || f.snapshotOut != "", f.snapshotOut
	o.Log = newLog()
	switch f.dev {
	case "curated":
	case "host":
		o.Container.HostDev = true
	default:
		return fmt.Errorf("--dev %q: use curated or host", f.dev)
	}
	return nil
}

// containerFlags are the flags of every command that builds a container.
type containerFlags struct {
	targetFlags
	noActivate  bool
	quiet       bool
	dns         []string
	network     string
	isolatePIDs bool
	efi         string
	noPivot     bool
	memory      string
	cpus        float64
	pidsLimit   int64
	backendFlags
}

// backendFlags choose the container runtime.
type backendFlags struct {
	backend   string
	address   string
	namespace string
}

func (b *backendFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&b.backend, "backend", "auto", "container runtime: auto (containerd when its socket answers, else embedded), embedded or containerd")
	fl.StringVar(&b.address, "address", commands.DefaultContainerdAddress, "containerd's socket")
	fl.StringVar(&b.namespace, "namespace", commands.DefaultContainerdNamespace, "containerd namespace of nixrescue's containers")
}

func (f *containerFlags) register(cmd *cobra.Command, kind string) {
	cmd.Annotations = map[string]string{kindAnnotation: kind}
	f.targetFlags.register(cmd)
	fl := cmd.Flags()
	fl.BoolVar(&f.noActivate, "no-activate", false, "do not run the system's activation first")
	fl.BoolVarP(&f.quiet, "quiet", "q", false, "hide activation's output unless it fails")
	fl.StringSliceVar(&f.dns, "dns", nil, "DNS server `IP` to use inside instead of the host's (repeatable); 'none' leaves resolv.conf alone")
	fl.StringVar(&f.network, "network", "host", "network of the container: host or none")
	fl.BoolVar(&f.isolatePIDs, "isolate-pids", false, "give the container its own PID namespace (bootloader tools then think they run in a container)")
	fl.StringVar(&f.efi, "efi", "auto", "efivarfs inside: auto (when the host booted by EFI), on or off")
	fl.StringVar(&f.memory, "memory", "", "limit the memory of everything in the container to `SIZE` (e.g. 512M, 2G; swap included where the host accounts it)")
	fl.Float64Var(&f.cpus, "cpus", 0, "limit the container to `N` CPUs' worth of time (e.g. 1.5); 0 is no limit")
	fl.Int64Var(&f.pidsLimit, "pids-limit", 0, "cap the processes and threads in the container at `N` (at least 32); 0 is no limit")
	fl.BoolVar(&f.noPivot, "no-pivot", false, "enter the root with MS_MOVE and chroot instead of pivot_root (detected on initramfs rescue systems)")
	f.backendFlags.register(cmd)
}

// options turns the flags and the positional arguments (TARGET before
// "--", the command after it) into run's options.
func (f *containerFlags) options(cmd *cobra.Command, args []string) (commands.RunOptions, error) {
	target, command, err := splitArgs(cmd, args)
	if err != nil {
		return commands.RunOptions{}, err
	}
	o := commands.RunOptions{NoActivate: f.noActivate || f.readOnly, Quiet: f.quiet, Args: command}
	if err := f.targetFlags.apply(cmd, &o.Options, target); err != nil {
		return o, err
	}
	o.Backend, o.Address, o.Namespace = f.backend, f.address, f.namespace
	c := &o.Container
	c.DNS, c.IsolatePIDs, c.EFI, c.NoPivot = f.dns, f.isolatePIDs, commands.EFIMode(f.efi), f.noPivot
	c.CPUs, c.PidsLimit = f.cpus, f.pidsLimit
	if f.memory != "" {
		n, err := units.RAMInBytes(f.memory)
		if err != nil {
			return o, fmt.Errorf("--memory %q: give a size, such as 512M or 2G", f.memory)
		}
		c.Memory = n
	}
	switch f.network {
	case "host":
	case "none":
		c.NetworkNone = true
	default:
		return o, fmt.Errorf("--network %q: use host or none", f.network)
	}
	return o, nil
}

// optionsWithoutCommand is options for a command that runs its own
// program in the container and takes none after "--".
func (f *containerFlags) optionsWithoutCommand(cmd *cobra.Command, args []string) (commands.RunOptions, error) {
	if err := targetArgs(cmd, args); err != nil {
		return commands.RunOptions{}, err
	}
	o, err := f.options(cmd, args)
	if err == nil && len(o.Args) > 0 {
		err = &hint.Error{Err: fmt.Errorf("%s takes no command, got %q", cmd.Name(), strings.Join(o.Args, " ")), Fix: "usage: " + cmd.UseLine()}
	}
	return o, err
}

// splitArgs takes TARGET (at most one) before "--" and the command after.
func splitArgs(cmd *cobra.Command, args []string) (string, []string, error) {
	before, after := args, []string(nil)
	if dash := cmd.ArgsLenAtDash(); dash >= 0 {
		before, after = args[:dash], args[dash:]
	} else if len(args) > 1 {
		return "", nil, &hint.Error{Err: fmt.Errorf("unexpected %q after TARGET", args[1]),
			Fix: fmt.Sprintf("put a command after --, e.g. nixrescue %s TARGET -- CMD", cmd.Name())}
	}
	if err := targetArgs(cmd, before); err != nil {
		return "", nil, err
	}
	target := ""
	if len(before) == 1 {
		target = before[0]
	}
	return target, after, nil
}

package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/nixrescue/nixrescue/runtime/session"
)

// containerFlags are the flags every command that builds a container takes.
type containerFlags struct {
	root        string
	system      string
	generation  int
	noActivate  bool
	quiet       bool
	dns         []string
	network     string
	isolatePIDs bool
	efi         string
	stateDir    string
}

func (f *containerFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.root, "root", "/mnt", "directory where the NixOS root is mounted (with /boot etc. under it)")
	fl.StringVar(&f.system, "system", "", "system to activate, as the target names it (default: the system profile)")
	fl.IntVar(&f.generation, "generation", 0, "activate generation `N` of the system profile")
	fl.BoolVar(&f.noActivate, "no-activate", false, "do not run the system's activation first")
	fl.BoolVarP(&f.quiet, "quiet", "q", false, "hide activation's output unless it fails")
	fl.StringSliceVar(&f.dns, "dns", nil, "DNS server `IP` to use inside instead of the host's (repeatable); 'none' leaves resolv.conf alone")
	fl.StringVar(&f.network, "network", "host", "network of the container: host or none")
	fl.BoolVar(&f.isolatePIDs, "isolate-pids", false, "give the container its own PID namespace (bootloader tools then think they run in a container)")
	fl.StringVar(&f.efi, "efi", "auto", "efivarfs inside: auto (when the host booted by EFI), on or off")
	fl.StringVar(&f.stateDir, "state-dir", session.DefaultStateDir, "where session state is kept on the host")
	_ = fl.MarkHidden("state-dir")
}

func (f *containerFlags) options(args []string) (session.Options, error) {
	o := session.Options{
		Root:        f.root,
		NoActivate:  f.noActivate,
		Quiet:       f.quiet,
		Args:        args,
		DNS:         f.dns,
		IsolatePIDs: f.isolatePIDs,
		EFI:         session.EFIMode(f.efi),
		StateDir:    f.stateDir,
	}
	o.System.Path = f.system
	o.System.Generation = f.generation
	switch f.network {
	case "host":
	case "none":
		o.NetworkNone = true
	default:
		return o, fmt.Errorf("--network %q: use host or none", f.network)
	}
	return o, nil
}

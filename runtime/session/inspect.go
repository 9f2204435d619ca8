package session

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/nixrescue/nixrescue/runtime/host"
	"github.com/nixrescue/nixrescue/runtime/nixos"
	"github.com/nixrescue/nixrescue/runtime/target"
)

// Report is what inspect finds on a target. Its JSON field names are
// stable; the README documents them.
type Report struct {
	Layout
	Generations       []nixos.Generation `json:"generations"`
	CurrentSystem     string             `json:"current_system"`
	CurrentGeneration int                `json:"current_generation,omitempty"`
	Bootloader        nixos.Bootloader   `json:"bootloader"`
	DiskAliases       []DiskAlias        `json:"disk_aliases"`
	HostEFI           bool               `json:"host_efi"`
	Warnings          []string           `json:"warnings"`
}

// Inspect opens the target as a session would, reads what is there, runs
// nothing in it, and tears everything down. It returns nil and an exit
// status when it ran itself again in a private mount namespace (that run
// printed the report).
func Inspect(ctx context.Context, o Options, print func(*Report) error) (int, error) {
	l, code, err := openReadOnly(ctx, o)
	if l == nil {
		return code, err
	}
	defer l.close()
	r := &Report{Layout: Layout{Target: l.target, Partitions: []target.Partition{}, Plan: []target.Entry{}}, Warnings: []string{}, DiskAliases: []DiskAlias{}, HostEFI: host.EFIBooted("/sys")}
	root := l.o.Root
	op := l.s.opened
	r.Layout = op.Layout
	r.Warnings = append(r.Warnings, op.Warnings...)
	if op.Root != nil {
		r.DiskAliases = append(r.DiskAliases, op.Aliases...)
	} else if disk, _, _ := mountedDisk(root); disk != "" {
		sys, _ := currentGeneration(root)
		aliases, _ := checkedDiskAliases(root, sys, nil, o.DiskAliases, disk, false,
			func(p string) { r.Warnings = append(r.Warnings, p) })
		r.DiskAliases = append(r.DiskAliases, aliases...)
	}
	if r.Generations, err = nixos.Generations(root); err != nil {
		r.Warnings = append(r.Warnings, err.Error())
		r.Generations = []nixos.Generation{}
	}
	if sys, err := nixos.ResolveSystem(root, l.o.System); err == nil {
		r.CurrentSystem, r.CurrentGeneration = sys.StorePath, sys.Generation
		r.Bootloader = nixos.DetectBootloader(root, sys.StorePath)
	} else {
		r.Warnings = append(r.Warnings, err.Error())
		r.Bootloader = nixos.Bootloader{Kind: "unknown"}
	}
	for _, g := range r.Generations {
		if g.Missing {
			r.Warnings = append(r.Warnings, fmt.Sprintf("generation %d names %s, which is not in the store", g.Number, g.StorePath))
		}
	}
	if r.Bootloader.Kind == "systemd-boot" && !r.HostEFI {
		r.Warnings = append(r.Warnings, "the system boots with systemd-boot but this host did not boot by EFI: a rebuild cannot write EFI variables from here")
	}
	return 0, print(r)
}

// openReadOnly opens a session that only looks: everything read-only (not
// even a superblock's mount time changes), no container, and the root
// checked to be NixOS.
func openReadOnly(ctx context.Context, o Options) (*live, int, error) {
	o.defaults()
	o.ReadOnly = true
	l, code, err := open(ctx, o, false)
	if l == nil {
		return nil, code, err
	}
	if err := nixos.CheckRoot(l.o.Root); err != nil {
		l.close()
		return nil, ExitFailure, err
	}
	return l, 0, nil
}

// WriteText prints a report for people.
func (r *Report) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "target:\t%s (%s)\n", r.Target.Path, r.Target.Kind)
	if r.Disk != "" {
		table := r.Table
		if table == "" {
			table = "none (a bare filesystem)"
		}
		fmt.Fprintf(tw, "disk:\t%s, partition table %s\n", r.Disk, table)
	}
	tw.Flush()
	if len(r.Partitions) > 0 {
		fmt.Fprintln(w, "\npartitions:")
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  #\tDEVICE\tSIZE\tTYPE\tFSTYPE\tLABEL\tUUID\tPARTUUID\tPARTLABEL")
		for _, p := range r.Partitions {
			fmt.Fprintf(tw, "  %d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.Number, p.Device, human(p.Size), dash(p.PartType), dash(p.Type), dash(p.Label), dash(p.UUID), dash(p.PartUUID), dash(p.PartLabel))
		}
		tw.Flush()
	}
	if r.Root != nil {
		fmt.Fprintf(w, "\nNixOS root: %s\n", r.Root.Describe())
	}
	if len(r.Plan) > 0 {
		fmt.Fprintln(w, "\nmount plan (from the target's fstab):")
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		for _, e := range r.Plan {
			what := "mount " + e.Device
			if e.Action == target.ActionSkip {
				what = "skip: " + e.Reason
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", e.Mountpoint, e.Spec, dash(e.Type), strings.Join(e.Options, ","), what)
		}
		tw.Flush()
	}
	fmt.Fprintln(w, "\ngenerations:")
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, g := range r.Generations {
		mark := " "
		if g.Current {
			mark = "*"
		}
		missing := ""
		if g.Missing {
			missing = " (missing from the store)"
		}
		fmt.Fprintf(tw, "  %s %d\t%s\tNixOS %s\tLinux %s%s\n", mark, g.Number, g.Date.Format("2006-01-02 15:04"), dash(g.NixOSVersion), dash(g.Kernel), missing)
	}
	tw.Flush()
	fmt.Fprintf(w, "\ncurrent system: %s\n", r.CurrentSystem)
	boot := r.Bootloader.Kind
	if len(r.Bootloader.Devices) > 0 {
		boot += " on " + strings.Join(r.Bootloader.Devices, ", ")
	}
	fmt.Fprintf(w, "bootloader: %s\n", boot)
	for _, a := range r.DiskAliases {
		fmt.Fprintf(w, "disk name %s (from %s) leads to %s inside\n", a.Name, a.Source, a.Device)
	}
	fmt.Fprintf(w, "this host booted by EFI: %v\n", r.HostEFI)
	for _, warn := range r.Warnings {
		fmt.Fprintf(w, "warning: %s\n", warn)
	}
	return nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func human(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f%c", float64(n)/float64(div), "KMGTPE"[exp])
}

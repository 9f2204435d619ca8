package main

// The reports of the commands, written for people (--json writes them as
// they are).

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"unicode"
	"unicode/utf8"

	"github.com/nixrescue/nixrescue/runtime/commands"
)

// writeInspect writes inspect's report for people.
func writeInspect(w io.Writer, r *commands.Report) error {
	writeInspectTarget(w, r)
	if len(r.Partitions) > 0 {
		fmt.Fprintln(w, "\npartitions:")
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  #\tDEVICE\tSIZE\tTYPE\tFSTYPE\tLABEL\tUUID\tPARTUUID\tPARTLABEL")
		for _, p := range r.Partitions {
			if p.Layer != "" {
				continue
			}
			fmt.Fprintf(tw, "  %d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.Number, dash(p.Device), human(p.Size), partType(p), dash(p.Type), dash(printable(p.Label)), dash(printable(p.UUID)), dash(p.PartUUID), dash(printable(p.PartLabel)))
		}
		tw.Flush()
	}
	if len(r.Layers) > 0 {
		fmt.Fprintln(w, "\nlayers:")
		writeLayers(w, r.Partitions, r.Layers)
	}
	if r.Root != nil {
		fmt.Fprintf(w, "\nNixOS root: %s\n", r.Root.Describe())
	}
	writePlan(w, r.Plan)
	if r.Current == nil {
		// No root could be opened (a locked volume): what is above, and
		// why.
		for _, warn := range r.Warnings {
			fmt.Fprintf(w, "\nwarning: %s\n", warn)
		}
		return nil
	}
	fmt.Fprintln(w, "\ngenerations:")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
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
	fmt.Fprintf(w, "\ncurrent system: %s\n", r.Current.System)
	switch {
	case r.Emulator != "":
		fmt.Fprintf(w, "architecture: %s (runs here through qemu-user: binfmt_misc's %s)\n", r.Arch, r.Emulator)
	case r.Runs == "no":
		fmt.Fprintf(w, "architecture: %s (this host cannot run it)\n", r.Arch)
	case r.Arch != "":
		fmt.Fprintf(w, "architecture: %s\n", r.Arch)
	}
	boot := string(r.Bootloader.Kind)
	if len(r.Bootloader.Devices) > 0 {
		boot += " on " + strings.Join(r.Bootloader.Devices, ", ")
	}
	fmt.Fprintf(w, "bootloader: %s\n", boot)
	if c := r.Configuration; c != nil && c.Kind == "flake" {
		fmt.Fprintf(w, "configuration: the flake %s, %s (named from the %s)\n", printable(c.Flake), printable(c.Attribute), c.NameFrom)
	} else if c != nil {
		fmt.Fprintf(w, "configuration: %s\n", c.File)
	}
	for _, a := range r.DiskAliases {
		fmt.Fprintf(w, "disk name %s (from %s) leads to %s inside\n", a.Name, a.Source, a.Device)
	}
	fmt.Fprintf(w, "this host booted by EFI: %v\n", r.HostEFI)
	for _, warn := range r.Warnings {
		fmt.Fprintf(w, "warning: %s\n", warn)
	}
	return nil
}

// writePlan writes a mount plan, after an empty line.
func writePlan(w io.Writer, plan []commands.MountEntry) {
	if len(plan) == 0 {
		return
	}
	fmt.Fprintln(w, "\nmount plan (from the target's fstab):")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, e := range plan {
		what := strings.TrimSpace("mount " + e.Device)
		if e.Action == commands.ActionSkip {
			what = "skip: " + e.Reason
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", printable(e.Mountpoint), printable(e.Spec), dash(printable(e.Type)), printable(strings.Join(e.Options, ",")), printable(what))
	}
	tw.Flush()
}

// writeDryRun writes what a rebuild or a rollback would do.
func writeDryRun(w io.Writer, r *commands.DryRunReport) error {
	fmt.Fprintf(w, "dry run: nothing ran, nothing was written to %s\n", printable(r.Target.Arg))
	writePlan(w, r.Mounts)
	fmt.Fprintln(w)
	if r.Current != nil {
		fmt.Fprintf(w, "now:         generation %d (%s)\n", r.Current.Generation, r.Current.System)
	}
	if r.Builds != "" {
		fmt.Fprintf(w, "builds:      %s\n", strings.TrimPrefix(r.Builds, "nixos-rebuild builds "))
	}
	run := strings.Join(r.Command, " ")
	if len(r.Env) > 0 {
		run = strings.Join(r.Env, " ") + " " + run
	}
	if r.Activates {
		run += " (after the system's activation)"
	}
	fmt.Fprintf(w, "would run:   %s\n", printable(run))
	boots := fmt.Sprintf("generation %d", r.Boots.Generation)
	if r.Boots.System != "" {
		boots += " (" + r.Boots.System + ")"
	} else {
		boots += ", the one the rebuild makes (unless the configuration builds the current system again)"
	}
	fmt.Fprintf(w, "would boot:  %s, by default\n", boots)
	b := r.Bootloader
	fmt.Fprintf(w, "bootloader:  %s, would %s%s\n", b.Kind, strings.Replace(b.Action, "configure", "write its configuration", 1), onDevices(b.Devices, r.DiskAliases))
	for _, warn := range r.Warnings {
		fmt.Fprintf(w, "warning: %s\n", warn)
	}
	return nil
}

// writeInspectTarget writes what the target is: its path and kind, the
// disk and its partition table, the image format.
func writeInspectTarget(w io.Writer, r *commands.Report) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "target:\t%s (%s)\n", r.Target.Path, r.Target.Kind)
	if r.Disk != "" {
		table := r.Table
		if table == "" {
			table = "none (a bare filesystem)"
		}
		fmt.Fprintf(tw, "disk:\t%s, partition table %s\n", r.Disk, table)
	}
	if f := r.Format; f != nil {
		line := fmt.Sprintf("%s, %s virtual", f.Format, human(f.VirtualSize))
		for _, b := range f.Backing {
			line += fmt.Sprintf(", on %s (%s)", b.File, b.Format)
		}
		if f.InUse {
			line += "; in use by another program (a running VM?)"
		}
		fmt.Fprintf(tw, "image format:\t%s\n", line)
		if f.Overlay != "" {
			fmt.Fprintf(tw, "snapshot:\twrites go to %s\n", f.Overlay)
		}
	}
	tw.Flush()
}

// writeLayers draws the layers as a tree: each layer under the devices it
// is on, what it gives under it (filesystems, or more layers).
func writeLayers(w io.Writer, parts []commands.Partition, infos []commands.LayerInfo) {
	byDevice := map[string]commands.Partition{}
	for _, p := range parts {
		byDevice[p.Device] = p
	}
	drawn := map[int]bool{}
	var draw func(i int, indent string)
	// gives writes a device a layer gives: its filesystem, or the layer on
	// it.
	gives := func(dev, what, indent string) {
		p := byDevice[dev]
		fs := dash(p.Type)
		if p.Label != "" {
			fs += fmt.Sprintf(" %q", p.Label)
		}
		fmt.Fprintf(w, "%s%s %s: %s\n", indent, what, dev, fs)
		for j, l := range infos {
			if !drawn[j] && slices.Contains(l.On, dev) {
				draw(j, indent+"  ")
			}
		}
	}
	draw = func(i int, indent string) {
		drawn[i] = true
		l := infos[i]
		on := strings.Join(l.On, ", ")
		switch l.Kind {
		case commands.LayerLUKS:
			h := l.LUKS
			line := fmt.Sprintf("%s%s: %s, %s, key slots %s", indent, on, h.Describe(), h.Cipher, ints(h.Keyslots))
			if len(h.Tokens) > 0 {
				var t []string
				for _, tok := range h.Tokens {
					t = append(t, tok.Type)
				}
				line += ", tokens " + strings.Join(t, " ")
			}
			fmt.Fprintf(w, "%s: %s\n", line, l.State)
			if l.Device != "" {
				gives(l.Device, "open as "+dash(l.Name)+" ("+l.Mapping+")", indent+"  ")
			}
		case commands.LayerLVM:
			fmt.Fprintf(w, "%s%s: LVM volume group %s (%s): %s\n", indent, on, l.Name, l.VG.UUID, l.State)
			for j, dev := range l.Volumes {
				name := dev
				if j < len(l.VG.LVs) {
					name = l.VG.LVs[j].Path
				}
				gives(dev, "logical volume "+name+" =", indent+"  ")
			}
		case commands.LayerMD:
			a := l.Array
			fmt.Fprintf(w, "%s%s: RAID %s %s (%d of %d members, %s): %s\n", indent, on, a.Level, dash(a.Name), len(a.Members), a.Devices, a.UUID, l.State)
			if l.Device != "" {
				gives(l.Device, "array", indent+"  ")
			}
		case commands.LayerZFS:
			fmt.Fprintf(w, "%s%s: ZFS pool %s (%s, last imported by %s): %s\n", indent, on, l.Name, l.Pool.GUID, dash(l.Pool.Hostname), l.State)
			for _, d := range l.Volumes {
				fmt.Fprintf(w, "%s  dataset %s\n", indent, printable(d))
			}
		}
	}
	for i := range infos {
		if !drawn[i] && byDevice[infos[i].On[0]].Layer == "" {
			draw(i, "  ")
		}
	}
}

func ints(a []int) string {
	s := make([]string, len(a))
	for i, n := range a {
		s[i] = fmt.Sprint(n)
	}
	return strings.Join(s, " ")
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

// writeGenerations writes the generations for people: * marks the current one,
// "boot default" the bootloader's default.
func writeGenerations(w io.Writer, r *commands.GenerationsReport) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  GEN\tDATE\tNIXOS\tKERNEL\t")
	for _, g := range r.Generations {
		mark := " "
		if g.Number == generationOf(r.Current) {
			mark = "*"
		}
		var notes []string
		if g.Number == r.BootDefault.Generation {
			notes = append(notes, "boot default")
		}
		if g.Missing {
			notes = append(notes, "missing from the store")
		}
		fmt.Fprintf(tw, "%s %d\t%s\t%s\t%s\t%s\n", mark, g.Number, g.Date.Format("2006-01-02 15:04"), dash(g.NixOSVersion), dash(g.Kernel), strings.Join(notes, ", "))
	}
	tw.Flush()
	switch {
	case r.BootDefault.Source == "":
		fmt.Fprintf(w, "bootloader: %s; no grub.cfg or loader.conf on /boot\n", r.Bootloader.Kind)
	case r.BootDefault.Generation == 0:
		fmt.Fprintf(w, "bootloader: %s; its default entry (%q in %s) names no generation\n", r.Bootloader.Kind, r.BootDefault.Entry, r.BootDefault.Source)
	default:
		fmt.Fprintf(w, "bootloader: %s; boots generation %d by default (%s)\n", r.Bootloader.Kind, r.BootDefault.Generation, r.BootDefault.Source)
	}
	return nil
}

// writeCleanup says for people what was removed and what was left alone.
func writeCleanup(w io.Writer, r *commands.CleanupReport) error {
	for _, id := range r.Removed {
		fmt.Fprintf(w, "removed what session %s left\n", id)
	}
	for _, c := range r.Containers {
		fmt.Fprintf(w, "deleted containerd container %s\n", c)
	}
	for _, c := range r.Cgroups {
		fmt.Fprintf(w, "removed cgroup %s\n", c)
	}
	for _, o := range r.Overlays {
		fmt.Fprintf(w, "removed overlay %s (its session is gone)\n", o)
	}
	for _, id := range r.Live {
		fmt.Fprintf(w, "left session %s alone: it is still running\n", id)
	}
	if r.Empty() {
		fmt.Fprintln(w, "nothing to clean up")
	}
	return nil
}

// writeHardware writes the diff (nothing when there is no change).
func writeHardware(w io.Writer, r *commands.HardwareReport) error {
	_, err := io.WriteString(w, r.Diff)
	return err
}

// printable escapes what of s a terminal would take for control (a
// target's or an image's name may hold escape sequences), as Go quotes
// it, without the quotes.
func printable(s string) string {
	if strings.IndexFunc(s, func(r rune) bool { return !unicode.IsGraphic(r) && r != ' ' }) < 0 && utf8.ValidString(s) {
		return s
	}
	q := strconv.QuoteToGraphic(s)
	return q[1 : len(q)-1]
}

// hardwareSummary says in one line what hardware-config did.
func hardwareSummary(r *commands.HardwareReport) string {
	switch {
	case len(r.Unbootable) > 0 && !r.Written:
		return "warning: the generated configuration would leave a machine that cannot boot: " + strings.Join(r.Unbootable, "; ") + "; nothing written"
	case !r.Changed:
		return "no change: " + r.Path + " already describes this machine; nothing written"
	case r.Written:
		return "wrote " + r.Path + "; the old one is " + r.Backup
	}
	return "nothing written; pass --write to replace " + r.Path
}

// partType is a partition's type for people: an extended partition says
// so.
func partType(p commands.Partition) string {
	if p.Extended {
		return p.PartType + " (extended)"
	}
	return dash(p.PartType)
}

// writePS lists the sessions for people: a table, and each one's command
// line under it.
func writePS(w io.Writer, r *commands.PSReport) error {
	if len(r.Sessions) == 0 {
		fmt.Fprintln(w, "no nixrescue session is running")
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SESSION\tPID\tUSER\tSINCE\tPHASE\tBACKEND\tTARGET")
	for _, s := range r.Sessions {
		who := fmt.Sprintf("uid %d", s.UID)
		if s.SudoUser != "" {
			who = s.SudoUser + " (sudo)"
		}
		target := s.Target.Arg
		if s.Disk != "" {
			target += " on " + s.Disk
		}
		if e := s.Export; e != nil && e.Via != "" {
			target += " (" + strings.TrimSpace(e.Via+" export "+e.Device) + ")"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\n", s.ID, s.PID, printable(who), s.Started.Local().Format("15:04:05"), dash(s.Phase), dash(s.Backend), printable(target))
	}
	tw.Flush()
	for _, s := range r.Sessions {
		fmt.Fprintf(w, "%s: %s\n", s.ID, printable(strings.Join(s.Command, " ")))
	}
	return nil
}

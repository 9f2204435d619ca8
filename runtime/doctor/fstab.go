package doctor

import (
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/nixrescue/nixrescue/runtime/target"
)

// checkFstab finds fstab entries that name no filesystem of the target
// (a disk replaced, reformatted or cloned): stage 1 waits for such a
// device, and systemd's mount of it fails the boot unless it is nofail.
// For each, the filesystem that now likely holds that mount point's data:
// of the entry's type, mounted by no other entry.
func checkFstab(f *Facts) []Finding {
	var out []Finding
	for _, e := range f.Plan {
		if !e.Unresolved || e.Origin != target.OriginFstab {
			continue
		}
		sev := Fatal
		if e.NoFail {
			sev = Warning
		}
		ev := []string{fmt.Sprintf("the fstab mounts %s on %s (%s)", e.Spec, e.Mountpoint, e.Type)}
		what := "no filesystem of the disk is " + e.Spec
		if len(e.Candidates) > 1 {
			what = "it names " + strings.Join(e.Candidates, " and ") + ": more than one filesystem (a cloned disk?)"
		}
		ev = append(ev, what, "the disk's filesystems: "+describeFilesystems(f.Partitions))
		summary := fmt.Sprintf("the fstab's %s names a filesystem that is not there: the boot waits for it", e.Mountpoint)
		if e.NoFail {
			summary = fmt.Sprintf("the fstab's %s names a filesystem that is not there (nofail: the boot goes on without it)", e.Mountpoint)
		}
		var fix []string
		if c, ok := candidate(f, e); ok {
			spec := specOf(c)
			ev = append(ev, fmt.Sprintf("partition %d (%s) is mounted by no fstab entry and is of the type %s: it likely holds %s now, as %s",
				c.Number, describePartition(c), e.Type, e.Mountpoint, spec))
			fix = []string{f.Command("hardware-config", "{Mount "+spec+":"+e.Mountpoint+"}", "{Write}"),
				f.Rebuild("{Mount " + spec + ":" + e.Mountpoint + "}")}
		} else {
			fix = []string{f.Command("enter") + fmt.Sprintf("    # correct or remove fileSystems.%q in /etc/nixos", e.Mountpoint), f.Rebuild()}
		}
		out = append(out, finding("fstab-missing", sev, summary, ev, fix...))
	}
	return out
}

// candidate is the filesystem that likely holds entry e's data now: the
// one of its type that no entry of the plan mounts; of several, the one
// whose labels name its mount point, else none.
func candidate(f *Facts, e target.Entry) (target.Partition, bool) {
	mounted := map[string]bool{}
	for _, p := range f.Plan {
		if p.Device != "" {
			mounted[p.Device] = true
		}
	}
	var cands []target.Partition
	for _, p := range f.Partitions {
		if p.Type == "" || p.Extended || mounted[p.Source()] || p.Type == "swap" || strings.HasSuffix(p.Type, "_member") || p.Type == "crypto_LUKS" {
			continue
		}
		if e.Type == "auto" || e.Type == "" || e.Type == p.Type || sameFamily(e.Type, p.Type) {
			cands = append(cands, p)
		}
	}
	if len(cands) == 1 {
		return cands[0], true
	}
	base := path.Base(e.Mountpoint)
	i := slices.IndexFunc(cands, func(p target.Partition) bool {
		return strings.EqualFold(p.Label, base) || strings.EqualFold(p.PartLabel, base) || (base == "boot" && (p.PartType == "esp" || p.PartType == "0xef"))
	})
	if i < 0 {
		return target.Partition{}, false
	}
	return cands[i], true
}

// sameFamily tells vfat's names apart from other types: an fstab says
// vfat for what blkid calls vfat, and msdos, fat and fat32 are it too.
func sameFamily(a, b string) bool {
	fat := func(t string) bool { return t == "vfat" || t == "msdos" || t == "fat" || t == "fat32" }
	return fat(a) && fat(b)
}

// specOf is how an fstab (and --mount) names p for good: its UUID, else
// its partition's.
func specOf(p target.Partition) string {
	switch {
	case p.UUID != "":
		return "UUID=" + p.UUID
	case p.PartUUID != "":
		return "PARTUUID=" + p.PartUUID
	}
	return p.Source()
}

// describePartition says what p is: its type, label and UUID.
func describePartition(p target.Partition) string {
	parts := []string{p.Type}
	if p.Label != "" {
		parts = append(parts, "label "+p.Label)
	}
	if p.UUID != "" {
		parts = append(parts, "UUID "+p.UUID)
	}
	return strings.Join(parts, ", ")
}

// describeFilesystems lists the filesystems of parts.
func describeFilesystems(parts []target.Partition) string {
	var out []string
	for _, p := range parts {
		if p.Type == "" || p.Extended {
			continue
		}
		name := fmt.Sprintf("partition %d", p.Number)
		if p.Dataset != "" {
			name = p.Dataset
		} else if p.Layer != "" {
			name = p.Layer + " " + p.Source()
		}
		out = append(out, name+" ("+describePartition(p)+")")
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, "; ")
}

// checkLUKS finds LUKS volumes the configuration opens at boot
// (boot.initrd.luks.devices) whose device is on no partition of the
// target: stage 1 waits for it, then fails.
func checkLUKS(f *Facts) []Finding {
	var out []Finding
	for _, l := range f.LUKS {
		if found, _ := target.MapSource(l.Device, f.Partitions, target.DiskIDs{}); len(found) > 0 {
			continue
		}
		ev := []string{fmt.Sprintf("boot.initrd.luks.devices.%q.device is %s", l.Name, l.Device), "no partition of the disk is " + l.Device,
			"the disk's filesystems: " + describeFilesystems(f.Partitions)}
		fix := []string{f.Command("hardware-config", "{Write}"), f.Rebuild()}
		for _, p := range f.Partitions {
			if p.Type == "crypto_LUKS" && !slices.ContainsFunc(f.LUKS, func(o LUKSDevice) bool {
				m, _ := target.MapSource(o.Device, []target.Partition{p}, target.DiskIDs{})
				return len(m) > 0
			}) {
				ev = append(ev, fmt.Sprintf("partition %d is a LUKS volume (UUID %s) the configuration does not name: likely this one now", p.Number, p.UUID))
			}
		}
		out = append(out, finding("luks-missing", Fatal, fmt.Sprintf("the configuration opens the LUKS volume %s at boot from a device that is not there", l.Name), ev, fix...))
	}
	return out
}

package target

import (
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/nixrescue/nixrescue/runtime/internal/lazyre"
)

// Action says what the plan does with an fstab entry.
type Action string

const (
	ActionMount Action = "mount"
	ActionSkip  Action = "skip"
)

// Entry is one line of the mount plan.
type Entry struct {
	Mountpoint string   `json:"mountpoint"`
	Spec       string   `json:"spec"`
	Device     string   `json:"device,omitempty"`
	Type       string   `json:"fstype"`
	Options    []string `json:"options"`
	Action     Action   `json:"action"`
	Reason     string   `json:"reason,omitempty"`
	NoFail     bool     `json:"nofail,omitempty"`
	// Origin is where the entry comes from: fstab, --mount, --boot, or
	// discovered (the root, or /nix found before the fstab was readable).
	Origin string `json:"origin"`
	// MappedBy says how Spec led to Device.
	MappedBy string `json:"mapped_by,omitempty"`
}

// Override is a --mount DEV:PATH (or --boot DEV).
type Override struct {
	Spec       string
	Mountpoint string
	Origin     string
}

// ParseOverride reads DEV:PATH.
func ParseOverride(s string) (Override, error) {
	i := strings.LastIndex(s, ":")
	if i <= 0 || i == len(s)-1 || !strings.HasPrefix(s[i+1:], "/") {
		return Override{}, fmt.Errorf("--mount %q: give DEVICE:/PATH, e.g. --mount /dev/sdb1:/boot", s)
	}
	return Override{Spec: s[:i], Mountpoint: path.Clean(s[i+1:]), Origin: "--mount"}, nil
}

var (
	pseudoTypes  = []string{"tmpfs", "proc", "sysfs", "devtmpfs", "devpts", "ramfs", "efivarfs", "securityfs", "cgroup", "cgroup2", "debugfs", "tracefs", "mqueue", "hugetlbfs", "fusectl", "configfs", "bpf", "pstore", "overlay", "none", "auto"}
	networkTypes = []string{"nfs", "nfs4", "cifs", "smb3", "smbfs", "sshfs", "fuse.sshfs", "ceph", "glusterfs", "9p", "virtiofs", "davfs", "fuse.rclone"}
)

// Skip returns why an fstab entry is not mounted for a repair, or "".
func Skip(e FstabEntry) string {
	switch {
	case e.Type == "swap" || e.Mountpoint == "swap" || e.Mountpoint == "none":
		return "swap"
	case e.HasOption("bind") || e.HasOption("rbind"):
		return "bind mount"
	case slices.Contains(networkTypes, e.Type) || strings.HasPrefix(e.Type, "nfs"):
		return "network filesystem"
	case slices.Contains(pseudoTypes, e.Type) && e.Type != "auto":
		return "not a disk filesystem (" + e.Type + ")"
	case e.HasOption("noauto"):
		return "noauto"
	case !path.IsAbs(e.Mountpoint):
		return "mount point is not an absolute path"
	}
	return ""
}

var partNumberRE = lazyre.New(`^/dev/(?:[shvx]d[a-z]+|nvme[0-9]+n[0-9]+p|mmcblk[0-9]+p|loop[0-9]+p)([0-9]+)$`)
var idPartRE = lazyre.New(`-part([0-9]+)$`)

// MapSource finds the partition an fstab spec names among parts (the
// target disk's). A /dev/sdXN name or a by-id …-partN name means the
// target machine's own disk, whatever this host calls it, so it maps by
// partition number.
func MapSource(spec string, parts []Partition) (Partition, string, bool) {
	kind, v := Source(spec)
	match := func(f func(Partition) bool) (Partition, bool) {
		for _, p := range parts {
			if f(p) {
				return p, true
			}
		}
		return Partition{}, false
	}
	var p Partition
	var ok bool
	switch kind {
	case SourceUUID:
		p, ok = match(func(p Partition) bool { return p.UUID != "" && strings.EqualFold(p.UUID, v) })
	case SourceLabel:
		p, ok = match(func(p Partition) bool { return p.Label != "" && p.Label == v })
	case SourcePartUUID:
		p, ok = match(func(p Partition) bool { return p.PartUUID != "" && strings.EqualFold(p.PartUUID, v) })
	case SourcePartLabel:
		p, ok = match(func(p Partition) bool { return p.PartLabel != "" && p.PartLabel == v })
	case SourceID:
		if m := idPartRE().FindStringSubmatch(v); m != nil {
			n, _ := strconv.Atoi(m[1])
			p, ok = match(func(p Partition) bool { return p.Number == n })
			return p, "partition number in by-id name", ok
		}
	case SourcePath:
		if m := partNumberRE().FindStringSubmatch(v); m != nil {
			n, _ := strconv.Atoi(m[1])
			p, ok = match(func(p Partition) bool { return p.Number == n })
			return p, "partition number", ok
		}
		p, ok = match(func(p Partition) bool { return p.Device == v })
		return p, "device", ok
	case SourceOther:
		// A bare number: partition N of the target disk (--mount 2:/boot).
		if n, err := strconv.Atoi(strings.TrimPrefix(v, "p")); err == nil {
			p, ok = match(func(p Partition) bool { return p.Number == n })
			return p, "partition number", ok
		}
	}
	return p, string(kind), ok
}

// BuildPlan makes the mount plan (everything but the root, which is
// mounted first) from the target's fstab, the target disk's partitions
// and the user's overrides. Entries that cannot be mounted are kept with
// ActionSkip and a reason, so the plan says what it leaves out.
func BuildPlan(fstab []FstabEntry, parts []Partition, overrides []Override) []Entry {
	var plan []Entry
	overridden := map[string]bool{}
	for _, o := range overrides {
		overridden[o.Mountpoint] = true
	}
	for _, f := range fstab {
		mp := path.Clean(f.Mountpoint)
		if mp == "/" || overridden[mp] {
			continue
		}
		e := Entry{Mountpoint: mp, Spec: f.Spec, Type: f.Type, Options: f.Options, NoFail: f.HasOption("nofail"), Origin: "fstab"}
		if why := Skip(f); why != "" {
			e.Action, e.Reason = ActionSkip, why
			plan = append(plan, e)
			continue
		}
		p, how, ok := MapSource(f.Spec, parts)
		if !ok {
			e.Action = ActionSkip
			e.Reason = "not on the target disk: pass --mount DEVICE:" + mp
			if e.NoFail {
				e.Reason = "not on the target disk (nofail)"
			}
			plan = append(plan, e)
			continue
		}
		e.Device, e.MappedBy, e.Action = p.Device, how, ActionMount
		if e.Type == "auto" || e.Type == "" {
			e.Type = p.Type
		}
		plan = append(plan, e)
	}
	for _, o := range overrides {
		e := Entry{Mountpoint: o.Mountpoint, Spec: o.Spec, Origin: o.Origin, Options: []string{"defaults"}}
		if p, how, ok := MapSource(o.Spec, parts); ok {
			e.Device, e.MappedBy, e.Type, e.Action = p.Device, how, p.Type, ActionMount
		} else if strings.HasPrefix(o.Spec, "/dev/") {
			e.Device, e.MappedBy, e.Action = o.Spec, "device", ActionMount
		} else {
			e.Action, e.Reason = ActionSkip, "names no partition of the target disk"
		}
		plan = append(plan, e)
	}
	// Parents before children, in fstab order otherwise.
	slices.SortStableFunc(plan, func(a, b Entry) int {
		return strings.Count(a.Mountpoint, "/") - strings.Count(b.Mountpoint, "/")
	})
	return plan
}

// Unmapped lists the entries that must be mounted but cannot be: mapped
// to nothing, without nofail.
func Unmapped(plan []Entry) []Entry {
	var out []Entry
	for _, e := range plan {
		if e.Action == ActionSkip && !e.NoFail && e.Device == "" && strings.HasPrefix(e.Reason, "not on the target disk") {
			out = append(out, e)
		}
		if e.Action == ActionSkip && (e.Origin == "--mount" || e.Origin == "--boot") {
			out = append(out, e)
		}
	}
	return out
}

// RootEntry returns the fstab's entry for "/", if any.
func RootEntry(fstab []FstabEntry) *FstabEntry {
	for i := range fstab {
		if path.Clean(fstab[i].Mountpoint) == "/" {
			return &fstab[i]
		}
	}
	return nil
}

package target

import (
	"cmp"
	"errors"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/nixrescue/nixrescue/runtime/hint"
	"github.com/nixrescue/nixrescue/runtime/internal/lazyre"
	"github.com/nixrescue/nixrescue/runtime/mount"
)

// Action says what the plan does with an fstab entry.
type Action string

const (
	ActionMount Action = "mount"
	ActionSkip  Action = "skip"
)

// Origins of plan entries (stable values of inspect's JSON).
const (
	OriginFstab      = "fstab"
	OriginMount      = "--mount"
	OriginBoot       = "--boot"
	OriginDiscovered = "discovered"
)

// Entry is one line of the mount plan.
type Entry struct {
	Mountpoint string `json:"mountpoint"`
	Spec       string `json:"spec"`
	// Device is what is mounted: the host's block device, or a layer's
	// dataset by its name; none for a tmpfs or a bind.
	Device  string   `json:"device,omitempty"`
	Type    string   `json:"fstype"`
	Options []string `json:"options"`
	// Dropped are the fstab's options the mount does not get, and why
	// (options for the boot, not the kernel).
	Dropped []Dropped `json:"dropped,omitempty"`
	Action  Action    `json:"action"`
	Reason  string    `json:"reason,omitempty"`
	NoFail  bool      `json:"nofail,omitempty"`
	// Origin is where the entry comes from: fstab, --mount, --boot, or
	// discovered (the root, or /nix found before the fstab was readable).
	Origin string `json:"origin"`
	// MappedBy says how Spec led to Device.
	MappedBy string `json:"mapped_by,omitempty"`
	// Candidates are the partitions an ambiguous Spec names.
	Candidates []string `json:"candidates,omitempty"`
	// Unresolved says Spec names no partition of the target, or two.
	Unresolved bool `json:"unresolved,omitempty"`
}

// Dropped is an fstab option left out of a mount, and why.
type Dropped struct {
	Option string `json:"option"`
	Reason string `json:"reason"`
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
		return Override{}, &hint.Error{Subject: "{Mount " + s + "}", Err: errors.New("not DEVICE:/PATH"), Fix: "give it as {Mount /dev/sdb1:/boot} does"}
	}
	return Override{Spec: s[:i], Mountpoint: path.Clean(s[i+1:]), Origin: OriginMount}, nil
}

// Overrides reads --mount DEV:PATH values and --boot DEV.
func Overrides(mounts []string, boot string) ([]Override, error) {
	var out []Override
	for _, m := range mounts {
		o, err := ParseOverride(m)
		if err != nil {
			return nil, err
		}
		out = append(out, o)
	}
	if boot != "" {
		out = append(out, Override{Spec: boot, Mountpoint: "/boot", Origin: OriginBoot})
	}
	return out, nil
}

// name is how an override is named in messages: as it was given.
func (o Override) name() string {
	if o.Origin == OriginBoot {
		return "{Boot " + o.Spec + "}"
	}
	return "{Mount " + o.Spec + ":" + o.Mountpoint + "}"
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
	case IsBind(e) && e.HasOption("noauto"):
		return "noauto"
	case IsBind(e) && (!path.IsAbs(e.Spec) || !path.IsAbs(e.Mountpoint)):
		return "bind mount of a relative path"
	case IsBind(e):
		return ""
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

// IsBind tells whether e binds a directory of the machine elsewhere
// (bind or rbind: impermanence's /persist/etc/nixos on /etc/nixos).
func IsBind(e FstabEntry) bool { return e.HasOption("bind") || e.HasOption("rbind") }

// EphemeralRoot returns the fstab's entry for "/" when it is a tmpfs:
// the machine makes its root afresh at each boot (impermanence), from
// its /nix and what is bound in from a persistent filesystem.
func EphemeralRoot(fstab []FstabEntry) *FstabEntry {
	if e := RootEntry(fstab); e != nil && e.Type == "tmpfs" {
		return e
	}
	return nil
}

var partNumberRE = lazyre.New(`^/dev/(?:[shvx]d[a-z]+|nvme[0-9]+n[0-9]+p|mmcblk[0-9]+p|loop[0-9]+p)([0-9]+)$`)
var idPartRE = lazyre.New(`-part([0-9]+)$`)

// HowOtherDisk is how MapSource says a by-id name names a partition of a
// disk that is not the target's.
const HowOtherDisk = "by-id name of another disk"

// MapSource finds the partitions an fstab spec names among parts (the
// target disk's, whose by-id names are ids), and says how. A /dev/sdXN
// name means the target machine's own disk, whatever this host calls it,
// so it maps by partition number; a by-id …-partN name does when its disk
// is one of ids (HowOtherDisk otherwise: the same number on another disk
// is another filesystem). A name that fits more than one partition (two
// filesystems with one label, a cloned UUID) gives them all: the caller
// must not guess. An extended partition holds no filesystem and is never
// named.
func MapSource(spec string, parts []Partition, ids DiskIDs) ([]Partition, string) {
	kind, v := Source(spec)
	match := func(f func(Partition) bool) []Partition {
		var out []Partition
		for _, p := range parts {
			if !p.Extended && f(p) {
				out = append(out, p)
			}
		}
		return out
	}
	number := func(n string) func(Partition) bool {
		i, _ := strconv.Atoi(n)
		return func(p Partition) bool { return p.Number == i }
	}
	switch kind {
	case SourceUUID:
		return match(func(p Partition) bool { return p.UUID != "" && strings.EqualFold(p.UUID, v) }), string(kind)
	case SourceLabel:
		return match(func(p Partition) bool { return p.Label != "" && p.Label == v }), string(kind)
	case SourcePartUUID:
		return match(func(p Partition) bool { return p.PartUUID != "" && strings.EqualFold(p.PartUUID, v) }), string(kind)
	case SourcePartLabel:
		return match(func(p Partition) bool { return p.PartLabel != "" && p.PartLabel == v }), string(kind)
	case SourceID:
		if disk, n, ok := byIDPartition(v); ok {
			if !ids.Has(disk) {
				return nil, HowOtherDisk
			}
			return match(number(n)), "partition number in by-id name"
		}
		// udev's names of a device-mapper device: dm-name-NAME is
		// /dev/mapper/NAME.
		if name, ok := strings.CutPrefix(v, "dm-name-"); ok {
			return match(func(p Partition) bool { return slices.Contains(p.Names, "/dev/mapper/"+name) }), "name"
		}
	case SourcePath:
		// A device a layer opened, by a name the configuration gives it.
		if named := match(func(p Partition) bool { return slices.Contains(p.Names, v) }); len(named) > 0 {
			return named, "name"
		}
		if m := partNumberRE().FindStringSubmatch(v); m != nil {
			return match(number(m[1])), "partition number"
		}
		return match(func(p Partition) bool { return p.Device == v }), "device"
	case SourceOther:
		// A bare number: partition N of the target disk (--mount 2:/boot).
		if n := strings.TrimPrefix(v, "p"); isNumber(n) {
			return match(number(n)), "partition number"
		}
		// A layer's dataset, by its name (rpool/root).
		if named := match(func(p Partition) bool { return p.Dataset != "" && (p.Dataset == v || slices.Contains(p.Names, v)) }); len(named) > 0 {
			return named, "dataset"
		}
	}
	return nil, string(kind)
}

func isNumber(s string) bool {
	_, err := strconv.Atoi(s)
	return err == nil && s != ""
}

// devices lists the partitions' devices, for messages.
func devices(parts []Partition) []string {
	var out []string
	for _, p := range parts {
		out = append(out, p.Source())
	}
	return out
}

// Numbers lists the partitions' numbers, for messages ("1, 2, 3").
func Numbers(parts []Partition) string {
	var s []string
	for _, p := range parts {
		s = append(s, strconv.Itoa(p.Number))
	}
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

// Options splits an fstab entry's options into those its mount gets
// and those it does not, with why (mount.BootOnly). "defaults" alone is
// no option, and goes unsaid.
func Options(options []string) (kept []string, dropped []Dropped) {
	kept = []string{}
	for _, o := range options {
		if why := mount.BootOnly(o); why != "" {
			if o != "defaults" && o != "" {
				dropped = append(dropped, Dropped{Option: o, Reason: why})
			}
			continue
		}
		kept = append(kept, o)
	}
	return kept, dropped
}

// isSubvolOption tells whether o picks a btrfs subvolume.
func isSubvolOption(o string) bool {
	return strings.HasPrefix(o, "subvol=") || strings.HasPrefix(o, "subvolid=")
}

// foundOptions are the options of the mount of f (the root, or a /nix
// found by discovery): the fstab entry's (fe, when it has one), but for
// "ro" on the root (the target is repaired read-write, unless the whole
// session is read-only) and with f's own subvolume, which discovery found
// where the fstab may say otherwise.
func foundOptions(f Found, fe *FstabEntry, root bool) ([]string, []Dropped) {
	kept, dropped := []string{}, []Dropped(nil)
	if fe != nil {
		kept, dropped = Options(fe.Options)
	}
	if root && slices.Contains(kept, "ro") {
		kept = slices.DeleteFunc(kept, func(o string) bool { return o == "ro" })
		dropped = append(dropped, Dropped{Option: "ro", Reason: "the root is mounted read-write for the repair ({ReadOnly} keeps everything read-only)"})
	}
	if f.Subvol != "" {
		want := "subvol=" + f.Subvol
		for _, o := range kept {
			if isSubvolOption(o) && o != want && o != "subvol=/"+f.Subvol {
				dropped = append(dropped, Dropped{Option: o, Reason: "the filesystem was found in subvolume " + f.Subvol})
			}
		}
		kept = slices.DeleteFunc(kept, isSubvolOption)
		kept = append(kept, want)
	}
	return kept, dropped
}

// PlanInput is what a mount plan is made from.
type PlanInput struct {
	// Partitions are the target disk's, with their filesystems.
	Partitions []Partition
	// Root is the NixOS root that was found.
	Root Found
	// Nix is the filesystem mounted on /nix with the root, before the
	// fstab could be read, because the root alone holds no system (the
	// system, and with it the fstab, is in the store); nil when the root
	// holds it.
	Nix *Found
	// Fstab is the target's; nil when it has none.
	Fstab []FstabEntry
	// Overrides are --mount and --boot.
	Overrides []Override
	// DiskIDs are the by-id names of the target's disk.
	DiskIDs DiskIDs
	// KeepGoing skips an fstab entry that is on no partition or on two
	// (marked Unresolved) instead of failing: a diagnosis reports it.
	KeepGoing bool
}

// Plan says where each filesystem of the target is mounted, with what,
// and why; what it leaves out is in it too, with the reason.
type Plan struct {
	// Entries are in mount order: the root, the /nix mounted with it,
	// then parents before children, in fstab order otherwise.
	Entries  []Entry
	Warnings []string
}

// PlanError is a plan that cannot be carried out: an fstab entry that
// is on no partition of the target, or on two, or an override that names
// no partition.
type PlanError struct {
	Mountpoint string
	Err        error
	Fix        string
}

func (e *PlanError) Error() string {
	if e.Fix == "" {
		return hint.Render(e.Err.Error())
	}
	return hint.Render(e.Err.Error() + ": " + e.Fix)
}

func (e *PlanError) Unwrap() error { return e.Err }

// ErrNotOnDisk and ErrAmbiguous are the kinds of PlanError.
var (
	ErrNotOnDisk  = errors.New("not on the target disk")
	ErrAmbiguous  = errors.New("names more than one partition")
	ErrNoOverride = errors.New("names no partition of the target")
)

// MakePlan makes the mount plan of a target: the root first, as found,
// with the fstab's options for "/"; the /nix mounted with it, likewise;
// then every other fstab entry mapped to a partition of the target disk
// (UUID=, LABEL=, PARTUUID=, PARTLABEL=, /dev/disk/by-*, or the target
// machine's /dev/sdXN names by number) or skipped with a reason, --mount
// and --boot in place of the fstab's entries for their paths. Nothing is
// guessed: an entry on no partition or on two is an error, unless it is
// nofail (then it is skipped).
func MakePlan(in PlanInput) (Plan, error) {
	var pl Plan
	fstabRoot := RootEntry(in.Fstab)
	root := Entry{Mountpoint: "/", Spec: in.Root.Describe(), Device: in.Root.Partition.Source(), Type: in.Root.Partition.Type,
		Action: ActionMount, Origin: OriginDiscovered, MappedBy: "holds /etc/NIXOS"}
	root.Options, root.Dropped = foundOptions(in.Root, fstabRoot, true)
	if in.Root.Ephemeral {
		root = Entry{Mountpoint: "/", Spec: fstabRoot.Spec, Type: "tmpfs", Action: ActionMount, Origin: OriginDiscovered,
			MappedBy: "tmpfs: the machine makes its root afresh at each boot"}
		root.Options, root.Dropped = Options(fstabRoot.Options)
		fstabRoot = nil
	}
	if fstabRoot != nil {
		root.Spec = fstabRoot.Spec
		if m, _ := MapSource(fstabRoot.Spec, in.Partitions, in.DiskIDs); len(m) != 1 || m[0].Source() != in.Root.Partition.Source() {
			pl.Warnings = append(pl.Warnings, fmt.Sprintf("the fstab's root %s is not %s, where the NixOS root was found", fstabRoot.Spec, in.Root.Describe()))
		}
	}
	rest, err := planEntries(in.Fstab, in.Partitions, in.Overrides, in.DiskIDs, in.KeepGoing)
	if err != nil {
		return pl, err
	}
	head := []Entry{root}
	if n := in.Nix; n != nil {
		nix := Entry{Mountpoint: "/nix", Spec: n.Describe(), Device: n.Partition.Source(), Type: n.Partition.Type,
			Action: ActionMount, Origin: OriginDiscovered, MappedBy: "holds the Nix store"}
		i := slices.IndexFunc(rest, func(e Entry) bool { return e.Mountpoint == "/nix" && e.Action == ActionMount })
		switch {
		case i >= 0 && rest[i].Device == n.Partition.Source():
			// The fstab's /nix is the one mounted already: its options.
			fe := in.Fstab[slices.IndexFunc(in.Fstab, func(f FstabEntry) bool { return path.Clean(f.Mountpoint) == "/nix" })]
			nix.Spec, nix.MappedBy = rest[i].Spec, rest[i].MappedBy
			nix.Options, nix.Dropped = foundOptions(*n, &fe, false)
			nix.Reason = "mounted first: it holds the store, where the fstab is"
			rest = slices.Delete(rest, i, i+1)
		case i >= 0:
			pl.Warnings = append(pl.Warnings, fmt.Sprintf("the fstab mounts %s on /nix, but the store was found on %s: that one is mounted", rest[i].Spec, n.Describe()))
			rest[i].Action, rest[i].Reason = ActionSkip, "the store is on "+n.Describe()
			nix.Options, _ = foundOptions(*n, nil, false)
		default:
			nix.Options, _ = foundOptions(*n, nil, false)
		}
		head = append(head, nix)
	}
	pl.Entries = append(head, rest...)
	return pl, nil
}

// planEntries plans the fstab's entries but the root's, and the
// overrides, parents before children.
func planEntries(fstab []FstabEntry, parts []Partition, overrides []Override, ids DiskIDs, keepGoing bool) ([]Entry, error) {
	var plan []Entry
	overridden := map[string]bool{}
	for _, o := range overrides {
		if o.Mountpoint == "/" {
			return nil, &PlanError{Mountpoint: "/", Err: fmt.Errorf("%s: the root is found, not mounted by {Mount}", o.name()), Fix: "choose it with {RootPart N}"}
		}
		overridden[o.Mountpoint] = true
	}
	for _, f := range fstab {
		if mp := path.Clean(f.Mountpoint); mp != "/" && !overridden[mp] {
			e, err := planFstabEntry(f, parts, ids)
			if err != nil && !keepGoing {
				return nil, err
			}
			plan = append(plan, e)
		}
	}
	for _, o := range overrides {
		e, err := planOverride(o, parts, ids)
		if err != nil {
			return nil, err
		}
		plan = append(plan, e)
	}
	// Parents before children, in fstab order otherwise; binds last, once
	// what they bind from is mounted.
	slices.SortStableFunc(plan, func(a, b Entry) int {
		if c := cmp.Compare(bindRank(a), bindRank(b)); c != 0 {
			return c
		}
		return strings.Count(a.Mountpoint, "/") - strings.Count(b.Mountpoint, "/")
	})
	return plan, nil
}

// BindEntry plans fstab entry f, a bind (IsBind): a directory of the
// target bound elsewhere in it, as systemd mounts it at boot.
func BindEntry(f FstabEntry) Entry {
	e := Entry{Mountpoint: path.Clean(f.Mountpoint), Spec: f.Spec, Type: BindType, NoFail: f.HasOption("nofail"), Origin: OriginFstab,
		Action: ActionMount, MappedBy: "bind"}
	if f.HasOption("rbind") {
		e.Type = RbindType
	}
	e.Options, e.Dropped = Options(slices.DeleteFunc(slices.Clone(f.Options), func(o string) bool { return o == "bind" || o == "rbind" }))
	return e
}

// bindRank orders binds after the filesystems they bind from.
func bindRank(e Entry) int {
	if e.IsBind() {
		return 1
	}
	return 0
}

// IsBind tells whether the entry binds a directory of the target.
func (e Entry) IsBind() bool { return e.Type == BindType || e.Type == RbindType }

// The types of a plan's bind entries.
const (
	BindType  = "bind"
	RbindType = "rbind"
)

// planFstabEntry maps fstab entry f to a partition of parts, or says why
// it is skipped; an entry on no partition or on two is an error, unless it
// is nofail.
func planFstabEntry(f FstabEntry, parts []Partition, ids DiskIDs) (Entry, error) {
	mp := path.Clean(f.Mountpoint)
	e := Entry{Mountpoint: mp, Spec: f.Spec, Type: f.Type, NoFail: f.HasOption("nofail"), Origin: OriginFstab}
	e.Options, e.Dropped = Options(f.Options)
	if why := Skip(f); why != "" {
		e.Action, e.Reason = ActionSkip, why
		return e, nil
	}
	if IsBind(f) {
		return BindEntry(f), nil
	}
	found, how := MapSource(f.Spec, parts, ids)
	switch {
	case len(found) == 1:
		e.Device, e.MappedBy, e.Action = found[0].Source(), how, ActionMount
		if e.Type == "auto" || e.Type == "" {
			e.Type = found[0].Type
		}
		return e, nil
	case len(found) > 1:
		e.Action, e.Candidates, e.Unresolved = ActionSkip, devices(found), true
		e.Reason = "names " + strings.Join(e.Candidates, " and ") + ": ambiguous"
		if !e.NoFail {
			return e, &PlanError{Mountpoint: mp, Err: fmt.Errorf("the fstab's %s (for %s) %w, %s", f.Spec, mp, ErrAmbiguous, strings.Join(e.Candidates, " and ")),
				Fix: "choose one with {Mount DEVICE:" + mp + "}"}
		}
	case how == HowOtherDisk:
		disk, _, _ := byIDPartition(strings.TrimPrefix(f.Spec, "/dev/disk/by-id/"))
		e.Action, e.Reason, e.Unresolved = ActionSkip, ErrNotOnDisk.Error()+": a partition of disk by-id/"+disk, true
		if !e.NoFail {
			return e, &PlanError{Mountpoint: mp, Err: fmt.Errorf("the fstab mounts %s on %s, a partition of another disk, which is %w (whose by-id names are: %s)", f.Spec, mp, ErrNotOnDisk, ids.Describe()),
				Fix: "pass {DiskAlias /dev/disk/by-id/" + disk + "} if that disk is this one, {Mount DEVICE:" + mp + "}, or mark the entry nofail"}
		}
	default:
		e.Action, e.Reason, e.Unresolved = ActionSkip, ErrNotOnDisk.Error(), true
		if !e.NoFail {
			return e, &PlanError{Mountpoint: mp, Err: fmt.Errorf("the fstab mounts %s on %s, which is %w", f.Spec, mp, ErrNotOnDisk),
				Fix: "pass {Mount DEVICE:" + mp + "}, or mark the entry nofail"}
		}
	}
	e.Reason += " (nofail)"
	return e, nil
}

// planOverride maps a --mount or --boot to a partition of parts, or to a
// device of its own.
func planOverride(o Override, parts []Partition, ids DiskIDs) (Entry, error) {
	e := Entry{Mountpoint: o.Mountpoint, Spec: o.Spec, Origin: o.Origin, Options: []string{}, Action: ActionMount}
	found, how := MapSource(o.Spec, parts, ids)
	if kind, _ := Source(o.Spec); kind == SourcePath {
		// A device path given here names this host's device, not the
		// target machine's: a partition of the disk by its device, or a
		// device of its own.
		found = slices.DeleteFunc(slices.Clone(parts), func(p Partition) bool { return p.Device != o.Spec || p.Extended })
		how = "device"
	}
	switch {
	case len(found) == 1:
		e.Device, e.MappedBy, e.Type = found[0].Device, how, found[0].Type
	case len(found) > 1:
		return e, &PlanError{Mountpoint: o.Mountpoint, Err: fmt.Errorf("%s %w, %s", o.name(), ErrAmbiguous, strings.Join(devices(found), " and ")),
			Fix: "name the device itself"}
	case how == "partition number":
		return e, &PlanError{Mountpoint: o.Mountpoint, Err: fmt.Errorf("%s: the disk has no partition %s (it has %s)", o.name(), strings.TrimPrefix(o.Spec, "p"), Numbers(usable(parts))),
			Fix: "name one of those"}
	case strings.HasPrefix(o.Spec, "/dev/"):
		// A device of its own, not on the target disk (a /boot on another
		// disk of the machine).
		e.Device, e.MappedBy = o.Spec, "device"
	default:
		return e, &PlanError{Mountpoint: o.Mountpoint, Err: fmt.Errorf("%s %w disk", o.name(), ErrNoOverride),
			Fix: "name a device, a partition number, or UUID=, LABEL=, PARTUUID=, PARTLABEL= of one (nixrescue inspect lists them)"}
	}
	return e, nil
}

// PlanOverrides plans --mount and --boot alone: for a directory target,
// whose own mounts are the user's (parts and ids are its disk's).
func PlanOverrides(overrides []Override, parts []Partition, ids DiskIDs) ([]Entry, error) {
	return planEntries(nil, parts, overrides, ids, false)
}

// notRootPartition says that partition partition of disk (the target
// arg) holds no NixOS root, and which target to name instead: the
// partition that does, or the whole disk.
func notRootPartition(arg, disk string, roots []Found, parts []Partition, partition int) error {
	this := slices.DeleteFunc(slices.Clone(parts), func(p Partition) bool { return p.Number != partition })
	if len(roots) == 0 {
		return &NoRootError{Target: arg, Parts: this}
	}
	fix := fmt.Sprintf("name the root's partition, %s, or the whole disk, %s", describeFound(roots), disk)
	if len(roots) > 1 {
		fix = fmt.Sprintf("name one of the roots' partitions, %s", describeFound(roots))
	}
	return &hint.Error{Subject: arg, Err: fmt.Errorf("partition %d of %s (%s) holds no NixOS root: a partition as the target must be the root's", partition, disk, describeParts(this)),
		Fix: fix}
}

// usable are the partitions that may hold a filesystem (not an extended
// partition's container).
func usable(parts []Partition) []Partition {
	return slices.DeleteFunc(slices.Clone(parts), func(p Partition) bool { return p.Extended })
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

// ChooseRoot picks the root among those found on parts: want (--root-part
// N or a device) when given, the one on partition partition of disk for a
// partition target (0 and "" otherwise), else the only one. arg names the
// target in errors.
func ChooseRoot(arg, disk string, roots []Found, parts []Partition, want string, partition int) (Found, error) {
	if want != "" {
		n := strings.TrimPrefix(want, "p")
		if len(roots) == 0 {
			// Nothing to choose from: what is there instead.
			return Found{}, &NoRootError{Target: arg, Parts: parts}
		}
		if isNumber(n) && !slices.ContainsFunc(parts, func(p Partition) bool { return strconv.Itoa(p.Number) == n && !p.Extended }) {
			return Found{}, &hint.Error{Subject: arg, Err: fmt.Errorf("{RootPart %s}: the disk has no partition %s (it has %s)", want, n, Numbers(usable(parts))),
				Fix: "name one of " + describeFound(roots)}
		}
		for _, r := range roots {
			if r.Partition.Device == want || r.Partition.Dataset != "" && r.Partition.Dataset == want || strconv.Itoa(r.Partition.Number) == n {
				return r, nil
			}
		}
		return Found{}, &hint.Error{Subject: arg, Err: fmt.Errorf("{RootPart %s} holds no NixOS root", want),
			Fix: "name one of " + describeFound(roots)}
	}
	if partition > 0 {
		for _, r := range roots {
			if r.Partition.Number == partition {
				return r, nil
			}
		}
		return Found{}, notRootPartition(arg, disk, roots, parts, partition)
	}
	switch len(roots) {
	case 0:
		return Found{}, &NoRootError{Target: arg, Parts: parts}
	case 1:
		return roots[0], nil
	}
	return Found{}, &hint.Error{Subject: arg, Err: fmt.Errorf("%d NixOS roots found: %s", len(roots), describeFound(roots)),
		Fix: "choose one with {RootPart N}"}
}

func describeFound(roots []Found) string {
	if len(roots) == 0 {
		return "the partitions, once one holds a NixOS root"
	}
	var s []string
	for _, r := range roots {
		if r.Partition.Dataset != "" {
			s = append(s, fmt.Sprintf("%s (%s)", r.Partition.Dataset, r.Describe()))
			continue
		}
		s = append(s, fmt.Sprintf("%d (%s)", r.Partition.Number, r.Describe()))
	}
	return strings.Join(s, ", ")
}

// NeededMountpoints are the mount points a rebuild writes to: the
// kernels and the bootloader go to /boot (and an ESP at /boot/efi or
// /efi), the new system to /nix. When the fstab gives one of them a
// filesystem of its own and nothing is mounted there, a rebuild would
// write into the directory of the filesystem below.
var NeededMountpoints = []string{"/boot", "/boot/efi", "/efi", "/nix"}

// Missing is an fstab entry a repair needs whose filesystem is not
// mounted in a directory target.
type Missing struct {
	Mountpoint string
	Spec       string
	Type       string
	// Options are the fstab's, for its mount (Options).
	Options []string
	// Device is the partition of the directory's disk the entry names,
	// when it names exactly one; "" otherwise.
	Device string
}

// MissingMounts lists the fstab's entries for NeededMountpoints that
// have a filesystem of their own and whose mount point mounted says has
// nothing mounted on it; parts (the partitions of the disk behind the
// directory, if any) say which partition each would be.
func MissingMounts(fstab []FstabEntry, parts []Partition, ids DiskIDs, mounted func(mountpoint string) bool) []Missing {
	var out []Missing
	for _, f := range fstab {
		mp := path.Clean(f.Mountpoint)
		if !slices.Contains(NeededMountpoints, mp) || Skip(f) != "" || IsBind(f) || mounted(mp) {
			continue
		}
		m := Missing{Mountpoint: mp, Spec: f.Spec, Type: f.Type}
		m.Options, _ = Options(f.Options)
		if found, _ := MapSource(f.Spec, parts, ids); len(found) == 1 {
			m.Device = found[0].Device
			if m.Type == "" || m.Type == "auto" {
				m.Type = found[0].Type
			}
		}
		out = append(out, m)
	}
	return out
}

// ESPCandidates are the partitions that look like an EFI system
// partition: of the ESP's type (GPT, or 0xef in an MBR) first, then
// those holding vfat.
func ESPCandidates(parts []Partition) []Partition {
	var typed, fat []Partition
	for _, p := range parts {
		switch {
		case p.Extended || p.Device == "":
		case p.PartType == "esp" || p.PartType == "0xef":
			typed = append(typed, p)
		case p.Type == "vfat":
			fat = append(fat, p)
		}
	}
	return append(typed, fat...)
}

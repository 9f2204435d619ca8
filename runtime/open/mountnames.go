package open

import (
	"slices"

	"github.com/nixrescue/nixrescue/runtime/target"
)

// mountName is the name a device of the target is mounted by
// (mount.Mounter.Name): the name its own machine knows it by,
// /dev/disk/by-uuid/UUID of its filesystem (or by-partuuid of its
// partition), which leads to it inside the container too, rather than
// this host's name for it. nixos-generate-config writes a mount's source
// into the configuration, and takes a /dev/loopN source for a file
// mounted with -o loop: the host's image path went into the target's
// fileSystems. A device a layer opened keeps its name (/dev/dm-N: its
// LUKS volume is found through it), and so does a partition whose UUID
// another partition shares (the name would lead to either).
func (op *Opened) mountName(device string) string {
	p := op.partition(device)
	if p == nil || p.Layer != "" {
		return device
	}
	unique := func(get func(target.Partition) string) bool {
		n := 0
		for _, q := range op.Partitions {
			if get(q) == get(*p) {
				n++
			}
		}
		return n == 1
	}
	switch {
	case p.UUID != "" && unique(func(q target.Partition) string { return q.UUID }):
		return "/dev/disk/by-uuid/" + target.EscapeUdev(p.UUID)
	case p.PartUUID != "" && unique(func(q target.Partition) string { return q.PartUUID }):
		return "/dev/disk/by-partuuid/" + target.EscapeUdev(p.PartUUID)
	}
	return device
}

// partition is the target's partition (or layer device) at device, nil
// when there is none.
func (op *Opened) partition(device string) *target.Partition {
	if i := slices.IndexFunc(op.Partitions, func(p target.Partition) bool { return p.Device == device }); i >= 0 {
		return &op.Partitions[i]
	}
	return nil
}

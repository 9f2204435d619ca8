package open

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/nixrescue/nixrescue/runtime/hint"
	"github.com/nixrescue/nixrescue/runtime/layers"
	"github.com/nixrescue/nixrescue/runtime/mount"
	"github.com/nixrescue/nixrescue/runtime/rootfs"
	"github.com/nixrescue/nixrescue/runtime/state"
	"github.com/nixrescue/nixrescue/runtime/target"
)

// layerSet is what a session does with its target's layers (LUKS, LVM,
// md). Those opened, in order, to close in reverse, are the journal's
// (st): recorded before each is opened, so that a cleanup after a crash
// closes them too.
type layerSet struct {
	st   *state.Session
	keys *layers.Keys
	// handled are the devices whose layer was looked at.
	handled map[string]bool
	// headers are the LUKS volumes' headers, by device.
	headers map[string]layers.Header
	count   int
	// writable are the arrays (by index in opened) made writable.
	writable map[int]bool
}

// openKeyless opens, again and again until nothing new turns up, the
// layers that need no key: md arrays of the target's members and LVM
// volume groups of its physical volumes; it reads the LUKS headers of
// locked volumes. Each device a layer makes joins op.Partitions, probed.
func (op *Opened) openKeyless(ctx context.Context, s *Session, to Options) error {
	for {
		before := len(op.Partitions)
		for _, open := range keylessOpeners {
			if err := open(op, ctx, s, to); err != nil {
				return err
			}
		}
		for _, p := range op.locked() {
			if _, ok := op.layers.headers[p.Device]; ok {
				continue
			}
			h, err := layers.ReadHeader(ctx, p.Device)
			if err != nil {
				return err
			}
			op.layers.headers[p.Device] = h
			op.Layers = append(op.Layers, layers.Info{Kind: layers.LUKS, On: []string{p.Device}, State: "locked", LUKS: &h})
		}
		if len(op.Partitions) == before {
			return nil
		}
	}
}

// keylessOpeners open the layers of one kind each that need no key, in
// this order (an array may hold physical volumes): a kind of layer is
// one opener here and its layers.Layer (close, make writable).
var keylessOpeners = []func(op *Opened, ctx context.Context, s *Session, to Options) error{
	(*Opened).assembleArrays,
	(*Opened).activateGroups,
}

// locked lists the LUKS volumes still locked.
func (op *Opened) locked() []target.Partition {
	var out []target.Partition
	for _, p := range op.Partitions {
		if layers.KindOf(p.Type) == layers.LUKS && !op.layers.handled[p.Device] {
			out = append(out, p)
		}
	}
	return out
}

// layerName is a name of the session's own for a layer it opens.
func (op *Opened) layerName(s *Session, kind layers.Kind) string {
	op.layers.count++
	return fmt.Sprintf("%s-%s%d", s.State.ID, kind, op.layers.count-1)
}

// record notes a layer about to be opened in the journal.
func (op *Opened) record(s *Session, o layers.Opened) error {
	return s.State.Record(func(j *state.Journal) { j.Layers = append(j.Layers, o) })
}

// forget removes a layer that did not open from the journal.
func (op *Opened) forget(s *Session, name string) {
	_ = s.State.Record(func(j *state.Journal) {
		j.Layers = slices.DeleteFunc(j.Layers, func(o layers.Opened) bool { return o.Name == name })
	})
}

// rename puts what a layer turned out to be (an array's kernel device)
// in place of what was recorded before it was opened.
func (op *Opened) rename(s *Session, name string, o layers.Opened) error {
	return s.State.Record(func(j *state.Journal) {
		for i := range j.Layers {
			if j.Layers[i].Name == name {
				j.Layers[i] = o
			}
		}
	})
}

// opened are the layers opened, in order.
func (op *Opened) opened() []layers.Opened {
	if op.layers.st == nil {
		return nil
	}
	return op.layers.st.Journal().Layers
}

// addVolume adds a device a layer made to the partitions, probed.
func (op *Opened) addVolume(ctx context.Context, p target.Partition) error {
	pr, err := target.ProbeDevice(ctx, p.Device)
	if err != nil {
		return err
	}
	p.FS = pr.FS
	op.Partitions = append(op.Partitions, p)
	return nil
}

// take marks the partitions of kind (md members, LVM physical volumes)
// not looked at yet as handled and returns them, refusing one the host
// already stacked something on.
func (op *Opened) take(kind layers.Kind) ([]target.Partition, error) {
	var out []target.Partition
	for _, p := range op.Partitions {
		if layers.KindOf(p.Type) != kind || op.layers.handled[p.Device] {
			continue
		}
		op.layers.handled[p.Device] = true
		if h := layers.Holders(p.Device); len(h) > 0 {
			return nil, &layers.OpenOnHostError{Device: p.Device, Kind: kind, Holders: h}
		}
		out = append(out, p)
	}
	return out, nil
}

// assembleArrays assembles the md arrays whose members are on the target,
// read-only until the session goes writable.
func (op *Opened) assembleArrays(ctx context.Context, s *Session, _ Options) error {
	parts, err := op.take(layers.MD)
	if err != nil {
		return err
	}
	var members []layers.Array
	for _, p := range parts {
		m, err := layers.ExamineMD(ctx, p.Device)
		if err != nil {
			return err
		}
		members = append(members, m)
	}
	for _, a := range layers.GroupArrays(members) {
		name := op.layerName(s, layers.MD)
		planned := layers.Planned(a, name)
		if err := op.record(s, planned); err != nil {
			return err
		}
		o, dev, err := layers.Assemble(ctx, a, name)
		if err != nil {
			op.forget(s, planned.Name)
			return err
		}
		if err := op.rename(s, planned.Name, o); err != nil {
			return err
		}
		info := layers.Info{Kind: layers.MD, On: a.Members, State: "assembled", Name: a.Name, Device: dev, Array: &a}
		if a.Degraded() {
			info.State = "degraded"
			op.warn("RAID %s (%s, %s) is degraded: %d of its %d members are here (%s); it runs on those", a.Name, a.Level, a.UUID, len(a.Members), a.Devices, strings.Join(a.Members, ", "))
		}
		op.Layers = append(op.Layers, info)
		var names []string
		if a.Name != "" {
			names = []string{"/dev/md/" + a.Name}
		}
		if err := op.addVolume(ctx, target.Partition{Device: dev, Layer: string(layers.MD), Parents: a.Members, Names: names}); err != nil {
			return err
		}
	}
	return nil
}

// activateGroups activates the LVM volume groups whose physical volumes
// are on the target, LVM seeing only those.
func (op *Opened) activateGroups(ctx context.Context, s *Session, to Options) error {
	parts, err := op.take(layers.LVM)
	if err != nil {
		return err
	}
	var pvs []string
	for _, p := range parts {
		pvs = append(pvs, p.Device)
	}
	if len(pvs) == 0 {
		return nil
	}
	groups, err := layers.ScanLVM(ctx, pvs)
	if err != nil {
		return err
	}
	for _, g := range groups {
		if len(g.PVs) < g.PVCount {
			return &hint.Error{Subject: op.Target.Arg, Err: fmt.Errorf("LVM volume group %s has %d physical volumes and only %d are on the target (%s)", g.Name, g.PVCount, len(g.PVs), strings.Join(g.PVs, ", ")),
				Fix: "attach the disk that holds the others, or activate it by hand (vgchange -ay --activationmode partial) and pass the root's device"}
		}
		if err := op.record(s, layers.Opened{Kind: layers.LVM, Name: g.Name, Devices: g.PVs}); err != nil {
			return err
		}
		if _, err := layers.Activate(ctx, g, to.ReadOnly); err != nil {
			op.forget(s, g.Name)
			return err
		}
		var volumes []string
		for _, lv := range g.LVs {
			if !lv.Data {
				continue
			}
			dev := mount.DMDevice(strings.TrimPrefix(lv.DMPath, "/dev/mapper/"))
			if dev == "" {
				return fmt.Errorf("activated LVM volume group %s, but the kernel has no device for %s", g.Name, lv.DMPath)
			}
			volumes = append(volumes, dev)
			if err := op.addVolume(ctx, target.Partition{Device: dev, Layer: string(layers.LVM), Parents: g.PVs, Names: []string{lv.Path, lv.DMPath}}); err != nil {
				return err
			}
		}
		op.Layers = append(op.Layers, layers.Info{Kind: layers.LVM, On: g.PVs, State: "active", Name: g.Name, Volumes: volumes, VG: &g})
	}
	return nil
}

// unlock opens the locked LUKS volume p with the session's keys, under a
// name of the session's own; name is what the target's configuration
// calls it, when known (the prompt says it).
func (op *Opened) unlock(ctx context.Context, s *Session, to Options, p target.Partition, name string) error {
	op.layers.handled[p.Device] = true
	h := op.layers.headers[p.Device]
	info := op.layerInfo(p.Device)
	if open := layers.OpenOnHost(h.UUID); len(open) > 0 {
		return &hint.Error{Subject: op.Target.Arg, Err: &layers.OpenOnHostError{Device: p.Device, Kind: layers.LUKS, Holders: open},
			Fix: fmt.Sprintf("close it (cryptsetup close %s), or pass its opened device as the target", path.Base(open[0]))}
	}
	if h.HardwareOnly() {
		return &hint.Error{Subject: op.Target.Arg, Err: fmt.Errorf("%s (%s) opens only with a TPM2, FIDO2 or PKCS#11 token, which nixrescue does not support yet", p.Device, h.Describe()),
			Fix: "open it yourself (systemd-cryptsetup attach NAME " + p.Device + ") and pass the opened device as the target"}
	}
	host := op.layerName(s, layers.LUKS)
	prompt := fmt.Sprintf("Passphrase for %s (%s", p.Device, h.Describe())
	if name != "" {
		prompt += fmt.Sprintf(", %q in the target's configuration", name)
	}
	prompt += "): "
	if err := op.record(s, layers.Opened{Kind: layers.LUKS, Name: host, Devices: []string{p.Device}}); err != nil {
		return err
	}
	err := op.layers.keys.Unlock(prompt, func(key []byte) error { return layers.OpenLUKS(ctx, p.Device, host, key, to.ReadOnly) })
	if err != nil {
		op.forget(s, host)
	}
	switch {
	case errors.Is(err, layers.ErrNoKey):
		return &LockedError{Layout: op.snapshot(), Err: &hint.Error{Subject: op.Target.Arg, Err: fmt.Errorf("%s holds %s, which is locked", p.Device, h.Describe()),
			Fix: "give its key with {KeyFile FILE} ({KeyFile -} reads a passphrase from standard input), or run nixrescue on a terminal to be asked"}}
	case errors.Is(err, layers.ErrBadKey):
		return &hint.Error{Subject: op.Target.Arg, Err: fmt.Errorf("no key given opens %s (%s)", p.Device, h.Describe()),
			Fix: "check the key file or the passphrase ({KeyFile})"}
	case err != nil:
		return err
	}
	dev := mount.DMDevice(host)
	if dev == "" {
		return fmt.Errorf("opened %s as %s, but the kernel has no such device-mapper device", p.Device, host)
	}
	info.State, info.Device, info.Mapping, info.Name = "open", dev, "/dev/mapper/"+host, name
	return op.addVolume(ctx, target.Partition{Device: dev, Layer: string(layers.LUKS), Parents: []string{p.Device}, Names: []string{"/dev/mapper/" + host}})
}

// LockedError says the target's root may be behind a LUKS volume that
// no key was given for; Layout is what could be read without one.
type LockedError struct {
	Layout Layout
	Err    error
}

func (e *LockedError) Error() string { return e.Err.Error() }
func (e *LockedError) Unwrap() error { return e.Err }

// snapshot copies the layout as it is, for a LockedError.
func (op *Opened) snapshot() Layout {
	l := op.Layout
	l.Partitions = slices.Clone(op.Partitions)
	l.Layers = slices.Clone(op.Layers)
	l.Plan = []target.Entry{}
	return l
}

// layerInfo is the layer shown for device (the one it is on).
func (op *Opened) layerInfo(device string) *layers.Info {
	for i := range op.Layers {
		if slices.Contains(op.Layers[i].On, device) {
			return &op.Layers[i]
		}
	}
	op.Layers = append(op.Layers, layers.Info{On: []string{device}})
	return &op.Layers[len(op.Layers)-1]
}

// discoverThroughLayers discovers the NixOS roots, opening the target's
// layers as it goes: those that need no key first, then the locked LUKS
// volumes one at a time until a root turns up (the configuration that
// names the others is inside it).
func (op *Opened) discoverThroughLayers(ctx context.Context, s *Session, to Options, probeDir string) (target.Discovery, error) {
	var all target.Discovery
	looked := map[string]bool{}
	for {
		if err := op.openKeyless(ctx, s, to); err != nil {
			return all, err
		}
		var fresh []target.Partition
		for _, p := range op.Partitions {
			if !looked[p.Device] {
				looked[p.Device] = true
				fresh = append(fresh, p)
			}
		}
		found, err := target.Discover(fresh, probeDir)
		all.Roots = append(all.Roots, found.Roots...)
		all.Nixes = append(all.Nixes, found.Nixes...)
		all.Failed = append(all.Failed, found.Failed...)
		if err != nil || len(all.Roots) > 0 {
			return all, err
		}
		locked := op.locked()
		if len(locked) == 0 {
			return all, nil
		}
		if err := op.unlock(ctx, s, to, locked[0], ""); err != nil {
			return all, err
		}
	}
}

// nameLayers gives the devices layers made the names the target's
// configuration uses inside the container, and opens the LUKS volumes it
// names that are still locked. root is mounted; fstab is its fstab.
func (op *Opened) nameLayers(ctx context.Context, s *Session, to Options, fstab []target.FstabEntry) error {
	if len(op.Layers) == 0 {
		return nil
	}
	named := configuredLUKS(op.RootDir)
	// The volumes the configuration names, still locked: open them now.
	for _, p := range op.locked() {
		for _, n := range named {
			if m, _ := target.MapSource(n.Device, []target.Partition{p}, op.diskIDs); len(m) == 1 {
				if err := op.unlock(ctx, s, to, p, n.Name); err != nil {
					return err
				}
				if err := op.openKeyless(ctx, s, to); err != nil {
					return err
				}
				break
			}
		}
	}
	for i := range op.Partitions {
		p := &op.Partitions[i]
		if p.Layer != string(layers.LUKS) || len(p.Names) > 1 {
			continue // not LUKS, or named already
		}
		parent := op.Partitions[slices.IndexFunc(op.Partitions, func(q target.Partition) bool { return q.Device == p.Parents[0] })]
		name := ""
		for _, n := range named {
			if m, _ := target.MapSource(n.Device, []target.Partition{parent}, op.diskIDs); len(m) == 1 {
				name = n.Name
			}
		}
		if name == "" {
			name = fstabMapperName(fstab, op.Partitions)
		}
		if name == "" {
			name = layers.DefaultLUKSName(op.layers.headers[parent.Device].UUID)
		}
		p.Names = append([]string{"/dev/mapper/" + name}, p.Names...)
		op.layerInfo(parent.Device).Name = name
	}
	for _, p := range op.locked() {
		op.warn("%s (%s) stays locked: the target's configuration does not name it", p.Device, op.layers.headers[p.Device].Describe())
	}
	return nil
}

// fstabMapperName is the /dev/mapper name the fstab mounts that no
// device has yet, when there is one LUKS volume (named only by this host)
// to give it to.
func fstabMapperName(fstab []target.FstabEntry, parts []target.Partition) string {
	unnamed := 0
	for _, p := range parts {
		if p.Layer == string(layers.LUKS) && len(p.Names) == 1 {
			unnamed++
		}
	}
	if unnamed != 1 {
		return ""
	}
	for _, e := range fstab {
		if name, ok := strings.CutPrefix(e.Spec, "/dev/mapper/"); ok {
			if m, _ := target.MapSource(e.Spec, parts, target.DiskIDs{}); len(m) == 0 {
				return name
			}
		}
	}
	return ""
}

// maxConfigFiles bounds how many files of /etc/nixos are read for the
// names of LUKS volumes.
const maxConfigFiles = 200

// configuredLUKS reads the LUKS volumes the target's configuration
// declares (layers.ParseLUKSNames), in /etc/nixos and below.
func configuredLUKS(root string) []layers.LUKSName {
	var out []layers.LUKSName
	n := 0
	var walk func(dir string, depth int)
	walk = func(dir string, depth int) {
		entries, _ := rootfs.ReadDir(root, dir)
		for _, e := range entries {
			p := path.Join(dir, e.Name())
			switch {
			case n >= maxConfigFiles:
				return
			case e.IsDir() && depth < 4 && !strings.HasPrefix(e.Name(), "."):
				walk(p, depth+1)
			case e.Type()&fs.ModeType == 0 && strings.HasSuffix(e.Name(), ".nix"):
				n++
				if b, err := rootfs.ReadHead(root, p, 1<<20); err == nil {
					out = append(out, layers.ParseLUKSNames(string(b))...)
				}
			}
		}
	}
	walk("/etc/nixos", 0)
	return out
}

// closeLayers closes the layers opened, in reverse.
func (op *Opened) closeLayers() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var first error
	opened := op.opened()
	for i := len(opened) - 1; i >= 0; i-- {
		if err := layers.Close(ctx, opened[i]); err != nil && first == nil {
			first = err
		}
	}
	if len(opened) > 0 && first == nil {
		// Closed: nothing for a cleanup to close after a crash now.
		_ = op.layers.st.Record(func(j *state.Journal) { j.Layers = nil })
	}
	if op.layers.keys != nil {
		op.layers.keys.Clear()
	}
	return first
}

// makeWritable makes the session's filesystems writable: the arrays first
// (assembled read-only), then the mounts.
func (op *Opened) makeWritable() error {
	if op.mounter.ReadOnly {
		return op.mounter.MakeWritable()
	}
	ctx := context.Background()
	for i, o := range op.opened() {
		if !op.layers.writable[i] {
			if err := layers.ReadWrite(ctx, o); err != nil {
				return err
			}
			op.layers.writable[i] = true
		}
	}
	return op.mounter.MakeWritable()
}

package open

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/nixrescue/nixrescue/runtime/hint"
	"github.com/nixrescue/nixrescue/runtime/layers"
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
	// found are the keyed layers found (LUKS volumes, their headers
	// read), by device.
	found map[string]layers.Found
	count int
	// writable are the arrays (by index in opened) made writable.
	writable map[int]bool
}

// openKeyless opens, again and again until nothing new turns up, the
// layers that need no key (md arrays of the target's members, LVM volume
// groups of its physical volumes: layers.Kinds, in order), and finds the
// keyed ones (reads the LUKS headers) for unlock. Each device a layer
// makes joins op.Partitions, probed.
func (op *Opened) openKeyless(ctx context.Context, s *Session, to Options) error {
	for {
		before := len(op.Partitions)
		for _, l := range layers.Kinds {
			if err := op.findLayers(ctx, s, to, l); err != nil {
				return op.about(err)
			}
		}
		if len(op.Partitions) == before {
			return nil
		}
	}
}

// findLayers finds the layers of l's kind on the devices not looked at
// yet, and opens them, unless they are keyed: those are kept
// (op.layers.found) and shown locked.
func (op *Opened) findLayers(ctx context.Context, s *Session, to Options, l layers.Layer) error {
	members, err := op.members(l)
	if err != nil || len(members) == 0 {
		return err
	}
	found, err := l.Find(ctx, members)
	if err != nil {
		return err
	}
	for _, f := range found {
		if l.Keyed() {
			op.layers.found[f.Members[0]] = f
			op.Layers = append(op.Layers, l.Describe(f))
			continue
		}
		opts := layers.OpenOptions{ReadOnly: to.ReadOnly, AltRoot: filepath.Join(s.State.Dir(), "root"), Unlock: op.layers.keys.Unlock}
		if _, err := op.openLayer(ctx, s, l, f, func(name string) (layers.Result, error) { return l.Open(ctx, f, name, opts) }); err != nil {
			return err
		}
	}
	return nil
}

// members are the devices of l's kind to look at: for a kind that needs
// no key, those not looked at yet (one this host uses is refused); for a
// keyed one, those whose metadata was not read yet.
func (op *Opened) members(l layers.Layer) ([]string, error) {
	var out []string
	if !l.Keyed() {
		parts, err := op.take(l.Kind())
		for _, p := range parts {
			out = append(out, p.Device)
		}
		return out, err
	}
	for _, p := range op.locked() {
		if _, ok := op.layers.found[p.Device]; !ok && layers.KindOf(p.Type) == l.Kind() {
			out = append(out, p.Device)
		}
	}
	return out, nil
}

// openLayer opens f with open, under a name of the session's own, the
// journal's record of it written first (and removed if it did not open);
// what it gives joins op.Partitions, probed, and op.Layers shows it.
func (op *Opened) openLayer(ctx context.Context, s *Session, l layers.Layer, f layers.Found, open func(name string) (layers.Result, error)) (layers.Result, error) {
	name := op.layerName(s, l.Kind())
	planned := l.Planned(f, name)
	if err := op.record(s, planned); err != nil {
		return layers.Result{}, err
	}
	r, err := open(name)
	if err != nil && r.Opened.Kind == "" {
		op.forget(s, planned.Name)
		return r, err
	}
	if rerr := op.rename(s, planned.Name, r.Opened); rerr != nil || err != nil {
		// Opened, then failed (a volume group active, one of its volumes
		// missing): the journal keeps it, for the teardown to close.
		return r, cmp.Or(err, rerr)
	}
	for _, w := range r.Warnings {
		op.warn("%s", w)
	}
	*op.layerInfo(f.Members[0]) = r.Info
	for _, v := range r.Volumes {
		p := target.Partition{Device: v.Device, Dataset: v.Dataset, FS: target.FS{Type: v.Type}, Layer: string(l.Kind()), Parents: f.Members, Names: v.Names}
		if err := op.addVolume(ctx, p); err != nil {
			return r, err
		}
	}
	return r, nil
}

// about names the target in a layer's error that says what to do.
func (op *Opened) about(err error) error {
	var he *hint.Error
	if errors.As(err, &he) && he.Subject == "" {
		he.Subject = op.Target.Arg
	}
	return err
}

// locked lists the devices of keyed layers (LUKS volumes) still locked.
func (op *Opened) locked() []target.Partition {
	var out []target.Partition
	for _, p := range op.Partitions {
		if l := layers.Of(layers.KindOf(p.Type)); l != nil && l.Keyed() && !op.layers.handled[p.Device] {
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

// addVolume adds a volume a layer made to the partitions: a block device
// probed, a dataset as its layer says it is.
func (op *Opened) addVolume(ctx context.Context, p target.Partition) error {
	if p.Dataset != "" {
		op.Partitions = append(op.Partitions, p)
		return nil
	}
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

// unlock opens the locked volume p (LUKS) with the session's keys, under
// a name of the session's own; name is what the target's configuration
// calls it, when known (the prompt says it).
func (op *Opened) unlock(ctx context.Context, s *Session, to Options, p target.Partition, name string) error {
	op.layers.handled[p.Device] = true
	f := op.layers.found[p.Device]
	l := layers.Of(f.Kind)
	if err := l.Usable(f); err != nil {
		return op.about(err)
	}
	prompt := fmt.Sprintf("Passphrase for %s (%s", p.Device, f.What())
	if name != "" {
		prompt += fmt.Sprintf(", %q in the target's configuration", name)
	}
	prompt += "): "
	_, err := op.openLayer(ctx, s, l, f, func(host string) (r layers.Result, err error) {
		err = op.layers.keys.Unlock(prompt, func(key []byte) error {
			r, err = l.Open(ctx, f, host, layers.OpenOptions{ReadOnly: to.ReadOnly, Key: key})
			return err
		})
		return r, err
	})
	switch {
	case errors.Is(err, layers.ErrNoKey):
		return &LockedError{Layout: op.snapshot(), Err: &hint.Error{Subject: op.Target.Arg, Err: fmt.Errorf("%s holds %s, which is locked", p.Device, f.What()),
			Fix: "give its key with {KeyFile FILE} ({KeyFile -} reads a passphrase from standard input), or run nixrescue on a terminal to be asked"}}
	case errors.Is(err, layers.ErrBadKey):
		return &hint.Error{Subject: op.Target.Arg, Err: fmt.Errorf("no key given opens %s (%s)", p.Device, f.What()),
			Fix: "check the key file or the passphrase ({KeyFile})"}
	case err != nil:
		return err
	}
	op.layerInfo(p.Device).Name = name
	return nil
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
			if !looked[p.Source()] {
				looked[p.Source()] = true
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
	named := ConfiguredLUKS(op.RootDir)
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
			name = layers.DefaultLUKSName(op.layers.found[parent.Device].Header.UUID)
		}
		p.Names = append([]string{"/dev/mapper/" + name}, p.Names...)
		op.layerInfo(parent.Device).Name = name
	}
	for _, p := range op.locked() {
		op.warn("%s (%s) stays locked: the target's configuration does not name it", p.Device, op.layers.found[p.Device].What())
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

// ConfiguredLUKS reads the LUKS volumes the target's configuration
// declares (layers.ParseLUKSNames), in /etc/nixos and below.
func ConfiguredLUKS(root string) []layers.LUKSName {
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

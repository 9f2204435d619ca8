package layers

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/nixrescue/nixrescue/runtime/hint"
	"github.com/nixrescue/nixrescue/runtime/internal/hosttool"
)

// zfsLayer is ZFS's Layer: a pool imported as NixOS's stage 1 imports it
// (nixos/modules/tasks/filesystems/zfs.nix: zpool import -N, nothing
// mounted by ZFS; the datasets then mounted as the fstab says), under the
// session's root (-R, which also keeps the pool out of this host's
// zpool.cache), exported at the end. Its volumes are its filesystems.
type zfsLayer struct{}

func (zfsLayer) Kind() Kind  { return ZFS }
func (zfsLayer) Keyed() bool { return false }
func (zfsLayer) Describe(f Found) Info {
	return Info{Kind: ZFS, On: f.Members, State: f.Pool.State, Name: f.Pool.Name, Pool: f.Pool}
}
func (zfsLayer) Usable(Found) error { return nil }

// Planned records the pool by its name and GUID: a cleanup exports the
// pool imported with that GUID, whatever name it was imported under, and
// never another of the same name.
func (zfsLayer) Planned(f Found, _ string) Opened {
	return Opened{Kind: ZFS, Name: f.Pool.Name, Devices: f.Members, ID: f.Pool.GUID}
}

// Find reads the members' labels and groups them by pool.
func (zfsLayer) Find(ctx context.Context, members []string) ([]Found, error) {
	var pools []Pool
	for _, m := range members {
		p, err := ReadPoolLabel(ctx, m)
		if err != nil {
			return nil, err
		}
		if i := slices.IndexFunc(pools, func(q Pool) bool { return q.GUID == p.GUID }); i >= 0 {
			pools[i].Members = append(pools[i].Members, m)
			continue
		}
		pools = append(pools, p)
	}
	out := make([]Found, 0, len(pools))
	for i := range pools {
		out = append(out, Found{Kind: ZFS, Members: pools[i].Members, Pool: &pools[i]})
	}
	return out, nil
}

// importedOnHost lists the pools imported on this host: name → GUID.
func importedOnHost(ctx context.Context, member string) (map[string]string, error) {
	out, err := run(ctx, nil, member, ZFS, "zpool", "list", "-H", "-o", "name,guid")
	if err != nil {
		return nil, failed(err, "list the ZFS pools imported on this host")
	}
	pools := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if name, guid, ok := strings.Cut(line, "\t"); ok {
			pools[name] = guid
		}
	}
	return pools, nil
}

// Open imports the pool (-N: nothing mounted; read-only when asked),
// after checking that this host's OpenZFS can read it and that no other
// live system holds it; then loads the keys its encrypted filesystems
// need (o.Unlock, on a pipe); its volumes are its filesystems.
func (zfsLayer) Open(ctx context.Context, f Found, name string, o OpenOptions) (Result, error) {
	p := *f.Pool
	inCore, force, err := importChoices(ctx, p, name, o)
	if err != nil {
		return Result{}, err
	}
	opened := Opened{Kind: ZFS, Name: inCore, Devices: f.Members, ID: p.GUID}
	if _, err := run(ctx, nil, p.Members[0], ZFS, "zpool", importArgs(p, o.AltRoot, inCore, o.ReadOnly, force)...); err != nil {
		return Result{}, importFailed(p, err)
	}
	r := Result{Opened: opened, Info: Info{Kind: ZFS, On: f.Members, State: "imported", Name: p.Name, Pool: &p}}
	if inCore != p.Name {
		r.Warnings = append(r.Warnings, fmt.Sprintf("a ZFS pool named %q is imported on this host: the target's is imported as %q for this session (its name on disk is unchanged)", p.Name, inCore))
	}
	sets, err := listDatasets(ctx, opened.Name)
	if err != nil {
		return r, err
	}
	locked, err := loadKeys(ctx, sets, o)
	if err != nil {
		return r, err
	}
	r.Info.Locked = locked
	for _, l := range locked {
		r.Warnings = append(r.Warnings, fmt.Sprintf("the encrypted ZFS dataset %s stays locked, and the datasets under it unmounted: no key was given (--key-file, or a terminal to type it at)", l))
	}
	for _, d := range sets {
		if d.Type != "filesystem" || slices.Contains(locked, d.EncryptionRoot) {
			continue
		}
		r.Volumes = append(r.Volumes, Volume{Dataset: d.Name, Names: []string{p.Name + strings.TrimPrefix(d.Name, opened.Name)}, Type: "zfs"})
		r.Info.Volumes = append(r.Info.Volumes, d.Name)
	}
	return r, nil
}

// importChoices decides how p is imported: the name it is imported
// under (its own, or the session's when a pool of its name is imported
// here), and whether the import forces it; refusing what this host
// cannot or must not import.
func importChoices(ctx context.Context, p Pool, session string, o OpenOptions) (inCore string, force bool, err error) {
	if !zfsModuleLoaded() {
		return "", false, noModule(p)
	}
	h, err := ReadHostFeatures(ctx, p.Members[0])
	if err != nil {
		return "", false, err
	}
	if err := CheckFeatures(p, h); err != nil {
		return "", false, err
	}
	host, err := importedOnHost(ctx, p.Members[0])
	if err != nil {
		return "", false, err
	}
	inCore = p.Name
	for n, guid := range host {
		if guid == p.GUID {
			return "", false, &OpenOnHostError{Device: strings.Join(p.Members, ", "), Kind: ZFS, Holders: []string{"the pool " + n}}
		}
		if n == p.Name {
			inCore = session
		}
	}
	force, err = mayForce(ctx, p, session, o)
	return inCore, force, err
}

// importArgs are zpool import's arguments for p: nothing mounted (-N),
// under altroot (-R: nothing in this host's zpool.cache either), its
// members only (-d), by its GUID, under inCore when that is not its name
// (-t: the name on disk stays).
func importArgs(p Pool, altroot, inCore string, readOnly, force bool) []string {
	args := []string{"import", "-N", "-R", altroot}
	for _, m := range p.Members {
		args = append(args, "-d", m)
	}
	if readOnly {
		args = append(args, "-o", "readonly=on")
	}
	if force {
		args = append(args, "-f")
	}
	if inCore != p.Name {
		return append(args, "-t", p.GUID, inCore)
	}
	return append(args, p.GUID)
}

// mayForce decides whether the import forces (-f) a pool that was not
// exported and was last imported by another system than this one: as the
// target would import it, when that system is the target itself (its
// networking.hostId, /etc/hostid, read through a read-only import), and
// only then; a read-only import may always, as it writes nothing. A pool
// with multihost on, or held by a third system, is refused.
func mayForce(ctx context.Context, p Pool, session string, o OpenOptions) (bool, error) {
	if p.State != "active" || p.HostID == 0 || p.HostID == HostID() {
		return false, nil
	}
	if o.ReadOnly {
		return true, nil
	}
	target, multihost, err := peekHostID(ctx, p, session, o.AltRoot)
	if err != nil {
		return false, err
	}
	switch {
	case multihost:
		return false, &hint.Error{Err: fmt.Errorf("the ZFS pool %q has multihost on and was last imported by %s (hostid %08x)", p.Name, p.Hostname, p.HostID),
			Fix: "make sure that system is off, then import it by hand (zpool import -f: it waits for that system's heartbeat to stop) and pass the mounted root; or open it {ReadOnly}"}
	case target != p.HostID:
		return false, &hint.Error{Err: fmt.Errorf("the ZFS pool %q was not exported and was last imported by %s (hostid %08x), which is neither this host (%08x) nor the target (%08x): another live system may hold it, and importing it here (-f) would corrupt it if one does", p.Name, p.Hostname, p.HostID, HostID(), target),
			Fix: "make sure no other system uses the pool, then import it by hand (zpool import -f) and pass the mounted root; or open it {ReadOnly}"}
	}
	return true, nil
}

// importFailed says why zpool import failed, in one line.
func importFailed(p Pool, err error) error {
	var missing *hosttool.MissingError
	if errors.As(err, &missing) {
		return err
	}
	msg := err.Error()
	if strings.Contains(msg, "unsupported feature") || strings.Contains(msg, "can only be imported read-only") {
		return &hint.Error{Err: fmt.Errorf("import the ZFS pool %q: %w", p.Name, err), Fix: "this host's OpenZFS is older than the pool: open it {ReadOnly}, or use OpenZFS as new as the target's"}
	}
	return fmt.Errorf("import the ZFS pool %q: %w", p.Name, err)
}

// dataset is a pool's dataset as zfs list shows it.
type dataset struct {
	Name, Type, Mountpoint, EncryptionRoot, KeyStatus, KeyLocation string
}

// listDatasets lists pool's filesystems and volumes with what mounting
// them needs.
func listDatasets(ctx context.Context, pool string) ([]dataset, error) {
	out, err := hosttool.Run(ctx, nil, "zfs", "list", "-H", "-p", "-r", "-t", "filesystem,volume", "-o", "name,type,mountpoint,encryptionroot,keystatus,keylocation", pool)
	if err != nil {
		return nil, fmt.Errorf("list the datasets of the ZFS pool %s: %w", pool, err)
	}
	var sets []dataset
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Split(line, "\t")
		if len(f) != 6 {
			continue
		}
		sets = append(sets, dataset{Name: f[0], Type: f[1], Mountpoint: f[2], EncryptionRoot: f[3], KeyStatus: f[4], KeyLocation: f[5]})
	}
	return sets, nil
}

// loadKeys loads the key of each encryption root whose key is not
// loaded, with the session's keys (o.Unlock: --key-file or the
// terminal), given to zfs load-key on its standard input, never in an
// argument. It returns those left locked for want of a key.
func loadKeys(ctx context.Context, sets []dataset, o OpenOptions) (locked []string, err error) {
	for _, d := range sets {
		if d.EncryptionRoot != d.Name || d.KeyStatus != "unavailable" {
			continue
		}
		if o.Unlock == nil {
			locked = append(locked, d.Name)
			continue
		}
		prompt := fmt.Sprintf("Passphrase for the encrypted ZFS dataset %s (keylocation %s): ", d.Name, d.KeyLocation)
		err := o.Unlock(prompt, func(key []byte) error {
			_, err := hosttool.Run(ctx, strings.NewReader(string(key)), "zfs", "load-key", "-L", "prompt", d.Name)
			if err != nil && strings.Contains(err.Error(), "Incorrect key") {
				return ErrBadKey
			}
			return err
		})
		if errors.Is(err, ErrNoKey) {
			locked = append(locked, d.Name)
			continue
		}
		if err != nil {
			return locked, fmt.Errorf("load the key of the ZFS dataset %s: %w", d.Name, err)
		}
	}
	return locked, nil
}

// Close exports the pool the session imported: the one with its GUID,
// under whatever name; one that is not imported is gone already.
func (zfsLayer) Close(ctx context.Context, o Opened) error {
	pools, err := importedOnHost(ctx, o.Name)
	if err != nil {
		return err
	}
	for name, guid := range pools {
		if guid == o.ID {
			_, err = hosttool.Run(ctx, nil, "zpool", "export", name)
			return err
		}
	}
	return nil
}

// ReadWrite: a session that writes imports its pools writable.
func (zfsLayer) ReadWrite(context.Context, Opened) error { return nil }

// peekHostID imports p read-only (forced: nothing is written) under a
// name of its own, mounts its filesystems read-only beside altroot, and
// reads the target's hostid from its /etc/hostid (a link into the
// store, as NixOS makes it), and the pool's multihost property; then
// unmounts and exports it.
func peekHostID(ctx context.Context, p Pool, session, altroot string) (uint32, bool, error) {
	name := session + "-peek"
	dir, err := os.MkdirTemp(filepath.Dir(altroot), "zfs-peek-")
	if err != nil {
		return 0, false, err
	}
	defer os.RemoveAll(dir)
	if _, err := run(ctx, nil, p.Members[0], ZFS, "zpool", importArgs(p, dir, name, true, true)...); err != nil {
		return 0, false, importFailed(p, err)
	}
	defer hosttool.Run(context.WithoutCancel(ctx), nil, "zpool", "export", name)
	mh, _ := hosttool.Run(ctx, nil, "zpool", "get", "-H", "-o", "value", "multihost", name)
	multihost := strings.TrimSpace(string(mh)) == "on"
	sets, err := listDatasets(ctx, name)
	if err != nil {
		return 0, multihost, err
	}
	var mounted []string
	defer func() {
		for i := len(mounted) - 1; i >= 0; i-- {
			_ = unix.Unmount(mounted[i], unix.MNT_DETACH)
		}
	}()
	var roots []string
	for i, d := range sets {
		if d.Type != "filesystem" || d.KeyStatus == "unavailable" || (d.Mountpoint != "legacy" && !strings.HasPrefix(d.Mountpoint, "/")) {
			continue
		}
		mp := filepath.Join(dir, fmt.Sprint(i))
		if os.Mkdir(mp, 0o700) != nil || unix.Mount(d.Name, mp, "zfs", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "zfsutil") != nil {
			continue
		}
		mounted = append(mounted, mp)
		roots = append(roots, mp)
	}
	return targetHostID(roots), multihost, nil
}

// targetHostID finds the NixOS root among dirs (the one with etc/NIXOS)
// and reads its /etc/hostid, following links by hand across dirs: /nix
// may be another dataset (the one with store/).
func targetHostID(dirs []string) uint32 {
	var root, nix string
	for _, d := range dirs {
		if _, err := os.Lstat(filepath.Join(d, "etc/NIXOS")); err == nil && root == "" {
			root = d
		}
		if fi, err := os.Stat(filepath.Join(d, "store")); err == nil && fi.IsDir() && nix == "" {
			nix = d
		}
	}
	if root == "" {
		return 0
	}
	return ParseHostID(os.ReadFile(resolveAcross(root, nix, "/etc/hostid")))
}

// resolveAcross resolves p, a path of the target whose root is mounted
// at root and whose /nix at nix ("" when it is root's), link by link:
// the host's path of what p leads to.
func resolveAcross(root, nix, p string) string {
	hostPath := func(p string) string {
		if nix != "" && (p == "/nix" || strings.HasPrefix(p, "/nix/")) {
			return filepath.Join(nix, strings.TrimPrefix(p, "/nix"))
		}
		return filepath.Join(root, p)
	}
	done := "/"
	rest := strings.Split(strings.Trim(path.Clean(p), "/"), "/")
	for links := 0; len(rest) > 0 && links < 40; {
		next := path.Join(done, rest[0])
		rest = rest[1:]
		link, err := os.Readlink(hostPath(next))
		if err != nil {
			done = next
			continue
		}
		links++
		if !path.IsAbs(link) {
			link = path.Join(done, link)
		}
		rest = append(strings.Split(strings.Trim(path.Clean(link), "/"), "/"), rest...)
		done = "/"
	}
	return hostPath(done)
}

package commands

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"time"

	"github.com/pmezard/go-difflib/difflib"
	"golang.org/x/sys/unix"

	"github.com/nixrescue/nixrescue/runtime/engine"
	"github.com/nixrescue/nixrescue/runtime/hint"
	"github.com/nixrescue/nixrescue/runtime/nixos"
	"github.com/nixrescue/nixrescue/runtime/rootfs"
	"github.com/nixrescue/nixrescue/runtime/target"
)

// HardwareConfigPath is the file hardware-config compares and writes.
const HardwareConfigPath = nixos.HardwareConfiguration

// HardwareReport is what hardware-config found. Its JSON field names are
// stable (docs/json.md).
type HardwareReport struct {
	Target target.Target `json:"target"`
	Path   string        `json:"path"`
	// Generated is what nixos-generate-config printed.
	Generated string `json:"generated"`
	// Changed says whether it differs from the file; Diff is the unified
	// diff from the file to it.
	Changed bool   `json:"changed"`
	Diff    string `json:"diff"`
	// Written says whether Write replaced the file; Backup is where the
	// old one was kept.
	Written bool   `json:"written"`
	Backup  string `json:"backup,omitempty"`
	// Unbootable are the generated fileSystems the machine could not
	// mount at boot (UnbootableMounts): Write refuses to write them.
	Unbootable []string `json:"unbootable"`
	// Error and Fix are nixrescue's own failure (a --write refused), with
	// the status it exits with; the front end fills them.
	Error      string `json:"error,omitempty"`
	Fix        string `json:"fix,omitempty"`
	ExitStatus int    `json:"exit_status"`
}

// HardwareOptions are hardware-config's.
type HardwareOptions struct {
	Options
	// Write replaces the file (the old one is kept beside it).
	Write bool
	// Now names the backup; zero means the time of the call.
	Now time.Time
}

// maxHardwareConfig bounds what is read of the target's file and of the
// generator's output.
const maxHardwareConfig = 1 << 20

// HardwareConfig runs nixos-generate-config --show-hardware-config in the
// recovery container (its first process), with the target's filesystems
// mounted where they belong and /sys and /dev visible, and compares its
// output with the target's hardware-configuration.nix. With Write it
// replaces the file (a temporary file renamed over it, the old one kept
// with a timestamped suffix); without, nothing is written. It returns the
// report (nil when the generator did not run to the end) and the
// generator's exit status.
func HardwareConfig(ctx context.Context, ho HardwareOptions) (*HardwareReport, int, error) {
	o := ho.Options
	o.RequireMounts = true
	o.Container.NoActivate = true
	// No resolv.conf bound in: it needs no network, and a bound file is a
	// mount the generator could take for a filesystem.
	o.Container.DNS = []string{engine.DNSNone}
	now := ho.Now
	if now.IsZero() {
		now = time.Now()
	}
	s, err := open(ctx, &o, true)
	if err != nil {
		return nil, 0, err
	}
	defer s.Close()
	r, code, err := hardwareConfigIn(ctx, s, o, ho.Write, now)
	var wrote []string
	if r != nil && r.Written {
		wrote = append(wrote, HardwareConfigPath+" replaced (the old one kept as "+r.Backup+")")
	}
	s.Outcome(code, err, wrote...)
	return r, code, err
}

// hardwareConfigIn is HardwareConfig's work in session s.
func hardwareConfigIn(ctx context.Context, s *engine.Session, o Options, write bool, now time.Time) (*HardwareReport, int, error) {
	r := &HardwareReport{Target: s.Target(), Path: HardwareConfigPath, Unbootable: []string{}}
	if err := checkNixOSDir(s.Root(), write, o.ReadOnly); err != nil {
		return nil, 0, err
	}
	p, err := prepare(s, &o, true)
	if err != nil {
		return nil, 0, err
	}
	var out bytes.Buffer
	proc := newProcess(&o, []string{"nixos-generate-config", "--show-hardware-config"}, p.Env)
	proc.Stdout = &limitedWriter{w: &out, n: maxHardwareConfig}
	code, err := s.RunFirst(ctx, p, proc)
	if err != nil {
		return nil, 0, err
	}
	if code != 0 {
		return nil, code, fmt.Errorf("nixos-generate-config failed with status %d (its output is above); nothing was written", code)
	}
	r.Generated = targetLayerNames(out.String(), s.Layout().Layers)
	if r.Unbootable = UnbootableMounts(r.Generated); len(r.Unbootable) > 0 && write {
		return r, 0, &hint.Error{Err: fmt.Errorf("not written: the generated configuration would leave a machine that cannot boot: %s", strings.Join(r.Unbootable, "; ")),
			Fix: "pass the disk or image itself as {Target}, whose filesystems nixrescue mounts by the names the machine knows them by"}
	}
	return r, 0, compareAndWrite(s.Root(), r, write, now)
}

// targetLayerNames puts the target's names for its LUKS volumes where the
// generator wrote this host's (it names a volume by its device-mapper
// name, which is the session's own here: boot.initrd.luks.devices."NAME"),
// and a ZFS pool's own name where it was imported under another.
func targetLayerNames(generated string, infos []engine.LayerInfo) string {
	for _, l := range infos {
		if l.Kind == engine.LayerZFS && len(l.Volumes) > 0 {
			// A pool imported under a temporary name: the datasets by
			// the pool's own.
			inCore, _, _ := strings.Cut(l.Volumes[0], "/")
			if inCore != l.Name && l.Name != "" {
				generated = strings.ReplaceAll(generated, `device = "`+inCore+`/`, `device = "`+l.Name+`/`)
				generated = strings.ReplaceAll(generated, `device = "`+inCore+`";`, `device = "`+l.Name+`";`)
			}
			continue
		}
		host, ok := strings.CutPrefix(l.Mapping, "/dev/mapper/")
		if l.Kind != engine.LayerLUKS || !ok || l.Name == "" {
			continue
		}
		generated = strings.ReplaceAll(generated, `luks.devices."`+host+`"`, `luks.devices."`+l.Name+`"`)
	}
	return generated
}

// checkNixOSDir checks that the target at root has /etc/nixos, writable
// when it is to be written.
func checkNixOSDir(root string, write, readOnly bool) error {
	dir, err := rootfs.Join(root, path.Dir(HardwareConfigPath))
	if err == nil {
		var st os.FileInfo
		if st, err = os.Stat(dir); err == nil && !st.IsDir() {
			err = errors.New("not a directory")
		}
	}
	if err != nil {
		return fmt.Errorf("the target has no /etc/nixos (%v): it holds the configuration hardware-config compares with; create it, or run nixos-generate-config yourself", err)
	}
	if write && (readOnly || unix.Access(dir, unix.W_OK) != nil) {
		return hint.Errorf("the target's /etc/nixos is read-only: {Write} cannot replace hardware-configuration.nix (drop {ReadOnly}, or remount it read-write)")
	}
	return nil
}

// compareAndWrite compares what was generated (in r) with the target's
// file, and replaces the file when write says so and it differs.
func compareAndWrite(root string, r *HardwareReport, write bool, now time.Time) error {
	old, err := rootfs.ReadFile(root, HardwareConfigPath, maxHardwareConfig)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("read the target's %s: %w", HardwareConfigPath, err)
	}
	r.Changed = string(old) != r.Generated
	if r.Changed {
		r.Diff, _ = difflib.GetUnifiedDiffString(difflib.UnifiedDiff{
			A: difflib.SplitLines(string(old)), B: difflib.SplitLines(r.Generated),
			FromFile: "a" + HardwareConfigPath, ToFile: "b" + HardwareConfigPath + " (generated)", Context: 3,
		})
	}
	if !write || !r.Changed {
		return nil
	}
	r.Backup, err = replaceInRoot(root, HardwareConfigPath, []byte(r.Generated), now)
	if err != nil {
		return err
	}
	r.Written = true
	return nil
}

// limitedWriter keeps at most n bytes and fails past them.
type limitedWriter struct {
	w io.Writer
	n int
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	if len(p) > l.n {
		return 0, errors.New("nixos-generate-config printed too much")
	}
	l.n -= len(p)
	return l.w.Write(p)
}

// replaceInRoot replaces file p of the target with content: a temporary
// file beside it, synced, then the old file kept under a timestamped name
// (a hard link) and the new one renamed over it. A reader sees the old file
// or the new one, never half of one. It returns the backup's path ("" when
// there was no old file).
func replaceInRoot(root, p string, content []byte, now time.Time) (string, error) {
	d, err := rootfs.OpenDir(root, path.Dir(p), false)
	if err != nil {
		return "", fmt.Errorf("open %s in the target: %w", path.Dir(p), err)
	}
	defer d.Close()
	// O_PATH cannot create files: reopen the directory for that.
	dfd, err := unix.Openat(int(d.Fd()), ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", fmt.Errorf("open %s in the target: %w", path.Dir(p), err)
	}
	defer unix.Close(dfd)
	base := path.Base(p)
	tmp := "." + base + ".nixrescue-tmp"
	_ = unix.Unlinkat(dfd, tmp, 0)
	fd, err := unix.Openat(dfd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return "", fmt.Errorf("write %s: %w", p, err)
	}
	f := os.NewFile(uintptr(fd), tmp)
	_, err = f.Write(content)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = unix.Unlinkat(dfd, tmp, 0)
		return "", fmt.Errorf("write %s: %w", p, err)
	}
	backup := ""
	var st unix.Stat_t
	if unix.Fstatat(dfd, base, &st, unix.AT_SYMLINK_NOFOLLOW) == nil {
		name := base + "." + now.UTC().Format("20060102-150405")
		if err := unix.Linkat(dfd, base, dfd, name, 0); err != nil {
			_ = unix.Unlinkat(dfd, tmp, 0)
			return "", fmt.Errorf("keep the old %s as %s: %w", p, name, err)
		}
		backup = path.Join(path.Dir(p), name)
	}
	if err := unix.Renameat(dfd, tmp, dfd, base); err != nil {
		_ = unix.Unlinkat(dfd, tmp, 0)
		return "", fmt.Errorf("replace %s: %w", p, err)
	}
	_ = unix.Fsync(dfd)
	return backup, nil
}

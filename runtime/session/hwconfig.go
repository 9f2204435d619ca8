package session

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"time"

	"github.com/pmezard/go-difflib/difflib"
	"golang.org/x/sys/unix"

	"github.com/nixrescue/nixrescue/runtime/rootfs"
	"github.com/nixrescue/nixrescue/runtime/target"
)

// HardwareConfigPath is the file hardware-config compares and writes.
const HardwareConfigPath = "/etc/nixos/hardware-configuration.nix"

// HardwareReport is what hardware-config found. Its JSON field names are
// stable; the README documents them.
type HardwareReport struct {
	Target target.Target `json:"target"`
	Path   string        `json:"path"`
	// Generated is what nixos-generate-config printed.
	Generated string `json:"generated"`
	// Changed says whether it differs from the file; Diff is the unified
	// diff from the file to it.
	Changed bool   `json:"changed"`
	Diff    string `json:"diff"`
	// Written says whether --write replaced the file; Backup is where the
	// old one was kept.
	Written bool   `json:"written"`
	Backup  string `json:"backup,omitempty"`
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
// recovery container, with the target's filesystems mounted where they
// belong and /sys and /dev visible, and compares its output with the
// target's hardware-configuration.nix. With Write it replaces the file
// (a temporary file renamed over it, the old one kept with a timestamped
// suffix); without, nothing is written. report gets the result in the
// process that ran the session.
func HardwareConfig(ctx context.Context, ho HardwareOptions, report func(*HardwareReport) error) (int, error) {
	o := ho.Options
	o.defaults()
	o.RequireMounts = true
	now := ho.Now
	if now.IsZero() {
		now = time.Now()
	}
	o.NoActivate = true
	// No resolv.conf bound in: it needs no network, and a bound file is a
	// mount the generator could take for a filesystem.
	o.DNS = []string{DNSNone}
	o.Args = []string{"nixos-generate-config", "--show-hardware-config"}
	var out bytes.Buffer
	o.Stdout = &limitedWriter{w: &out, n: maxHardwareConfig}
	r := &HardwareReport{Path: HardwareConfigPath}
	compared := false
	o.beforeContainer = func(root string) error {
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
		if ho.Write && (o.ReadOnly || unix.Access(dir, unix.W_OK) != nil) {
			return errors.New("the target's /etc/nixos is read-only: --write cannot replace hardware-configuration.nix (drop --read-only, or remount it read-write)")
		}
		return nil
	}
	o.afterCommand = func(root string, code int) error {
		if code != 0 {
			return fmt.Errorf("nixos-generate-config failed with status %d (its output is above); nothing was written", code)
		}
		r.Generated = out.String()
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
		if !ho.Write || !r.Changed {
			compared = true
			return nil
		}
		r.Backup, err = replaceInRoot(root, HardwareConfigPath, []byte(r.Generated), now)
		if err != nil {
			return err
		}
		r.Written, compared = true, true
		return nil
	}
	o.Report = &RunReport{}
	o.OnReport = func(rep *RunReport) error {
		if !compared { // the session failed; its error says why
			return nil
		}
		r.Target = rep.Target
		return report(r)
	}
	return Run(ctx, o)
}

// WriteText writes the diff (nothing when there is no change).
func (r *HardwareReport) WriteText(w io.Writer) error {
	_, err := io.WriteString(w, r.Diff)
	return err
}

// Summary says in one line what was done.
func (r *HardwareReport) Summary() string {
	switch {
	case !r.Changed:
		return "no change: " + r.Path + " already describes this machine; nothing written"
	case r.Written:
		return "wrote " + r.Path + "; the old one is " + r.Backup
	}
	return "nothing written; pass --write to replace " + r.Path
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

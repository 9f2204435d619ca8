package commands

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/nixrescue/nixrescue/runtime/engine"
	"github.com/nixrescue/nixrescue/runtime/helper"
	"github.com/nixrescue/nixrescue/runtime/hint"
	"github.com/nixrescue/nixrescue/runtime/target"
)

// SpecOptions are spec's: the spec a session would use, printed, or a
// bundle written.
type SpecOptions struct {
	Options
	// Args is the container's first process; empty is the hold.
	Args []string
	// Bundle, when set, is a directory to write config.json and
	// resolv.conf into; it must be new or empty.
	Bundle string
}

// Spec returns the OCI runtime spec a session on the target would use;
// with Bundle it writes a bundle instead (and returns nil) that any OCI
// runtime can run. The spec names the resolv.conf and the /dev/disk links
// relative to the bundle, as runc reads relative bind sources. A bundle
// needs a root that stays mounted: a directory target.
func Spec(ctx context.Context, o SpecOptions) (_ []byte, err error) {
	o.defaults()
	if err := o.checkPolicy(hostFile{o.Bundle != "", hint.Bundle}); err != nil {
		return nil, err
	}
	helperSrc, err := helper.Binary()
	if err != nil {
		return nil, err
	}
	if o.Bundle != "" {
		if entries, err := os.ReadDir(o.Bundle); err == nil && len(entries) > 0 {
			return nil, fmt.Errorf("bundle directory %s is not empty: name a new or empty directory", o.Bundle)
		}
	}
	t, err := engine.ResolveTarget(o.Options.Options)
	if err != nil {
		return nil, err
	}
	if err := engine.Allowed(o.Options.Options, t); err != nil {
		return nil, err
	}
	var p *engine.Prepared
	if t.Kind == target.KindDirectory && len(o.Mounts) == 0 && o.Boot == "" && !o.MountMissing {
		if p, err = prepareDirectory(t.Path, o); err != nil {
			return nil, err
		}
	} else {
		if o.Bundle != "" {
			return nil, fmt.Errorf("%s (%s): a bundle needs a root that stays mounted; mount the NixOS root (and what its fstab mounts under it) yourself and pass that directory", t.Arg, t.Kind)
		}
		s, err := open(ctx, &o.Options, true)
		if err != nil {
			return nil, err
		}
		defer s.Close()
		defer func() { s.Outcome(0, err) }()
		if p, err = prepare(s, &o.Options, false); err != nil {
			return nil, err
		}
	}
	if p.DNS.Placeholder != "" {
		// A runtime would create the mount point in the target and leave
		// it there; a session makes it and removes it afterwards.
		o.Log.Warn(fmt.Sprintf("the target has no %s, so the spec injects no DNS (a session does)", p.DNS.Placeholder))
		p.DNS.Dests = nil
	}
	spec, err := p.Spec(o.Args, "resolv.conf", helperSrc, "")
	if err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(spec, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode spec: %w", err)
	}
	b = append(b, '\n')
	if o.Bundle == "" {
		return b, nil
	}
	return nil, writeBundle(o.Bundle, b, p.Resolv)
}

// prepareDirectory shapes the container of a root mounted at dir, with
// no session (engine.PrepareDirectory), and says what it found amiss.
func prepareDirectory(dir string, o SpecOptions) (*engine.Prepared, error) {
	p, err := engine.PrepareDirectory(dir, o.Bundle, o.ReadOnly, o.Container)
	if err != nil {
		return nil, err
	}
	_ = p.CheckArch(false) // a spec runs nothing here: a foreign system only warns
	warn(o.Log, p.Warnings)
	return p, nil
}

// writeBundle writes config.json and resolv.conf into dir.
func writeBundle(dir string, config, resolv []byte) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create bundle %s: %w", dir, err)
	}
	if resolv != nil {
		if err := os.WriteFile(filepath.Join(dir, "resolv.conf"), resolv, 0o644); err != nil {
			return fmt.Errorf("write bundle: %w", err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), config, 0o644); err != nil {
		return fmt.Errorf("write bundle: %w", err)
	}
	return nil
}

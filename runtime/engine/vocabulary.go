package engine

// What the commands need of the packages below the engine, named here so
// that runtime/commands imports no backend, layers, mount or devices.

import (
	"io"
	"path/filepath"

	"github.com/nixrescue/nixrescue/runtime/backend"
	"github.com/nixrescue/nixrescue/runtime/backend/containerd"
	"github.com/nixrescue/nixrescue/runtime/devices"
	"github.com/nixrescue/nixrescue/runtime/layers"
	"github.com/nixrescue/nixrescue/runtime/mount"
	"github.com/nixrescue/nixrescue/runtime/open"
	"github.com/nixrescue/nixrescue/runtime/target"
)

// containerd's defaults: the socket and nixrescue's namespace.
const (
	DefaultContainerdAddress   = containerd.DefaultAddress
	DefaultContainerdNamespace = containerd.DefaultNamespace
)

// LayerInfo is what inspect reports of a layer; LayerKind its kind.
// LockedError says the target's root may be behind a LUKS volume no key
// was given for.
type (
	LayerInfo   = layers.Info
	LayerKind   = layers.Kind
	LockedError = open.LockedError
)

// The kinds of layer.
const (
	LayerLUKS = layers.LUKS
	LayerLVM  = layers.LVM
	LayerMD   = layers.MD
	LayerZFS  = layers.ZFS
)

// UserTerminal is the user's terminal on stdin and stdout, for a process
// that gets a pty; nil when stdin is no terminal.
func UserTerminal(stdin io.Reader, stdout io.Writer) backend.TTY {
	return backend.UserTerminal(stdin, stdout)
}

// MountedAt tells whether something is mounted at dir (this host's
// path), in this mount namespace.
func MountedAt(dir string) bool {
	m, _ := mount.At(dir)
	return m != nil
}

// PrepareDirectory shapes the container of a root mounted at dir with no
// session (a spec): its curated /dev names the disk behind dir, and, for
// a bundle, its /dev/disk links are written into it (relative to it:
// "disk").
func PrepareDirectory(dir, bundle string, readOnly bool, o ContainerOptions) (*Prepared, error) {
	p, err := PrepareRoot(dir, readOnly, o)
	if err != nil || o.HostDev {
		return p, err
	}
	disk, parts, _ := target.MountedDisk(p.Root)
	if disk == "" {
		return p, nil
	}
	if bundle != "" {
		if p.Dev, err = devices.Curate(filepath.Join(bundle, "disk"), disk, parts, nil); err != nil {
			return nil, err
		}
	} else if p.Dev.Devices, err = devices.Nodes(disk, parts); err != nil {
		return nil, err
	}
	p.Dev.Links = "disk"
	return p, nil
}

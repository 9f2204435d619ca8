// Package ociimage writes an OCI image of a directory as an image layout
// tarball (the OCI image-layout spec, which `ctr image import` and
// `podman load` read), reproducibly: the same directory and options give
// the same bytes, so the same digest, from one commit to the next build.
// No registry and no container daemon are involved.
//
// The image's one layer is the directory, its entries in name order,
// owned by root, dated Created; the image config names the platform, the
// entrypoint and the environment. go-containerregistry assembles the
// manifest, config and layout.
package ociimage

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Options say what the image is.
type Options struct {
	// Root is the directory that becomes the image's filesystem.
	Root string
	// Arch is the platform's architecture (amd64, arm64); the OS is linux.
	Arch string
	// Ref names the image in the layout (org.opencontainers.image.ref.name
	// and containerd's io.containerd.image.name): nixrescue:v0.5.0.
	Ref string
	// Entrypoint and Env are the image config's.
	Entrypoint []string
	Env        []string
	// Created dates the image and every file in it (the commit's time).
	Created time.Time
}

// Write writes the image layout tarball of o to w and returns the
// manifest's digest.
func Write(w io.Writer, o Options) (v1.Hash, error) {
	img, err := image(o)
	if err != nil {
		return v1.Hash{}, err
	}
	digest, err := img.Digest()
	if err != nil {
		return v1.Hash{}, err
	}
	dir, err := os.MkdirTemp("", "nixrescue-oci-")
	if err != nil {
		return v1.Hash{}, err
	}
	defer os.RemoveAll(dir)
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return v1.Hash{}, err
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{
		"org.opencontainers.image.ref.name": o.Ref, "io.containerd.image.name": o.Ref})); err != nil {
		return v1.Hash{}, err
	}
	return digest, tarDir(w, dir, o.Created)
}

// image is the image of o: one layer, its config.
func image(o Options) (v1.Image, error) {
	var layerTar bytes.Buffer
	if err := tarDir(&layerTar, o.Root, o.Created); err != nil {
		return nil, fmt.Errorf("the image's layer: %w", err)
	}
	data := layerTar.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil },
		tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	img, err := mutate.Append(mutate.MediaType(empty.Image, types.OCIManifestSchema1),
		mutate.Addendum{Layer: layer, History: v1.History{Created: v1.Time{Time: o.Created}, CreatedBy: "nixrescue hack/ociimage"}})
	if err != nil {
		return nil, err
	}
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Architecture, cf.OS, cf.Created = o.Arch, "linux", v1.Time{Time: o.Created}
	cf.Config.Entrypoint, cf.Config.Env = o.Entrypoint, o.Env
	return mutate.ConfigFile(img, cf)
}

// tarDir writes dir as a tar stream: entries in name order, root-owned,
// dated stamp, without user or group names, so that one tree always gives
// the same bytes.
func tarDir(w io.Writer, dir string, stamp time.Time) error {
	var paths []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != dir {
			paths = append(paths, p)
		}
		return nil
	})
	if err != nil {
		return err
	}
	sort.Strings(paths)
	tw := tar.NewWriter(w)
	for _, p := range paths {
		if err := addEntry(tw, dir, p, stamp); err != nil {
			return err
		}
	}
	return tw.Close()
}

// addEntry writes file p (under dir) to tw.
func addEntry(tw *tar.Writer, dir, p string, stamp time.Time) error {
	st, err := os.Lstat(p)
	if err != nil {
		return err
	}
	link := ""
	if st.Mode()&fs.ModeSymlink != 0 {
		if link, err = os.Readlink(p); err != nil {
			return err
		}
	}
	h, err := tar.FileInfoHeader(st, link)
	if err != nil {
		return err
	}
	rel, _ := filepath.Rel(dir, p)
	h.Name = filepath.ToSlash(rel)
	if st.IsDir() {
		h.Name += "/"
	}
	h.Uid, h.Gid, h.Uname, h.Gname = 0, 0, "", ""
	h.ModTime, h.AccessTime, h.ChangeTime = stamp, time.Time{}, time.Time{}
	h.Format = tar.FormatPAX
	if h.Typeflag != tar.TypeReg {
		h.Size = 0
	}
	if err := tw.WriteHeader(h); err != nil {
		return err
	}
	if h.Typeflag != tar.TypeReg {
		return nil
	}
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(tw, f)
	return err
}

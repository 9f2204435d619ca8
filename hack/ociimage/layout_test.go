package ociimage

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/layout"
)

// tree makes a small root: a directory, an executable, a file, a link.
func tree(t *testing.T, mtime time.Time) string {
	t.Helper()
	root := t.TempDir()
	for name, mode := range map[string]os.FileMode{"usr/bin/nixrescue": 0o755, "etc/os-release": 0o644} {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(name+"\n"), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("usr/bin", filepath.Join(root, "bin")); err != nil {
		t.Fatal(err)
	}
	return root
}

// TestWriteIsReproducible: one tree written twice (its files dated
// differently, as two checkouts would) gives the same bytes and digest;
// read back as an OCI layout, the image names its platform, entrypoint
// and ref, and its layer holds the tree, root-owned, dated Created.
func TestWriteIsReproducible(t *testing.T) {
	stamp := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	o := Options{Arch: "arm64", Ref: "nixrescue:v0.5.0", Entrypoint: []string{"/usr/bin/nixrescue"}, Env: []string{"PATH=/usr/sbin:/usr/bin"}, Created: stamp}
	var out [2]bytes.Buffer
	var digests [2]string
	for i := range out {
		o.Root = tree(t, time.Now().Add(time.Duration(i)*time.Hour))
		d, err := Write(&out[i], o)
		if err != nil {
			t.Fatal(err)
		}
		digests[i] = d.String()
	}
	if digests[0] != digests[1] || !bytes.Equal(out[0].Bytes(), out[1].Bytes()) {
		t.Fatalf("two writes differ: %s %s, %d and %d bytes", digests[0], digests[1], out[0].Len(), out[1].Len())
	}
	dir := t.TempDir()
	untar(t, &out[0], dir)
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil || len(im.Manifests) != 1 {
		t.Fatalf("index: %v %+v", err, im)
	}
	if m := im.Manifests[0]; m.Digest.String() != digests[0] || m.Annotations["org.opencontainers.image.ref.name"] != o.Ref || m.Annotations["io.containerd.image.name"] != o.Ref {
		t.Errorf("the index's manifest: %+v", m)
	}
	img, err := idx.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Architecture != "arm64" || cf.OS != "linux" || !slices.Equal(cf.Config.Entrypoint, o.Entrypoint) || !slices.Equal(cf.Config.Env, o.Env) || !cf.Created.Time.Equal(stamp) {
		t.Errorf("config: %s/%s %q %q %s", cf.OS, cf.Architecture, cf.Config.Entrypoint, cf.Config.Env, cf.Created)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers: %v %d", err, len(layers))
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var names []string
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		if h.Uid != 0 || h.Gid != 0 || h.Uname != "" || !h.ModTime.Equal(stamp) {
			t.Errorf("%s: owner %d:%d %q, mtime %s", h.Name, h.Uid, h.Gid, h.Uname, h.ModTime)
		}
		if h.Name == "usr/bin/nixrescue" && h.Mode&0o111 == 0 || h.Name == "bin" && h.Linkname != "usr/bin" {
			t.Errorf("%s: mode %o, link %q", h.Name, h.Mode, h.Linkname)
		}
	}
	want := []string{"bin", "etc/", "etc/os-release", "usr/", "usr/bin/", "usr/bin/nixrescue"}
	if !slices.Equal(names, want) {
		t.Errorf("layer entries %q, want %q", names, want)
	}
}

// untar unpacks a tar stream into dir (regular files and directories).
func untar(t *testing.T, r io.Reader, dir string) {
	t.Helper()
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return
		} else if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, h.Name)
		if h.Typeflag == tar.TypeDir {
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

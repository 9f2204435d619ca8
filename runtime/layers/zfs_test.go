package layers

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/nixrescue/nixrescue/runtime/internal/hosttool"
	"github.com/nixrescue/nixrescue/runtime/internal/hosttool/hosttooltest"
)

// zdbLabel is zdb -l of a member of a pool left imported (state 0) by
// the host 0x1d2c3b4a, as OpenZFS's dump_nvlist prints it.
const zdbLabel = `------------------------------------
LABEL 0
------------------------------------
    version: 5000
    name: 'rpool'
    state: 0
    txg: 51
    pool_guid: 11502744914512536390
    errata: 0
    hostid: 489438026
    hostname: 'nixfixture'
    top_guid: 5467318412880934081
    guid: 5467318412880934081
    vdev_children: 1
    vdev_tree:
        type: 'disk'
        id: 0
        guid: 5467318412880934081
        path: '/dev/vdb2'
        whole_disk: 0
    features_for_read:
        com.delphix:hole_birth
        com.delphix:embedded_data
        com.klarasystems:vdev_zaps_v2
    labels = 0 1 2 3 
`

const zpoolUpgradeV = `This system supports ZFS pool feature flags.

The following features are supported:

FEAT DESCRIPTION
-------------------------------------------------------------
async_destroy                         (read-only compatible)
     Destroy filesystems asynchronously.
hole_birth
     Retain hole birth txg for more precise incremental sends.
embedded_data
     Blocks which compress very well use even less space.

The following legacy versions are also supported:

VER  DESCRIPTION
---  --------------------------------------------------------
 1   Initial ZFS version
`

func TestParsePoolLabelAndFeatures(t *testing.T) {
	p, err := ParsePoolLabel([]byte(zdbLabel))
	if err != nil || p.Name != "rpool" || p.GUID != "11502744914512536390" || p.State != "active" || p.HostID != 0x1d2c3b4a || p.Hostname != "nixfixture" ||
		!slices.Equal(p.FeaturesForRead, []string{"com.delphix:hole_birth", "com.delphix:embedded_data", "com.klarasystems:vdev_zaps_v2"}) {
		t.Fatalf("%+v %v", p, err)
	}
	h := HostFeatures{Version: "2.1.11", Known: parseFeatureList([]byte(zpoolUpgradeV))}
	if !slices.Equal(h.Known, []string{"async_destroy", "hole_birth", "embedded_data"}) {
		t.Errorf("known features %q", h.Known)
	}
	err = CheckFeatures(p, h)
	var fe *FeatureError
	if !errors.As(err, &fe) || err.Error() != `the ZFS pool "rpool" uses the feature com.klarasystems:vdev_zaps_v2, which this host's OpenZFS (2.1.11) does not know: it needs OpenZFS 2.2 or newer (Debian 12: zfsutils-linux and zfs-dkms from bookworm-backports)` {
		t.Errorf("an older OpenZFS: %v", err)
	}
	h.Known = append(h.Known, "vdev_zaps_v2")
	if err := CheckFeatures(p, h); err != nil {
		t.Errorf("a host that knows them: %v", err)
	}
	if v := parseZFSVersion([]byte("zfs-2.3.2-2~bpo12+2\nzfs-kmod-2.3.2-2~bpo12+2\n")); v != "2.3.2" {
		t.Errorf("version %q", v)
	}
}

// zfsRecord answers what opening rpool on /dev/vdb2 asks, with hosts
// the pools imported on this host.
func zfsRecord(hosts string) *hosttooltest.Record {
	return &hosttooltest.Record{Answers: map[string]hosttooltest.Answer{
		"zpool upgrade -v":           {Stdout: zpoolUpgradeV + "vdev_zaps_v2\n"},
		"zfs version":                {Stdout: "zfs-2.3.2-2~bpo12+2\n"},
		"zpool list -H -o name,guid": {Stdout: hosts},
		"zfs list -H -p -r -t filesystem,volume -o name,type,mountpoint,encryptionroot,keystatus,keylocation rpool":  {Stdout: "rpool\tfilesystem\tnone\t-\t-\tnone\nrpool/root\tfilesystem\tlegacy\t-\t-\tnone\nrpool/safe\tfilesystem\tlegacy\trpool/safe\tunavailable\tprompt\nrpool/swap\tvolume\t-\t-\t-\tnone\n"},
		"zfs list -H -p -r -t filesystem,volume -o name,type,mountpoint,encryptionroot,keystatus,keylocation s-zfs0": {Stdout: "s-zfs0\tfilesystem\tnone\t-\t-\tnone\ns-zfs0/root\tfilesystem\t/\t-\t-\tnone\n"},
	}}
}

func withZFSModule(t *testing.T) {
	old := zfsModuleLoaded
	zfsModuleLoaded = func() bool { return true }
	t.Cleanup(func() { zfsModuleLoaded = old })
}

// TestOpenZFSImportsAsStageOneDoes: imported without mounting, under the
// session's root, read-only when asked; an encrypted dataset's key on
// zfs load-key's stdin only; a pool named like one of this host's under
// a temporary name; one imported on this host already refused.
func TestOpenZFSImportsAsStageOneDoes(t *testing.T) {
	withZFSModule(t)
	p, _ := ParsePoolLabel([]byte(zdbLabel))
	p.Members, p.State = []string{"/dev/vdb2"}, "exported"
	f := Found{Kind: ZFS, Members: p.Members, Pool: &p}
	rec := zfsRecord("")
	imp := "zpool import -N -R /run/s/root -d /dev/vdb2 -o readonly=on 11502744914512536390"
	load := "zfs load-key -L prompt rpool/safe"
	rec.Answers[imp], rec.Answers[load] = hosttooltest.Answer{}, hosttooltest.Answer{}
	var prompts []string
	unlock := func(prompt string, open func([]byte) error) error {
		prompts = append(prompts, prompt)
		return open([]byte("sekrit"))
	}
	r, err := zfsLayer{}.Open(rec.Context(context.Background()), f, "s-zfs0", OpenOptions{ReadOnly: true, AltRoot: "/run/s/root", Unlock: unlock})
	if err != nil || len(rec.Unexpected()) > 0 {
		t.Fatalf("%v; unexpected %q", err, rec.Unexpected())
	}
	if !reflect.DeepEqual(r.Opened, Opened{Kind: ZFS, Name: "rpool", Devices: []string{"/dev/vdb2"}, ID: p.GUID}) || len(r.Volumes) != 3 || r.Volumes[1].Dataset != "rpool/root" || r.Volumes[1].Type != "zfs" {
		t.Errorf("opened %+v, volumes %+v", r.Opened, r.Volumes)
	}
	if rec.Stdin(load) != "sekrit" || len(prompts) != 1 || !strings.Contains(prompts[0], "rpool/safe") {
		t.Errorf("key: stdin %q, prompts %q", rec.Stdin(load), prompts)
	}
	for _, c := range rec.Calls() {
		if strings.Contains(c, "sekrit") {
			t.Errorf("the key is in a command line: %s", c)
		}
	}

	rec = zfsRecord("rpool\t999\n")
	rec.Answers["zpool import -N -R /run/s/root -d /dev/vdb2 -t 11502744914512536390 s-zfs0"] = hosttooltest.Answer{}
	r, err = zfsLayer{}.Open(rec.Context(context.Background()), f, "s-zfs0", OpenOptions{AltRoot: "/run/s/root"})
	if err != nil || r.Opened.Name != "s-zfs0" || len(r.Volumes) != 2 || r.Volumes[1].Dataset != "s-zfs0/root" || !slices.Equal(r.Volumes[1].Names, []string{"rpool/root"}) || len(r.Warnings) != 1 {
		t.Errorf("a name taken on the host: %+v %v; unexpected %q", r, err, rec.Unexpected())
	}

	rec = zfsRecord("tank\t" + p.GUID + "\n")
	_, err = zfsLayer{}.Open(rec.Context(context.Background()), f, "s-zfs0", OpenOptions{AltRoot: "/run/s/root"})
	var onHost *OpenOnHostError
	if !errors.As(err, &onHost) || !strings.Contains(err.Error(), "the pool tank") {
		t.Errorf("imported on the host already: %v", err)
	}
}

// TestZFSHostID: a pool last imported by another system and not exported
// is forced only read-only, or when that system is the target; a third
// system's, or one with multihost, is refused; no ZFS in the kernel is
// said.
func TestZFSHostID(t *testing.T) {
	withZFSModule(t)
	p, _ := ParsePoolLabel([]byte(zdbLabel)) // active, hostid 0x1d2c3b4a
	p.Members = []string{"/dev/vdb2"}
	f := Found{Kind: ZFS, Members: p.Members, Pool: &p}
	rec := zfsRecord("")
	rec.Answers["zpool import -N -R /run/s/root -d /dev/vdb2 -o readonly=on -f 11502744914512536390"] = hosttooltest.Answer{}
	if _, err := (zfsLayer{}).Open(rec.Context(context.Background()), f, "s-zfs0", OpenOptions{ReadOnly: true, AltRoot: "/run/s/root"}); err != nil {
		t.Errorf("read-only: %v; unexpected %q", err, rec.Unexpected())
	}
	altroot := filepath.Join(t.TempDir(), "root")
	peek := "zpool import -N -R "
	for _, c := range []struct{ multihost, says string }{
		{"off", "which is neither this host"},
		{"on", "has multihost on"},
	} {
		rec = zfsRecord("")
		rec.AnswerPrefix = map[string]hosttooltest.Answer{peek: {}}
		rec.Answers["zpool get -H -o value multihost s-zfs0-peek"] = hosttooltest.Answer{Stdout: c.multihost + "\n"}
		rec.Answers["zpool export s-zfs0-peek"] = hosttooltest.Answer{}
		rec.Answers["zfs list -H -p -r -t filesystem,volume -o name,type,mountpoint,encryptionroot,keystatus,keylocation s-zfs0-peek"] = hosttooltest.Answer{}
		_, err := zfsLayer{}.Open(rec.Context(context.Background()), f, "s-zfs0", OpenOptions{AltRoot: altroot})
		peeked := slices.ContainsFunc(rec.Calls(), func(c string) bool {
			return strings.HasPrefix(c, peek) && strings.HasSuffix(c, " -d /dev/vdb2 -o readonly=on -f -t 11502744914512536390 s-zfs0-peek")
		})
		if err == nil || !strings.Contains(err.Error(), c.says) || !peeked || !slices.Contains(rec.Calls(), "zpool export s-zfs0-peek") {
			t.Errorf("multihost %s: %v; calls %q", c.multihost, err, rec.Calls())
		}
	}
	zfsModuleLoaded = func() bool { return false }
	if _, err := (zfsLayer{}).Open(context.Background(), f, "s-zfs0", OpenOptions{ReadOnly: true}); err == nil || !strings.Contains(err.Error(), "no ZFS (no /dev/zfs)") {
		t.Errorf("no module: %v", err)
	}
}

// TestZFSToolsMissing: no zdb on the host is said with its package.
func TestZFSToolsMissing(t *testing.T) {
	rec := &hosttooltest.Record{Answers: map[string]hosttooltest.Answer{"zdb -l /dev/vdb2": {Missing: true}}}
	_, err := ReadPoolLabel(rec.Context(context.Background()), "/dev/vdb2")
	var missing *hosttool.MissingError
	if !errors.As(err, &missing) || !strings.Contains(err.Error(), "zfsutils-linux") {
		t.Errorf("%v", err)
	}
}

// TestZFSCloseExportsByGUID: the pool the session imported is exported
// whatever name it has; another of the same name never is.
func TestZFSCloseExportsByGUID(t *testing.T) {
	rec := &hosttooltest.Record{Answers: map[string]hosttooltest.Answer{
		"zpool list -H -o name,guid": {Stdout: "rpool\t1\ns-zfs0\t2\n"},
		"zpool export s-zfs0":        {},
	}}
	ctx := rec.Context(context.Background())
	if err := (zfsLayer{}).Close(ctx, Opened{Kind: ZFS, Name: "rpool", ID: "2"}); err != nil || !slices.Contains(rec.Calls(), "zpool export s-zfs0") {
		t.Errorf("%v %q", err, rec.Calls())
	}
	if err := (zfsLayer{}).Close(ctx, Opened{Kind: ZFS, Name: "rpool", ID: "3"}); err != nil || slices.Contains(rec.Calls(), "zpool export rpool") {
		t.Errorf("another pool of that name: %v %q", err, rec.Calls())
	}
}

// TestTargetHostID: /etc/hostid followed across the root's and /nix's
// datasets, as NixOS links it (/etc/hostid → /etc/static/hostid, /etc/static
// → the store).
func TestTargetHostID(t *testing.T) {
	root, nix := t.TempDir(), t.TempDir()
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	os.WriteFile(filepath.Join(root, "etc/NIXOS"), nil, 0o644)
	os.Symlink("/etc/static/hostid", filepath.Join(root, "etc/hostid"))
	os.Symlink("/nix/store/abc-etc/etc", filepath.Join(root, "etc/static"))
	os.MkdirAll(filepath.Join(nix, "store/abc-etc/etc"), 0o755)
	os.WriteFile(filepath.Join(nix, "store/abc-etc/etc/hostid"), []byte{0x4a, 0x3b, 0x2c, 0x1d}, 0o444)
	if got := targetHostID([]string{nix, root}); got != 0x1d2c3b4a {
		t.Errorf("hostid %08x", got)
	}
	if got := targetHostID([]string{nix}); got != 0 {
		t.Errorf("no root: %08x", got)
	}
}

package layers

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/nixrescue/nixrescue/runtime/internal/lazyre"

	"github.com/nixrescue/nixrescue/runtime/hint"
)

// Pool is what a ZFS pool's label on a member tells without importing it
// (zdb -l): nothing is written.
type Pool struct {
	Name string `json:"name"`
	GUID string `json:"guid"`
	// State is exported, active (imported when it was last written: not
	// exported, as after a crash or a machine that went down), destroyed,
	// or a number zdb printed that is none of these.
	State string `json:"state"`
	// HostID and Hostname are the system that last imported it.
	HostID   uint32 `json:"hostid,omitempty"`
	Hostname string `json:"hostname,omitempty"`
	// FeaturesForRead are the features an OpenZFS must know to read it.
	FeaturesForRead []string `json:"features_for_read,omitempty"`
	Members         []string `json:"members"`
}

// poolStates are the label's pool states (sys/fs/zfs.h pool_state_t).
var poolStates = map[string]string{"0": "active", "1": "exported", "2": "destroyed", "3": "spare", "4": "l2cache"}

// ReadPoolLabel reads the ZFS label of member (zdb -l).
func ReadPoolLabel(ctx context.Context, member string) (Pool, error) {
	out, err := run(ctx, nil, member, ZFS, "zdb", "-l", member)
	if err != nil {
		return Pool{}, failed(err, "read the ZFS label of %s", member)
	}
	p, err := ParsePoolLabel(out)
	if err != nil {
		return p, fmt.Errorf("%s: %w", member, err)
	}
	p.Members = []string{member}
	return p, nil
}

// ParsePoolLabel reads zdb -l's text: the first label's pool fields
// (4-space indented "name: value" lines, strings quoted) and its
// features_for_read list.
func ParsePoolLabel(out []byte) (Pool, error) {
	var p Pool
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "LABEL ") && p.GUID != "" {
			break // the others repeat the first
		}
		if section == "features_for_read" && strings.HasPrefix(line, "        ") {
			p.FeaturesForRead = append(p.FeaturesForRead, strings.TrimSpace(line))
			continue
		}
		if !strings.HasPrefix(line, "    ") || strings.HasPrefix(line, "     ") {
			continue
		}
		key, v, _ := strings.Cut(strings.TrimSpace(line), ":")
		v = strings.Trim(strings.TrimSpace(v), "'")
		section = key
		switch key {
		case "name":
			p.Name = v
		case "pool_guid":
			p.GUID = v
		case "state":
			p.State = cmp.Or(poolStates[v], v)
		case "hostid":
			n, _ := strconv.ParseUint(v, 10, 32)
			p.HostID = uint32(n)
		case "hostname":
			p.Hostname = v
		}
	}
	if p.Name == "" || p.GUID == "" {
		return p, errors.New("zdb -l printed no pool name and GUID")
	}
	return p, nil
}

// Describe says what a pool is, for people.
func (p Pool) Describe() string {
	return fmt.Sprintf("ZFS pool %q (%s)", p.Name, p.State)
}

// HostID is this host's hostid as ZFS sees it: the spl module's
// spl_hostid when set, else /etc/hostid (4 bytes, little-endian, as
// NixOS's networking.hostId and zgenhostid write it); 0 when neither.
func HostID() uint32 {
	if b, err := os.ReadFile("/sys/module/spl/parameters/spl_hostid"); err == nil {
		if n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 0, 32); err == nil && n != 0 {
			return uint32(n)
		}
	}
	b, err := os.ReadFile("/etc/hostid")
	return ParseHostID(b, err)
}

// ParseHostID reads a hostid file's 4 bytes; 0 when it is missing or
// shorter.
func ParseHostID(b []byte, err error) uint32 {
	if err != nil || len(b) < 4 {
		return 0
	}
	return binary.LittleEndian.Uint32(b[:4])
}

// HostFeatures are the pool features this host's OpenZFS knows (zpool
// upgrade -v), and its version (zfs version), for what a pool needs.
type HostFeatures struct {
	Version string
	Known   []string
}

// ReadHostFeatures asks this host's OpenZFS.
func ReadHostFeatures(ctx context.Context, member string) (HostFeatures, error) {
	var h HostFeatures
	out, err := run(ctx, nil, member, ZFS, "zpool", "upgrade", "-v")
	if err != nil {
		return h, failed(err, "list the features this host's OpenZFS knows")
	}
	h.Known = parseFeatureList(out)
	if v, err := run(ctx, nil, member, ZFS, "zfs", "version"); err == nil {
		h.Version = parseZFSVersion(v)
	}
	return h, nil
}

// parseFeatureList reads zpool upgrade -v's feature names: the lines of
// its table that start with one ("async_destroy  (read-only
// compatible)"), not their descriptions, indented below them.
func parseFeatureList(out []byte) []string {
	var known []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || strings.HasPrefix(sc.Text(), " ") || !featureNameRE().MatchString(f[0]) {
			continue
		}
		known = append(known, f[0])
	}
	return known
}

var featureNameRE = lazyre.New(`^[a-z][a-z0-9_]*$`)

// parseZFSVersion reads zfs version's first line: zfs-2.1.11-1 → 2.1.11.
func parseZFSVersion(out []byte) string {
	line, _, _ := strings.Cut(string(out), "\n")
	v := strings.TrimPrefix(strings.TrimSpace(line), "zfs-")
	v, _, _ = strings.Cut(v, "-")
	return v
}

// featureSince is the OpenZFS release that brought a pool feature, for
// the read-incompatible features of releases after Debian bookworm's 2.1.
var featureSince = map[string]string{
	"com.fudosecurity:block_cloning": "2.2",
	"org.openzfs:blake3":             "2.2",
	"org.openzfs:head_errlog":        "2.2",
	"com.klarasystems:vdev_zaps_v2":  "2.2",
	"org.openzfs:zilsaxattr":         "2.2",
	"org.openzfs:avz_v2":             "2.2",
	"org.openzfs:raidz_expansion":    "2.3",
	"com.klarasystems:fast_dedup":    "2.3",
	"org.openzfs:longname":           "2.3",
	"org.openzfs:large_microzap":     "2.3",
}

// FeatureError says this host's OpenZFS is older than a pool's features.
type FeatureError struct {
	Pool, Feature, Since, HostVersion string
}

func (e *FeatureError) Error() string {
	need := "a newer OpenZFS"
	if e.Since != "" {
		need = "OpenZFS " + e.Since + " or newer"
	}
	have := "this host's OpenZFS"
	if e.HostVersion != "" {
		have += " (" + e.HostVersion + ")"
	}
	return fmt.Sprintf("the ZFS pool %q uses the feature %s, which %s does not know: it needs %s (Debian 12: zfsutils-linux and zfs-dkms from bookworm-backports)", e.Pool, e.Feature, have, need)
}

// CheckFeatures refuses a pool this host's OpenZFS cannot read.
func CheckFeatures(p Pool, h HostFeatures) error {
	for _, f := range p.FeaturesForRead {
		short := f[strings.IndexByte(f, ':')+1:]
		if slices.Contains(h.Known, f) || slices.Contains(h.Known, short) {
			continue
		}
		return &FeatureError{Pool: p.Name, Feature: f, Since: featureSince[f], HostVersion: h.Version}
	}
	return nil
}

// zfsModuleLoaded tells whether the kernel has ZFS here (/dev/zfs); a
// variable for tests.
var zfsModuleLoaded = func() bool {
	_, err := os.Stat("/dev/zfs")
	return err == nil
}

// noModule says the host has ZFS's tools but not its kernel module.
func noModule(p Pool) error {
	return &hint.Error{Err: fmt.Errorf("the target's root is on the ZFS pool %q and this host's kernel has no ZFS (no /dev/zfs)", p.Name),
		Fix: "load it (modprobe zfs; Debian: zfs-dkms builds it) and run nixrescue again"}
}

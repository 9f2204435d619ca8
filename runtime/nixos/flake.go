package nixos

import (
	"bufio"
	"bytes"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/nixrescue/nixrescue/runtime/internal/lazyre"

	version "github.com/hashicorp/go-version"

	"github.com/nixrescue/nixrescue/runtime/rootfs"
)

// NixConf is the target's Nix configuration (nix.settings).
const NixConf = "/etc/nix/nix.conf"

// ConfigSource is what nixos-rebuild builds the system from: the flake
// /etc/nixos/flake.nix is (or the one --flake names), or
// configuration.nix. Its JSON field names are stable (docs/json.md).
type ConfigSource struct {
	// Kind is "flake" or "configuration".
	Kind string `json:"kind"`
	// File is the file nixos-rebuild starts from: the flake's flake.nix
	// when it is a directory of the target, or configuration.nix.
	File string `json:"file,omitempty"`
	// Flake is the flake's reference (a directory of the target, or any
	// reference Nix takes), Name the configuration's name in it, and
	// Attribute the attribute built: nixosConfigurations."Name".
	Flake     string `json:"flake,omitempty"`
	Name      string `json:"name,omitempty"`
	Attribute string `json:"attribute,omitempty"`
	// NameFrom says where Name came from: "flake reference" (REF#NAME),
	// "hostname" (the target's, as nixos-rebuild takes it from the
	// machine it runs on).
	NameFrom string `json:"name_from,omitempty"`
	// ChosenBy says why this is built: "--flake" (asked for), or
	// "/etc/nixos/flake.nix" (nixos-rebuild takes it over
	// configuration.nix when it exists), or "configuration.nix".
	ChosenBy string `json:"chosen_by"`
}

// FlakeKind and ConfigurationKind are ConfigSource's kinds.
const (
	FlakeKind         = "flake"
	ConfigurationKind = "configuration"
)

// RebuildSource is what nixos-rebuild builds on the target at root, as
// nixos-rebuild chooses it: the flake ref (REF or REF#NAME) when given,
// else /etc/nixos/flake.nix's directory (links followed inside root) when
// it exists, else configuration.nix. A flake's configuration is named by
// REF#NAME, else by hostname, the name of the machine nixos-rebuild runs
// on ("default" when empty), which in the recovery container is the
// target's.
func RebuildSource(root, ref, hostname string) ConfigSource {
	if ref != "" {
		s := flakeSource(ref, hostname, "--flake")
		if !strings.Contains(s.Flake, ":") && path.IsAbs(s.Flake) && Exists(root, path.Join(s.Flake, "flake.nix")) {
			s.File = path.Join(s.Flake, "flake.nix")
		}
		return s
	}
	if !Exists(root, Flake) {
		return ConfigSource{Kind: ConfigurationKind, File: Configuration, ChosenBy: "configuration.nix"}
	}
	file, err := rootfs.Resolve(root, Flake)
	if err != nil {
		file = Flake
	}
	s := flakeSource(path.Dir(file), hostname, Flake)
	s.File = file
	return s
}

// flakeRefRE splits REF#NAME as nixos-rebuild does: the name is what
// follows the last '#', without '"'.
var flakeRefRE = lazyre.New(`^(.*)#([^#"]*)$`)

func flakeSource(ref, hostname, chosenBy string) ConfigSource {
	s := ConfigSource{Kind: FlakeKind, Flake: ref, ChosenBy: chosenBy}
	if m := flakeRefRE().FindStringSubmatch(ref); m != nil {
		s.Flake, s.Name = m[1], m[2]
	}
	s.NameFrom = "flake reference"
	if s.Name == "" {
		s.Name, s.NameFrom = hostname, "hostname"
		if s.Name == "" {
			s.Name = "default"
		}
	}
	s.Attribute = "nixosConfigurations." + strconv.Quote(s.Name)
	return s
}

// Ref is the reference that names the flake and its configuration
// exactly: REF#NAME.
func (s ConfigSource) Ref() string {
	if s.Kind != FlakeKind {
		return ""
	}
	return s.Flake + "#" + s.Name
}

// flakeFeatures are the experimental features a flake's build needs.
var flakeFeatures = []string{"nix-command", "flakes"}

// FlakeFeaturesSetting is the Nix setting that turns them on.
var FlakeFeaturesSetting = "extra-experimental-features = " + strings.Join(flakeFeatures, " ")

// firstFlakeNix is the first Nix release with flakes (experimental).
const firstFlakeNix = "2.4"

// NixVersion is the version of the Nix the system at storePath (inside
// root) has on its PATH, from its store path's name (nix-2.18.1), or ""
// when it cannot tell.
func NixVersion(root, system string) string {
	nix := rootfs.FindProgram(root, "nix", Env(system, ""))
	if nix == "" {
		return ""
	}
	real, err := rootfs.Resolve(root, nix)
	if err != nil {
		return ""
	}
	m := nixPackageRE().FindStringSubmatch(real)
	if m == nil {
		return ""
	}
	return m[1]
}

var nixPackageRE = lazyre.New(`^/nix/store/[0-9a-z]{32}-nix-([0-9][0-9.]*[0-9])[^/]*/`)

// FlakeSettings is what the session must give Nix (NIX_CONFIG) for a
// flake's build on the system at storePath: nothing when its nix.conf
// turns flakes on already, FlakeFeaturesSetting when not. An error when
// its Nix predates flakes.
func FlakeSettings(root, system string) ([]string, error) {
	if v := NixVersion(root, system); v != "" && olderThan(v, firstFlakeNix) {
		return nil, fmt.Errorf("the target's Nix is %s, and flakes came with Nix %s: build the configuration.nix it has (pass --no-flake after --), or a system with a newer Nix (--generation N)", v, firstFlakeNix)
	}
	b, err := rootfs.ReadHead(root, NixConf, 1<<20)
	if err != nil {
		return []string{FlakeFeaturesSetting}, nil
	}
	on := enabledFeatures(b)
	for _, f := range flakeFeatures {
		if !slices.Contains(on, f) {
			return []string{FlakeFeaturesSetting}, nil
		}
	}
	return nil, nil
}

// enabledFeatures reads experimental-features and
// extra-experimental-features from a nix.conf (includes are not
// followed: NixOS writes one file).
func enabledFeatures(conf []byte) []string {
	var on []string
	sc := bufio.NewScanner(bytes.NewReader(conf))
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		name, value, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		switch strings.TrimSpace(name) {
		case "experimental-features":
			on = strings.Fields(value)
		case "extra-experimental-features":
			on = append(on, strings.Fields(value)...)
		}
	}
	return on
}

// olderThan compares release versions (hashicorp/go-version: it reads
// "2.4" and "2.18.1" alike); an unreadable one is not older.
func olderThan(v, than string) bool {
	a, err := version.NewVersion(v)
	if err != nil {
		return false
	}
	return a.LessThan(version.Must(version.NewVersion(than)))
}

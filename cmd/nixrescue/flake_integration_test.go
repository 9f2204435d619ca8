package main

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/nixrescue/nixrescue/hack/testenv"
	"github.com/nixrescue/nixrescue/runtime/commands"
)

// flakeFeatures is what a session gives Nix when the target's nix.conf
// does not turn flakes on (the fixtures' does not).
const flakeFeatures = "extra-experimental-features = nix-command flakes"

// TestRebuildFlake: a configuration that is a flake (/etc/nixos/flake.nix,
// its nixpkgs an input by path) is shown by inspect, and rebuilt by the
// fixture's real Nix as nixos-rebuild builds it: the configuration named
// after the target's hostname, passed explicitly, flakes' features for
// the session only; --flake builds another, and a wrong one fails with
// Nix's word and changes nothing.
func TestRebuildFlake(t *testing.T) {
	testenv.Require(t)
	img := realNixImage(t, imgFlake)
	const ref = "/etc/nixos#nixfixture"

	r := nixrescue(t, "inspect", img, "--json")
	var rep commands.Report
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &rep) != nil {
		t.Fatalf("inspect: exit %d %s", r.code, r.stderr)
	}
	if c := rep.Configuration; c == nil || c.Kind != "flake" || c.Flake != "/etc/nixos" || c.Attribute != `nixosConfigurations."nixfixture"` || c.NameFrom != "hostname" {
		t.Errorf("inspect's configuration: %+v", rep.Configuration)
	}
	if r := nixrescue(t, "inspect", img); !strings.Contains(r.stdout, `configuration: the flake /etc/nixos, nixosConfigurations."nixfixture" (named from the hostname)`) {
		t.Errorf("inspect's text:\n%s", r.stdout)
	}

	r = nixrescue(t, append([]string{"rebuild", img, "--dry-run", "--json"}, rebuildFlags()...)...)
	var plan commands.DryRunReport
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &plan) != nil {
		t.Fatalf("dry run: exit %d %s", r.code, r.stderr)
	}
	if i := slices.Index(plan.Command, "--flake"); i < 0 || i+1 >= len(plan.Command) || plan.Command[i+1] != ref ||
		!slices.Contains(plan.Env, "NIX_CONFIG="+flakeFeatures) || plan.Configuration == nil || plan.Configuration.Kind != "flake" {
		t.Errorf("dry run: command %q, env %q, configuration %+v", plan.Command, plan.Env, plan.Configuration)
	}

	files := targetFiles(t, img)
	host := testenv.SnapshotHost(t)
	r = nixrescue(t, append([]string{"rebuild", img, "--json"}, rebuildFlags()...)...)
	testenv.AssertHostUnchanged(t, host)
	var run commands.RunReport
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &run) != nil {
		t.Fatalf("rebuild: exit %d\n%s", r.code, r.stderr)
	}
	if run.CurrentAfter == nil || run.CurrentAfter.Generation != 3 || run.Configuration == nil || run.Configuration.Ref() != ref ||
		!slices.Equal(run.NixSettings, []string{flakeFeatures}) {
		t.Errorf("rebuild: after %+v, configuration %+v, nix settings %q", run.CurrentAfter, run.Configuration, run.NixSettings)
	}
	for _, want := range []string{"passing --flake " + ref, "for this session only (NIX_CONFIG)", "creating lock file '/etc/nixos/flake.lock'"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("the rebuild's output lacks %q:\n%s", want, r.stderr)
		}
	}
	if after := targetFiles(t, img); after != files {
		t.Errorf("nix.conf or resolv.conf changed:\n%s\nwas\n%s", after, files)
	}
	// The new system is the flake's: its configuration is flake.nix's
	// module, read from the flake's copy in the store.
	if r := nixrescue(t, "run", img, "--read-only", "--", "sh", "-c", "test -e /etc/nixos/flake.lock && cat /nix/var/nix/profiles/system/nixos-version"); r.code != 0 {
		t.Errorf("after the rebuild: exit %d %s", r.code, r.stderr)
	}

	// Another configuration of the flake: Nix says it has none, nothing
	// is switched.
	r = nixrescue(t, append([]string{"rebuild", img, "--flake", "/etc/nixos#elsewhere"}, rebuildFlags()...)...)
	if r.code == 0 || !strings.Contains(r.stderr, "passing --flake /etc/nixos#elsewhere") || !strings.Contains(r.stderr, "elsewhere") {
		t.Errorf("--flake #elsewhere: exit %d %s", r.code, r.stderr)
	}
	if got := profileGeneration(t, img); got != "system-3-link" {
		t.Errorf("after a failed rebuild the profile is %s", got)
	}
	sum := fileHash(t, img)
	oneLine(t, nixrescue(t, "rebuild", img, "--flake", "./conf"), "--flake ./conf: a relative path would be the container's")
	if fileHash(t, img) != sum {
		t.Errorf("a refused --flake changed the image")
	}
	// Refused once the root is read: the image was mounted, the profile
	// is as it was.
	oneLine(t, nixrescue(t, append([]string{"rebuild", img, "--flake", "/srv/conf"}, rebuildFlags()...)...), "--flake /srv/conf: the target has no /srv/conf")
	if got := profileGeneration(t, img); got != "system-3-link" {
		t.Errorf("after a refused rebuild the profile is %s", got)
	}
}

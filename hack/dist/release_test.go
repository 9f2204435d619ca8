// Package dist tests hack/release: the release it builds is what a person
// at a rescue console downloads, so it is checked as they would use it.
package dist

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixrescue/nixrescue/hack/fixture"
	"github.com/nixrescue/nixrescue/hack/testenv"
)

// TestRelease builds a release and checks it: the checksums, the
// tarballs' contents (binary, man pages, completions), the version and
// commit each binary reports, and the arm64 binary run under qemu-user
// (version, and spec on a fixture root: the same spec as amd64's).
func TestRelease(t *testing.T) {
	testenv.Require(t)
	for _, tool := range []string{"aarch64-linux-gnu-gcc", "qemu-aarch64-static", "sha256sum"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is missing: hack/install-deps installs it", tool)
		}
	}
	dist := t.TempDir()
	const version = "v0.0.0-citest"
	cmd := exec.Command("hack/release", version)
	cmd.Dir = "../.."
	cmd.Env = append(os.Environ(), "NIXRESCUE_DIST="+dist)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("hack/release: %v\n%s", err, out)
	}
	out := filepath.Join(dist, version)
	sums := exec.Command("sha256sum", "-c", "SHA256SUMS")
	sums.Dir = out
	if b, err := sums.CombinedOutput(); err != nil || strings.Count(string(b), ": OK") != 4 {
		t.Errorf("sha256sum -c: %v\n%s", err, b)
	}
	head, _ := exec.Command("git", "-C", "../..", "rev-parse", "HEAD").Output()
	commit := strings.TrimSpace(string(head))
	root := filepath.Join(t.TempDir(), "root")
	if _, err := fixture.Build(root, fixture.Options{}); err != nil {
		t.Fatal(err)
	}
	specs := map[string]string{}
	for _, arch := range []string{"amd64", "arm64"} {
		name := "nixrescue-" + version + "-linux-" + arch
		list, err := exec.Command("tar", "tzf", filepath.Join(out, name+".tar.gz")).Output()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{"/nixrescue", "/README.md", "/man/man1/nixrescue.1", "/man/man1/nixrescue-rebuild.1", "/completions/nixrescue.bash", "/completions/_nixrescue", "/completions/nixrescue.fish"} {
			if !strings.Contains(string(list), name+f+"\n") {
				t.Errorf("%s.tar.gz has no %s", name, f)
			}
		}
		if arch == "amd64" {
			// The completions parse, and the man pages are man pages.
			x := t.TempDir()
			if b, err := exec.Command("tar", "xzf", filepath.Join(out, name+".tar.gz"), "-C", x).CombinedOutput(); err != nil {
				t.Fatalf("tar x: %v %s", err, b)
			}
			if b, err := exec.Command("bash", "-n", filepath.Join(x, name, "completions/nixrescue.bash")).CombinedOutput(); err != nil {
				t.Errorf("bash -n of the bash completion: %v %s", err, b)
			}
			if b, _ := os.ReadFile(filepath.Join(x, name, "man/man1/nixrescue-rebuild.1")); !strings.Contains(string(b), `.TH "NIXRESCUE"`) || !strings.Contains(string(b), "--boot-test") {
				t.Errorf("nixrescue-rebuild.1 is not the rebuild's man page:\n%.300s", b)
			}
		}
		bin := filepath.Join(out, "nixrescue-linux-"+arch)
		run := func(args ...string) []byte {
			if arch == "arm64" {
				args = append([]string{"qemu-aarch64-static", bin}, args...)
			} else {
				args = append([]string{bin}, args...)
			}
			b, err := exec.Command(args[0], args[1:]...).Output()
			if err != nil {
				t.Fatalf("%s %v: %v", arch, args, err)
			}
			return b
		}
		var v struct{ Version, Commit, Arch string }
		if err := json.Unmarshal(run("version", "--json"), &v); err != nil || v.Version != version || strings.TrimSuffix(v.Commit, "-dirty") != commit || v.Arch != arch {
			t.Errorf("%s version --json: %+v %v, want %s at %s", arch, v, err, version, commit)
		}
		// The spec names the helper it binds in: this binary.
		specs[arch] = strings.ReplaceAll(string(run("spec", "--root", root, "--", "true")), bin, "BINARY")
	}
	if specs["amd64"] != specs["arm64"] || !strings.Contains(specs["arm64"], `"ociVersion"`) {
		t.Errorf("the arm64 binary's spec differs from amd64's:\n%s\n%s", specs["arm64"], specs["amd64"])
	}
}

package dns

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestBuildKeepsHostFile(t *testing.T) {
	got, err := Build(strings.NewReader("search example.org\nnameserver 10.0.0.1\n"), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"search example.org\n", "nameserver 10.0.0.1\n"} {
		if !strings.Contains(string(got), want) {
			t.Errorf("missing %q in\n%s", want, got)
		}
	}
}

func TestBuildReplacesStubWithUplink(t *testing.T) {
	host := "nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch lan\n"
	uplink := "nameserver 192.0.2.1\nnameserver 192.0.2.2\nsearch lan\n"
	got, err := Build(strings.NewReader(host), strings.NewReader(uplink), nil)
	if err != nil {
		t.Fatal(err)
	}
	s := string(got)
	if strings.Contains(s, "127.0.0.53") {
		t.Errorf("stub kept:\n%s", s)
	}
	for _, want := range []string{"nameserver 192.0.2.1\n", "nameserver 192.0.2.2\n", "search lan\n"} {
		if !strings.Contains(s, want) {
			t.Errorf("missing %q in\n%s", want, s)
		}
	}
}

func TestBuildStubWithoutUplinkKept(t *testing.T) {
	// The host's network namespace is shared by default, so the stub
	// still answers inside.
	got, err := Build(strings.NewReader("nameserver 127.0.0.53\n"), nil, nil)
	if err != nil || !strings.Contains(string(got), "nameserver 127.0.0.53") {
		t.Errorf("%q %v", got, err)
	}
}

func TestBuildServers(t *testing.T) {
	got, err := Build(nil, nil, []string{"1.1.1.1", "2606:4700::1111"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(got), "nameserver 1.1.1.1\nnameserver 2606:4700::1111\n") {
		t.Errorf("got\n%s", got)
	}
	if _, err := Build(nil, nil, []string{"dns.google"}); err == nil || !strings.Contains(err.Error(), "not an IP address") {
		t.Errorf("a name accepted as --dns: %v", err)
	}
}

// root makes a directory tree from a map of path → link target ("->x") or
// file content; a path ending in / is a directory.
func root(t *testing.T, tree map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for p, v := range tree {
		full := filepath.Join(dir, p)
		if strings.HasSuffix(p, "/") {
			if err := os.MkdirAll(full, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		var err error
		if target, ok := strings.CutPrefix(v, "->"); ok {
			err = os.Symlink(target, full)
		} else {
			err = os.WriteFile(full, []byte(v), 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

const sys = "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-nixos-system"

func TestPlanForShapes(t *testing.T) {
	cases := []struct {
		name        string
		tree        map[string]string
		shape       Shape
		dests       []string
		placeholder string
	}{
		{"file", map[string]string{"etc/resolv.conf": "nameserver 1.2.3.4\n"}, ShapeFile, []string{"/etc/resolv.conf"}, ""},
		{"missing", map[string]string{"etc/": ""}, ShapeMissing, []string{"/etc/resolv.conf"}, "/etc/resolv.conf"},
		{"run-link", map[string]string{"etc/resolv.conf": "->/run/systemd/resolve/stub-resolv.conf"}, ShapeLink,
			[]string{"/run/systemd/resolve/stub-resolv.conf"}, ""},
		{"nixos-chain", map[string]string{
			"etc/resolv.conf": "->/etc/static/resolv.conf",
			"etc/static":      "->/nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-etc/etc",
			"nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-etc/etc/resolv.conf": "nameserver 1.2.3.4\n",
			sys[1:] + "/etc": "->/nix/store/cccccccccccccccccccccccccccccccc-etc/etc",
			"nix/store/cccccccccccccccccccccccccccccccc-etc/etc/resolv.conf": "nameserver 1.2.3.4\n",
		}, ShapeLink, []string{
			"/nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-etc/etc/resolv.conf",
			"/nix/store/cccccccccccccccccccccccccccccccc-etc/etc/resolv.conf",
		}, ""},
		{"escape-relative", map[string]string{"etc/resolv.conf": "->../../../../../../../tmp/canary"}, ShapeLink, []string{"/tmp/canary"}, ""},
		{"escape-absolute-into-root", map[string]string{"etc/resolv.conf": "->/etc/hosts", "etc/hosts": "127.0.0.1 localhost\n"}, ShapeLink, []string{"/etc/hosts"}, ""},
		{"dangling-in-etc", map[string]string{"etc/resolv.conf": "->/etc/resolvconf/run/resolv.conf", "etc/resolvconf/run/": ""}, ShapeLink,
			[]string{"/etc/resolvconf/run/resolv.conf"}, "/etc/resolvconf/run/resolv.conf"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := root(t, c.tree)
			p, err := PlanFor(r, sys)
			if err != nil {
				t.Fatal(err)
			}
			if p.Shape != c.shape || !slices.Equal(p.Dests, c.dests) || p.Placeholder != c.placeholder {
				t.Errorf("got %+v, want shape %s dests %v placeholder %q", p, c.shape, c.dests, c.placeholder)
			}
		})
	}
}

func TestPlanForRefuses(t *testing.T) {
	cases := map[string]map[string]string{
		"into-dev":       {"etc/resolv.conf": "->/dev/resolv.conf"},
		"into-sys":       {"etc/resolv.conf": "->../sys/kernel/resolv.conf"},
		"no-parent":      {"etc/resolv.conf": "->/srv/nowhere/resolv.conf"},
		"directory":      {"etc/resolv.conf/": ""},
		"link-loop":      {"etc/resolv.conf": "->/etc/a", "etc/a": "->/etc/b", "etc/b": "->/etc/a"},
		"leads-to-a-dir": {"etc/resolv.conf": "->/var/", "var/": ""},
	}
	for name, tree := range cases {
		t.Run(name, func(t *testing.T) {
			if p, err := PlanFor(root(t, tree), sys); err == nil {
				t.Errorf("accepted: %+v", p)
			} else if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
		})
	}
}

package policy

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var commands = []string{"run", "inspect", "rebuild", "ps"}

func TestParseErrorsNameLineAndColumn(t *testing.T) {
	for _, c := range []struct{ text, want string }{
		{"usr alice targets /dev/sdb", "policy P:1:1: \"usr\": a rule begins with user NAME or group NAME"},
		{"# comment\n\nuser", "policy P:3:5: user with no name"},
		{"user alice /dev/sdb", "policy P:1:12: after user alice comes targets"},
		{"user alice targets", "policy P:1:19: no targets"},
		{"user alice targets dev/sdb", "policy P:1:20: \"dev/sdb\": give an absolute path"},
		{"user alice targets /dev/sd[b", "policy P:1:20: \"/dev/sd[b\": a bad glob"},
		{"user alice targets serial:", "policy P:1:20: \"serial:\": serial: with no number"},
		{"user alice targets /srv/ commands", "policy P:1:34: commands with none after it"},
		{"user alice targets /srv/ commands run rebuilt", "policy P:1:39: \"rebuilt\" is no nixrescue command: use all or some of run, inspect, rebuild, ps"},
	} {
		_, err := Parse(strings.NewReader(c.text), "P", commands)
		var se *SyntaxError
		if !errors.As(err, &se) || !strings.HasPrefix(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: %v, want %q", c.text, err, c.want)
		}
	}
}

func TestGrants(t *testing.T) {
	dir := t.TempDir()
	images := filepath.Join(dir, "images")
	os.Mkdir(images, 0o755)
	img := filepath.Join(images, "a.qcow2")
	os.WriteFile(img, nil, 0o644)
	other := filepath.Join(dir, "b.img")
	os.WriteFile(other, nil, 0o644)
	// A link the caller made into the allowed directory leads outside.
	link := filepath.Join(images, "sneaky.img")
	os.Symlink(other, link)
	text := "user alice targets " + images + "/ serial:WD-1* commands inspect run\n" +
		"group rescue targets " + other + "\n"
	p, err := Parse(strings.NewReader(text), "P", commands)
	if err != nil {
		t.Fatal(err)
	}
	alice := Caller{User: "alice", UID: 1000, Groups: []string{"alice"}}
	g, err := p.Allow(alice, "run")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		t  TargetInfo
		ok bool
	}{
		{TargetInfo{Path: img}, true},
		{TargetInfo{Path: other}, false},
		{TargetInfo{Path: "/dev/sdc", Disk: "/dev/sdc", Serial: "WD-123"}, true},
		{TargetInfo{Path: "/dev/sdd", Disk: "/dev/sdd", Serial: "ST-9"}, false},
		{TargetInfo{Path: "/dev/sde"}, false},
	} {
		if err := g.AllowTarget(c.t); (err == nil) != c.ok {
			t.Errorf("%+v: %v, want allowed %v", c.t, err, c.ok)
		}
	}
	real, _ := filepath.EvalSymlinks(link)
	if err := g.AllowTarget(TargetInfo{Path: real}); err == nil || !strings.Contains(err.Error(), "alice may not open "+other+" with run") {
		t.Errorf("a link out of the directory: %v", err)
	}
	if _, err := p.Allow(alice, "rebuild"); err == nil || !strings.Contains(err.Error(), "alice may not use nixrescue rebuild (the rules at line 1 allow other commands)") {
		t.Errorf("rebuild: %v", err)
	}
	if _, err := p.Allow(Caller{User: "mallory"}, "inspect"); err == nil || !strings.Contains(err.Error(), "no rule names user mallory") {
		t.Errorf("mallory: %v", err)
	}
	// A group's rule without commands allows them all, on its targets.
	bob := Caller{User: "bob", Groups: []string{"rescue"}}
	g, err = p.Allow(bob, "rebuild")
	if err != nil || g.AllowTarget(TargetInfo{Path: other}) != nil || g.AllowTarget(TargetInfo{Path: img}) == nil {
		t.Errorf("bob: %v", err)
	}
	// A device pattern names the disk of a partition too, through links.
	devs := t.TempDir()
	sdb := filepath.Join(devs, "sdb")
	os.WriteFile(sdb, nil, 0o644)
	os.Symlink(sdb, filepath.Join(devs, "by-id-wd"))
	p, _ = Parse(strings.NewReader("user alice targets "+filepath.Join(devs, "by-id-*")), "P", commands)
	g, _ = p.Allow(alice, "run")
	if err := g.AllowTarget(TargetInfo{Path: sdb + "3", Disk: sdb}); err != nil {
		t.Errorf("a partition of an allowed disk: %v", err)
	}
}

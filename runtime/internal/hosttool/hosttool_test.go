package hosttool

import (
	"context"
	"errors"
	"strings"
	"testing"
)

func TestRun(t *testing.T) {
	ctx := context.Background()
	out, err := Run(ctx, strings.NewReader("key"), "sh", "-c", `cat; echo " said" >&2; echo " $LC_ALL"`)
	if err != nil || string(out) != "key C\n" {
		t.Errorf("Run: %q %v", out, err)
	}
	out, err = Run(ctx, nil, "sh", "-c", "echo partial; echo 'it failed' >&2; exit 3")
	var ee *ExitError
	if !errors.As(err, &ee) || ee.Code != 3 || ee.Output != "it failed" || string(out) != "partial\n" || err.Error() != "sh: it failed" {
		t.Errorf("a failure: %q %#v", out, err)
	}
	out, err = Combined(ctx, "sh", "-c", "echo one; echo two >&2; exit 1")
	if !errors.As(err, &ee) || ee.Output != "one\ntwo" || string(out) != "one\ntwo\n" {
		t.Errorf("Combined: %q %#v", out, err)
	}
	var me *MissingError
	if _, err := Run(ctx, nil, "nixrescue-no-such-tool"); !errors.As(err, &me) || err.Error() != "this host has no nixrescue-no-such-tool: install nixrescue-no-such-tool" {
		t.Errorf("a missing program: %v", err)
	}
	if (&MissingError{What: "dmsetup"}).Error() != "this host has no dmsetup: install dmsetup" {
		t.Errorf("%v", &MissingError{What: "dmsetup"})
	}
}

func TestStart(t *testing.T) {
	var out strings.Builder
	p, err := Start(context.Background(), Command{Name: "sh", Args: []string{"-c", "echo started; exit 3"}}, Daemon{Output: &out, OwnGroup: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Wait(); err == nil || out.String() != "started\n" || p.PID() <= 0 {
		t.Errorf("wait: %v, output %q, pid %d", err, out.String(), p.PID())
	}
	var me *MissingError
	if _, err := Start(context.Background(), Command{Name: "nixrescue-no-such-daemon"}, Daemon{}); !errors.As(err, &me) {
		t.Errorf("a missing daemon: %v", err)
	}
}

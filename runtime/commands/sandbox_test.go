package commands

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/nixrescue/nixrescue/runtime/backend"
	"github.com/nixrescue/nixrescue/runtime/engine"
)

// probeContainer answers the sandbox probe as a container where the probe
// fails (or works) would.
type probeContainer struct {
	fail string // what the probe says when it fails; "" when it works
	ran  [][]string
}

func (c *probeContainer) Exec(_ context.Context, p backend.Process) (int, error) {
	c.ran = append(c.ran, p.Args)
	if c.fail == "" {
		return 0, nil
	}
	fmt.Fprintln(p.Stderr, c.fail)
	return 1, nil
}

// said keeps what chooseSandbox says.
type said struct{ bytes.Buffer }

func (s *said) Info(msg string, _ ...any) { s.WriteString(msg + "\n") }

func TestChooseSandbox(t *testing.T) {
	p := &engine.Prepared{Env: []string{"PATH=/bin"}}
	cases := []struct {
		mode      SandboxMode
		fail      string
		on        bool
		nixConfig string
		said      bool
	}{
		{SandboxAuto, "", true, "", false},
		{SandboxAuto, "cannot pivot old root directory: invalid argument", false, "sandbox = false", true},
		{SandboxAuto, "unable to make '/' private: invalid argument", false, "sandbox = false", true},
		{SandboxOn, "unable to make '/' private: invalid argument", true, "sandbox = true", false},
		{SandboxOff, "", false, "sandbox = false", false},
	}
	for _, c := range cases {
		var stderr said
		ct := &probeContainer{fail: c.fail}
		ch, err := chooseSandbox(context.Background(), ct, p, c.mode, &stderr)
		if err != nil {
			t.Fatal(err)
		}
		if ch.On != c.on || ch.NixConfig != c.nixConfig || ch.Mode != c.mode {
			t.Errorf("%s / %q: %+v", c.mode, c.fail, ch)
		}
		said := strings.Contains(stderr.String(), "building with sandbox = false for this session only")
		if said != c.said || (c.fail != "" && c.said && !strings.Contains(ch.Why, c.fail)) {
			t.Errorf("%s / %q: said %q, why %q", c.mode, c.fail, stderr.String(), ch.Why)
		}
		if probed := len(ct.ran) > 0; probed != (c.mode == SandboxAuto) {
			t.Errorf("%s: probed %v", c.mode, probed)
		}
	}
	if _, err := chooseSandbox(context.Background(), &probeContainer{}, p, "maybe", &said{}); err == nil {
		t.Error("--sandbox maybe accepted")
	}
	// Under qemu-user, auto is off without a probe (Nix cannot clone
	// into the sandbox's namespaces there); on is the user's choice.
	emulated := &engine.Prepared{Env: p.Env, Emulator: "qemu-aarch64"}
	var stderr said
	ct := &probeContainer{}
	ch, err := chooseSandbox(context.Background(), ct, emulated, SandboxAuto, &stderr)
	if err != nil || ch.On || ch.NixConfig != "sandbox = false" || len(ct.ran) != 0 || !strings.Contains(ch.Why, "qemu-user (binfmt_misc's qemu-aarch64)") {
		t.Errorf("emulated auto: %+v %v, probed %v", ch, err, ct.ran)
	}
	if ch, _ := chooseSandbox(context.Background(), ct, emulated, SandboxOn, &stderr); !ch.On {
		t.Errorf("emulated on: %+v", ch)
	}
}

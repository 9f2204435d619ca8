package helper

import (
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestEncodeRequest(t *testing.T) {
	for _, c := range []struct {
		name string
		r    Request
		want string
	}{
		{"start", Request{Start: &Start{Args: []string{"sh", "-c", "true"}, Env: []string{"PATH=/bin"}, Cwd: "/"}},
			"start\x000\x000\x000\x00/\x003\x00sh\x00-c\x00true\x001\x00PATH=/bin\x00"},
		{"terminal", Request{Start: &Start{Args: []string{"bash"}, TTY: true, Width: 80, Height: 24}},
			"start\x001\x0080\x0024\x00\x001\x00bash\x000\x00"},
		{"signal", Request{Signal: 15}, "signal\x0015\x00"},
	} {
		t.Run(c.name, func(t *testing.T) {
			b, err := c.r.Encode()
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != c.want {
				t.Fatalf("got %q, want %q", b, c.want)
			}
		})
	}
}

func TestEncodeRefuses(t *testing.T) {
	for name, r := range map[string]Request{
		"empty":      {},
		"NUL in arg": {Start: &Start{Args: []string{"a\x00b"}}},
		"NUL in env": {Start: &Start{Args: []string{"a"}, Env: []string{"X=\x00"}}},
		"too long":   {Start: &Start{Args: []string{strings.Repeat("x", MaxMessage)}}},
	} {
		if _, err := r.Encode(); err == nil {
			t.Errorf("%s: encoded, want an error", name)
		}
	}
}

func TestDecodeReply(t *testing.T) {
	r, err := DecodeReply([]byte("started\x0042\x00"))
	if err != nil || r.Started != 42 {
		t.Fatalf("started: %+v, %v", r, err)
	}
	r, err = DecodeReply([]byte("exited\x00130\x00"))
	if err != nil || r.Exited == nil || *r.Exited != 130 {
		t.Fatalf("exited: %+v, %v", r, err)
	}
	r, err = DecodeReply([]byte("error\x00open a pty: no such device\x00"))
	if err != nil || !strings.Contains(r.Error, "no such device") || r.NoExec != 0 {
		t.Fatalf("error: %+v, %v", r, err)
	}
	r, err = DecodeReply([]byte("noexec\x002\x00"))
	if err != nil || r.NoExec != unix.ENOENT || r.Error != "" {
		t.Fatalf("noexec: %+v, %v", r, err)
	}
	for _, bad := range []string{"", "started\x00", "started\x00x\x00", "exited\x001", "what\x001\x00", "started\x001\x002\x00"} {
		if _, err := DecodeReply([]byte(bad)); err == nil {
			t.Errorf("%q decoded, want an error", bad)
		}
	}
}

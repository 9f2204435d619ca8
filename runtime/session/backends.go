package session

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/nixrescue/nixrescue/runtime/backend"
	"github.com/nixrescue/nixrescue/runtime/backend/containerd"
	"github.com/nixrescue/nixrescue/runtime/backend/embedded"
	"github.com/nixrescue/nixrescue/runtime/privatens"
)

// Backend names (--backend).
const (
	BackendAuto       = "auto"
	BackendEmbedded   = "embedded"
	BackendContainerd = "containerd"
)

// backendEnv carries the backend chosen by a process to its re-execution
// in a private mount namespace, so that auto decides once.
const backendEnv = "_NIXRESCUE_BACKEND"

// autoTimeout is how long --backend auto waits for containerd's answer.
const autoTimeout = time.Second

// backendChoice is the backend a session uses, and why.
type backendChoice struct {
	name       string
	why        string
	containerd *containerd.Runner
}

// chooseBackend picks the backend: auto takes containerd when its socket
// answers within a short timeout, else the embedded one.
func chooseBackend(ctx context.Context, o Options) (backendChoice, error) {
	want := o.Backend
	if env := os.Getenv(backendEnv); env != "" {
		want = env
	}
	switch want {
	case "", BackendAuto:
		r, err := containerd.Connect(ctx, o.Address, o.Namespace, autoTimeout)
		if err == nil && privatens.Entered() {
			// Nothing was at the socket path when nixrescue started, and it
			// moved into a mount namespace of its own (package privatens),
			// where containerd's shim could not see its mounts.
			r.Close()
			return backendChoice{name: BackendEmbedded, why: "auto: containerd at " + r.Address() + " answered only after nixrescue had started without it"}, nil
		}
		if err == nil {
			return backendChoice{name: BackendContainerd, why: "auto: containerd answered at " + r.Address(), containerd: r}, nil
		}
		var ce *containerd.ConnectError
		why := "auto: no containerd"
		if errors.As(err, &ce) {
			why = fmt.Sprintf("auto: containerd at %s: %v", ce.Address, ce.Err)
		}
		return backendChoice{name: BackendEmbedded, why: why}, nil
	case BackendEmbedded:
		return backendChoice{name: BackendEmbedded, why: "--backend embedded"}, nil
	case BackendContainerd:
		r, err := containerd.Connect(ctx, o.Address, o.Namespace, 5*time.Second)
		if err != nil {
			return backendChoice{}, err
		}
		return backendChoice{name: BackendContainerd, why: "--backend containerd", containerd: r}, nil
	}
	return backendChoice{}, fmt.Errorf("--backend %q: use auto, embedded or containerd", want)
}

// runner makes the session's backend.
func (l *live) runner(p *Prepared) (backend.Runner, error) {
	if cd := l.backend.containerd; cd != nil {
		cd.FIFODir = filepath.Join(l.s.dir(), "fifo")
		cd.Labels = map[string]string{containerd.LabelTarget: l.target.Path, containerd.LabelPID: fmt.Sprint(l.s.journal.PID)}
		return cd, nil
	}
	// A rescue system running from its initramfs has no root to pivot
	// away from: runc's no-pivot mode (MS_MOVE and chroot) works there.
	return embedded.New(l.s.st.containerDir(), l.s.st.live, embedded.WithNoPivot(l.o.NoPivot || p.Host.InitramfsRoot))
}

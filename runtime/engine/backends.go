package engine

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/nixrescue/nixrescue/runtime/backend"
	"github.com/nixrescue/nixrescue/runtime/backend/containerd"
	"github.com/nixrescue/nixrescue/runtime/backend/embedded"
	"github.com/nixrescue/nixrescue/runtime/hint"
	"github.com/nixrescue/nixrescue/runtime/privatens"
)

// Backend names (--backend).
const (
	BackendAuto       = "auto"
	BackendEmbedded   = "embedded"
	BackendContainerd = "containerd"
)

// autoTimeout is how long --backend auto waits for containerd's answer.
const autoTimeout = time.Second

// backendChoice is the backend a session uses, and why.
type backendChoice struct {
	name       string
	why        string
	containerd *containerd.Runner
}

// chooseBackend picks the backend named (auto, embedded, containerd):
// auto takes containerd when its socket (address) answers within a short
// timeout, else the embedded one; containerd's containers go in namespace.
func chooseBackend(ctx context.Context, name, address, namespace string) (backendChoice, error) {
	switch name {
	case "", BackendAuto:
		r, err := containerd.Connect(ctx, address, namespace, autoTimeout)
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
		return backendChoice{name: BackendEmbedded, why: hint.Render("{Backend embedded}")}, nil
	case BackendContainerd:
		r, err := containerd.Connect(ctx, address, namespace, 5*time.Second)
		if err != nil {
			return backendChoice{}, err
		}
		return backendChoice{name: BackendContainerd, why: hint.Render("{Backend containerd}"), containerd: r}, nil
	}
	return backendChoice{}, hint.Errorf("{Backend %s}: use auto, embedded or containerd", name)
}

// runner makes the session's backend.
func (s *Session) runner(noPivot bool) (backend.Runner, error) {
	if cd := s.backend.containerd; cd != nil {
		cd.FIFODir = filepath.Join(s.st.Dir(), "fifo")
		cd.RuncRoot = s.st.State().RuncDir()
		cd.Labels = map[string]string{containerd.LabelTarget: s.target.Path, containerd.LabelPID: fmt.Sprint(s.st.Journal().PID)}
		return cd, nil
	}
	return embedded.New(s.st.State().ContainersDir(), s.st.State().Live, embedded.WithNoPivot(noPivot))
}

// Containerd is where cleanup looks for what killed sessions left in
// containerd, as backend (auto, embedded or containerd) and address and
// namespace say: nil when there is none to look at (embedded; auto, when
// nothing answers at address).
func Containerd(ctx context.Context, backend, address, namespace string) (*containerd.Runner, error) {
	be, err := chooseBackend(ctx, backend, address, namespace)
	if err != nil && backend == BackendContainerd {
		return nil, err
	}
	return be.containerd, nil
}

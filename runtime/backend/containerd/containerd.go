// Package containerd runs recovery containers on a host's containerd, so
// that they show up where the host's operators look for containers
// (`ctr -n nixrescue tasks ls`) and containerd's own cleanup applies. It
// works against 1.6, 1.7 and 2.x daemons and needs only their containers,
// tasks and version services, which it calls through containerd's API
// module (github.com/containerd/containerd/api) and gRPC directly, with
// containerd's own cio for process I/O. containerd's full Go client would
// also do, but it links image, content, transfer and lease handling that
// a container with no image never uses, and every nixrescue process would
// pay for their package initialisation (runc's init is a nixrescue
// process too); it also makes several
// calls more per container (a lease, runtime lookups, a Get before each
// change).
//
// The container is created from the very spec the embedded backend runs,
// with no image and no snapshot: its root is the spec's root path.
//
// Mounts. containerd's shim lives in the host's mount namespace and
// mounts the container's rootfs from there, so it must see the session's
// root and its submounts. A session on a disk or image therefore mounts
// them in the host's namespace, in a tree of its own under
// /run/nixrescue/sessions/ID that is first made a private mount of itself:
// nothing mounted there propagates to the rest of the host (or into other
// containers sharing /run), and the session's journal records the tree, so
// that `nixrescue cleanup` unmounts it after a crash. (Handing the root to
// containerd as the task's rootfs mounts would let containerd mount the root
// but not /boot and the other submounts, and the embedded backend's spec
// would no longer be the one containerd runs.)
//
// Each container is in its own containerd namespace (nixrescue by
// default) and labelled with its session and target; it holds no content,
// snapshot or lease for containerd's garbage collector to weigh, so a
// label is all that is needed to find and delete what a killed session
// left. The hold started as the task's process starts the session's
// processes (runtime/backend/holdctl); it listens on the container's /run,
// and nixrescue connects through /proc/PID/root before any program of the
// target runs. A container made around its first process has that
// process's I/O go through FIFOs in the session's own directory.
package containerd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	containersapi "github.com/containerd/containerd/api/services/containers/v1"
	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
	versionapi "github.com/containerd/containerd/api/services/version/v1"
	runcoptions "github.com/containerd/containerd/api/types/runc/options"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/dialer"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	rspec "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/nixrescue/nixrescue/runtime/backend"
	"github.com/nixrescue/nixrescue/runtime/backend/holdctl"
	"github.com/nixrescue/nixrescue/runtime/hint"
	"github.com/nixrescue/nixrescue/runtime/privatens"
	"github.com/nixrescue/nixrescue/specs"
)

// Defaults.
const (
	DefaultAddress   = "/run/containerd/containerd.sock"
	DefaultNamespace = "nixrescue"
	// LabelSession marks the containers nixrescue makes.
	LabelSession = "io.nixrescue.session"
	LabelTarget  = "io.nixrescue.target"
	LabelPID     = "io.nixrescue.pid"

	// runtimeName is runc through containerd's v2 shim, which 1.6 and
	// later have (what `ctr run` uses by default).
	runtimeName = "io.containerd.runc.v2"
	// specTypeURL is how containerd knows a container's spec for an OCI
	// runtime spec (its client registers the type under this name).
	specTypeURL = "types.containerd.io/opencontainers/runtime-spec/1/Spec"
	// runcOptionsTypeURL is the runc shim's options, by their protobuf
	// name, which containerd's type registry knows them by (no
	// type.googleapis.com/ prefix: 1.6's shim looks names up as given).
	runcOptionsTypeURL = "containerd.runc.v1.Options"
	// maxMessage is the size limit of a call, as containerd's client sets.
	maxMessage = 16 << 20
)

// ConnectError is a containerd that cannot be used, with the fix.
type ConnectError struct {
	Address string
	Err     error
	Fix     string
}

func (e *ConnectError) Error() string {
	return hint.Render(fmt.Sprintf("containerd at %s: %v: %s", e.Address, e.Err, e.Fix))
}

func (e *ConnectError) Unwrap() error { return e.Err }

// Runner is the containerd backend.
type Runner struct {
	conn       *grpc.ClientConn
	containers containersapi.ContainersClient
	tasks      tasksapi.TasksClient
	address    string
	namespace  string
	// Labels go on every container (target, pid).
	Labels map[string]string
	// FIFODir is where process I/O FIFOs are made.
	FIFODir string
	// RuncRoot is where runc keeps its state of the containers (runc
	// --root; containerd's shim adds the namespace): nixrescue's state
	// directory, so that a session leaves nothing in containerd's default
	// /run/containerd/runc, which a host without other containers does not
	// have. Empty is containerd's default.
	RuncRoot string
}

// Connect reaches the daemon at address within timeout and checks that it
// answers as containerd does.
func Connect(ctx context.Context, address, namespace string, timeout time.Duration) (*Runner, error) {
	if address == "" {
		address = DefaultAddress
	}
	if namespace == "" {
		namespace = DefaultNamespace
	}
	st, err := os.Stat(address)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil, &ConnectError{Address: address, Err: errors.New("no such socket"), Fix: "start containerd, name its socket with {Address}, or use {Backend embedded}"}
	case err != nil:
		return nil, &ConnectError{Address: address, Err: err, Fix: "check the path, or use {Backend embedded}"}
	case st.Mode()&os.ModeSocket == 0:
		return nil, &ConnectError{Address: address, Err: errors.New("not a socket"), Fix: "name containerd's socket with {Address}"}
	}
	if err := unix.Access(address, unix.R_OK|unix.W_OK); err != nil {
		return nil, &ConnectError{Address: address, Err: errors.New("permission denied"), Fix: "run nixrescue as root"}
	}
	bo := backoff.DefaultConfig
	bo.MaxDelay = timeout
	conn, err := grpc.NewClient(dialer.DialAddress(address),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: bo, MinConnectTimeout: timeout}),
		grpc.WithContextDialer(dialer.ContextDialer),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMessage), grpc.MaxCallSendMsgSize(maxMessage)))
	if err != nil {
		return nil, &ConnectError{Address: address, Err: fmt.Errorf("does not answer: %w", err), Fix: "check that it is containerd and that it runs, or use {Backend embedded}"}
	}
	vctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	v, err := versionapi.NewVersionClient(conn).Version(vctx, &emptypb.Empty{})
	if err != nil {
		conn.Close()
		return nil, &ConnectError{Address: address, Err: fmt.Errorf("does not answer as containerd: %w", errgrpc.ToNative(err)), Fix: "check that it is containerd's socket, or use {Backend embedded}"}
	}
	if major, minor := parseVersion(v.Version); major < 1 || (major == 1 && minor < 6) {
		conn.Close()
		return nil, &ConnectError{Address: address, Err: fmt.Errorf("containerd %s is too old", v.Version), Fix: "nixrescue needs containerd 1.6 or newer; use {Backend embedded}"}
	}
	return &Runner{conn: conn, containers: containersapi.NewContainersClient(conn), tasks: tasksapi.NewTasksClient(conn),
		address: address, namespace: namespace}, nil
}

// parseVersion reads "v1.6.20", "1.6.20~ds1" or "2.1.0" into major, minor.
func parseVersion(v string) (int, int) {
	v = strings.TrimPrefix(v, "v")
	parts := strings.SplitN(v, ".", 3)
	if len(parts) < 2 {
		return 0, 0
	}
	major, _ := strconv.Atoi(parts[0])
	minor, _ := strconv.Atoi(strings.TrimFunc(parts[1], func(r rune) bool { return r < '0' || r > '9' }))
	return major, minor
}

// Name implements backend.Runner.
func (r *Runner) Name() string { return "containerd" }

// Address is the daemon's socket.
func (r *Runner) Address() string { return r.address }

// Close closes the connection.
func (r *Runner) Close() error { return r.conn.Close() }

func (r *Runner) ctx(ctx context.Context) context.Context {
	return namespaces.WithNamespace(ctx, r.namespace)
}

// Create implements backend.Runner.
func (r *Runner) Create(ctx context.Context, id string, spec *rspec.Spec) (backend.Container, error) {
	ctx = r.ctx(ctx)
	ct, err := r.newContainer(ctx, id, spec)
	if err != nil {
		return nil, err
	}
	if err := ct.newTask(ctx, nil); err != nil {
		_ = ct.Destroy()
		return nil, r.wrap(fmt.Errorf("create task: %w", err))
	}
	if err := ct.task.start(ctx); err != nil {
		_ = ct.Destroy()
		return nil, r.wrap(fmt.Errorf("start task: %w", err))
	}
	// The hold listens on its own /run for our one connection (a task
	// gets no descriptors of ours); reached through its own view of its
	// root, before any program of the target has run in the container.
	sock := fmt.Sprintf("/proc/%d/root%s", ct.task.pid, specs.HoldSocket)
	ct.hold, err = holdctl.Dial(ctx, sock, func() bool {
		st, err := ct.task.status(ctx)
		return err == nil && st == tasktypes.Status_RUNNING
	})
	if err != nil {
		_ = ct.Destroy()
		return nil, r.wrap(err)
	}
	return ct, nil
}

// CreateFirst implements backend.Runner: the task is created with p as its
// process (runc create), and first.Run starts it, as `ctr run` does.
func (r *Runner) CreateFirst(ctx context.Context, id string, spec *rspec.Spec, p backend.Process) (backend.First, error) {
	ctx = r.ctx(ctx)
	s := *spec
	ps := *spec.Process
	withProcess(&ps, p)
	s.Process = &ps
	ct, err := r.newContainer(ctx, id, &s)
	if err != nil {
		return nil, err
	}
	creator, stdin := r.io(p)
	if err := ct.newTask(ctx, creator); err != nil {
		_ = ct.Destroy()
		return nil, r.wrap(fmt.Errorf("create task: %w", err))
	}
	return &first{container: ct, p: p, stdin: stdin}, nil
}

// newContainer makes the container object, labelled, with no task yet.
func (r *Runner) newContainer(ctx context.Context, id string, spec *rspec.Spec) (*container, error) {
	labels := map[string]string{LabelSession: id}
	for k, v := range r.Labels {
		labels[k] = v
	}
	js, err := json.Marshal(spec)
	if err != nil {
		return nil, fmt.Errorf("create container: %w", err)
	}
	rt := &containersapi.Container_Runtime{Name: runtimeName}
	if r.RuncRoot != "" {
		opts, err := proto.Marshal(&runcoptions.Options{Root: r.RuncRoot})
		if err != nil {
			return nil, fmt.Errorf("create container: %w", err)
		}
		// The shim keeps these with the task (options.json), and uses
		// them again to delete it after a crash.
		rt.Options = &anypb.Any{TypeUrl: runcOptionsTypeURL, Value: opts}
	}
	_, err = r.containers.Create(ctx, &containersapi.CreateContainerRequest{Container: &containersapi.Container{
		ID:      id,
		Labels:  labels,
		Runtime: rt,
		Spec:    &anypb.Any{TypeUrl: specTypeURL, Value: js},
	}})
	if err != nil {
		return nil, r.wrap(fmt.Errorf("create container: %w", errgrpc.ToNative(err)))
	}
	return &container{r: r, id: id}, nil
}

// wrap says which daemon failed when the connection is the reason.
func (r *Runner) wrap(err error) error {
	if errdefs.IsUnavailable(err) || errors.Is(err, context.DeadlineExceeded) {
		return &ConnectError{Address: r.address, Err: fmt.Errorf("stopped answering: %w", err), Fix: "check that containerd still runs; the session's mounts are torn down all the same"}
	}
	return err
}

type container struct {
	r    *Runner
	id   string // "" once deleted
	task *task
	hold *holdctl.Conn // nil for a container made around its first process
}

// task is a container's task: its init process, and its I/O when we gave
// it some.
type task struct {
	r   *Runner
	id  string
	pid uint32
	io  cio.IO // nil: none of ours
	// exited: its process's end was seen (Wait answered).
	exited bool
}

// newTask creates ct's task (runc create) with I/O from creator (none if
// nil).
func (ct *container) newTask(ctx context.Context, creator cio.Creator) error {
	t := &task{r: ct.r, id: ct.id}
	req := &tasksapi.CreateTaskRequest{ContainerID: ct.id}
	if creator != nil {
		i, err := creator(ct.id)
		if err != nil {
			return err
		}
		cfg := i.Config()
		req.Stdin, req.Stdout, req.Stderr, req.Terminal = cfg.Stdin, cfg.Stdout, cfg.Stderr, cfg.Terminal
		t.io = i
	}
	stop := privatens.KeepCgroupAttachWarm()
	resp, err := ct.r.tasks.Create(ctx, req)
	stop()
	if err != nil {
		if t.io != nil {
			t.io.Cancel()
			t.io.Close()
		}
		return errgrpc.ToNative(err)
	}
	t.pid = resp.Pid
	ct.task = t
	return nil
}

func (t *task) start(ctx context.Context) error {
	resp, err := t.r.tasks.Start(ctx, &tasksapi.StartRequest{ContainerID: t.id})
	if err != nil {
		return errgrpc.ToNative(err)
	}
	t.pid = resp.Pid
	return nil
}

func (t *task) status(ctx context.Context) (tasktypes.Status, error) {
	resp, err := t.r.tasks.Get(ctx, &tasksapi.GetRequest{ContainerID: t.id})
	if err != nil {
		return tasktypes.Status_UNKNOWN, errgrpc.ToNative(err)
	}
	return resp.Process.GetStatus(), nil
}

// stopped tells whether containerd says the task's process has ended.
func (t *task) stopped(ctx context.Context) bool {
	st, err := t.status(ctx)
	return err == nil && st == tasktypes.Status_STOPPED
}

func (t *task) kill(ctx context.Context, sig syscall.Signal, all bool) error {
	_, err := t.r.tasks.Kill(ctx, &tasksapi.KillRequest{ContainerID: t.id, Signal: uint32(sig), All: all})
	return errgrpc.ToNative(err)
}

// exited is a task's end: its status, or why it is not known.
type exited struct {
	code uint32
	err  error
}

// wait follows the task to its end; the channel gets one value.
func (t *task) wait(ctx context.Context) <-chan exited {
	c := make(chan exited, 1)
	go func() {
		resp, err := t.r.tasks.Wait(ctx, &tasksapi.WaitRequest{ContainerID: t.id})
		if err != nil {
			c <- exited{err: errgrpc.ToNative(err)}
			return
		}
		c <- exited{code: resp.ExitStatus}
	}()
	return c
}

// waitFor waits at most d for the task to end and tells whether it did.
func (t *task) waitFor(ctx context.Context, d time.Duration) bool {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	return (<-t.wait(ctx)).err == nil
}

// delete deletes the stopped task (runc delete), letting its output
// drain first, as containerd's client does.
func (t *task) delete(ctx context.Context) error {
	if t.io != nil {
		t.io.Cancel()
		t.io.Wait()
	}
	if _, err := t.r.tasks.Delete(ctx, &tasksapi.DeleteTaskRequest{ContainerID: t.id}); err != nil {
		return errgrpc.ToNative(err)
	}
	if t.io != nil {
		t.io.Close()
	}
	return nil
}

// Root implements backend.Container.
func (ct *container) Root() string { return fmt.Sprintf("/proc/%d/root", ct.task.pid) }

// withProcess puts p's program, environment, working directory and
// terminal into ps, the spec's process.
func withProcess(ps *rspec.Process, p backend.Process) {
	ps.Args, ps.Env, ps.Cwd = p.Args, p.Env, p.Cwd
	ps.Terminal = p.TTY != nil
	if p.TTY != nil {
		w, h := p.TTY.Size()
		ps.ConsoleSize = &rspec.Box{Width: uint(w), Height: uint(h)}
	}
}

// io is how p's I/O reaches the shim: its terminal, or FIFOs copied from
// and to its streams. The shim keeps the stdin FIFO open: EOF reaches the
// process only when we say so (CloseIO), once our copy of stdin ends,
// which the returned notifier tells.
func (r *Runner) io(p backend.Process) (cio.Creator, *eofNotifier) {
	stdin := &eofNotifier{r: p.Stdin, eof: make(chan struct{})}
	if p.TTY != nil {
		return cio.NewCreator(cio.WithStreams(p.TTY.In(), p.TTY.Out(), nil), cio.WithTerminal, cio.WithFIFODir(r.FIFODir)), stdin
	}
	stdout, stderr := p.Stdout, p.Stderr
	if backend.SameWriter(stdout, stderr) {
		// cio copies each on its own goroutine: one writer for both
		// must take turns (exec.Cmd shares one pipe instead).
		w := &syncWriter{w: stdout}
		stdout, stderr = w, w
	}
	return cio.NewCreator(cio.WithStreams(stdin, stdout, stderr), cio.WithFIFODir(r.FIFODir)), stdin
}

// Exec implements backend.Container: the hold starts p.
func (ct *container) Exec(ctx context.Context, p backend.Process) (int, error) {
	return ct.hold.Exec(ctx, p)
}

// run starts t, whose process is p, and follows it to its end: stdin's
// EOF passed on, signals and window sizes forwarded, the output drained.
func (t *task) run(ctx context.Context, p backend.Process, stdin *eofNotifier) (int, error) {
	r := t.r
	statusC := t.wait(ctx)
	if p.TTY != nil {
		restore := p.TTY.Raw()
		defer restore()
	}
	if err := t.start(ctx); err != nil {
		if errdefs.IsUnavailable(err) {
			return -1, r.wrap(fmt.Errorf("start %s: %w", p.Args[0], err))
		}
		return -1, &backend.StartError{Program: p.Args[0], Err: err}
	}
	done := make(chan struct{})
	defer close(done)
	if p.TTY == nil {
		go func() {
			select {
			case <-stdin.eof:
				_, _ = r.tasks.CloseIO(ctx, &tasksapi.CloseIORequest{ContainerID: t.id, Stdin: true})
			case <-done:
			}
		}()
	}
	go func() {
		var resized <-chan struct{}
		if p.TTY != nil {
			resized = p.TTY.Resized()
		}
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				_ = t.kill(context.WithoutCancel(ctx), syscall.SIGKILL, false)
				return
			case <-resized:
				w, h := p.TTY.Size()
				_, _ = r.tasks.ResizePty(ctx, &tasksapi.ResizePtyRequest{ContainerID: t.id, Width: uint32(w), Height: uint32(h)})
			case s, ok := <-p.Signals:
				if !ok {
					return
				}
				if sig, ok := s.(syscall.Signal); ok {
					_ = t.kill(ctx, sig, false)
				}
			}
		}
	}()
	st := <-statusC
	if st.err != nil {
		return -1, r.wrap(fmt.Errorf("wait for %s: %w", p.Args[0], st.err))
	}
	t.exited = true
	// Let the output FIFOs drain before the caller goes on.
	t.io.Wait()
	return int(st.code), nil
}

// first is a container whose task was created around the first process.
type first struct {
	*container
	p     backend.Process
	stdin *eofNotifier
}

// Run implements backend.First.
func (f *first) Run(ctx context.Context) (int, error) {
	return f.task.run(f.r.ctx(ctx), f.p, f.stdin)
}

// Destroy implements backend.Container: every process of the container is
// killed (the host's PID namespace is shared, so the task's init is not
// the only one), then the task and the container are deleted.
func (ct *container) Destroy() error {
	ctx, cancel := context.WithTimeout(ct.r.ctx(context.Background()), 30*time.Second)
	defer cancel()
	if t := ct.task; t != nil {
		if ct.hold != nil {
			// The hold exits when its connection closes, and the task
			// stops of itself: waiting a moment for that spares a
			// `runc kill` (a runc run) for nothing.
			ct.hold.Close()
			ct.hold = nil
			t.exited = t.waitFor(ctx, 2*time.Second)
		}
		// A task whose process has ended needs no kill: deleting it (runc
		// delete) kills what is left in its cgroup, as for any container
		// sharing the host's PID namespace. Its end seen, not even a
		// look at its state is needed.
		if !t.exited && !t.stopped(ctx) {
			_ = t.kill(ctx, syscall.SIGKILL, true)
			t.waitFor(ctx, 10*time.Second)
		}
		if err := t.delete(ctx); err != nil && !errdefs.IsNotFound(err) {
			return ct.r.wrap(fmt.Errorf("delete task: %w", err))
		}
		ct.task = nil
	}
	if ct.id != "" {
		if _, err := ct.r.containers.Delete(ctx, &containersapi.DeleteContainerRequest{ID: ct.id}); err != nil {
			if err = errgrpc.ToNative(err); !errdefs.IsNotFound(err) {
				return ct.r.wrap(fmt.Errorf("delete container: %w", err))
			}
		}
		ct.id = ""
	}
	return nil
}

// Leftovers lists the nixrescue containers in the namespace whose session
// is not live, and deletes them with their tasks.
func (r *Runner) Leftovers(ctx context.Context, live func(session string) bool) ([]string, error) {
	ctx = r.ctx(ctx)
	resp, err := r.containers.List(ctx, &containersapi.ListContainersRequest{Filters: []string{"labels." + strconv.Quote(LabelSession)}})
	if err != nil {
		return nil, r.wrap(fmt.Errorf("list containers: %w", errgrpc.ToNative(err)))
	}
	var removed []string
	for _, c := range resp.Containers {
		if live(c.Labels[LabelSession]) {
			continue
		}
		ct := &container{r: r, id: c.ID}
		if tr, err := r.tasks.Get(ctx, &tasksapi.GetRequest{ContainerID: c.ID}); err == nil {
			ct.task = &task{r: r, id: c.ID, pid: tr.Process.GetPid()}
		}
		if err := ct.Destroy(); err != nil {
			return removed, err
		}
		removed = append(removed, r.namespace+"/"+c.ID)
	}
	return removed, nil
}

// eofNotifier passes a reader on and closes eof when it ends (a nil
// reader ends at once).
type eofNotifier struct {
	r    io.Reader
	eof  chan struct{}
	once sync.Once
}

func (e *eofNotifier) Read(p []byte) (int, error) {
	if e.r == nil {
		e.once.Do(func() { close(e.eof) })
		return 0, io.EOF
	}
	n, err := e.r.Read(p)
	if err != nil {
		e.once.Do(func() { close(e.eof) })
	}
	return n, err
}

// syncWriter lets two goroutines write to one writer.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

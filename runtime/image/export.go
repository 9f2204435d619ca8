package image

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/moby/sys/mountinfo"

	"github.com/nixrescue/nixrescue/runtime/hint"
	"github.com/nixrescue/nixrescue/runtime/internal/hosttool"
	"github.com/nixrescue/nixrescue/runtime/mount"
	"github.com/nixrescue/nixrescue/runtime/nbd"
)

// ExportOptions say how an image is exported.
type ExportOptions struct {
	// Image is the image file, or a disk (Device) for a snapshot.
	Image  string
	Format Format
	Device bool
	// ReadOnly exports it read-only.
	ReadOnly bool
	// Overlay, when set, is a new qcow2 file put in front of the image,
	// which is then only read: writes go to the overlay (a snapshot).
	// Size is the image's virtual size, for it.
	Overlay string
	Size    int64
	// Share opens an image another program holds: read-only, or behind
	// an overlay.
	Share bool
	// File is where the raw content appears: it is made, empty, and the
	// export is mounted on it.
	File string
	// Socket, when set, is where an NBD export listens (a unix socket
	// made here), used instead of the FUSE export on File where the
	// kernel has nbd.
	Socket string
	// Log takes the daemon's messages.
	Log string
}

// Export is a running qemu-storage-daemon and its export: a FUSE export
// mounted on File, or an NBD export listening on Socket, which the kernel
// serves as Device once attached.
type Export struct {
	PID    int
	File   string
	Socket string
	Device string
	// conn is the NBD connection until the kernel takes it (Attach).
	conn *nbd.Conn
	p    hosttool.Process
	done chan error
}

// QemuValue escapes a value for qemu's key=value options.
func QemuValue(s string) string { return strings.ReplaceAll(s, ",", ",,") }

// fuseReady tells whether this kernel can mount FUSE.
func fuseReady() error {
	b, _ := os.ReadFile("/proc/filesystems")
	if _, err := os.Stat("/dev/fuse"); err != nil || !bytes.Contains(b, []byte("\tfuse\n")) {
		return &hosttool.MissingError{What: "FUSE (/dev/fuse, the fuse module)", Needs: "opens disk images other than raw", Install: "the kernel's fuse module (modprobe fuse), or convert the image to raw with qemu-img convert -O raw"}
	}
	return nil
}

// args are the daemon's: the image's nodes (file, then format), the
// overlay's when there is one, and the export of the top node: over NBD
// (with a Socket) on the listening socket it is given as its descriptor
// 3, named by the socket's path (which tells a cleanup whose daemon it
// is), or over FUSE on File.
func (o ExportOptions) args() []string {
	proto := "file"
	if o.Device {
		proto = "host_device"
	}
	ro := "off"
	if o.ReadOnly || o.Overlay != "" {
		ro = "on"
	}
	file := fmt.Sprintf("driver=%s,node-name=image-file,filename=%s,read-only=%s", proto, QemuValue(o.Image), ro)
	format := fmt.Sprintf("driver=%s,node-name=image,file=image-file,read-only=%s", o.Format, ro)
	if o.Share {
		file += ",locking=off"
		format += ",force-share=on"
	}
	args := []string{"--blockdev", file, "--blockdev", format}
	top := "image"
	if o.Overlay != "" {
		args = append(args, "--blockdev", fmt.Sprintf("driver=qcow2,node-name=overlay,file.driver=file,file.filename=%s,backing=image", QemuValue(o.Overlay)))
		top = "overlay"
	}
	writable := "on"
	if o.ReadOnly {
		writable = "off"
	}
	if o.Socket != "" {
		return append(args, "--nbd-server", "addr.type=fd,addr.str=3",
			"--export", fmt.Sprintf("type=nbd,id=export,node-name=%s,name=%s,writable=%s", top, QemuValue(o.Socket), writable))
	}
	return append(args, "--export", fmt.Sprintf("type=fuse,id=export,node-name=%s,mountpoint=%s,writable=%s", top, QemuValue(o.File), writable))
}

// Start makes the overlay (if asked), starts qemu-storage-daemon and
// waits for its export: an NBD export on Socket where the kernel has nbd
// (the session then attaches it as /dev/nbdN, Attach), else a FUSE export
// mounted on File.
func Start(ctx context.Context, o ExportOptions) (*Export, error) {
	qsd, err := tool("qemu-storage-daemon")
	if err != nil {
		return nil, err
	}
	if o.Socket != "" && nbd.Available() != nil {
		o.Socket = "" // no nbd here: the FUSE export
	}
	if o.Socket == "" {
		if err := fuseReady(); err != nil {
			return nil, err
		}
	}
	if o.Overlay != "" {
		if err := createOverlay(ctx, o); err != nil {
			return nil, err
		}
	}
	e, err := startDaemon(ctx, qsd, o)
	if err != nil {
		return nil, err
	}
	if o.Socket != "" {
		err = e.handshake(ctx, o)
	} else {
		err = e.waitMounted(ctx, o)
	}
	if err != nil {
		return nil, err
	}
	return e, nil
}

// startDaemon makes the export's socket (NBD: the daemon is given the
// listening socket) or file (FUSE: mounted on) and starts
// qemu-storage-daemon.
func startDaemon(ctx context.Context, qsd string, o ExportOptions) (*Export, error) {
	d := hosttool.Daemon{OwnGroup: true, OwnMountNamespace: true}
	if o.Socket != "" {
		listener, err := listen(o.Socket)
		if err != nil {
			return nil, err
		}
		// The daemon's alone: were nixrescue's copy kept, a daemon that
		// failed would leave a connection waiting on it for ever.
		defer listener.Close()
		d.Files = []*os.File{listener}
	} else if err := os.WriteFile(o.File, nil, 0o600); err != nil {
		return nil, fmt.Errorf("make the export file: %w", err)
	}
	logf, err := os.OpenFile(o.Log, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	d.Output = logf
	// Its own process group: a Ctrl-C meant for nixrescue does not end
	// it under the session; the teardown does. Its own mount namespace
	// (private), where its FUSE export is mounted: it does not keep the
	// session's alive. Were it in the session's, a killed session's
	// mounts would stay as long as the daemon, and with them the loop
	// device on its export; in a namespace of its own, they go with the
	// session's last process, flushed to the export first, and the
	// daemon goes after (cleanup).
	p, err := hosttool.Start(ctx, hosttool.Command{Name: qsd, Args: o.args()}, d)
	if err != nil {
		removeExportFiles(o.File, o.Socket)
		return nil, err
	}
	e := &Export{PID: p.PID(), Socket: o.Socket, p: p, done: make(chan error, 1)}
	if o.Socket == "" {
		e.File = o.File
	}
	go func() { e.done <- p.Wait() }()
	return e, nil
}

// waitMounted waits for the daemon to mount its FUSE export, and
// serializes it.
func (e *Export) waitMounted(ctx context.Context, o ExportOptions) error {
	deadline := time.After(30 * time.Second)
	for {
		if e.mounted() {
			return e.serialize(o)
		}
		select {
		case <-e.done:
			msg, _ := os.ReadFile(o.Log)
			os.Remove(o.File)
			e.p = nil
			return interpret(o.Image, strings.TrimSpace(string(msg)))
		case <-deadline:
			e.Stop()
			return fmt.Errorf("qemu-storage-daemon did not export %s within 30 s", o.Image)
		case <-ctx.Done():
			e.Stop()
			return ctx.Err()
		case <-time.After(2 * time.Millisecond):
			// The daemon mounts its export some 10 ms after its start: a
			// finer poll than that (of its mountinfo, cheap) saves the
			// session half a period on average.
		}
	}
}

// serialize has the kernel send the export one request at a time (see
// serialize.go): required to write through it, which is refused when it
// cannot be done, and done for reads too (they are faster so).
func (e *Export) serialize(o ExportOptions) error {
	err := serialize(e.Path(), filepath.Dir(o.File))
	if err == nil || o.ReadOnly {
		return nil
	}
	e.Stop()
	return &hint.Error{Subject: o.Image, Err: fmt.Errorf("cannot write through qemu-storage-daemon's FUSE export safely: %w", err),
		Fix: "qemu-storage-daemon's FUSE export corrupts parallel writes (QEMU before 10.1): pass {ReadOnly}, or convert the image to raw with qemu-img convert -O raw"}
}

// createOverlay makes the snapshot's qcow2 overlay, its backing file the
// image (by its absolute path, with its format), without opening the
// image (-u): a VM may hold it.
func createOverlay(ctx context.Context, o ExportOptions) error {
	img, err := tool("qemu-img")
	if err != nil {
		return err
	}
	if _, err := hosttool.Combined(ctx, img, "create", "-q", "-f", "qcow2", "-F", string(o.Format), "-b", o.Image, "-u",
		o.Overlay, strconv.FormatInt(o.Size, 10)); err != nil {
		return fmt.Errorf("make the snapshot overlay %s: %w", o.Overlay, err)
	}
	return nil
}

// Path is the export as this process reaches it: through the daemon's
// root, in its mount namespace.
func (e *Export) Path() string { return fmt.Sprintf("/proc/%d/root%s", e.PID, e.File) }

// LoopOptions are how a loop device on the export must be attached: with
// direct I/O, so that FUSE sends its requests as background requests,
// which the serialized connection takes one at a time (serialize.go).
// Buffered, the loop device's reads would go past that limit.
func (e *Export) LoopOptions() []mount.LoopOption { return []mount.LoopOption{mount.WithDirectIO()} }

// mounted tells whether the export is mounted in the daemon's namespace.
func (e *Export) mounted() bool {
	f, err := os.Open(fmt.Sprintf("/proc/%d/mountinfo", e.PID))
	if err != nil {
		return false
	}
	defer f.Close()
	ms, err := mountinfo.GetMountsFromReader(f, mountinfo.SingleEntryFilter(e.File))
	return err == nil && len(ms) > 0
}

// Stop ends the daemon (it flushes the image and unmounts its export)
// and removes the export file; the kernel's nbd device on an NBD export
// is disconnected first (whoever used it has closed it).
func (e *Export) Stop() error {
	if e == nil || e.p == nil {
		return nil
	}
	var first error
	if e.conn != nil {
		e.conn.Close()
		e.conn = nil
	}
	if e.Device != "" {
		first = nbd.Detach(e.Device)
		e.Device = ""
	}
	_ = e.p.Signal(unix.SIGTERM)
	select {
	case <-e.done:
	case <-time.After(15 * time.Second):
		_ = e.p.Signal(unix.SIGKILL)
		<-e.done
	}
	e.p = nil
	if err := removeExportFiles(e.File, e.Socket); err != nil && first == nil {
		first = err
	}
	return first
}

// removeExportFiles unmounts a FUSE export left mounted (its daemon
// killed) and removes its file, and an NBD export's socket.
func removeExportFiles(file, socket string) error {
	if file != "" {
		if m, _ := mount.At(file); m != nil {
			if err := unix.Unmount(file, unix.MNT_DETACH); err != nil {
				return fmt.Errorf("unmount the export %s: %w", file, err)
			}
		}
	}
	for _, f := range []string{file, socket} {
		if f == "" {
			continue
		}
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

// Recorded is what a session's journal says of its export.
type Recorded struct {
	PID          int
	File, Socket string
	Device       string
}

// ours tells whether process pid is the daemon of export r: its command
// line names r's export file or socket.
func (r Recorded) ours(pid int) bool {
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return err == nil && r.cmdlineIsOurs(cmdline)
}

// cmdlineIsOurs tells whether a process's command line (NUL-separated)
// is that of export r's daemon.
func (r Recorded) cmdlineIsOurs(cmdline []byte) bool {
	if !bytes.Contains(cmdline, []byte("qemu-storage-daemon")) {
		return false
	}
	return r.File != "" && bytes.Contains(cmdline, []byte("mountpoint="+QemuValue(r.File)+",")) ||
		r.Socket != "" && bytes.Contains(cmdline, []byte(",name="+QemuValue(r.Socket)+","))
}

// StopRecorded ends the export a killed session left: the kernel's nbd
// devices on it (by the backend the kernel records, or the device
// recorded), then its daemon, if r.PID is still that daemon, and removes
// its files. A PID of 0 (killed before it was recorded) is looked for.
func StopRecorded(r Recorded) error {
	if err := detachRecorded(r); err != nil {
		return err
	}
	pid := r.PID
	if pid == 0 {
		procs, _ := filepath.Glob("/proc/[0-9]*")
		for _, p := range procs {
			if n, err := strconv.Atoi(filepath.Base(p)); err == nil && r.ours(n) {
				pid = n
			}
		}
	}
	if pid != 0 && r.ours(pid) {
		_ = unix.Kill(pid, unix.SIGTERM)
		deadline := time.Now().Add(15 * time.Second)
		for {
			stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
			if err != nil || bytes.Contains(stat, []byte(") Z ")) {
				break // gone, or a zombie its parent has yet to reap
			}
			if time.Now().After(deadline) {
				_ = unix.Kill(pid, unix.SIGKILL)
				time.Sleep(100 * time.Millisecond)
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return removeExportFiles(r.File, r.Socket)
}

package boottest

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nixrescue/nixrescue/runtime/host"
	"github.com/nixrescue/nixrescue/runtime/image"
	"github.com/nixrescue/nixrescue/runtime/internal/hosttool"
)

// Machine is the VM a target boots in.
type Machine struct {
	// Platform is its architecture's (PlatformOf; the zero value is
	// x86_64's).
	Platform Platform
	// Disk is the qcow2 overlay on the target; Interface the controller
	// it sits on: virtio, nvme or ahci.
	Disk, Interface string
	// EFI boots by UEFI firmware (OVMF, AAVMF) with a fresh variable
	// store, else by the platform's own firmware (SeaBIOS, U-Boot).
	EFI       bool
	MemoryMiB int
	Timeout   time.Duration
	// Until is the milestone that ends the boot, reached.
	Until Milestone
	// Console takes a copy of the console, as it came.
	Console io.Writer
	// Dir holds the machine's files (variables, monitor socket).
	Dir string
	// Started is told qemu's PID once it runs (the journal).
	Started func(pid int) error
	// Accel is auto (KVM when it works, tried first), kvm or tcg.
	Accel string
	// Progress, when set, is told each milestone as the boot reaches it,
	// and Note what the boot does meanwhile (the accelerator it starts
	// with, a start again without KVM): a boot under software emulation
	// takes minutes.
	Progress func(m Milestone, at time.Duration)
	Note     func(string)
	// KVMHangs is the file that remembers a kernel KVM hung a boot on;
	// "" is KVMHangsFile.
	KVMHangs string
	// KVMCPU is qemu's CPU model under KVM; "" is host, the model whose
	// features are this host's. (Tests choose another: under nested
	// virtualisation qemu's default model can hang a guest's kernel.)
	KVMCPU string
}

// note tells m.Note, when set.
func (m Machine) note(format string, a ...any) {
	if m.Note != nil {
		m.Note(fmt.Sprintf(format, a...))
	}
}

// Run is what a boot did.
type Run struct {
	Console *Console
	// Accel is kvm or tcg: KVM when it works here, tried first.
	Accel    string
	Elapsed  time.Duration
	TimedOut bool
}

// missing says this host lacks what a boot test needs.
func missing(what, pkg string) error {
	return &hosttool.MissingError{What: what, Needs: "boot-test needs", Install: pkg}
}

// args are qemu's for the machine, with accel (kvm, tcg).
func (m Machine) args(accel string) ([]string, error) {
	mem := m.MemoryMiB
	if mem == 0 {
		mem = 1024
	}
	pf := m.platform()
	args := []string{"-machine", pf.Machine + ",accel=" + accel, "-m", strconv.Itoa(mem), "-smp", "1", "-display", "none", "-nodefaults",
		"-nic", "none", "-no-reboot", "-serial", "stdio", "-monitor", "unix:" + filepath.Join(m.Dir, "monitor.sock") + ",server=on,wait=off"}
	if accel == "kvm" {
		args = append(args, "-cpu", cmp.Or(m.KVMCPU, "host"))
	} else if pf.CPU != "" {
		args = append(args, "-cpu", pf.CPU)
	}
	if !m.EFI && pf.BootROM != "" {
		args = append(args, "-bios", pf.BootROM)
	}
	if m.EFI {
		vars := filepath.Join(m.Dir, "vars.fd")
		b, err := os.ReadFile(pf.FirmwareVars)
		if err != nil {
			return nil, missing("UEFI firmware ("+pf.FirmwareVars+")", pf.FirmwarePackage)
		}
		if err := os.WriteFile(vars, b, 0o600); err != nil {
			return nil, err
		}
		args = append(args, "-drive", "if=pflash,format=raw,readonly=on,file="+pf.FirmwareCode, "-drive", "if=pflash,format=raw,file="+vars)
	}
	drive := "if=none,id=disk,format=qcow2,file=" + image.QemuValue(m.Disk)
	switch m.Interface {
	case "nvme":
		args = append(args, "-drive", drive, "-device", "nvme,drive=disk,serial=nixrescue")
	case "ahci":
		args = append(args, "-device", "ahci,id=ahci", "-drive", drive, "-device", "ide-hd,drive=disk,bus=ahci.0")
	default:
		args = append(args, "-drive", drive, "-device", "virtio-blk-pci,drive=disk")
	}
	return args, nil
}

// firmwareReady checks that this host has m's firmware: UEFI's, or the
// platform's boot ROM (U-Boot) when qemu has none built in.
func (m Machine) firmwareReady() error {
	pf := m.platform()
	switch {
	case m.EFI:
		if _, err := os.Stat(pf.FirmwareCode); err != nil {
			return missing("UEFI firmware ("+pf.FirmwareCode+")", pf.FirmwarePackage)
		}
	case pf.BootROM != "":
		if _, err := os.Stat(pf.BootROM); err != nil {
			return missing(pf.Firmware+" ("+pf.BootROM+")", pf.BootROMPackage)
		}
	}
	return nil
}

// kvmUsable tells whether /dev/kvm can be opened: then KVM is tried.
func kvmUsable() bool {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return false
	}
	f.Close()
	return true
}

// platform is m's platform: x86_64's unless set.
func (m Machine) platform() Platform {
	if m.Platform.Qemu != "" {
		return m.Platform
	}
	p, _ := PlatformOf("")
	return p
}

// Ready checks that this host has the qemu of x86_64 machines, before
// anything is opened.
func Ready() error {
	_, err := qemuPath(Machine{}.platform())
	return err
}

// qemuPath is the path of the platform's qemu on this host.
func qemuPath(pf Platform) (string, error) {
	p, err := exec.LookPath(pf.Qemu)
	if err != nil {
		return "", missing(pf.Qemu, pf.QemuPackage)
	}
	return p, nil
}

// Boot boots the machine until its Until milestone, a failure that ends
// the boot, qemu's end, or the timeout; then asks it to power off (ACPI),
// and kills it after a grace period. With Accel auto, KVM is tried first,
// when /dev/kvm opens: a qemu that cannot start with it (a CPU model it
// refuses), or a boot that does not reach stage 1 within kvmGrace (nested
// virtualisation can hang a kernel's early boot), is started again with
// TCG, and the hang is remembered for this kernel. qemu never outlives
// Boot.
func Boot(ctx context.Context, m Machine) (*Run, error) {
	pf := m.platform()
	qemu, err := qemuPath(pf)
	if err != nil {
		return nil, err
	}
	if err := m.firmwareReady(); err != nil {
		return nil, err
	}
	why := "as asked"
	switch m.Accel {
	case "tcg":
	case "kvm":
		if pf.Arch != host.Arch() {
			return nil, fmt.Errorf("KVM runs machines of this host's architecture (%s) only, and this one is %s: use --accel tcg or auto", host.Arch(), pf.Arch)
		}
		m.note("booting with KVM")
		return boot(ctx, qemu, m, "kvm", 0)
	default:
		why = "no usable /dev/kvm here"
		if pf.Arch != host.Arch() {
			why = fmt.Sprintf("an %s machine on this %s host", pf.Arch, host.Arch())
		} else if kvmUsable() && m.kvmMemory().hangs() {
			why = "KVM hung a boot on this kernel before"
		} else if kvmUsable() {
			m.note("booting with KVM (a kernel that makes no progress in %.0f s is booted again under software emulation)", kvmGrace.Seconds())
			r, err := boot(ctx, qemu, m, "kvm", kvmGrace)
			var se *startError
			if !errors.As(err, &se) && !errors.Is(err, errNoProgress) {
				return r, err
			}
			why = "qemu could not start with KVM: " + err.Error()
			if errors.Is(err, errNoProgress) {
				m.kvmMemory().remember()
				why = fmt.Sprintf("KVM made no progress in %.0f s (nested virtualisation can hang a kernel); remembered for this kernel", kvmGrace.Seconds())
			}
		}
	}
	m.note("booting under software emulation (TCG, %s): a boot takes a minute or more", why)
	return boot(ctx, qemu, m, "tcg", 0)
}

// kvmGrace is how long a boot with KVM may take to reach stage 1 (or
// fail visibly) before nixrescue takes KVM for one that hangs a kernel
// (nested virtualisation does) and boots again with TCG. A working KVM
// gets there in 1-3 s: the firmware, a bootloader aimed with no timeout,
// the kernel and initrd read at the host's disk speed. A hung one shows
// nothing after the bootloader's last line, ever; 8 s, so that the boot
// test is under TCG within 10 s of its start.
const kvmGrace = 8 * time.Second

// errNoProgress says a boot with KVM did not get to stage 1 in time.
var errNoProgress = errors.New("no progress with KVM")

// KVMHangsFile remembers, for this kernel, that KVM hangs a guest here:
// the next boot test goes to TCG at once (Machine.KVMHangs, when set,
// names another).
const KVMHangsFile = "/var/cache/nixrescue/kvm-hangs"

// kvmMemory is where a machine remembers that KVM hangs.
func (m Machine) kvmMemory() kvmMemory {
	if m.KVMHangs != "" {
		return kvmMemory(m.KVMHangs)
	}
	return KVMHangsFile
}

// kvmMemory is a file that remembers the kernel KVM hung a boot on.
type kvmMemory string

func kernelRelease() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}

// hangs tells whether KVM hung a boot on this kernel.
func (f kvmMemory) hangs() bool {
	b, err := os.ReadFile(string(f))
	return err == nil && strings.TrimSpace(string(b)) == kernelRelease()
}

// remember notes that KVM hung a boot on this kernel.
func (f kvmMemory) remember() {
	if os.MkdirAll(filepath.Dir(string(f)), 0o755) == nil {
		_ = os.WriteFile(string(f), []byte(kernelRelease()+"\n"), 0o644)
	}
}

// startError is a qemu that ended at once, having printed nothing on the
// console: it could not start (with KVM: a CPU it does not take).
type startError struct{ msg string }

func (e *startError) Error() string { return "qemu: " + e.msg }

// boot boots the machine with accel; with grace, a boot that has not
// reached stage 1 (nor failed) by then is ended with errNoProgress.
func boot(ctx context.Context, qemu string, m Machine, accel string, grace time.Duration) (*Run, error) {
	args, err := m.args(accel)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(qemu, args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start qemu: %w", err)
	}
	r := &Run{Console: NewConsole(), Accel: accel}
	defer func() {
		_ = cmd.Process.Kill()
	}()
	if m.Started != nil {
		if err := m.Started(cmd.Process.Pid); err != nil {
			return nil, err
		}
	}
	done := make(chan struct{})
	defer close(done)
	lines := readLines(out, done)
	timeout := time.After(m.Timeout)
	var noProgress <-chan time.Time
	if grace > 0 {
		noProgress = time.After(grace)
	}
	var stop <-chan time.Time
	seen := false
	for lines != nil {
		select {
		case l, ok := <-lines:
			if !ok {
				lines = nil
				continue
			}
			seen = true
			m.read(r.Console, l, time.Since(start), stop != nil)
			if stop == nil && (r.Console.Has(m.Until) || r.Console.Stuck) {
				// The goal, or a failure that ends the boot: a moment
				// more for what comes with it, then power off.
				powerOff(m.Dir)
				stop = time.After(3 * time.Second)
			}
		case <-stop:
			lines = nil
		case <-noProgress:
			if !r.Console.Has(Stage1) && !r.Console.Stuck {
				_ = cmd.Process.Kill()
				cmd.Wait()
				return r, errNoProgress
			}
		case <-timeout:
			r.TimedOut = true
			lines = nil
		case <-ctx.Done():
			_ = cmd.Process.Kill()
			cmd.Wait()
			return r, ctx.Err()
		}
	}
	reap(cmd, 2*time.Second)
	r.Elapsed = time.Since(start)
	if !seen && r.Elapsed < 5*time.Second && cmd.ProcessState != nil && !cmd.ProcessState.Success() {
		return r, &startError{msg: strings.TrimSpace(stderr.String())}
	}
	return r, nil
}

// read takes a line of the console: a copy to m.Console, and into c
// unless the goal was reached (stopping): what comes in the moment before
// the power-off is not the test's. Progress is told the milestones it
// reached.
func (m Machine) read(c *Console, line string, at time.Duration, stopping bool) {
	if m.Console != nil {
		io.WriteString(m.Console, line)
	}
	if stopping && c.Has(m.Until) {
		return
	}
	before := c.Furthest()
	c.Add(line, at)
	if m.Progress == nil {
		return
	}
	for _, ms := range Milestones[Index(before)+1:] {
		if d, ok := c.Reached[ms]; ok {
			m.Progress(ms, d)
		}
	}
}

// readLines sends what r holds line by line, until r ends or done is
// closed; the channel is closed after the last line.
func readLines(r io.Reader, done <-chan struct{}) <-chan string {
	lines := make(chan string)
	go func() {
		defer close(lines)
		br := bufio.NewReader(r)
		for {
			l, err := br.ReadString('\n')
			if l != "" {
				select {
				case lines <- l:
				case <-done:
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	return lines
}

// reap waits for cmd to end after a power-off, killing it after grace.
func reap(cmd *exec.Cmd, grace time.Duration) {
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case <-exited:
	case <-time.After(grace):
		_ = cmd.Process.Kill()
		<-exited
	}
}

// powerOff asks the machine to power off, as its power button would
// (ACPI), through qemu's monitor.
func powerOff(dir string) {
	c, err := net.DialTimeout("unix", filepath.Join(dir, "monitor.sock"), time.Second)
	if err != nil {
		return
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	_, _ = io.WriteString(c, "system_powerdown\n")
}

// KillRecorded ends a qemu a killed boot test left, if pid is still that
// qemu (its command line names the overlay).
func KillRecorded(pid int, overlay string) {
	if pid == 0 {
		return
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err == nil && strings.Contains(string(cmdline), "qemu-system") && strings.Contains(string(cmdline), overlay) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

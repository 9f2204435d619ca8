// Command bench measures what nixrescue costs next to what it isolates, as
// ratios against baselines run side by side in the same invocation on the
// same machine: interleaved runs, medians, min and max. It is not a test:
// it asserts nothing about time; it says which targets were met.
//
//	hack/bench                 # the full run (README: Performance)
//	hack/bench -smoke          # one iteration of everything (hack/test runs it)
//
// It needs root, the static nixrescue, and for the containerd rows a
// containerd (hack/bench starts a private one with hack/with-containerd).
package main

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nixrescue/nixrescue/hack/fixture"
	"github.com/nixrescue/nixrescue/runtime/host"
	"github.com/nixrescue/nixrescue/runtime/image"
	"github.com/nixrescue/nixrescue/runtime/mount"
)

type sample struct {
	ms    float64
	rssKB int64
	err   error
}

// Case is one measured command.
type Case struct {
	Name   string   `json:"name"`
	Group  string   `json:"group"`
	Median float64  `json:"median_ms"`
	Min    float64  `json:"min_ms"`
	Max    float64  `json:"max_ms"`
	RSSKB  int64    `json:"peak_rss_kib,omitempty"`
	Runs   int      `json:"runs"`
	Errors []string `json:"errors,omitempty"`
	// Unavailable says why the case could not run here.
	Unavailable string `json:"unavailable,omitempty"`

	run     func(i int) sample
	samples []sample
}

// Ratio is a target: a case's median against a baseline's.
type Ratio struct {
	Name   string  `json:"name"`
	Value  float64 `json:"value"`
	Target string  `json:"target"`
	Met    bool    `json:"met"`
}

// Report is what bench prints and writes.
type Report struct {
	Machine     string  `json:"machine"`
	Iterations  int     `json:"iterations"`
	Cases       []*Case `json:"cases"`
	Ratios      []Ratio `json:"ratios"`
	Concurrency []Conc  `json:"concurrency"`
	// Phases and Guards are a whole embedded session's, as its own
	// run --json says them, over the iterations.
	Phases []Span `json:"phases"`
	Guards []Span `json:"guards"`
}

// Span is one phase or guard of a session over several runs.
type Span struct {
	Name   string  `json:"name"`
	Median float64 `json:"median_ms"`
	Min    float64 `json:"min_ms"`
	Max    float64 `json:"max_ms"`
}

// Conc is one concurrency level: n sessions started at once, rounds
// times.
type Conc struct {
	Sessions   int     `json:"sessions"`
	Rounds     int     `json:"rounds"`
	WallMS     float64 `json:"wall_ms"` // median of the rounds
	MinMS      float64 `json:"min_ms"`
	MaxMS      float64 `json:"max_ms"`
	PerSecond  float64 `json:"sessions_per_second"` // at the median
	AllOK      bool    `json:"all_ok"`
	LeftBehind string  `json:"left_behind,omitempty"`
}

func main() {
	iterations := flag.Int("iterations", 9, "runs of each case (interleaved)")
	smoke := flag.Bool("smoke", false, "one run of each case and concurrency 1 and 2: that it all still works, no figures")
	bin := flag.String("nixrescue", "", "the static nixrescue binary")
	out := flag.String("out", "", "write the performance page (docs/performance.md) to this `FILE`")
	jsonOut := flag.String("json", "", "write the figures as JSON to this `FILE`")
	flag.Parse()
	if *bin == "" {
		fail("give the static nixrescue with -nixrescue (hack/bench builds it)")
	}
	if *smoke {
		*iterations = 1
	}
	if err := run(*bin, *iterations, *smoke, *out, *jsonOut); err != nil {
		fail(err.Error())
	}
}

// run runs the benchmark and writes its report; what it made under
// /var/tmp and in the cgroups goes, whatever the outcome.
func run(bin string, iterations int, smoke bool, out, jsonOut string) error {
	work, err := os.MkdirTemp("/var/tmp", "nixrescue-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	// runc's and ctr's state on tmpfs, as their defaults (/run) are and
	// as nixrescue's is (/run/nixrescue), in a directory of the bench's.
	runDir, err := os.MkdirTemp("/run", "nixrescue-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(runDir)
	// ctr run puts its tasks in a cgroup named after the namespace,
	// which containerd leaves (empty) after them.
	defer removeEmptyCgroups("nixrescue-bench")
	r, err := bench(work, runDir, bin, iterations, smoke)
	if err != nil {
		return err
	}
	fmt.Print(r.markdown())
	if out != "" {
		if err := os.WriteFile(out, []byte(r.page()), 0o644); err != nil {
			return err
		}
	}
	if jsonOut != "" {
		j, _ := json.MarshalIndent(r, "", "  ")
		if err := os.WriteFile(jsonOut, append(j, '\n'), 0o644); err != nil {
			return err
		}
	}
	for _, c := range r.Cases {
		if len(c.Errors) > 0 {
			return fmt.Errorf("%s failed: %s", c.Name, c.Errors[0])
		}
	}
	for _, c := range r.Concurrency {
		if !c.AllOK || c.LeftBehind != "" {
			return fmt.Errorf("%d sessions at once: ok=%v, left behind: %s", c.Sessions, c.AllOK, c.LeftBehind)
		}
	}
	return nil
}

// removeEmptyCgroups removes the cgroup name from every hierarchy (v1)
// and from the unified one, when nothing is left in it (rmdir refuses
// otherwise).
func removeEmptyCgroups(name string) {
	for _, d := range host.CgroupDirs(name) {
		_ = os.Remove(d)
	}
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, "bench:", msg)
	os.Exit(1)
}

// settle flushes dirty data and gives the kernel's deferred work a moment.
func settle() {
	syscall.Sync()
	time.Sleep(50 * time.Millisecond)
}

// timed runs a command and measures it.
func timed(name string, args ...string) sample {
	cmd := exec.Command(name, args...)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	s := sample{ms: float64(time.Since(start).Microseconds()) / 1000}
	if err != nil {
		s.err = fmt.Errorf("%v: %s", err, strings.TrimSpace(string(out)))
	}
	if cmd.ProcessState != nil {
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			s.rssKB = ru.Maxrss
		}
	}
	return s
}

func sh(script string) func(int) sample {
	return func(i int) sample { return timed("sh", "-ec", strings.ReplaceAll(script, "$I", fmt.Sprint(i))) }
}

func bench(work, runDir, bin string, iterations int, smoke bool) (*Report, error) {
	root := filepath.Join(work, "root")
	if _, err := fixture.Build(root, fixture.Options{}); err != nil {
		return nil, err
	}
	bundle := filepath.Join(work, "bundle")
	if out, err := exec.Command(bin, "spec", "--root", root, "--bundle", bundle, "--", "/bin/sh", "-c", "true").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("nixrescue spec --bundle: %v %s", err, out)
	}
	img := filepath.Join(work, "disk.img")
	fx, err := fixture.BuildImage(img, fixture.ImageOptions{Layout: fixture.LayoutBIOS})
	if err != nil {
		return nil, err
	}
	_ = fx
	addr := os.Getenv("NIXRESCUE_CONTAINERD_ADDRESS")
	runcState := filepath.Join(runDir, "runc")

	cases := baseCases(bin, root, bundle, runcState, img)
	if _, err := exec.LookPath("systemd-nspawn"); err != nil {
		cases[3].Unavailable = "systemd-nspawn is not installed (systemd-container)"
	}
	imageCases, stopImages, err := imageCases(work, bin, img)
	if err != nil {
		return nil, err
	}
	defer stopImages()
	cases = append(cases, imageCases...)
	if addr != "" {
		cases = append(cases, containerdCases(runDir, bin, root, img, addr)...)
	}
	rep := measure(cases, iterations)
	if rep.Phases, rep.Guards, err = sessionSpans(bin, img, iterations); err != nil {
		return nil, err
	}

	levels := []int{1, 4, 8}
	if smoke {
		levels = []int{1, 2}
	}
	rep.Concurrency = concurrency(work, bin, fx, levels, iterations)
	if len(rep.Concurrency) > 1 {
		serial := rep.Concurrency[0].PerSecond
		last := rep.Concurrency[len(rep.Concurrency)-1]
		rep.Ratios = append(rep.Ratios, Ratio{Name: fmt.Sprintf("throughput at %d / serial", last.Sessions), Value: last.PerSecond / serial, Target: "≥ 2.5", Met: last.PerSecond/serial >= 2.5})
	}
	return rep, nil
}

// baseCases are the start and session cases every run has: nixrescue's
// embedded start and whole session against the manual ways.
func baseCases(bin, root, bundle, runcState, img string) []*Case {
	q := func(s string) string { return "'" + s + "'" }
	return []*Case{
		{Name: "nixrescue run --no-activate -- /bin/sh -c true (embedded)", Group: "start", run: func(int) sample {
			return timed(bin, "run", "--root", root, "--no-activate", "-q", "--backend", "embedded", "--", "/bin/sh", "-c", "true")
		}},
		{Name: "(a) nixos-enter-style: unshare, rbind /dev /sys, chroot", Group: "start", run: sh(
			`unshare --fork --mount --uts --pid --mount-proc --propagation private sh -ec "mount --rbind /dev ` + q(root+"/dev") + ` && mount --rbind /sys ` + q(root+"/sys") + ` && chroot ` + q(root) + ` /bin/sh -c true"`)},
		{Name: "(b) the manual procedure: mount -R /dev /proc /sys, chroot, umount", Group: "start", run: sh(
			// In a private mount namespace: a recursive unmount under shared
			// propagation can take host mounts with it (mount_namespaces(7)).
			`unshare --mount --propagation private sh -ec "for d in dev proc sys; do mount -R /\$d ` + q(root) + `/\$d; done; chroot ` + q(root) + ` /bin/sh -c true; for d in dev proc sys; do umount -R ` + q(root) + `/\$d; done"`)},
		{Name: "(c) systemd-nspawn --pipe", Group: "start", run: func(int) sample {
			return timed("systemd-nspawn", "--pipe", "-q", "--register=no", "--keep-unit", "-D", root, "/bin/sh", "-c", "true")
		}},
		{Name: "(d) runc run (nixrescue spec --bundle)", Group: "start", run: func(i int) sample {
			return timed("runc", "--root", runcState, "run", "--bundle", bundle, fmt.Sprintf("bench-%d", i))
		}},
		{Name: "nixrescue run IMAGE -- true (embedded, whole session)", Group: "session", run: func(int) sample {
			return timed(bin, "run", img, "-q", "--backend", "embedded", "--", "true")
		}},
		{Name: "the manual procedure on the image (losetup, partx, mounts, chroot activate, chroot true, unmounts)", Group: "session", run: sh(
			`unshare --mount --propagation private sh -ec '
dev=$(losetup --find --show ` + q(img) + `); trap "partx -d $dev; losetup -d $dev" EXIT
partx -a $dev; m=$(mktemp -d); mount ${dev}p3 $m; mount ${dev}p2 $m/boot
for d in dev proc sys; do mount -R /$d $m/$d; done
chroot $m /nix/var/nix/profiles/system/activate >/dev/null 2>&1 || true
chroot $m /bin/sh -c true
umount -R $m; rmdir $m'`)},
	}
}

// containerdCases are the cases of containerd at addr: nixrescue's start
// and session on it against ctr run.
func containerdCases(runDir, bin, root, img, addr string) []*Case {
	return []*Case{
		{Name: "nixrescue run --no-activate -- /bin/sh -c true (containerd)", Group: "start", run: func(int) sample {
			return timed(bin, "run", "--root", root, "--no-activate", "-q", "--backend", "containerd", "--address", addr, "--", "/bin/sh", "-c", "true")
		}},
		{Name: "(e) ctr run --rm --rootfs", Group: "start", run: func(i int) sample {
			return timed("ctr", ctrRun(runDir, addr, root, fmt.Sprintf("bench-%d", i), "/bin/sh", "-c", "true")...)
		}},
		{Name: "nixrescue run IMAGE -- true (containerd, whole session)", Group: "session", run: func(int) sample {
			return timed(bin, "run", img, "-q", "--backend", "containerd", "--address", addr, "--", "true")
		}},
		{Name: "the manual procedure on the image with ctr run in place of chroot", Group: "session", run: func(i int) sample {
			run := func(id string, args ...string) string {
				return strings.Join(append([]string{"ctr"}, ctrRun(runDir, addr, "$m", fmt.Sprintf("%s-%d", id, i), args...)...), " ")
			}
			// In the host's mount namespace: containerd's shim must see
			// the root (ctr makes /dev, /proc and /sys itself).
			return timed("sh", "-ec", `dev=$(losetup --find --show '`+img+`'); m=$(mktemp -d)
trap "umount -R $m; rmdir $m; partx -d $dev; losetup -d $dev" EXIT
partx -a $dev; mount ${dev}p3 $m; mount ${dev}p2 $m/boot
`+run("bench-activate", "/nix/var/nix/profiles/system/activate")+` >/dev/null 2>&1 || true
`+run("bench-true", "/bin/sh", "-c", "true"))
		}},
	}
}

// ctrRun are ctr's arguments to run args in a container on rootfs, with
// runc's state and ctr's fifos in runDir (tmpfs, as their defaults under
// /run are), out of the host's /run/containerd as nixrescue keeps its own.
func ctrRun(runDir, addr, rootfs, id string, args ...string) []string {
	return append([]string{"--address", addr, "-n", "nixrescue-bench", "run", "--rm",
		"--runc-root", filepath.Join(runDir, "ctr-runc"), "--fifo-dir", filepath.Join(runDir, "ctr-fifo"),
		"--rootfs", rootfs, id}, args...)
}

// sessionSpans runs a whole embedded session on img iterations times,
// each on a settled machine, and gathers the phases and guards its
// run --json reports.
func sessionSpans(bin, img string, iterations int) (phases, guards []Span, err error) {
	type span struct {
		Name string  `json:"name"`
		MS   float64 `json:"ms"`
	}
	var names [2][]string
	ms := [2]map[string][]float64{{}, {}}
	for i := 0; i < iterations; i++ {
		settle()
		out, err := exec.Command(bin, "run", img, "-q", "--json", "--backend", "embedded", "--", "true").Output()
		var r struct{ Phases, Guards []span }
		if err != nil || json.Unmarshal(out, &r) != nil {
			return nil, nil, fmt.Errorf("run --json for the phases: %v %s", err, out)
		}
		for k, list := range [2][]span{r.Phases, r.Guards} {
			for _, x := range list {
				if _, ok := ms[k][x.Name]; !ok {
					names[k] = append(names[k], x.Name)
				}
				ms[k][x.Name] = append(ms[k][x.Name], x.MS)
			}
		}
	}
	var out [2][]Span
	for k := range out {
		for _, n := range names[k] {
			m, lo, hi := spread(ms[k][n])
			out[k] = append(out[k], Span{Name: n, Median: m, Min: lo, Max: hi})
		}
	}
	return out[0], out[1], nil
}

// measure runs the cases, interleaved, and reports them with their
// ratios.
func measure(cases []*Case, iterations int) *Report {
	// Interleaved: every case once per round, so that a noisy moment
	// touches them all alike. Each run starts on a settled machine: what
	// the previous run left for the kernel to finish (dirty pages of an
	// image, work queued after an unmount or a cgroup's removal) is done
	// before the clock starts, so that no case pays for another's.
	for i := 0; i < iterations; i++ {
		for _, c := range cases {
			if c.Unavailable == "" {
				settle()
				c.samples = append(c.samples, c.run(i))
			}
		}
	}
	for _, c := range cases {
		summarise(c)
	}
	rep := &Report{Machine: machine(), Iterations: iterations, Cases: cases}
	median := func(prefix string) float64 {
		for _, c := range cases {
			if strings.HasPrefix(c.Name, prefix) && c.Unavailable == "" && len(c.Errors) == 0 {
				return c.Median
			}
		}
		return 0
	}
	ratio := func(name, a, b, target string, limit float64) {
		x, y := median(a), median(b)
		if x == 0 || y == 0 {
			return
		}
		rep.Ratios = append(rep.Ratios, Ratio{Name: name, Value: x / y, Target: target, Met: x/y <= limit})
	}
	embedded, containerd := "nixrescue run --no-activate -- /bin/sh -c true (embedded)", "nixrescue run --no-activate -- /bin/sh -c true (containerd)"
	ratio("embedded start / (d) runc run on the same bundle", embedded, "(d)", "≤ 0.9", 0.9)
	ratio("embedded start / (a) nixos-enter-style", embedded, "(a)", "≤ 2.0", 2.0)
	ratio("embedded start / (c) systemd-nspawn", embedded, "(c)", "≤ 0.5", 0.5)
	ratio("containerd start / (e) ctr run", containerd, "(e)", "≤ 1.0", 1.0)
	ratio("embedded session / the manual procedure", "nixrescue run IMAGE -- true (embedded", "the manual procedure on the image (", "≤ 1.0", 1.0)
	ratio("containerd session / the manual procedure with ctr run", "nixrescue run IMAGE -- true (containerd", "the manual procedure on the image with ctr run", "≤ 1.0", 1.0)
	ratio("session on the qcow2 / on the raw image", "nixrescue run QCOW2 -- true", "nixrescue run IMAGE -- true (embedded", "≤ 1.2", 1.2)
	ratio("session with --snapshot / without", "nixrescue run IMAGE --snapshot -- true", "nixrescue run IMAGE -- true (embedded", "≤ 1.2", 1.2)
	if x, y := median("read the raw image's loop device"), median("read the qcow2's export"); x > 0 && y > 0 {
		// NBD where the kernel has it (≥ 0.8), the FUSE fallback (≥ 0.5).
		name, limit := "read throughput: qcow2 export over FUSE / raw loop device", 0.5
		if median("read the qcow2's export (nbd") > 0 {
			name, limit = "read throughput: qcow2 export over NBD / raw loop device", 0.8
		}
		rep.Ratios = append(rep.Ratios, Ratio{Name: name, Value: x / y, Target: fmt.Sprintf("≥ %.1f", limit), Met: x/y >= limit})
	}
	var rss int64
	for _, c := range cases {
		if strings.HasPrefix(c.Name, "nixrescue") {
			rss = max(rss, c.RSSKB)
		}
	}
	if rss > 0 {
		mib := float64(rss) / 1024
		rep.Ratios = append(rep.Ratios, Ratio{Name: "peak RSS of nixrescue in any case (MiB)", Value: mib, Target: "≤ 20", Met: mib <= 20})
	}
	return rep
}

// imageCases measure images through qemu: a whole session on a qcow2
// copy of the image and with --snapshot on the raw one, and a sequential
// read of the disk through qemu-storage-daemon's export against the raw
// image's loop device (O_DIRECT: not the loop device's own cache). stop
// ends the export and detaches the loop devices.
func imageCases(work, bin, img string) ([]*Case, func(), error) {
	// One qcow2 for sessions, another for the read (its export holds
	// qemu's lock on it).
	q, qread := filepath.Join(work, "disk.qcow2"), filepath.Join(work, "read.qcow2")
	for _, dst := range []string{q, qread} {
		if out, err := exec.Command("qemu-img", "convert", "-O", "qcow2", img, dst).CombinedOutput(); err != nil {
			return nil, func() {}, fmt.Errorf("qemu-img convert: %v %s", err, out)
		}
	}
	// The export as a session makes it (runtime/image: qemu-storage-daemon's
	// NBD export attached by the kernel where it has nbd; else its FUSE
	// export, one request at a time, under a loop device with direct
	// I/O), the raw image's loop device as a session attaches a raw image.
	e, err := image.Start(context.Background(), image.ExportOptions{Image: qread, Format: image.QCOW2, ReadOnly: true,
		File: filepath.Join(work, "export.raw"), Socket: filepath.Join(work, "export.nbd"), Log: filepath.Join(work, "export.log")})
	if err != nil {
		return nil, func() {}, err
	}
	var loops []*mount.Loop
	stop := func() {
		for _, l := range loops {
			l.Close()
		}
		e.Stop()
	}
	raw, err := mount.AttachLoop(img, true, 0)
	if err != nil {
		stop()
		return nil, func() {}, err
	}
	loops = append(loops, raw)
	exported := ""
	if e.Via() == image.ViaNBD {
		exported, err = e.Attach(512)
	} else {
		var l *mount.Loop
		if l, err = mount.AttachLoop(e.Path(), true, 0, e.LoopOptions()...); err == nil {
			loops, exported = append(loops, l), l.Path
		}
	}
	if err != nil {
		stop()
		return nil, func() {}, err
	}
	read := func(dev string) func(int) sample {
		return func(int) sample { return timed("dd", "if="+dev, "of=/dev/null", "bs=1M", "iflag=direct") }
	}
	return []*Case{
		{Name: "nixrescue run QCOW2 -- true (embedded, whole session)", Group: "image", run: func(int) sample {
			return timed(bin, "run", q, "-q", "--backend", "embedded", "--", "true")
		}},
		{Name: "nixrescue run IMAGE --snapshot -- true (embedded, whole session)", Group: "image", run: func(int) sample {
			return timed(bin, "run", img, "--snapshot", "-q", "--backend", "embedded", "--", "true")
		}},
		{Name: "read the raw image's loop device (dd, direct)", Group: "image", run: read(raw.Path)},
		{Name: "read the qcow2's export (" + e.Via() + ", dd, direct)", Group: "image", run: read(exported)},
	}, stop, nil
}

func summarise(c *Case) {
	var ms []float64
	for _, s := range c.samples {
		if s.err != nil {
			c.Errors = append(c.Errors, s.err.Error())
			continue
		}
		ms = append(ms, s.ms)
		c.RSSKB = max(c.RSSKB, s.rssKB)
	}
	c.Runs = len(c.samples)
	if len(ms) > 0 {
		c.Median, c.Min, c.Max = spread(ms)
	}
}

// spread is the median, min and max of ms (not empty); it sorts ms.
func spread(ms []float64) (median, lo, hi float64) {
	slices.Sort(ms)
	median, lo, hi = ms[len(ms)/2], ms[0], ms[len(ms)-1]
	if len(ms)%2 == 0 {
		median = (ms[len(ms)/2-1] + ms[len(ms)/2]) / 2
	}
	return median, lo, hi
}

// concurrency runs, for each level n, n sessions at once on n copies of
// the image, rounds times; the levels are interleaved round by round, as
// the cases are, and each round starts on a settled machine.
func concurrency(work, bin string, fx *fixture.Image, levels []int, rounds int) []Conc {
	out := make([]Conc, len(levels))
	imgs := make([][]string, len(levels))
	defer func() {
		for _, l := range imgs {
			for _, p := range l {
				os.Remove(p)
			}
		}
	}()
	for li, n := range levels {
		out[li] = Conc{Sessions: n, AllOK: true}
		for i := 0; i < n; i++ {
			p := filepath.Join(work, fmt.Sprintf("conc-%d-%d.img", n, i))
			if b, err := exec.Command("cp", "--sparse=always", fx.Path, p).CombinedOutput(); err != nil {
				out[li].AllOK, out[li].LeftBehind = false, fmt.Sprintf("copy: %v %s", err, b)
			}
			imgs[li] = append(imgs[li], p)
		}
	}
	walls := make([][]float64, len(levels))
	for round := 0; round < rounds; round++ {
		for li := range levels {
			if out[li].LeftBehind != "" {
				continue
			}
			settle()
			ms, err := sessionsAtOnce(bin, imgs[li])
			if err != nil {
				out[li].AllOK, out[li].LeftBehind = false, err.Error()
				continue
			}
			walls[li] = append(walls[li], ms)
		}
	}
	for li, c := range out {
		if len(walls[li]) == 0 {
			continue
		}
		c.Rounds = len(walls[li])
		c.WallMS, c.MinMS, c.MaxMS = spread(walls[li])
		c.PerSecond = float64(c.Sessions) / (c.WallMS / 1000)
		out[li] = c
	}
	return out
}

// sessionsAtOnce runs a session on each image, all at once, and returns
// the wall time until the last ends; an error when one failed or the host
// was left changed.
func sessionsAtOnce(bin string, imgs []string) (float64, error) {
	before := hostState()
	var wg sync.WaitGroup
	errs := make([]error, len(imgs))
	start := time.Now()
	for i := range imgs {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			if out, err := exec.CommandContext(ctx, bin, "run", imgs[i], "-q", "--backend", "embedded", "--", "true").CombinedOutput(); err != nil {
				errs[i] = fmt.Errorf("%v: %s", err, out)
			}
		}(i)
	}
	wg.Wait()
	ms := float64(time.Since(start).Microseconds()) / 1000
	if err := errors.Join(errs...); err != nil {
		return 0, err
	}
	if after := hostState(); after != before {
		return 0, errors.New("the host changed (mounts, loop devices, /run/nixrescue or nixrescue's cgroups)")
	}
	return ms, nil
}

// hostState is what sessions must leave as they found it.
func hostState() string {
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	loops, _ := exec.Command("losetup", "-a").Output()
	_, err := os.Stat("/run/nixrescue")
	cgroups, _ := filepath.Glob("/sys/fs/cgroup/*/nixrescue-*")
	return fmt.Sprintf("%d %s %v %v", strings.Count(string(mi), "\n"), loops, err == nil, cgroups)
}

func machine() string {
	var u syscall.Utsname
	_ = syscall.Uname(&u)
	rel := func(b [65]int8) string {
		var s []byte
		for _, c := range b {
			if c == 0 {
				break
			}
			s = append(s, byte(c))
		}
		return string(s)
	}
	return fmt.Sprintf("%s %s, %d cores, %s", rel(u.Sysname), rel(u.Release), runtime.NumCPU(), runtime.Version())
}

// pageProse is docs/performance.md up to the latest run: how nixrescue
// is measured, how to read the figures, and what was found.
//
//go:embed page.md
var pageProse string

// page is docs/performance.md: pageProse, then the latest run's figures.
func (r *Report) page() string { return pageProse + r.markdown() }

func (r *Report) markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Machine: %s; %d interleaved runs per case and per number of sessions at once.\n\n", r.Machine, r.Iterations)
	fmt.Fprintln(&b, "| case | median ms | min | max | peak RSS |")
	fmt.Fprintln(&b, "|---|---:|---:|---:|---:|")
	for _, c := range r.Cases {
		switch {
		case c.Unavailable != "":
			fmt.Fprintf(&b, "| %s | unavailable: %s | | | |\n", c.Name, c.Unavailable)
		case len(c.Errors) > 0 && c.Median == 0:
			fmt.Fprintf(&b, "| %s | failed: %s | | | |\n", c.Name, c.Errors[0])
		default:
			rss := ""
			if strings.HasPrefix(c.Name, "nixrescue") {
				rss = fmt.Sprintf("%.1f MiB", float64(c.RSSKB)/1024)
			}
			fmt.Fprintf(&b, "| %s | %.1f | %.1f | %.1f | %s |\n", c.Name, c.Median, c.Min, c.Max, rss)
		}
	}
	fmt.Fprintln(&b, "\n| ratio | value | target | met |")
	fmt.Fprintln(&b, "|---|---:|---|---|")
	for _, x := range r.Ratios {
		fmt.Fprintf(&b, "| %s | %.2f | %s | %v |\n", x.Name, x.Value, x.Target, x.Met)
	}
	fmt.Fprintln(&b, "\n| a whole embedded session (run IMAGE --json) | median ms | min | max |")
	fmt.Fprintln(&b, "|---|---:|---:|---:|")
	for _, x := range r.Phases {
		fmt.Fprintf(&b, "| phase: %s | %.1f | %.1f | %.1f |\n", x.Name, x.Median, x.Min, x.Max)
	}
	for _, x := range r.Guards {
		fmt.Fprintf(&b, "| guard (within the phases): %s | %.1f | %.1f | %.1f |\n", x.Name, x.Median, x.Min, x.Max)
	}
	fmt.Fprintln(&b, "\n| sessions at once (distinct images, embedded) | median wall ms | min | max | sessions/s | all ok, nothing left |")
	fmt.Fprintln(&b, "|---:|---:|---:|---:|---:|---|")
	for _, c := range r.Concurrency {
		fmt.Fprintf(&b, "| %d | %.0f | %.0f | %.0f | %.2f | %v |\n", c.Sessions, c.WallMS, c.MinMS, c.MaxMS, c.PerSecond, c.AllOK && c.LeftBehind == "")
	}
	return b.String()
}

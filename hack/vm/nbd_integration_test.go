package vm_test

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/nixrescue/nixrescue/hack/fixture"
	"github.com/nixrescue/nixrescue/hack/vm"
)

// nbdInitramfs is the rescue host's initramfs with the kernel's nbd
// driver loaded (and FUSE's, for the fallback), and qemu-storage-daemon and qemu-img (this host's, with
// their libraries), which nixrescue runs to open images.
func nbdInitramfs(t *testing.T) string {
	t.Helper()
	return initramfsWith(t, "nbd", vm.InitramfsOptions{
		Tools:   append(slices.Clone(vm.DefaultTools), "/usr/bin/qemu-storage-daemon", "/usr/bin/qemu-img"),
		Modules: append(slices.Clone(vm.DefaultModules), "fuse", "nbd")})
}

// TestImagesThroughNBD (SeaBIOS): on a rescue host whose kernel has nbd,
// a qcow2 image is read through qemu-storage-daemon's NBD export attached
// by the kernel (inspect says so), written (its configuration), and
// rebuilt: GRUB installed on it through device-mapper maps over /dev/nbdN;
// a 4Kn disk's qcow2 gets a device of 4096-byte sectors (a new device,
// not one of the module's, its requests up to 4 MiB), and a bare
// filesystem's is opened as the device itself; four sessions at once on
// overlays of it (qemu-img info for their backing chain) each get a
// device of their own;
// a --snapshot session leaves it byte for byte as it was; ps shows the
// export and its device; a session killed with SIGKILL leaves its export
// to cleanup, which disconnects the device and ends the daemon; the host
// is left as it was (no nbd device connected, no daemon). The repaired
// qcow2 then boots generation 3. Reads of the disk through the raw
// image's loop device, the NBD export and (nbd unloaded, the fallback)
// the FUSE export are timed and logged (the figures of
// docs/performance.md; never asserted).
func TestImagesThroughNBD(t *testing.T) {
	setup(t)
	t.Parallel()
	initramfs := nbdInitramfs(t)
	seed := buildImage(t, "nbd-seed", fixture.ImageOptions{Layout: fixture.LayoutBIOS, Root: fixture.Options{Bootloader: fixture.BootSystemd}})
	q := filepath.Join(lab.dir, "nbd-seed.qcow2")
	if out, err := exec.Command("qemu-img", "convert", "-f", "raw", "-O", "qcow2", seed.Path, q).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img convert: %v %s", err, out)
	}
	// A 4Kn disk and a bare filesystem, as qcow2 (no Nix needed: they
	// are only looked at).
	files := []string{seed.Path, q}
	for _, l := range []fixture.DiskLayout{fixture.Layout4K, fixture.LayoutBare} {
		img, err := fixture.BuildImage(filepath.Join(lab.dir, "nbd-"+string(l)+".img"), fixture.ImageOptions{Layout: l, Root: fixture.Options{Hostname: "nbd" + strings.ReplaceAll(string(l), "-", "")}})
		if err != nil {
			t.Fatal(err)
		}
		lq := filepath.Join(lab.dir, "nbd-"+string(l)+".qcow2")
		if out, err := exec.Command("qemu-img", "convert", "-f", "raw", "-O", "qcow2", img.Path, lq).CombinedOutput(); err != nil {
			t.Fatalf("qemu-img convert: %v %s", err, out)
		}
		files = append(files, lq)
	}
	scratch := filesystemWith(t, "nbd-scratch", files...)
	steps := rescueWith(t, vm.Machine{Firmware: vm.SeaBIOS, Disks: []vm.Disk{{Path: scratch}}}, initramfs, nbdScript)
	inspectSaysNBD(t, steps)
	wantExit(t, steps, "image-config", 0)
	if r := rebuilt(t, steps, "rebuild", "grub-bios"); len(r.DiskAliases) != 1 || !strings.HasPrefix(r.DiskAliases[0].Device, "/dev/nbd") {
		t.Errorf("the qcow2's /dev/sdz should be its nbd device: %+v", r.DiskAliases)
	}
	if s := steps["rebuild"]; !strings.Contains(s.Stderr, "are device-mapper maps over /dev/nbd") {
		t.Errorf("GRUB should be installed through device-mapper maps over the nbd device:\n%s", s.Stderr)
	}
	if s := wantExit(t, steps, "snapshot", 0); !strings.Contains(s.Stdout, "unchanged") {
		t.Errorf("--snapshot changed the image (checksums before and after):\n%s", s.Stdout)
	}
	psShowsNBD(t, steps)
	if s := wantExit(t, steps, "killed", 0); !strings.Contains(s.Stdout, "connected: /dev/nbd") || !strings.Contains(s.Stdout, "after cleanup: none\n") {
		t.Errorf("a killed session's nbd device should be connected until cleanup, then free:\n%s%s", s.Stdout, s.Stderr)
	}
	// The 4Kn disk's device has 4096-byte sectors, as its table was
	// written for; the bare filesystem is the device itself.
	// Its device is a new one, past the module's own (left alone), with
	// requests up to 4 MiB.
	var had, index, block, maxKB int
	s := wantExit(t, steps, "4k-blocksize", 0)
	if _, err := fmt.Sscan(s.Stdout, &had, &index, &block, &maxKB); err != nil || block != 4096 || index < had || maxKB != 4096 {
		t.Errorf("the 4Kn qcow2's nbd device: index %d (the module had %d devices), logical block size %d, max_sectors_kb %d; want a new one, 4096, 4096:\n%s", index, had, block, maxKB, s.Stdout)
	}
	for name, host := range map[string]string{"4k": "nbdgpt4k", "bare": "nbdbare"} {
		if s := wantExit(t, steps, name, 0); strings.TrimSpace(s.Stdout) != host {
			t.Errorf("%s: hostname %q, want %s\n%s", name, s.Stdout, host, s.Stderr)
		}
	}
	if s := wantExit(t, steps, "many", 0); strings.Count(s.Stdout, "nixfixture\n") != 4 {
		t.Errorf("4 sessions at once on overlays of the qcow2, each its own nbd device: want the hostname 4 times:\n%s", s.Stdout)
	}
	if s := wantExit(t, steps, "unchanged-nbd", 0); s.Stdout != "" {
		t.Errorf("the rescue host changed: %s", s.Stdout)
	}
	logReads(t, steps)
	if t.Failed() {
		return
	}
	after := fileOf(t, scratch, "nbd-seed.qcow2")
	bootTo(t, vm.Machine{Firmware: vm.SeaBIOS, Disks: []vm.Disk{{Path: after, Format: "qcow2"}}}, []string{"nixrescue-fixture: booting generation 3"})
}

// nbdScript is TestImagesThroughNBD's rescue host's.
const nbdScript = `
. /lib/vm.sh
mkdir -p /mnt/scratch && mount /dev/vda /mnt/scratch
Q=/mnt/scratch/nbd-seed.qcow2 RAW=/mnt/scratch/nbd-seed.img
snapshot
step inspect nixrescue inspect $Q --json
cat > /tmp/grub.nix <<'EOF'
` + grubConfiguration + `EOF
image_config() { nixrescue run $Q -q --no-activate -- sh -c 'cat > /etc/nixos/configuration.nix' </tmp/grub.nix; }
step image-config image_config
step rebuild nixrescue rebuild $Q --json -v
snap() {
  before=$(md5sum $Q)
  nixrescue run $Q --snapshot -q --no-activate -- sh -c 'echo changed > /etc/hostname' || return 1
  [ "$(md5sum $Q)" = "$before" ] && echo unchanged
}
step snapshot snap
connected() { for d in /sys/block/nbd*; do [ -e $d/pid ] && echo /dev/${d##*/}; done; }
held() {
  : >/tmp/held.out
  nixrescue run $1 --read-only -q --no-activate -- sh -c 'echo ready; exec sleep 600' >/tmp/held.out 2>&1 &
  pid=$!
  i=0; until grep -q ready /tmp/held.out || [ $i -ge 600 ]; do sleep 0.1; i=$((i+1)); done
}
ps_step() { held $Q; nixrescue ps --json; kill -TERM $pid; wait $pid || :; }
step ps ps_step
killed() {
  held $Q
  echo "connected: $(connected)"
  kill -9 $pid; sleep 1
  nixrescue cleanup
  c=$(connected)
  echo "after cleanup: ${c:-none}"
}
step killed killed
blocksize() {
  n=$(ls -d /sys/block/nbd* | wc -l)
  held $1; dev=$(connected); q=/sys/block/${dev#/dev/}/queue
  echo "$n ${dev#/dev/nbd} $(cat $q/logical_block_size) $(cat $q/max_sectors_kb)"
  kill -TERM $pid; wait $pid || :
}
step 4k-blocksize blocksize /mnt/scratch/nbd-gpt-4k.qcow2
step 4k nixrescue run /mnt/scratch/nbd-gpt-4k.qcow2 --read-only -q --no-activate -- cat /etc/hostname
step bare nixrescue run /mnt/scratch/nbd-bare.qcow2 --read-only -q --no-activate -- cat /etc/hostname
many() {
  for i in 1 2 3 4; do qemu-img create -q -f qcow2 -F qcow2 -b $Q /tmp/o$i.qcow2 || return 1; done
  for i in 1 2 3 4; do nixrescue run /tmp/o$i.qcow2 --read-only -q --no-activate -- cat /etc/hostname >/tmp/many$i.out 2>&1 & done
  wait
  cat /tmp/many?.out
  rm -f /tmp/o?.qcow2 /tmp/many?.out
}
step many many
unchanged nbd
readtime() {
  echo 3 > /proc/sys/vm/drop_caches
  s=$(cut -d' ' -f1 /proc/uptime)
  dd if=$1 of=/dev/null bs=1M iflag=direct 2>/dev/null
  echo "$2 $s $(cut -d' ' -f1 /proc/uptime) $(blockdev --getsize64 $1)"
}
reads() {
  held $RAW; loop=$(losetup -a | grep "$RAW" | cut -d: -f1)
  for i in 1 2 3 4 5; do readtime $loop raw; done
  kill -TERM $pid; wait $pid
  held $Q; dev=$(connected)
  for i in 1 2 3 4 5; do readtime $dev nbd; done
  kill -TERM $pid; wait $pid
  # Without nbd, the same session reads through the FUSE export.
  rmmod nbd || return 1
  held $Q; loop=$(losetup -a | grep /run/nixrescue/sessions/ | cut -d: -f1)
  [ -n "$loop" ] || { cat /tmp/held.out; losetup -a; ls -l /dev/fuse; return 1; }
  for i in 1 2 3 4 5; do readtime $loop fuse; done
  kill -TERM $pid; wait $pid
  return 0
}
step reads reads
umount /mnt/scratch
`

// inspectSaysNBD checks that inspect read the qcow2 through NBD.
func inspectSaysNBD(t *testing.T, steps map[string]vm.Step) {
	t.Helper()
	s := wantExit(t, steps, "inspect", 0)
	var r struct {
		Format struct {
			Format string `json:"format"`
			Export string `json:"export"`
		} `json:"format"`
	}
	if err := json.Unmarshal([]byte(s.Stdout), &r); err != nil || r.Format.Format != "qcow2" || r.Format.Export != "nbd" {
		t.Errorf("inspect of the qcow2 should say it was read through NBD (%v): %+v\n%s", err, r.Format, s.Stderr)
	}
}

// psShowsNBD checks ps's view of a session on the qcow2.
func psShowsNBD(t *testing.T, steps map[string]vm.Step) {
	t.Helper()
	s := wantExit(t, steps, "ps", 0)
	var r struct {
		Sessions []struct {
			Export struct {
				Via    string `json:"via"`
				PID    int    `json:"pid"`
				Device string `json:"device"`
			} `json:"export"`
		} `json:"sessions"`
	}
	if err := json.Unmarshal([]byte(s.Stdout), &r); err != nil || len(r.Sessions) != 1 {
		t.Fatalf("ps --json (%v):\n%s%s", err, s.Stdout, s.Stderr)
	}
	if e := r.Sessions[0].Export; e.Via != "nbd" || e.PID == 0 || !strings.HasPrefix(e.Device, "/dev/nbd") {
		t.Errorf("ps should show the export over NBD, its daemon and device: %+v", e)
	}
}

// logReads logs the read throughput of the disk through the raw image's
// loop device and through the qcow2's NBD export (medians of five cold
// reads), and their ratio.
func logReads(t *testing.T, steps map[string]vm.Step) {
	t.Helper()
	s := wantExit(t, steps, "reads", 0)
	rates := map[string][]float64{}
	for _, m := range regexp.MustCompile(`(?m)^(raw|nbd|fuse) ([\d.]+) ([\d.]+) (\d+)$`).FindAllStringSubmatch(s.Stdout, -1) {
		start, _ := strconv.ParseFloat(m[2], 64)
		end, _ := strconv.ParseFloat(m[3], 64)
		size, _ := strconv.ParseFloat(m[4], 64)
		if end > start {
			rates[m[1]] = append(rates[m[1]], size/(1<<20)/(end-start))
		}
	}
	if len(rates["raw"]) == 0 || len(rates["nbd"]) == 0 || len(rates["fuse"]) == 0 {
		t.Errorf("no read timings:\n%s%s", s.Stdout, s.Stderr)
		return
	}
	median := func(v []float64) float64 { slices.Sort(v); return v[len(v)/2] }
	raw, nbd, fuse := median(rates["raw"]), median(rates["nbd"]), median(rates["fuse"])
	t.Logf("reads of the disk (medians of %d, cold): raw image's loop device %.1f MiB/s; the qcow2's NBD export %.1f MiB/s (%.2f), its FUSE export %.1f MiB/s (%.2f)",
		len(rates["nbd"]), raw, nbd, nbd/raw, fuse, fuse/raw)
}

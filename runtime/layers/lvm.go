package layers

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/nixrescue/nixrescue/runtime/hint"
	"github.com/nixrescue/nixrescue/runtime/internal/hosttool"
	"github.com/nixrescue/nixrescue/runtime/mount"
)

// VolumeGroup is an LVM volume group on a target's devices.
type VolumeGroup struct {
	Name string `json:"name"`
	UUID string `json:"uuid"`
	// PVs are the target's devices that hold it; PVCount is how many it
	// has in all (more when one is missing).
	PVs     []string        `json:"pvs"`
	PVCount int             `json:"pv_count"`
	LVs     []LogicalVolume `json:"lvs"`
}

// LogicalVolume is an LV: its /dev/VG/LV path and its device-mapper
// path, both the target's names for it.
type LogicalVolume struct {
	Name   string `json:"name"`
	Path   string `json:"path"`
	DMPath string `json:"dm_path"`
	Size   int64  `json:"size"`
	// Data is true for a volume that can hold a filesystem (linear,
	// striped, mirrored, RAID, thin, an origin or snapshot, cached); not
	// for pools and LVM's internal volumes.
	Data bool `json:"data"`
}

// lvmConfig is the configuration every lvm command of a session runs
// with: no devices file, hints, polling daemon or monitoring, no metadata
// backups written to the host's /etc/lvm, udev left to make the nodes
// only when it runs; readOnlyVG makes its volumes read-only.
func lvmConfig(readOnlyVG string) string {
	udev := "0"
	if udevRunning() {
		udev = "1"
	}
	c := `devices { use_devicesfile=0 hints="none" obtain_device_list_from_udev=0 scan_lvs=0 } ` +
		`global { use_lvmpolld=0 } backup { backup=0 archive=0 } ` +
		`activation { monitoring=0 udev_sync=` + udev + ` udev_rules=` + udev
	if readOnlyVG != "" {
		c += ` read_only_volume_list=[ "` + readOnlyVG + `" ]`
	}
	return c + ` }`
}

// lvmArgs are the arguments every lvm command of a session takes: only
// devices (the target's) are seen, nothing is locked on the host.
func lvmArgs(devices []string, readOnlyVG string) []string {
	return []string{"--devices", strings.Join(devices, ","), "--nolocking", "--config", lvmConfig(readOnlyVG)}
}

// ScanLVM lists the volume groups on devices (and only there).
func ScanLVM(ctx context.Context, devices []string) ([]VolumeGroup, error) {
	pvs, err := lvmReport(ctx, "pvs", "pv", "pv_name,vg_name,vg_uuid,pv_count", devices)
	if err != nil {
		return nil, err
	}
	groups := map[string]*VolumeGroup{}
	for _, pv := range pvs {
		if pv["vg_name"] == "" {
			continue // a PV in no group
		}
		g := groups[pv["vg_name"]]
		if g == nil {
			n, _ := strconv.Atoi(pv["pv_count"])
			g = &VolumeGroup{Name: pv["vg_name"], UUID: pv["vg_uuid"], PVCount: n, LVs: []LogicalVolume{}}
			groups[g.Name] = g
		}
		g.PVs = append(g.PVs, pv["pv_name"])
	}
	if len(groups) == 0 {
		return nil, nil
	}
	lvs, err := lvmReport(ctx, "lvs", "lv", "vg_name,lv_name,lv_path,lv_dm_path,lv_size,lv_attr", devices)
	if err != nil {
		return nil, err
	}
	for _, lv := range lvs {
		g := groups[lv["vg_name"]]
		if g == nil {
			continue
		}
		size, _ := strconv.ParseInt(lv["lv_size"], 10, 64)
		attr := lv["lv_attr"]
		g.LVs = append(g.LVs, LogicalVolume{Name: lv["lv_name"], Path: lv["lv_path"], DMPath: lv["lv_dm_path"], Size: size,
			Data: attr != "" && strings.ContainsRune("-mrRoOsSVC", rune(attr[0]))})
	}
	var out2 []VolumeGroup
	for _, g := range groups {
		out2 = append(out2, *g)
	}
	sort.Slice(out2, func(i, j int) bool { return out2[i].Name < out2[j].Name })
	return out2, nil
}

// lvmReport runs an lvm report command (pvs, lvs) on devices only, for
// fields, and returns its rows (key, the report's section: pv, lv).
func lvmReport(ctx context.Context, command, key, fields string, devices []string) ([]map[string]string, error) {
	out, err := run(ctx, nil, devices[0], LVM, "lvm", append([]string{command, "--reportformat", "json", "--units", "b", "--nosuffix", "-o", fields}, lvmArgs(devices, "")...)...)
	if err != nil {
		return nil, failed(err, "lvm %s", command)
	}
	var report struct {
		Report []map[string][]map[string]string `json:"report"`
	}
	if err := json.Unmarshal(out, &report); err != nil {
		return nil, fmt.Errorf("read lvm %s: %w", command, err)
	}
	var rows []map[string]string
	for _, r := range report.Report {
		rows = append(rows, r[key]...)
	}
	return rows, nil
}

// dmEscape is a name as device-mapper names carry it: dashes doubled.
func dmEscape(s string) string { return strings.ReplaceAll(s, "-", "--") }

// ActiveOnHost names the host's device-mapper devices of a volume group
// called name (LVM's dm names are VG-LV): another volume group of that
// name is active here.
func ActiveOnHost(name string) []string {
	prefix := dmEscape(name) + "-"
	dirs, _ := filepath.Glob("/sys/class/block/dm-*")
	var out []string
	for _, d := range dirs {
		n, err1 := os.ReadFile(filepath.Join(d, "dm/name"))
		u, err2 := os.ReadFile(filepath.Join(d, "dm/uuid"))
		if err1 != nil || err2 != nil || !strings.HasPrefix(string(u), "LVM-") {
			continue
		}
		if dm := strings.TrimSpace(string(n)); strings.HasPrefix(dm, prefix) && !strings.HasPrefix(dm[len(prefix):], "-") {
			out = append(out, "/dev/mapper/"+dm)
		}
	}
	return out
}

// Activate activates the volume group's volumes (vgchange -ay), seeing
// only its own physical volumes; read-only when asked.
func Activate(ctx context.Context, g VolumeGroup, readOnly bool) (Opened, error) {
	o := Opened{Kind: LVM, Name: g.Name, Devices: g.PVs}
	if active := ActiveOnHost(g.Name); len(active) > 0 {
		return o, fmt.Errorf("the target's LVM volume group %q has the name of one active on this host (%s): rename the target's with vgimportclone --basevgname NEWNAME %s, or deactivate the host's",
			g.Name, strings.Join(active, ", "), strings.Join(g.PVs, " "))
	}
	ro := ""
	if readOnly {
		ro = g.Name
	}
	if _, err := hosttool.Run(ctx, nil, "lvm", append([]string{"vgchange", "--activate", "y"}, append(lvmArgs(g.PVs, ro), g.Name)...)...); err != nil {
		return o, fmt.Errorf("activate LVM volume group %s: %w", g.Name, err)
	}
	return o, nil
}

// lvmLayer is LVM's Layer.
type lvmLayer struct{}

func (lvmLayer) Kind() Kind           { return LVM }
func (lvmLayer) Keyed() bool          { return false }
func (lvmLayer) Usable(f Found) error { return nil }
func (lvmLayer) Describe(f Found) Info {
	return Info{Kind: LVM, On: f.Members, State: "found", Name: f.Group.Name, VG: f.Group}
}
func (lvmLayer) Planned(f Found, _ string) Opened {
	return Opened{Kind: LVM, Name: f.Group.Name, Devices: f.Group.PVs}
}

// Find lists the volume groups on members, LVM seeing only those; a group
// with physical volumes elsewhere is refused: its volumes would be
// incomplete.
func (lvmLayer) Find(ctx context.Context, members []string) ([]Found, error) {
	if len(members) == 0 {
		return nil, nil
	}
	groups, err := ScanLVM(ctx, members)
	if err != nil {
		return nil, err
	}
	var out []Found
	for _, g := range groups {
		if len(g.PVs) < g.PVCount {
			return nil, &hint.Error{Err: fmt.Errorf("LVM volume group %s has %d physical volumes and only %d are on the target (%s)", g.Name, g.PVCount, len(g.PVs), strings.Join(g.PVs, ", ")),
				Fix: "attach the disk that holds the others, or activate it by hand (vgchange -ay --activationmode partial) and pass the root's device"}
		}
		out = append(out, Found{Kind: LVM, Members: g.PVs, Group: &g})
	}
	return out, nil
}

// Open activates the group; its volumes are those that hold data.
func (lvmLayer) Open(ctx context.Context, f Found, _ string, o OpenOptions) (Result, error) {
	g := *f.Group
	opened, err := Activate(ctx, g, o.ReadOnly)
	if err != nil {
		return Result{}, err
	}
	r := Result{Opened: opened, Info: Info{Kind: LVM, On: g.PVs, State: "active", Name: g.Name, VG: &g}}
	for _, lv := range g.LVs {
		if !lv.Data {
			continue
		}
		dev := mount.DMDevice(strings.TrimPrefix(lv.DMPath, "/dev/mapper/"))
		if dev == "" {
			return r, fmt.Errorf("activated LVM volume group %s, but the kernel has no device for %s", g.Name, lv.DMPath)
		}
		r.Info.Volumes = append(r.Info.Volumes, dev)
		r.Volumes = append(r.Volumes, Volume{Device: dev, Names: []string{lv.Path, lv.DMPath}})
	}
	return r, nil
}

func (lvmLayer) Close(ctx context.Context, o Opened) error { return deactivate(ctx, o) }

// ReadWrite does nothing: a session that writes activates its volume
// groups writable.
func (lvmLayer) ReadWrite(context.Context, Opened) error { return nil }

// deactivate deactivates an activated volume group.
func deactivate(ctx context.Context, o Opened) error {
	if len(ActiveOnHost(o.Name)) == 0 {
		return nil
	}
	_, err := hosttool.Run(ctx, nil, "lvm", append([]string{"vgchange", "--activate", "n"}, append(lvmArgs(o.Devices, ""), o.Name)...)...)
	return err
}

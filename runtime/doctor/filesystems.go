package doctor

import (
	"fmt"

	"github.com/nixrescue/nixrescue/runtime/nixos"
)

// checkFSState reports what the target's filesystems say of themselves:
// errors the kernel flagged (NixOS's boot runs fsck first, and a repair
// must not write to them unchecked), or a journal left to replay (the
// boot replays it: worth knowing only).
func checkFSState(f *Facts) []Finding {
	var out []Finding
	for _, p := range f.Partitions {
		if p.State == nil {
			continue
		}
		what := fmt.Sprintf("partition %d (%s)", p.Number, describePartition(p))
		if mp := mountpointOf(f, p.Source()); mp != "" {
			what += " for " + mp
		}
		if p.State.Errors != "" {
			out = append(out, finding("fs-errors", Fatal, what+" is flagged with errors: it must be checked before it is written",
				[]string{"its superblock says: " + p.State.Errors},
				f.Command("run", "{Fsck}", "{NoActivate}", "--", "true")+"    # runs this host's "+orDefault(p.State.Check, "fsck")+" as stage 1 would"))
		}
		if p.State.Replay != "" {
			out = append(out, finding("fs-unclean", Info, what+" was not shut down cleanly: its "+p.State.Replay+" is replayed at the next mount",
				[]string{"its " + p.State.Replay + " waits to be replayed"}))
		}
	}
	return out
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// mountpointOf is where the plan mounts device, "" when nowhere.
func mountpointOf(f *Facts, device string) string {
	for _, e := range f.Plan {
		if e.Device == device && e.Action == "mount" {
			return e.Mountpoint
		}
	}
	return ""
}

// The space a build needs at the least, and below which doctor warns.
const (
	mib = 1 << 20
	// fullBelow: with less, no build runs (Nix writes its derivations,
	// its database's journal and the outputs there).
	fullBelow       = 16 * mib
	fullInodesBelow = 1024
	// lowBelow: less than this and under a tenth of the filesystem free.
	lowBelow = 1024 * mib
)

// checkSpace reports a root or store filesystem too full for a build.
func checkSpace(f *Facts) []Finding {
	if f.Space == nil {
		return nil
	}
	var out []Finding
	seen := map[uint64]bool{}
	for _, mp := range []string{"/nix", "/"} {
		sp := f.Space(mp)
		if sp.ReadFailure || seen[sp.Device] {
			continue
		}
		seen[sp.Device] = true
		name := "the root filesystem"
		id := "root-full"
		if mp == "/nix" && sp.Mountpoint == "/nix" {
			name, id = "the /nix filesystem", "nix-full"
		}
		ev := []string{fmt.Sprintf("%s (%s): %s free of %s", name, sp.Mountpoint, MiB(sp.Avail), MiB(sp.Size))}
		if sp.HasInodes {
			ev = append(ev, fmt.Sprintf("%d of %d inodes free", sp.InodesFree, sp.Inodes))
		}
		fix := []string{f.Command("prune", "{Keep 3}"), f.Command("run", "{NoActivate}", "--", "nix-collect-garbage")}
		switch {
		case sp.Avail < fullBelow || sp.HasInodes && sp.InodesFree < fullInodesBelow:
			out = append(out, finding(id, Fatal, name+" is full: no build can run (nixos-rebuild fails)", ev, fix...))
		case sp.Avail < lowBelow && sp.Avail*10 < sp.Size:
			out = append(out, finding("space-low", Warning, name+" is nearly full: a rebuild may not fit", ev, fix...))
		}
	}
	return out
}

// MiB says n bytes in MiB, as people read them.
func MiB(n uint64) string { return fmt.Sprintf("%.1f MiB", float64(n)/mib) }

// checkConfiguration reports a target with nothing to rebuild from.
func checkConfiguration(f *Facts) []Finding {
	if nixos.Exists(f.Root, nixos.Configuration) || nixos.Exists(f.Root, nixos.Flake) {
		return nil
	}
	return []Finding{finding("no-configuration", Warning, "there is no configuration to rebuild from: neither "+nixos.Configuration+" nor "+nixos.Flake,
		[]string{nixos.Configuration + " does not exist", nixos.Flake + " does not exist"},
		f.Command("run", "--", "nixos-generate-config")+"    # writes configuration.nix and hardware-configuration.nix, then edit them")}
}

// checkSystem reports a current or default system that is not whole:
// gone from the store, or without its kernel, initrd or init. Its fix
// is the newest generation that is whole.
func checkSystem(f *Facts) []Finding {
	if f.System == "" {
		return nil
	}
	missing := systemMissing(f.Root, f.System)
	if len(missing) == 0 {
		return nil
	}
	ev := []string{fmt.Sprintf("generation %d (%s)", f.Generation, f.System)}
	for _, m := range missing {
		ev = append(ev, m+" is missing")
	}
	var fix []string
	for i := len(f.Generations) - 1; i >= 0; i-- {
		g := f.Generations[i]
		if g.Number != f.Generation && !g.Missing && len(systemMissing(f.Root, g.StorePath)) == 0 {
			fix = []string{f.Command("rollback", fmt.Sprintf("{Generation %d}", g.Number))}
			ev = append(ev, fmt.Sprintf("generation %d is whole", g.Number))
			break
		}
	}
	return []Finding{finding("system-incomplete", Fatal, fmt.Sprintf("the current system, generation %d, is not whole: it cannot boot", f.Generation), ev, fix...)}
}

// systemMissing lists what system (a store path) lacks of a bootable
// system: itself, its kernel, initrd and init.
func systemMissing(root, system string) []string {
	if !nixos.Exists(root, system) {
		return []string{system}
	}
	var out []string
	for _, p := range []string{"/kernel", "/initrd", "/init"} {
		if !nixos.Exists(root, system+p) {
			out = append(out, system+p)
		}
	}
	return out
}

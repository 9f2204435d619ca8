package doctor

import (
	"fmt"
	"path"
	"strings"

	"github.com/nixrescue/nixrescue/runtime/nixos"
)

// checkBootSpace reports a /boot (or ESP) with less room than the next
// rebuild copies there: the installers copy the new kernel and initrd
// before they remove the old ones, and garbage collection does not touch
// /boot, so a full /boot stops every rebuild (nixpkgs #23926). The fix
// is a prune that keeps the most generations that leaves room for two
// kernels and initrds.
func checkBootSpace(f *Facts) []Finding {
	dirs := nixos.BootFileDirs(f.Bootloader)
	if f.Space == nil || f.System == "" || len(dirs) == 0 || !copiesKernels(f, dirs[0]) {
		return nil
	}
	sp, need, own := BootRoom(f.Root, f.System, f.Bootloader, f.Space)
	if !own || need == 0 || sp.Avail >= 2*need {
		// On the root's filesystem, the space check speaks for it.
		return nil
	}
	keep, plan := 1, PrunePlan{}
	for k := len(f.Generations); k >= 1; k-- {
		plan = PlanPrune(f.Root, f.Bootloader, f.Generations, f.Generation, f.Entries, k)
		if sp.Avail+plan.Bytes >= 2*need {
			keep = k
			break
		}
	}
	ev := []string{fmt.Sprintf("%s: %s free of %s", sp.Mountpoint, MiB(sp.Avail), MiB(sp.Size)),
		fmt.Sprintf("the next rebuild copies a kernel and initrd there (generation %d's take %s), before it removes old ones", f.Generation, MiB(need)),
		fmt.Sprintf("%d entries name the kernels and initrds in %s", len(f.Entries), strings.Join(dirs, ", "))}
	if len(plan.Unreferenced) > 0 {
		ev = append(ev, fmt.Sprintf("keeping the newest %d generations frees %s (%d files)", keep, MiB(plan.Bytes), len(plan.Unreferenced)))
	}
	fix := f.Command("prune", fmt.Sprintf("{Keep %d}", keep))
	if sp.Avail < need {
		return []Finding{finding("boot-full", Fatal, fmt.Sprintf("%s is full: the next rebuild cannot copy its kernel and initrd there", sp.Mountpoint), ev, fix)}
	}
	return []Finding{finding("boot-nearly-full", Warning, fmt.Sprintf("%s has room for one more kernel and initrd only", sp.Mountpoint), ev, fix)}
}

// BootRoom is what the filesystem the bootloader b keeps its kernels on
// (/boot, or the ESP) has left, as space reads it, and what the next
// rebuild of system copies there (its kernel and initrd); own says that
// filesystem is not the root's, where /boot's room is the root's.
func BootRoom(root, system string, b nixos.Bootloader, space func(string) Space) (sp Space, need uint64, own bool) {
	dirs := nixos.BootFileDirs(b)
	if len(dirs) == 0 {
		return Space{ReadFailure: true}, 0, false
	}
	boot := path.Dir(dirs[0])
	if b.Kind == nixos.SystemdBoot {
		boot = b.ESPMount()
	}
	sp = space(boot)
	need = FileSize(root, system+"/kernel") + FileSize(root, system+"/initrd")
	return sp, need, !sp.ReadFailure && sp.Device != space("/").Device
}

// copiesKernels tells whether the bootloader copies kernels into dir:
// systemd-boot always; GRUB when its entries load files from there
// (copyKernels, or a /boot of its own).
func copiesKernels(f *Facts, dir string) bool {
	if f.Bootloader.Kind == nixos.SystemdBoot {
		return true
	}
	for _, e := range f.Entries {
		for _, p := range e.Files {
			if strings.HasPrefix(p, dir+"/") {
				return true
			}
		}
	}
	return false
}

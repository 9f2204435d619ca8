package doctor

import (
	"os"
	"path"
	"slices"
	"sort"

	"github.com/nixrescue/nixrescue/runtime/nixos"
	"github.com/nixrescue/nixrescue/runtime/rootfs"
)

// PrunePlan is what pruning /boot down to the newest generations does:
// the generations deleted, those kept, and the files of the bootloader's
// kernel directories that no kept entry names.
type PrunePlan struct {
	Keep int `json:"keep"`
	// Delete are the generations deleted: older than the newest Keep,
	// never the current one nor the bootloader's default.
	Delete []int `json:"delete"`
	Kept   []int `json:"kept"`
	// Unreferenced are the files (paths in the root) of the kernel
	// directories that no entry of a kept generation names, and Bytes
	// their size.
	Unreferenced []string `json:"unreferenced"`
	Bytes        uint64   `json:"bytes"`
}

// PlanPrune plans keeping the newest keep generations of gens (and the
// current one, and the entries' default) on the root at root, whose
// bootloader b has the menu entries.
func PlanPrune(root string, b nixos.Bootloader, gens []nixos.Generation, current int, entries []nixos.BootEntry, keep int) PrunePlan {
	p := PrunePlan{Keep: keep, Delete: []int{}, Kept: []int{}, Unreferenced: []string{}}
	protected := map[int]bool{current: true}
	for _, e := range entries {
		if e.Default && e.Generation > 0 {
			protected[e.Generation] = true
		}
	}
	numbers := make([]int, 0, len(gens))
	for _, g := range gens {
		numbers = append(numbers, g.Number)
	}
	sort.Sort(sort.Reverse(sort.IntSlice(numbers)))
	for i, n := range numbers {
		if i < keep || protected[n] {
			p.Kept = append(p.Kept, n)
		} else {
			p.Delete = append(p.Delete, n)
		}
	}
	slices.Sort(p.Delete)
	slices.Sort(p.Kept)
	named := map[string]bool{}
	for _, e := range entries {
		// An entry of no generation nixrescue can tell is kept: its files
		// are never removed.
		if e.Generation == 0 || !slices.Contains(p.Delete, e.Generation) {
			for _, f := range e.Files {
				named[path.Clean(f)] = true
			}
		}
	}
	for _, f := range nixos.BootFiles(root, b) {
		if !named[f] {
			p.Unreferenced = append(p.Unreferenced, f)
			p.Bytes += FileSize(root, f)
		}
	}
	return p
}

// FileSize is the size of p in root, 0 when it cannot be read.
func FileSize(root, p string) uint64 {
	full, err := rootfs.Join(root, p)
	if err != nil {
		return 0
	}
	st, err := os.Stat(full)
	if err != nil {
		return 0
	}
	return uint64(st.Size())
}

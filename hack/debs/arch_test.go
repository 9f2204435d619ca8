package debs

import (
	"strings"
	"testing"
)

// TestParseLdd: ldd's lines (a library found, the vDSO, the interpreter)
// give the files to copy; one not found is an error naming it.
func TestParseLdd(t *testing.T) {
	out := "\tlinux-vdso.so.1 (0x00007ffd)\n\tlibz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x00007f)\n\t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n"
	libs, err := parseLdd([]byte(out), Native, "")
	if err != nil || strings.Join(libs, " ") != "/lib/x86_64-linux-gnu/libz.so.1 /lib64/ld-linux-x86-64.so.2" {
		t.Errorf("%v %v", libs, err)
	}
	if _, err := parseLdd([]byte("\tlibnixexpr.so => not found\n"), Native, ""); err == nil || !strings.Contains(err.Error(), "libnixexpr.so") {
		t.Errorf("a library not found: %v", err)
	}
	if libs, err := parseLdd([]byte("\t/lib/ld-linux-aarch64.so.1 (0x0000)\n"), Arm64, "/sysroot/ld-linux-aarch64.so.1"); err != nil || len(libs) != 1 || libs[0] != "/sysroot/ld-linux-aarch64.so.1" {
		t.Errorf("a foreign loader is its file here: %v %v", libs, err)
	}
	for nix, want := range map[string]string{"": "amd64", "x86_64": "amd64", "aarch64": "arm64"} {
		if a, err := ArchOf(nix); err != nil || a.Name != want {
			t.Errorf("ArchOf(%q) = %+v, %v", nix, a, err)
		}
	}
	if _, err := ArchOf("riscv64"); err == nil {
		t.Error("riscv64 has no packages here")
	}
}

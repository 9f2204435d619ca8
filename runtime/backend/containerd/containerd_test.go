package containerd

import "testing"

func TestParseVersion(t *testing.T) {
	for v, want := range map[string][2]int{"v1.6.20": {1, 6}, "1.6.20~ds1": {1, 6}, "2.1.0": {2, 1}, "v1.7.27-rc.1": {1, 7}, "v1.5.9": {1, 5}, "junk": {0, 0}} {
		if major, minor := parseVersion(v); major != want[0] || minor != want[1] {
			t.Errorf("%s: %d.%d", v, major, minor)
		}
	}
}

package roles

import (
	"os"
	"testing"

	"github.com/nixrescue/nixrescue/specs"
)

func TestOf(t *testing.T) {
	cases := []struct {
		args []string
		env  map[string]string
		want Role
	}{
		{[]string{"nixrescue", "run", "disk.img"}, nil, CLI},
		{[]string{"nixrescue", "init"}, nil, CLI},
		{[]string{"nixrescue", "init"}, map[string]string{"_LIBCONTAINER_INITPIPE": "3"}, RuncInit},
		{[]string{"nixrescue", "guard", "/nixrescue-x"}, nil, CLI},
		{[]string{"nixrescue", "guard", "/nixrescue-x"}, map[string]string{GuardFDEnv: "3"}, Guard},
		{[]string{HelperPath, "hold"}, nil, Hold},
		{[]string{HelperPath, "probe-sandbox"}, nil, Helper},
	}
	for _, c := range cases {
		for k, v := range c.env {
			os.Setenv(k, v)
		}
		if got := Of(c.args); got != c.want {
			t.Errorf("%q %v: %v, want %v", c.args, c.env, got, c.want)
		}
		for k := range c.env {
			os.Unsetenv(k)
		}
	}
	if HelperPath != specs.HelperPath {
		t.Errorf("roles.h's helper path %q is not specs.HelperPath %q", HelperPath, specs.HelperPath)
	}
}

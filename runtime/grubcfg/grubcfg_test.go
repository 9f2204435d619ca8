package grubcfg

import "testing"

// menu is the shape of install-grub.pl's grub.cfg: a default entry, then
// every configuration in a submenu.
const menu = `set default=0
set timeout=5
menuentry "NixOS - Default" --class nixos --unrestricted {
  linux /kernels/a-bzImage init=/nix/store/00000000000000000000000000000003-nixos-system-x/init
}
submenu "NixOS - All configurations" --class submenu {
menuentry "NixOS - Configuration 3 (2024-12-01 - 24.11)" --class nixos {
  linux /kernels/a-bzImage init=/nix/store/00000000000000000000000000000003-nixos-system-x/init
}
menuentry 'NixOS - Configuration 2' --class nixos {
  linux /kernels/b-bzImage
}
}
`

func TestParseAndDefault(t *testing.T) {
	for def, want := range map[string]string{
		"0":                            "NixOS - Default",
		"1":                            "NixOS - All configurations>NixOS - Configuration 3 (2024-12-01 - 24.11)",
		"9":                            "NixOS - Default", // out of range: GRUB boots the first
		`"NixOS - Configuration 2"`:    "NixOS - All configurations>NixOS - Configuration 2",
		"'NixOS - All configurations'": "NixOS - All configurations>NixOS - Configuration 3 (2024-12-01 - 24.11)",
	} {
		c := Parse("set default=" + def + "\n" + menu[len("set default=0\n"):])
		if len(c.Entries) != 3 || len(c.Top) != 2 {
			t.Fatalf("entries %+v, top %v", c.Entries, c.Top)
		}
		e := c.DefaultEntry()
		if e == nil || e.Path != want {
			t.Errorf("default %s: %+v, want %s", def, e, want)
		}
	}
	c := Parse(menu)
	e := c.Entries[2]
	if body := c.Body(e); len(body) != 3 || body[0] != "menuentry 'NixOS - Configuration 2' --class nixos {" || body[2] != "}" {
		t.Errorf("body of %+v: %q", e, body)
	}
	if Parse("set default=0\n").DefaultEntry() != nil {
		t.Error("a menu with no entry has a default")
	}
}

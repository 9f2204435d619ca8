package commands

import (
	"strings"
	"testing"

	"github.com/nixrescue/nixrescue/runtime/engine"
)

// What nixos-generate-config printed for a root on a loop device (it
// names the device's backing file, options = [ "loop" ]), beside entries
// a machine mounts: by UUID, a btrfs subvolume, a bind mount, tmpfs.
const generatedOnALoopDevice = `{` + loopRoot + `
  fileSystems."/boot" =
    { device = "/dev/disk/by-uuid/7e68fde6-d930-45ac-9f1c-707fd263e134";
      fsType = "ext4";
    };

  fileSystems."/home" =
    { device = "/dev/disk/by-uuid/b7";
      fsType = "btrfs";
      options = [ "subvol=home" ];
    };

  fileSystems."/etc/nixos" =
    { device = "/persist/etc/nixos";
      fsType = "none";
      options = [ "bind" ];
    };

  fileSystems."/" =
    { device = "none";
      fsType = "tmpfs";
    };

  fileSystems."/srv" =
    { device = "/srv.img";
      fsType = "xfs";
    };
}`

const loopRoot = `
  fileSystems."/" =
    { device = "/var/tmp/nixrescue-images-1/bios.img";
      fsType = "ext4";
      options = [ "loop" ];
    };
`

func TestUnbootableMounts(t *testing.T) {
	got := UnbootableMounts(generatedOnALoopDevice)
	want := []string{
		`fileSystems."/" is /var/tmp/nixrescue-images-1/bios.img mounted with the loop option: a file of this host (nixos-generate-config saw a loop device as its source), not a device of the machine`,
		`fileSystems."/srv" is on /srv.img, a file, not a device of the machine`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	bootable := strings.NewReplacer(loopRoot, "", `"/srv.img"`, `"/dev/sdb1"`).Replace(generatedOnALoopDevice)
	if got := UnbootableMounts(bootable); len(got) != 0 {
		t.Errorf("bootable entries flagged: %q", got)
	}
}

// TestTargetLayerNamesZFS: a pool imported under a temporary name is
// written under its own.
func TestTargetLayerNamesZFS(t *testing.T) {
	gen := "  fileSystems.\"/\" =\n    { device = \"s1-zfs0/root\";\n      fsType = \"zfs\";\n    };\n  fileSystems.\"/data\" =\n    { device = \"s1-zfs0\";\n      fsType = \"zfs\";\n    };\n"
	got := targetLayerNames(gen, []engine.LayerInfo{{Kind: engine.LayerZFS, Name: "rpool", Volumes: []string{"s1-zfs0", "s1-zfs0/root"}}})
	if strings.Contains(got, "s1-zfs0") || !strings.Contains(got, `device = "rpool/root";`) || !strings.Contains(got, `device = "rpool";`) {
		t.Errorf("%s", got)
	}
}

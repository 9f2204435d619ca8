package main

import "github.com/nixrescue/nixrescue/runtime/hint"

// flags are the words for the runtime's options (runtime/hint): the
// flags that set them. A test checks that every option has one, and that
// each is a flag of some command.
var flags = map[hint.Option]string{
	hint.Root:                "--root",
	hint.ReadOnly:            "--read-only",
	hint.RootPart:            "--root-part",
	hint.Mount:               "--mount",
	hint.Boot:                "--boot",
	hint.MountMissing:        "--mount-missing",
	hint.Fsck:                "--fsck",
	hint.Force:               "--force",
	hint.HostDev:             "--dev host",
	hint.System:              "--system",
	hint.Generation:          "--generation",
	hint.DiskAlias:           "--disk-alias",
	hint.NoActivate:          "--no-activate",
	hint.DNS:                 "--dns",
	hint.NetworkNone:         "--network none",
	hint.EFI:                 "--efi",
	hint.Memory:              "--memory",
	hint.Backend:             "--backend",
	hint.Address:             "--address",
	hint.Sandbox:             "--sandbox",
	hint.NoInstallBootloader: "--no-install-bootloader",
	hint.To:                  "--to",
	hint.Write:               "--write",
	hint.KeyFile:             "--key-file",
	hint.Snapshot:            "--snapshot",
	hint.SnapshotOut:         "--snapshot-out",
	hint.Firmware:            "--firmware",
	hint.Until:               "--until",
	hint.Timeout:             "--timeout",
	hint.BootMemory:          "--memory",
	hint.CPUs:                "--cpus",
	hint.PidsLimit:           "--pids-limit",
	hint.AuditLog:            "--audit-log",
	hint.Console:             "--console",
	hint.Bundle:              "--bundle",
	hint.StateDir:            "--state-dir",
	hint.Accel:               "--accel",
	hint.DryRun:              "--dry-run",
	hint.BootTest:            "--boot-test",
	hint.Flake:               "--flake",
	hint.Keep:                "--keep",
}

// flagWords words an option as the flag that sets it, with its value;
// TARGET is the argument.
func flagWords(o hint.Option, value string) string {
	w, ok := flags[o]
	switch {
	case o == hint.Target && value != "":
		return "TARGET (" + value + ")"
	case o == hint.Target:
		return "TARGET"
	case !ok:
		return string(o)
	case value != "":
		return w + " " + value
	}
	return w
}

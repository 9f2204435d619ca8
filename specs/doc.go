// Package specs builds the OCI runtime spec of a nixrescue recovery container.
//
// The spec is a pure function of its options, in the style of containerd's
// pkg/oci: Generate starts from a bare spec and applies SpecOpts in order, and
// each With… option can be tested by applying it alone. Nothing here reads the
// host or the target: facts about them (capabilities, EFI, the resolv.conf
// destinations inside the root) are gathered elsewhere and passed in, so the
// same options always produce the same spec, and golden files can pin it.
//
// The shape: the mounted NixOS root is the rootfs
// (never an overlay), new mount, UTS and IPC namespaces, the host's network,
// PID and cgroup namespaces unless asked otherwise (a PID namespace makes
// systemd ≥ 257 treat the session as a container), a fresh /proc, the host's
// /sys with efivarfs only when allowed, the host's /dev bound recursively,
// fresh tmpfs on /run and /tmp, and no masking of what activation or the
// bootloader needs.
package specs

package nixos

import "strings"

// userPath is the PATH a NixOS login gives root (nixos/modules/config/
// shells-environment.nix and the wrappers module), in that order.
var userPath = []string{
	"/run/wrappers/bin",
	"/root/.nix-profile/bin",
	"/nix/profile/bin",
	"/root/.local/state/nix/profile/bin",
	"/etc/profiles/per-user/root/bin",
	ProfilesDir + "/default/bin",
	"/run/current-system/sw/bin",
}

// Env is the complete environment of processes in the recovery container
// for system (a path inside the root). Nothing comes from the host but the
// terminal type: no TMPDIR, SUDO_USER, LANG/LC_*, NIX_PATH (each broke
// nixos-enter or nixos-rebuild for someone: a host TMPDIR missing inside,
// SUDO_USER making nixos-rebuild call sudo, Perl's locale warnings, the
// host's channels). The system's own sw/bin ends PATH, so
// that commands are found even before (or without) activation has made
// /run/current-system.
func Env(system, term string) []string {
	env := []string{
		"PATH=" + strings.Join(append(userPath, system+"/sw/bin"), ":"),
		"HOME=/root",
		"USER=root",
		"LOGNAME=root",
		"LOCALE_ARCHIVE=" + system + "/sw/lib/locale/locale-archive",
		// nixos-enter sets it: activation's setup-etc then leaves
		// /etc/resolv.conf alone (nixpkgs PR #208694), and with it our
		// bind mount.
		"IN_NIXOS_ENTER=1",
	}
	if term != "" {
		env = append(env, "TERM="+term)
	}
	return env
}

// ActivateCommand is the command that activates system.
func ActivateCommand(system string) []string { return []string{system + "/activate"} }

// TmpfilesCommand is what runs after activation when the system has
// systemd-tmpfiles, as nixos-enter does: it makes /tmp, /run/user and the
// other runtime directories the system's tmpfiles.d asks for.
func TmpfilesCommand(system string) []string {
	return []string{system + "/sw/bin/systemd-tmpfiles", "--create", "--remove", "-E", "--graceful"}
}

// Shell is the target's interactive shell: its bash, or /bin/sh when the
// system has none.
func Shell(root, system string) string {
	if bash := system + "/sw/bin/bash"; Exists(root, bash) {
		return bash
	}
	return "/bin/sh"
}

// The roles a start of the nixrescue binary plays, and how each is
// chosen: this is the one place that says it (roles.go says why each
// role exists). The C constructors that act before Go starts (the hold,
// the guard, privatens) and Go's main all ask nixrescue_role.
#ifndef NIXRESCUE_ROLES_H
#define NIXRESCUE_ROLES_H

#include <stdlib.h>
#include <string.h>

enum nixrescue_role {
	NIXRESCUE_ROLE_CLI = 0,       // a command a user typed (cobra)
	NIXRESCUE_ROLE_RUNC_INIT = 2, // libcontainer's init of a container (its nsenter constructor acts first)
	NIXRESCUE_ROLE_HOLD = 3,      // a container's first process, in C (runtime/helper/hold.c)
	NIXRESCUE_ROLE_HELPER = 4,    // another mode of the in-container helper: probe-sandbox (Go)
	NIXRESCUE_ROLE_GUARD = 5,     // a session's guard, in C (runtime/guard/guard.c)
};

// Inside a container the binary is bound at this path and started under
// it (specs.HelperPath).
static const char nixrescue_helper_path[] = "/run/nixrescue/nixrescue";
// Names the guard's end of its pipe (guard).
static const char nixrescue_guard_fd_env[] = "_NIXRESCUE_GUARD_FD";
// libcontainer sets it for the binary it starts as a container's init.
static const char nixrescue_runc_init_env[] = "_LIBCONTAINER_INITPIPE";

// nixrescue_role says which role the binary started with argv plays.
// The environment says the rest: a user cannot start the binary as
// "nixrescue init" or "nixrescue guard X" and get either by mistake.
static inline enum nixrescue_role nixrescue_role(int argc, char **argv) {
	if (argc >= 1 && strcmp(argv[0], nixrescue_helper_path) == 0) {
		if (argc >= 2 && strcmp(argv[1], "hold") == 0)
			return NIXRESCUE_ROLE_HOLD;
		return NIXRESCUE_ROLE_HELPER;
	}
	if (argc >= 2 && strcmp(argv[1], "init") == 0 && getenv(nixrescue_runc_init_env))
		return NIXRESCUE_ROLE_RUNC_INIT;
	if (argc == 3 && strcmp(argv[1], "guard") == 0 && getenv(nixrescue_guard_fd_env))
		return NIXRESCUE_ROLE_GUARD;
	return NIXRESCUE_ROLE_CLI;
}

#endif

// Package roles lists the roles a start of the nixrescue binary plays and
// how each is chosen (roles.h: the C constructors that act before Go
// starts ask it too, so that it is decided in one place).
//
// One static binary does everything, because it is all a rescue system
// gets: copied there, it is the command a user types; and it also runs
// inside the containers it makes, where none of the host's files are.
//
//   - CLI: a command a user typed. runtime/privatens may move it into a
//     mount namespace of its own before Go starts.
//   - RuncInit: libcontainer's init of a container: runc's nsenter
//     constructor joins the namespaces before Go, then Go's libcontainer
//     sets the container up and executes its first process.
//   - Hold: a container's first process, started at HelperPath with
//     "hold": C, from a constructor (runtime/helper/hold.c); Go never
//     starts.
//   - Helper: the helper's other modes at HelperPath (probe-sandbox), Go.
//   - Guard: a session's guard, "nixrescue guard CGROUP" with its pipe
//     named in the environment: C, from a constructor
//     (runtime/guard/guard.c); Go never starts.
package roles

/*
#include <stdlib.h>
#include "roles.h"

static int roles_of(int argc, char **argv) { return (int)nixrescue_role(argc, argv); }
static const char *roles_helper_path(void) { return nixrescue_helper_path; }
static const char *roles_guard_fd_env(void) { return nixrescue_guard_fd_env; }
*/
import "C"

import "unsafe"

// Role is what a start of the binary is.
type Role int

// The roles (roles.h's values).
const (
	CLI      Role = C.NIXRESCUE_ROLE_CLI
	RuncInit Role = C.NIXRESCUE_ROLE_RUNC_INIT
	Hold     Role = C.NIXRESCUE_ROLE_HOLD
	Helper   Role = C.NIXRESCUE_ROLE_HELPER
	Guard    Role = C.NIXRESCUE_ROLE_GUARD
)

// Of is the role of the binary started with args (os.Args), in this
// process's environment.
func Of(args []string) Role {
	argv := make([]*C.char, len(args)+1)
	for i, a := range args {
		argv[i] = C.CString(a)
	}
	defer func() {
		for _, p := range argv[:len(args)] {
			C.free(unsafe.Pointer(p))
		}
	}()
	return Role(C.roles_of(C.int(len(args)), &argv[0]))
}

// The names roles.h gives.
var (
	// HelperPath is where the binary is bound inside a container
	// (specs.HelperPath: a test keeps them one).
	HelperPath = C.GoString(C.roles_helper_path())
	// GuardFDEnv names the guard's end of its pipe.
	GuardFDEnv = C.GoString(C.roles_guard_fd_env())
)

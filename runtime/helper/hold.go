package helper

// The hold is written in C (hold.c) and runs from a constructor, before
// the Go runtime starts: it is the container's first process in every
// session that runs more than one program, so its start is on the way of
// every session, and its work (a fork and an exec per request, replies on
// a socket) needs nothing of Go. Started as Go, the binary spent several
// times as long reaching main as a constructor that exits at once (the
// runtime and the packages' initialisation: grpc, protobuf, containerd's
// API types), and Go's runtime kept threads busy while it waited (sysmon,
// a goroutine per request).
//
// The constructor acts for the hold's role (runtime/roles: the binary
// started as specs.HelperPath with the argument "hold"); everything else
// (probe-sandbox, nixrescue itself) goes on to Go.

/*
#include "hold.h"

static const char *hold_helper_path(void) { return nixrescue_helper_path; }
static const char *hold_session_fd_env(void) { return nixrescue_session_fd_env; }
static int hold_max_message(void) { return NIXRESCUE_MAX_MESSAGE; }
*/
import "C"

// cConstants are hold.h's values, for the test that they match Go's.
func cConstants() (helperPath, sessionFDEnv string, maxMessage int) {
	return C.GoString(C.hold_helper_path()), C.GoString(C.hold_session_fd_env()), int(C.hold_max_message())
}

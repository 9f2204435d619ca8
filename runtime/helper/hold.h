// What hold.c shares with Go (hold.go checks the values against the Go
// constants).
#ifndef NIXRESCUE_HOLD_H
#define NIXRESCUE_HOLD_H

#include "../roles/roles.h"

// protocol.go's MaxMessage.
#define NIXRESCUE_MAX_MESSAGE (256 << 10)

// SessionFDEnv.
static const char nixrescue_session_fd_env[] = "NIXRESCUE_SESSION_FD";

void nixrescue_hold_main(int argc, char **argv);

#endif

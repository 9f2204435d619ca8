// What hold.c shares with Go (hold.go checks the values against the Go
// constants).
#ifndef NIXRESCUE_HOLD_H
#define NIXRESCUE_HOLD_H

// protocol.go's MaxMessage.
#define NIXRESCUE_MAX_MESSAGE (256 << 10)

// specs.HelperPath: the hold is the binary started under this name.
static const char nixrescue_helper_path[] = "/run/nixrescue/nixrescue";

// SessionFDEnv.
static const char nixrescue_session_fd_env[] = "NIXRESCUE_SESSION_FD";

void nixrescue_hold_main(int argc, char **argv);

#endif

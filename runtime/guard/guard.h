// What guard.c shares with Go (guard.go).
#ifndef NIXRESCUE_GUARD_H
#define NIXRESCUE_GUARD_H

// The environment variable naming the guard's end of its pipe; with it,
// the binary started as "nixrescue guard CGROUP" is the guard.
static const char nixrescue_guard_fd_env[] = "_NIXRESCUE_GUARD_FD";

// nixrescue_kill_cgroup kills every process of the cgroup at path (as a
// spec's cgroupsPath names it) in every hierarchy under root; 0 when none
// is left.
int nixrescue_kill_cgroup(const char *root, const char *path);

#endif

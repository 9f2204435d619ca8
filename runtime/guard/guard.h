// What guard.c shares with Go (guard.go).
#ifndef NIXRESCUE_GUARD_H
#define NIXRESCUE_GUARD_H

#include "../roles/roles.h"

// nixrescue_kill_cgroup kills every process of the cgroup at path (as a
// spec's cgroupsPath names it) in every hierarchy under root; 0 when none
// is left.
int nixrescue_kill_cgroup(const char *root, const char *path);

#endif

// The guard: a process of its own that outlives a killed nixrescue and
// kills what runs in its session's container (see guard.go for why). It
// runs from a constructor, before Go starts, and never returns to it.

#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "guard.h"

static void guard_sleep_ms(long ms) {
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

// guard_open opens the file at dir/name; -1 when it cannot.
static int guard_open(const char *dir, const char *name, int flags) {
	char p[PATH_MAX];
	if ((size_t)snprintf(p, sizeof p, "%s/%s", dir, name) >= sizeof p)
		return -1;
	return open(p, flags | O_CLOEXEC);
}

// guard_write writes s to the file at dir/name; 0 when it was written.
static int guard_write(const char *dir, const char *name, const char *s) {
	int fd = guard_open(dir, name, O_WRONLY);
	if (fd < 0)
		return -1;
	ssize_t n = write(fd, s, strlen(s));
	close(fd);
	return n == (ssize_t)strlen(s) ? 0 : -1;
}

// guard_read reads the start of dir/name into buf; 0 when it was read.
static int guard_read(const char *dir, const char *name, char *buf, size_t size) {
	int fd = guard_open(dir, name, O_RDONLY);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, size - 1);
	close(fd);
	if (n < 0)
		return -1;
	buf[n] = '\0';
	return 0;
}

// guard_kill_procs sends SIGKILL to every process cgroup.procs of dir
// lists; it returns how many it listed, -1 when it cannot be read.
static int guard_kill_procs(const char *dir) {
	int fd = guard_open(dir, "cgroup.procs", O_RDONLY);
	FILE *f = fd < 0 ? NULL : fdopen(fd, "r");
	if (!f) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	long pid;
	int n = 0;
	pid_t me = getpid();
	while (fscanf(f, "%ld", &pid) == 1) {
		if (pid > 0 && pid != me) {
			kill((pid_t)pid, SIGKILL);
			n++;
		}
	}
	fclose(f);
	return n;
}

// guard_kill_dir kills the processes of one cgroup directory: cgroup v2's
// cgroup.kill where the kernel has it (5.14); else frozen first (v1's
// freezer.state, v2's cgroup.freeze), so that nothing forks meanwhile,
// killed, thawed; else killed until none is left. 0 when none is left.
static int guard_kill_dir(const char *dir) {
	char state[64];
	if (guard_write(dir, "cgroup.kill", "1") == 0)
		goto wait;
	int v1 = guard_read(dir, "freezer.state", state, sizeof state) == 0;
	int frozen = v1 ? guard_write(dir, "freezer.state", "FROZEN") == 0 : guard_write(dir, "cgroup.freeze", "1") == 0;
	if (frozen && v1) {
		// Freezing takes a moment: it is done when the state says so.
		for (int i = 0; i < 100 && guard_read(dir, "freezer.state", state, sizeof state) == 0 && strncmp(state, "FROZEN", 6) != 0; i++)
			guard_sleep_ms(10);
	}
	guard_kill_procs(dir);
	if (frozen)
		v1 ? guard_write(dir, "freezer.state", "THAWED") : guard_write(dir, "cgroup.freeze", "0");
wait:
	// SIGKILL is delivered as they run again; a fork that got through
	// meanwhile is killed on the next round.
	for (int i = 0; i < 300; i++) {
		int n = guard_kill_procs(dir);
		if (n <= 0)
			return n < 0 && errno != ENOENT ? -1 : 0;
		guard_sleep_ms(10);
	}
	return -1;
}

int nixrescue_kill_cgroup(const char *root, const char *path) {
	char dir[PATH_MAX];
	int failed = 0;
	// The unified hierarchy, or cgroup v1's controllers (freezer first: it
	// stops the forks), each a directory of root.
	if ((size_t)snprintf(dir, sizeof dir, "%s%s", root, path) < sizeof dir && access(dir, F_OK) == 0)
		failed |= guard_kill_dir(dir);
	if ((size_t)snprintf(dir, sizeof dir, "%s/freezer%s", root, path) < sizeof dir && access(dir, F_OK) == 0)
		failed |= guard_kill_dir(dir);
	DIR *d = opendir(root);
	if (!d)
		return failed;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.' || strcmp(e->d_name, "freezer") == 0)
			continue;
		if ((size_t)snprintf(dir, sizeof dir, "%s/%s%s", root, e->d_name, path) < sizeof dir && access(dir, F_OK) == 0)
			failed |= guard_kill_dir(dir);
	}
	closedir(d);
	return failed;
}

// guard_main waits on fd, its end of a pipe whose other end only
// nixrescue holds: a byte on it disarms the guard (the session ended and
// destroyed its container); its end without one means nixrescue died,
// and then everything in the container's cgroup is killed.
static void guard_main(int fd, const char *cgroup) {
	// Out of nixrescue's session and process group: a Ctrl-C at the
	// terminal, or a kill of the group, must leave the guard to its job.
	setsid();
	if (chdir("/") != 0)
		_exit(1);
	char c;
	ssize_t n;
	do
		n = read(fd, &c, 1);
	while (n < 0 && errno == EINTR);
	if (n == 1)
		_exit(0);
	_exit(nixrescue_kill_cgroup("/sys/fs/cgroup", cgroup) == 0 ? 0 : 1);
}

// The constructor: the guard is this binary in the guard's role
// (runtime/roles): "nixrescue guard CGROUP", the pipe named in the
// environment.
__attribute__((constructor)) static void nixrescue_guard_constructor(int argc, char **argv, char **envp) {
	(void)envp;
	if (nixrescue_role(argc, argv) != NIXRESCUE_ROLE_GUARD)
		return;
	const char *v = getenv(nixrescue_guard_fd_env);
	if (argv[2][0] != '/')
		_exit(2);
	char *end;
	long fd = strtol(v, &end, 10);
	if (*end || fd < 3 || fd > INT_MAX)
		_exit(2);
	guard_main((int)fd, argv[2]);
}

// Package privatens moves a session command of nixrescue into a mount
// namespace of its own before the Go runtime starts, so that the mounts of
// a session on a disk or image vanish with the process even after SIGKILL,
// without re-executing the binary to get there.
//
// Go cannot unshare a mount namespace once it runs: its threads share one
// filesystem context, and unshare(CLONE_NEWNS) from one of them would move
// that thread alone. runc's libcontainer solves the same problem for its
// init with a C constructor (nsexec); this package does likewise. Before,
// nixrescue started a copy of itself in a new namespace and waited for it:
// a second start of the binary (~6-7 ms on the project's test machine) and
// a second process in every embedded session on a disk or image.
//
// The constructor acts only for the commands that open sessions (run,
// enter, rebuild, rollback, hardware-config, inspect, generations, spec),
// as root, and only when the session cannot use containerd, whose shim
// must see the session's mounts from the host's namespace: with --backend
// embedded, or with --backend auto (the default) when nothing exists at
// containerd's socket path (--address). In every other case, or when
// anything fails, it does nothing and the session decides later as before
// (re-executing itself when it needs a private namespace). Its reading of
// the arguments only chooses between those two ways: Entered tells the
// session which one it got.
package privatens

/*
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

static int nixrescue_private_ns_entered;

static const char *const nixrescue_session_commands[] = {
	"run", "enter", "rebuild", "rollback", "hardware-config", "inspect", "generations", "spec", NULL,
};

// nixrescue_flag reads "--name value" or "--name=value" at argv[*i].
static int nixrescue_flag(int argc, char **argv, int *i, const char *name, const char **value) {
	size_t n = strlen(name);
	if (strncmp(argv[*i], name, n) != 0)
		return 0;
	if (argv[*i][n] == '=') {
		*value = argv[*i] + n + 1;
		return 1;
	}
	if (argv[*i][n] == '\0' && *i + 1 < argc) {
		*i += 1;
		*value = argv[*i];
		return 1;
	}
	return 0;
}

__attribute__((constructor)) static void nixrescue_enter_private_ns(int argc, char **argv, char **envp) {
	(void)envp;
	// A re-executed session (already in a new namespace), runc's init,
	// the hold: none of them is a command typed by a user.
	if (argc < 2 || geteuid() != 0 || getenv("_NIXRESCUE_PRIVATE_MOUNT_NS") || getenv("_LIBCONTAINER_INITPIPE"))
		return;
	int session = 0;
	for (const char *const *c = nixrescue_session_commands; *c; c++)
		if (strcmp(argv[1], *c) == 0)
			session = 1;
	if (!session)
		return;
	const char *backend = "auto", *address = "/run/containerd/containerd.sock";
	for (int i = 2; i < argc; i++) {
		if (strcmp(argv[i], "--") == 0)
			break;
		if (nixrescue_flag(argc, argv, &i, "--backend", &backend))
			continue;
		nixrescue_flag(argc, argv, &i, "--address", &address);
	}
	struct stat st;
	if (strcmp(backend, "embedded") != 0 && (strcmp(backend, "auto") != 0 || stat(address, &st) == 0))
		return;
	int host = open("/proc/self/ns/mnt", O_RDONLY | O_CLOEXEC);
	if (host < 0)
		return;
	if (unshare(CLONE_NEWNS) != 0) {
		close(host);
		return;
	}
	// Nothing mounted here may reach the host: if the tree cannot be made
	// a slave of the host's, go back to the host's namespace untouched.
	if (mount("", "/", NULL, MS_REC | MS_SLAVE, NULL) != 0) {
		if (setns(host, CLONE_NEWNS) != 0)
			_exit(125);
		close(host);
		return;
	}
	close(host);
	nixrescue_private_ns_entered = 1;
}

static int nixrescue_private_ns(void) { return nixrescue_private_ns_entered; }
*/
import "C"

// Entered tells whether this process moved itself into a mount namespace of
// its own (a slave of the host's tree) before Go started.
func Entered() bool { return C.nixrescue_private_ns() != 0 }

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
// a second start of the binary, and a second process in every embedded
// session on a disk or image.
//
// The constructor acts only for the commands that open sessions (run,
// enter, rebuild, rollback, hardware-config, inspect, generations, spec,
// boot-test),
// as root, and only when the session cannot use containerd, whose shim
// must see the session's mounts from the host's namespace: with --backend
// embedded, or with --backend auto (the default) when nothing exists at
// containerd's socket path (--address). In every other case, or when
// anything fails, it does nothing, and the session mounts in a private
// tree of the host's namespace instead (runtime/engine), which cleanup
// undoes after a crash. Its reading of the arguments only chooses between
// those two ways: Entered tells the session which one it got.
//
// When it enters the namespace for a command that runs a container, the
// constructor also starts WarmCgroupAttach on a thread of its own: the
// kernel's wait that it pays off the critical path is longer than the
// few milliseconds between the start of Go and the container's creation,
// so it begins as early as anything can.
package privatens

/*
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../roles/roles.h"

static int nixrescue_private_ns_entered;

// nixrescue_cgroup_procs writes the cgroup.procs file of this process's
// cgroup into path: in cgroup v1's pids hierarchy, else in cgroup v2's
// unified one. It returns 0 when it found one.
static int nixrescue_cgroup_procs(const char *mount, const char *controllers, char *path, size_t size) {
	FILE *f = fopen("/proc/self/cgroup", "re");
	if (!f)
		return -1;
	char line[4096];
	int found = -1;
	while (found != 0 && fgets(line, sizeof line, f)) {
		// "hierarchy-ID:controller-list:cgroup-path"
		char *list = strchr(line, ':');
		char *cg = list ? strchr(list + 1, ':') : NULL;
		if (!cg)
			continue;
		*cg++ = '\0';
		cg[strcspn(cg, "\n")] = '\0';
		if (strcmp(list + 1, controllers) == 0 && (size_t)snprintf(path, size, "%s%s/cgroup.procs", mount, cg) < size)
			found = 0;
	}
	fclose(f);
	return found;
}

// nixrescue_lists reads a cgroup.procs file and tells whether pid is in it.
static int nixrescue_lists(const char *path, pid_t pid) {
	FILE *f = fopen(path, "re");
	if (!f)
		return 0;
	long p;
	int listed = 0;
	while (!listed && fscanf(f, "%ld", &p) == 1)
		listed = p == (long)pid;
	fclose(f);
	return listed;
}

// nixrescue_warm_cgroup_attach moves this process into the cgroup it is in;
// see WarmCgroupAttach. It writes only to a cgroup.procs that lists this
// process already, so that a cgroup path it misreads (a cgroup namespace,
// an unusual mount) moves nothing.
static int nixrescue_warm_cgroup_attach(void) {
	char path[4200];
	pid_t pid = getpid();
	if (nixrescue_cgroup_procs("/sys/fs/cgroup/pids", "pids", path, sizeof path) != 0 || !nixrescue_lists(path, pid))
		if (nixrescue_cgroup_procs("/sys/fs/cgroup", "", path, sizeof path) != 0 || !nixrescue_lists(path, pid))
			return -1;
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	char buf[32];
	int n = snprintf(buf, sizeof buf, "%ld", (long)pid);
	int ok = write(fd, buf, n) == n;
	close(fd);
	return ok ? 0 : -1;
}

static void *nixrescue_warm_thread(void *arg) {
	(void)arg;
	nixrescue_warm_cgroup_attach();
	return NULL;
}

// nixrescue_start_warm starts nixrescue_warm_cgroup_attach on a detached
// thread with every signal blocked: Go, not yet started, must get them all.
static void nixrescue_start_warm(void) {
	sigset_t all, old;
	pthread_attr_t attr;
	pthread_t t;
	if (pthread_attr_init(&attr) != 0)
		return;
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pthread_create(&t, &attr, nixrescue_warm_thread, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
}

// The commands that open a target (cmd/nixrescue's; a test there keeps
// the two in step, with the flags and the socket path below).
static const char *const nixrescue_session_commands[] = {
	"run", "enter", "rebuild", "rollback", "hardware-config", "inspect", "generations", "spec", "boot-test", "doctor", "prune", NULL,
};

// The session commands that run a container.
static const char *const nixrescue_container_commands[] = {
	"run", "enter", "rebuild", "rollback", "hardware-config", "prune", NULL,
};

// The flags that choose the backend, and containerd's default socket.
static const char nixrescue_backend_flag[] = "--backend";
static const char nixrescue_address_flag[] = "--address";
static const char nixrescue_default_address[] = "/run/containerd/containerd.sock";

// nixrescue_listed tells whether s is in the NULL-ended list.
static int nixrescue_listed(const char *const *list, const char *s) {
	for (; *list; list++)
		if (strcmp(*list, s) == 0)
			return 1;
	return 0;
}

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

// nixrescue_refuse_setid ends a start of the binary with a set-uid or
// set-gid bit: whoever ran it would get root's power over every disk
// without sudo's checks and records (the policy is read under sudo). It
// runs before every other constructor (runc's nsexec, the hold's, the
// one below) and before Go: nothing else has run yet.
__attribute__((constructor(101))) static void nixrescue_refuse_setid(void) {
	if (getuid() == geteuid() && getgid() == getegid())
		return;
	static const char msg[] = "nixrescue: refusing to run set-uid or set-gid: remove the bit (chmod u-s,g-s) and run nixrescue as root, e.g. through sudo\n";
	ssize_t n = write(2, msg, sizeof msg - 1);
	(void)n;
	_exit(125);
}

__attribute__((constructor)) static void nixrescue_enter_private_ns(int argc, char **argv, char **envp) {
	(void)envp;
	// Only a command a user typed (runtime/roles): not runc's init, the
	// hold, the guard.
	if (argc < 2 || geteuid() != 0 || nixrescue_role(argc, argv) != NIXRESCUE_ROLE_CLI)
		return;
	if (!nixrescue_listed(nixrescue_session_commands, argv[1]))
		return;
	const char *backend = "auto", *address = nixrescue_default_address;
	for (int i = 2; i < argc; i++) {
		if (strcmp(argv[i], "--") == 0)
			break;
		if (nixrescue_flag(argc, argv, &i, nixrescue_backend_flag, &backend))
			continue;
		nixrescue_flag(argc, argv, &i, nixrescue_address_flag, &address);
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
	if (nixrescue_listed(nixrescue_container_commands, argv[1]))
		nixrescue_start_warm();
}

static int nixrescue_private_ns(void) { return nixrescue_private_ns_entered; }
static const char *const *nixrescue_list(int containers) { return containers ? nixrescue_container_commands : nixrescue_session_commands; }
static const char *nixrescue_backend_flag_name(void) { return nixrescue_backend_flag; }
static const char *nixrescue_address_flag_name(void) { return nixrescue_address_flag; }
static const char *nixrescue_default_address_path(void) { return nixrescue_default_address; }
*/
import "C"

import (
	"errors"
	"time"
	"unsafe"
)

// CommandLine is what the constructor reads of a command line: which
// commands open a target (Session) and which of them run a container
// (Container), the flags that choose the backend and containerd's socket,
// and that socket's default path. cmd/nixrescue's test keeps its cobra
// commands in step with it.
type CommandLine struct {
	Session, Container       []string
	BackendFlag, AddressFlag string
	DefaultAddress           string
}

// Reads is the CommandLine the constructor reads.
func Reads() CommandLine {
	list := func(containers int) []string {
		var out []string
		for p := C.nixrescue_list(C.int(containers)); *p != nil; p = (**C.char)(unsafe.Add(unsafe.Pointer(p), unsafe.Sizeof(p))) {
			out = append(out, C.GoString(*p))
		}
		return out
	}
	return CommandLine{Session: list(0), Container: list(1),
		BackendFlag: C.GoString(C.nixrescue_backend_flag_name()), AddressFlag: C.GoString(C.nixrescue_address_flag_name()),
		DefaultAddress: C.GoString(C.nixrescue_default_address_path())}
}

// Entered tells whether this process moved itself into a mount namespace of
// its own (a slave of the host's tree) before Go started.
func Entered() bool { return C.nixrescue_private_ns() != 0 }

// WarmCgroupAttach moves this process into the cgroup it is in already:
// nothing changes, but the kernel's cgroup attach lock is then warm for
// the container's creation.
//
// Moving a process into a cgroup (a write to cgroup.procs, which
// libcontainer makes for a container's init before the init may go on)
// takes the kernel's cgroup_threadgroup_rwsem for writing. The first
// writer after a quiet spell waits for an RCU grace period (the rwsem's
// rcu_sync); writers within about one grace period of the last do not.
// That wait is the largest single item of a container's start (runc and
// systemd-nspawn pay it too). Made
// on a thread of its own, early, the wait is paid while the session does
// other work. It blocks for that wait: call it on a goroutine of its own.
//
// Best effort: it does nothing when it cannot tell this process's cgroup
// for sure (its cgroup.procs must list this process), and then the
// container pays the wait itself.
func WarmCgroupAttach() error {
	if C.nixrescue_warm_cgroup_attach() != 0 {
		return errors.New("no cgroup of this process found to move it into")
	}
	return nil
}

// KeepCgroupAttachWarm warms the lock again every 3 ms, on a goroutine of
// its own, until stop is called: for a container made by another process
// some tens of milliseconds from now (containerd's shim runs runc create
// after the call that asks for it), longer than one warm-up lasts.
func KeepCgroupAttachWarm() (stop func()) {
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(3 * time.Millisecond)
		defer t.Stop()
		for {
			_ = WarmCgroupAttach()
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() { close(done) }
}

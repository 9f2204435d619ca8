// The hold, in C: the container's first process, which starts the
// session's processes when nixrescue asks (see hold.go for why C, and
// protocol.go for the messages). It runs from a constructor, before the Go
// runtime starts, and never returns to it.

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "hold.h"

#ifndef TIOCGPTPEER
#define TIOCGPTPEER _IO('T', 0x41)
#endif

static void hold_die(const char *what) {
	fprintf(stderr, "nixrescue hold: %s: %s\n", what, strerror(errno));
	_exit(1);
}

// hold_errno_text is strerror as Go spells errors: lower case first letter
// ("no such file or directory"), which backend.StartError reads.
static void hold_errno_text(int err, char *buf, size_t size) {
	snprintf(buf, size, "%s", strerror(err));
	if (buf[0] >= 'A' && buf[0] <= 'Z' && !(buf[1] >= 'A' && buf[1] <= 'Z'))
		buf[0] = (char)(buf[0] - 'A' + 'a');
}

// hold_send sends one message of n bytes, with fd when fd >= 0.
static int hold_send(int conn, const char *msg, size_t n, int fd) {
	struct iovec iov = {.iov_base = (void *)msg, .iov_len = n};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
	char cbuf[CMSG_SPACE(sizeof(int))];
	if (fd >= 0) {
		memset(cbuf, 0, sizeof cbuf);
		mh.msg_control = cbuf;
		mh.msg_controllen = sizeof cbuf;
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof(int));
	}
	ssize_t w;
	do
		w = sendmsg(conn, &mh, MSG_NOSIGNAL);
	while (w < 0 && errno == EINTR);
	return w == (ssize_t)n ? 0 : -1;
}

// hold_reply sends a reply: its kind and one value, each followed by NUL.
static void hold_reply(int conn, const char *kind, const char *value, int fd) {
	char msg[4096];
	size_t k = strlen(kind) + 1, v = strlen(value) + 1;
	if (k + v > sizeof msg)
		v = sizeof msg - k;
	memcpy(msg, kind, k);
	memcpy(msg + k, value, v);
	msg[k + v - 1] = '\0';
	hold_send(conn, msg, k + v, fd);
}

static void hold_reply_int(int conn, const char *kind, long value) {
	char buf[32];
	snprintf(buf, sizeof buf, "%ld", value);
	hold_reply(conn, kind, buf, -1);
}

// hold_request is a Start request, its strings pointing into the message.
struct hold_request {
	int tty;
	unsigned width, height;
	const char *cwd;
	char **argv, **envp;
};

// hold_next returns the string at *pos and moves past its NUL; NULL at the
// end of the message.
static const char *hold_next(const char *msg, size_t n, size_t *pos) {
	if (*pos >= n)
		return NULL;
	const char *s = msg + *pos;
	const char *end = memchr(s, '\0', n - *pos);
	if (!end)
		return NULL;
	*pos = (size_t)(end - msg) + 1;
	return s;
}

static int hold_number(const char *s, unsigned long max, unsigned long *out) {
	if (!s || !*s)
		return -1;
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (errno || *end || v > max)
		return -1;
	*out = v;
	return 0;
}

// hold_strings reads a count, then that many strings, into a new
// NULL-terminated array.
static char **hold_strings(const char *msg, size_t n, size_t *pos) {
	unsigned long count;
	if (hold_number(hold_next(msg, n, pos), n, &count) != 0)
		return NULL;
	char **v = calloc(count + 1, sizeof *v);
	if (!v)
		return NULL;
	for (unsigned long i = 0; i < count; i++) {
		const char *s = hold_next(msg, n, pos);
		if (!s) {
			free(v);
			return NULL;
		}
		v[i] = (char *)s;
	}
	return v;
}

// hold_parse_start reads a Start request's fields (after its kind).
static int hold_parse_start(const char *msg, size_t n, size_t pos, struct hold_request *r) {
	unsigned long tty, w, h;
	if (hold_number(hold_next(msg, n, &pos), 1, &tty) != 0 || hold_number(hold_next(msg, n, &pos), 65535, &w) != 0 ||
	    hold_number(hold_next(msg, n, &pos), 65535, &h) != 0)
		return -1;
	r->tty = (int)tty;
	r->width = (unsigned)w;
	r->height = (unsigned)h;
	if (!(r->cwd = hold_next(msg, n, &pos)))
		return -1;
	if (!(r->argv = hold_strings(msg, n, &pos)))
		return -1;
	if (!(r->envp = hold_strings(msg, n, &pos))) {
		free(r->argv);
		return -1;
	}
	if (pos != n) {
		free(r->argv);
		free(r->envp);
		return -1;
	}
	return 0;
}

// hold_look_path finds file as helper.LookPath does (os/exec's rules, with
// the process's own PATH): a name with a slash is itself; another is the
// first executable regular file of that name in PATH's directories (an
// empty one is "."). The result is in buf; -1 when there is none (then
// the program is not there: ENOENT, as execve would say).
static int hold_look_path(const char *file, char **envp, char *buf, size_t size) {
	if (strchr(file, '/')) {
		snprintf(buf, size, "%s", file);
		return 0;
	}
	const char *path = "";
	for (char **e = envp; *e; e++)
		if (strncmp(*e, "PATH=", 5) == 0)
			path = *e + 5;
	while (1) {
		const char *colon = strchr(path, ':');
		size_t len = colon ? (size_t)(colon - path) : strlen(path);
		int n = len == 0 ? snprintf(buf, size, "%s", file) : snprintf(buf, size, "%.*s/%s", (int)len, path, file);
		struct stat st;
		if (n > 0 && (size_t)n < size && stat(buf, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 0111))
			return 0;
		if (!colon)
			break;
		path = colon + 1;
	}
	return -1;
}

// hold_open_pty makes a pty on the container's devpts, of the size given.
static int hold_open_pty(unsigned width, unsigned height, int *slave, char *err, size_t errsize) {
	char why[256];
	int m = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (m < 0) {
		hold_errno_text(errno, why, sizeof why);
		snprintf(err, errsize, "open a pty: %s", why);
		return -1;
	}
	int unlock = 0;
	if (ioctl(m, TIOCSPTLCK, &unlock) != 0) {
		hold_errno_text(errno, why, sizeof why);
		snprintf(err, errsize, "unlock the pty: %s", why);
		close(m);
		return -1;
	}
	if (width > 0 && height > 0) {
		struct winsize ws = {.ws_row = (unsigned short)height, .ws_col = (unsigned short)width};
		ioctl(m, TIOCSWINSZ, &ws);
	}
	// TIOCGPTPEER opens the peer of this very master (no path to look up
	// in /dev/pts).
	*slave = ioctl(m, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (*slave < 0) {
		hold_errno_text(errno, why, sizeof why);
		snprintf(err, errsize, "open the pty's peer: %s", why);
		close(m);
		return -1;
	}
	return m;
}

// hold_child is the child of hold_start: it sets its standard files (and
// terminal) up and executes prog; what fails goes to report: whether it
// was execve, and the errno.
static void hold_child(struct hold_request *r, int *std, const char *prog, int report) {
	int failed[2] = {0, 0};
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	// Out of the way of 0-2 first, so that no dup2 below overwrites a
	// descriptor still to be copied.
	int high[3];
	for (int i = 0; i < 3; i++)
		if ((high[i] = fcntl(std[i], F_DUPFD_CLOEXEC, 10)) < 0)
			goto fail;
	if (r->tty && setsid() < 0)
		goto fail;
	for (int i = 0; i < 3; i++)
		if (dup2(high[i], i) < 0)
			goto fail;
	if (r->tty && ioctl(0, TIOCSCTTY, 0) != 0)
		goto fail;
	if (r->cwd[0] && chdir(r->cwd) != 0)
		goto fail;
	execve(prog, r->argv, r->envp);
	failed[0] = 1;
fail:
	failed[1] = errno;
	ssize_t unused = write(report, failed, sizeof failed);
	(void)unused;
	_exit(127);
}

// hold_start forks and executes the process asked for, on the files given
// (stdin, stdout, stderr) or on a new pty whose master it puts in *master.
// It returns the PID, or -1: with the errno in *exec_errno when the program
// is not there or execve refused it, with the reason in err when the hold
// could not get that far.
static pid_t hold_start(struct hold_request *r, int *fds, int nfds, int *master, int *exec_errno, char *err, size_t errsize) {
	char prog[4096], why[256];
	*master = -1;
	if (!r->argv[0]) {
		snprintf(err, errsize, "no program given");
		return -1;
	}
	*exec_errno = 0;
	if (hold_look_path(r->argv[0], r->envp, prog, sizeof prog) != 0) {
		*exec_errno = ENOENT;
		return -1;
	}
	int std[3], slave = -1;
	if (r->tty) {
		if ((*master = hold_open_pty(r->width, r->height, &slave, err, errsize)) < 0)
			return -1;
		std[0] = std[1] = std[2] = slave;
	} else {
		if (nfds != 3) {
			snprintf(err, errsize, "%d files given for stdin, stdout and stderr", nfds);
			return -1;
		}
		memcpy(std, fds, sizeof std);
	}
	// The child says why it failed over this pipe; EOF means it executed.
	int report[2];
	if (pipe2(report, O_CLOEXEC) != 0) {
		hold_errno_text(errno, why, sizeof why);
		snprintf(err, errsize, "exec %s: %s", prog, why);
		goto fail;
	}
	pid_t pid = fork();
	if (pid == 0)
		hold_child(r, std, prog, report[1]);
	int e = errno;
	close(report[1]);
	if (pid < 0) {
		close(report[0]);
		hold_errno_text(e, why, sizeof why);
		snprintf(err, errsize, "exec %s: %s", prog, why);
		goto fail;
	}
	int failed[2];
	ssize_t n;
	do
		n = read(report[0], failed, sizeof failed);
	while (n < 0 && errno == EINTR);
	close(report[0]);
	if (n == sizeof failed) {
		waitpid(pid, NULL, 0);
		if (failed[0]) {
			*exec_errno = failed[1];
		} else {
			hold_errno_text(failed[1], why, sizeof why);
			snprintf(err, errsize, "set %s up: %s", prog, why);
		}
		goto fail;
	}
	if (slave >= 0)
		close(slave);
	return pid;
fail:
	if (slave >= 0)
		close(slave);
	if (*master >= 0)
		close(*master);
	*master = -1;
	return -1;
}

// hold_status is a wait status as a shell reports it: the exit code, or
// 128+N for a process killed by signal N (helper.ExitStatus).
static int hold_status(int ws) { return WIFSIGNALED(ws) ? 128 + WTERMSIG(ws) : WEXITSTATUS(ws); }

// hold_signals handles what signalfd reports: SIGTERM, SIGINT and SIGHUP
// end the hold; SIGCHLD reaps every child that ended (as PID 1 of a
// private PID namespace the hold also reaps the orphans reparented to it),
// and reports the running process's end on conn.
static void hold_signals(int sfd, int conn, pid_t *running) {
	struct signalfd_siginfo si;
	while (read(sfd, &si, sizeof si) == sizeof si) {
		if (si.ssi_signo != SIGCHLD)
			_exit(0);
		int ws;
		pid_t p;
		while ((p = waitpid(-1, &ws, WNOHANG)) > 0) {
			if (p == *running && *running > 0) {
				*running = 0;
				hold_reply_int(conn, "exited", hold_status(ws));
			}
		}
	}
}

// hold_wait waits until fd can be read, handling signals meanwhile
// (hold_signals, with conn and running); with fd -1, until a signal ends
// the hold.
static void hold_wait(int fd, int sfd, int conn, pid_t *running) {
	while (1) {
		struct pollfd p[2] = {{.fd = fd, .events = POLLIN}, {.fd = sfd, .events = POLLIN}};
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			hold_die("wait");
		}
		if (p[1].revents)
			hold_signals(sfd, conn, running);
		if (p[0].revents)
			return;
	}
}

// hold_session_socket is the socket named by the session variable, or -1
// when there is none or it is not a socket.
static int hold_session_socket(void) {
	const char *v = getenv(nixrescue_session_fd_env);
	unsigned long fd;
	struct stat st;
	if (!v || hold_number(v, 1 << 20, &fd) != 0 || fd < 3)
		return -1;
	if (fstat((int)fd, &st) != 0 || !S_ISSOCK(st.st_mode))
		return -1;
	fcntl((int)fd, F_SETFD, FD_CLOEXEC);
	return (int)fd;
}

// hold_accept takes the one connection made at path (nixrescue's, made
// before any program of the target runs: then nobody else can connect),
// then removes the socket.
static int hold_accept(const char *path, int sfd) {
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof addr.sun_path) {
		errno = ENAMETOOLONG;
		hold_die("listen");
	}
	strcpy(addr.sun_path, path);
	int l = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (l < 0 || bind(l, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(l, 1) != 0)
		hold_die("listen");
	pid_t none = 0;
	hold_wait(l, sfd, -1, &none);
	int c = accept4(l, NULL, NULL, SOCK_CLOEXEC);
	if (c < 0)
		hold_die("accept");
	close(l);
	unlink(path);
	return c;
}

// hold_receive reads one request into msg, with at most 3 descriptors
// into fds (any more are closed). It returns the request's length, or -1
// at the end of the connection (nixrescue is done, or dead) or for a
// message nixrescue could not have sent: the session is over then.
static ssize_t hold_receive(int conn, char *msg, int *fds, int *nfds) {
	char cbuf[CMSG_SPACE(3 * sizeof(int))];
	struct iovec iov = {.iov_base = msg, .iov_len = NIXRESCUE_MAX_MESSAGE + 1};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf};
	ssize_t n;
	do
		n = recvmsg(conn, &mh, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	*nfds = 0;
	for (struct cmsghdr *c = n < 0 ? NULL : CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		int k = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
		for (int i = 0; i < k; i++) {
			int fd;
			memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
			if (*nfds < 3)
				fds[(*nfds)++] = fd;
			else
				close(fd);
		}
	}
	if (n <= 0 || (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC))) {
		for (int i = 0; i < *nfds; i++)
			close(fds[i]);
		*nfds = 0;
		return -1;
	}
	return n;
}

// hold_handle answers one request of n bytes, with its descriptors fds:
// a start (one process at a time) or a signal for the running process.
static void hold_handle(int conn, const char *msg, size_t n, int *fds, int nfds, pid_t *running) {
	size_t pos = 0;
	const char *kind = hold_next(msg, n, &pos);
	unsigned long sig;
	if (kind && strcmp(kind, "signal") == 0) {
		if (hold_number(hold_next(msg, n, &pos), 64, &sig) == 0 && sig > 0 && *running > 0)
			kill(*running, (int)sig);
		return;
	}
	if (!kind || strcmp(kind, "start") != 0)
		return;
	if (*running > 0) {
		hold_reply(conn, "error", "a process is running already", -1);
		return;
	}
	struct hold_request r;
	if (hold_parse_start(msg, n, pos, &r) != 0) {
		hold_reply(conn, "error", "bad start request", -1);
		return;
	}
	char err[8192];
	int master, exec_errno;
	pid_t pid = hold_start(&r, fds, nfds, &master, &exec_errno, err, sizeof err);
	free(r.argv);
	free(r.envp);
	if (pid < 0 && exec_errno != 0) {
		hold_reply_int(conn, "noexec", exec_errno);
		return;
	}
	if (pid < 0) {
		hold_reply(conn, "error", err, -1);
		return;
	}
	char buf[32];
	snprintf(buf, sizeof buf, "%ld", (long)pid);
	*running = pid;
	hold_reply(conn, "started", buf, master);
	if (master >= 0)
		close(master);
}

// hold_serve runs what nixrescue asks for until it closes the connection;
// then it kills the running process, if any, and ends the hold.
static void hold_serve(int conn, int sfd) {
	char *msg = malloc(NIXRESCUE_MAX_MESSAGE + 1);
	if (!msg)
		hold_die("allocate");
	pid_t running = 0;
	while (1) {
		hold_wait(conn, sfd, conn, &running);
		int fds[3], nfds;
		ssize_t n = hold_receive(conn, msg, fds, &nfds);
		if (n < 0) {
			if (running > 0)
				kill(running, SIGKILL);
			_exit(0);
		}
		hold_handle(conn, msg, (size_t)n, fds, nfds, &running);
		for (int i = 0; i < nfds; i++)
			close(fds[i]);
	}
}

// nixrescue_hold_main is the hold: argv is "hold" or "hold --listen PATH"
// after the program. It never returns.
void nixrescue_hold_main(int argc, char **argv) {
	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGCHLD);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	if (sigprocmask(SIG_BLOCK, &mask, NULL) != 0)
		hold_die("block signals");
	int sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sfd < 0)
		hold_die("signalfd");
	int conn = hold_session_socket();
	if (conn < 0 && argc == 4 && strcmp(argv[2], "--listen") == 0)
		conn = hold_accept(argv[3], sfd);
	if (conn < 0) {
		// No connection (a bundle run by hand): wait for a signal to go.
		pid_t none = 0;
		hold_wait(-1, sfd, -1, &none);
	}
	hold_serve(conn, sfd);
	_exit(0);
}

// The constructor: the hold is this binary in the hold's role
// (runtime/roles).
__attribute__((constructor)) static void nixrescue_hold_constructor(int argc, char **argv, char **envp) {
	(void)envp;
	if (nixrescue_role(argc, argv) == NIXRESCUE_ROLE_HOLD)
		nixrescue_hold_main(argc, argv);
}

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * How a request reaches the decision engine: a connection to
 * pam-totp-agent where it serves the login, else a pam-totp-check started
 * for this login alone, with the identity the enrollment needs, a session
 * of its own and fixed limits.
 */
#include "pam_totp.h"

/*
 * The checker runs as root, so it must be a file only root can change: the
 * resolved path and every directory above it root-owned and not writable by
 * group or others (a sticky directory such as /tmp is fine).
 */
int checker_is_safe(pam_handle_t *pamh, const char *path, char **resolved)
{
	struct stat st;
	char *p, *slash;

	*resolved = NULL;
	if (path[0] != '/') {
		pam_syslog(pamh, LOG_ERR, "checker %s: not an absolute path", path);
		return PAM_AUTH_ERR;
	}
	p = realpath(path, NULL);
	if (p == NULL) {
		pam_syslog(pamh, LOG_ERR, "checker %s: %m", path);
		return PAM_AUTH_ERR;
	}
	if (stat(p, &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != 0 || (st.st_mode & (S_IWGRP | S_IWOTH)) ||
	    !(st.st_mode & S_IXUSR)) {
		pam_syslog(pamh, LOG_ERR, "checker %s: not an executable root-owned file that only root can write", p);
		free(p);
		return PAM_AUTH_ERR;
	}
	for (slash = strrchr(p, '/'); slash != NULL; slash = memrchr(p, '/', (size_t)(slash - p))) {
		char saved = slash[1];
		int bad;

		slash[1] = '\0';
		bad = stat(p, &st) != 0 || st.st_uid != 0 ||
		      ((st.st_mode & (S_IWGRP | S_IWOTH)) && !(st.st_mode & S_ISVTX));
		slash[1] = saved;
		if (bad) {
			pam_syslog(pamh, LOG_ERR, "checker %s: a directory above it is writable by someone other than root", p);
			free(p);
			return PAM_AUTH_ERR;
		}
		if (slash == p)
			break;
	}
	*resolved = p;
	return PAM_SUCCESS;
}

/*
 * The caller of a setuid host (sudo, su) controls what the host inherits:
 * resource limits, nice value, scheduling and I/O class, working directory,
 * terminal. The checker runs with fixed ones instead. This is defence in
 * depth: the checker records every attempt before it compares a code, so
 * that no limit or signal can make a guess free (docs/security.md). Where
 * a hard limit cannot be raised (no CAP_SYS_RESOURCE, as in some
 * containers), the soft limit is raised to it, and an attempt that then
 * cannot be recorded is refused without a comparison.
 */
static const struct {
	int resource;
	rlim_t value;
} checker_limits[] = {
	{RLIMIT_CPU, RLIM_INFINITY}, /* the module's timeout bounds the run */
	{RLIMIT_FSIZE, RLIM_INFINITY},
	/* Finite: what a hostile directory server sends must not grow the
	 * checker without end (it needs a few MiB; over this it fails closed). */
	{RLIMIT_DATA, 256 << 20},
	{RLIMIT_AS, RLIM_INFINITY},
	{RLIMIT_STACK, 8 << 20},
	{RLIMIT_NPROC, RLIM_INFINITY}, /* Go's threads count as processes */
	{RLIMIT_NOFILE, 1024},
	{RLIMIT_SIGPENDING, 4096},
	{RLIMIT_CORE, 0}, /* never a core file with a secret in it */
	{RLIMIT_RSS, RLIM_INFINITY},
	{RLIMIT_MEMLOCK, 8 << 20},
	{RLIMIT_LOCKS, RLIM_INFINITY},
	{RLIMIT_MSGQUEUE, 819200},
	{RLIMIT_NICE, 0},
	{RLIMIT_RTPRIO, 0},
	{RLIMIT_RTTIME, RLIM_INFINITY},
};

#define IOPRIO_WHO_PROCESS 1

static void fix_limit(int resource, rlim_t value)
{
	struct rlimit l = {value, value};

	if (setrlimit(resource, &l) == 0 || getrlimit(resource, &l) != 0)
		return;
	if (l.rlim_max == RLIM_INFINITY || value < l.rlim_max)
		l.rlim_cur = value;
	else
		l.rlim_cur = l.rlim_max;
	(void)setrlimit(resource, &l);
}

/*
 * In the child, before execve: a session of its own (no controlling
 * terminal, so no Ctrl-C, Ctrl-Z or hangup reaches it), "/" as working
 * directory, the fixed limits, the default priority and scheduling. A root
 * host must manage the session and the priority; a host that is not root
 * crosses no privilege boundary, and gets what it is allowed. Only system
 * calls: we are between clone and execve, in the host's memory.
 */
static int detach_from_caller(void)
{
	const struct sched_param normal = {.sched_priority = 0};
	int root = geteuid() == 0;

	if (setsid() < 0 || chdir("/") != 0)
		return -1;
	for (size_t i = 0; i < sizeof(checker_limits) / sizeof(checker_limits[0]); i++)
		fix_limit(checker_limits[i].resource, checker_limits[i].value);
	if (setpriority(PRIO_PROCESS, 0, 0) != 0 && root)
		return -1;
	/*
	 * Best effort, as some sandboxes refuse them: an idle scheduling or
	 * I/O class can only slow the checker down, and no timing decides
	 * whether a guess is counted.
	 */
	(void)sched_setscheduler(0, SCHED_OTHER, &normal);
	(void)syscall(SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, 0);
	return 0;
}

/* What the child needs between clone and execve: only plain values. */
struct child {
	const char *path;
	const struct identity *id;
	int sock, devnull;
	long maxfd;
};

/*
 * The child, from clone to execve. It shares the host's memory
 * (CLONE_VM) while the host's thread waits, so it writes nothing but its
 * own stack and errno, and makes system calls only. The identity change
 * goes through syscall(): glibc's setresuid would, in a threaded host,
 * ask the host's other threads to change their credentials too.
 */
static int child_main(void *arg)
{
	const struct child *ch = arg;
	char *const args[] = {"pam-totp-check", NULL};
	char *const env[] = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C", NULL};
	sigset_t none;
	int s = fcntl(ch->sock, F_DUPFD, 3), n = fcntl(ch->devnull, F_DUPFD, 3);

	if (s < 0 || n < 0 || dup2(s, 0) < 0 || dup2(n, 1) < 0 || dup2(n, 2) < 0)
		_exit(127);
	if (syscall(SYS_close_range, 3U, ~0U, 0U) != 0)
		for (long fd = 3; fd < ch->maxfd; fd++)
			close((int)fd);
	/* The handler table is the child's own copy (no CLONE_SIGHAND). */
	for (int sig = 1; sig < NSIG; sig++)
		signal(sig, SIG_DFL);
	if (detach_from_caller() != 0)
		_exit(125);
	if (ch->id->change && (syscall(SYS_setgroups, 1, &ch->id->gid) != 0 ||
			       syscall(SYS_setresgid, ch->id->gid, ch->id->gid, ch->id->gid) != 0 ||
			       syscall(SYS_setresuid, ch->id->uid, ch->id->uid, ch->id->uid) != 0))
		_exit(126);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	execve(ch->path, args, env);
	_exit(127);
}

#define CHILD_STACK (64 * 1024)

/*
 * Starts the checker; on success *pid and *sock are its pid and our end of
 * the socket. clone(CLONE_VM | CLONE_VFORK), as glibc's posix_spawn does,
 * instead of fork: copying the host's page tables, and the copy-on-write
 * faults after, cost more than the rest of the module (docs/benchmarks.md).
 * The child runs on a stack of its own with a guard page, and every signal
 * stays blocked until it has reset their handlers, so no handler of the
 * host ever runs in it.
 */
int spawn(pam_handle_t *pamh, const char *path, const struct identity *id, pid_t *pid, int *sock)
{
	struct child ch = {.path = path, .id = id};
	sigset_t all, saved;
	int sv[2], err;
	char *stack;

	ch.maxfd = sysconf(_SC_OPEN_MAX);
	if (ch.maxfd < 0 || ch.maxfd > 65536)
		ch.maxfd = 65536;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
		pam_syslog(pamh, LOG_ERR, "socketpair: %m");
		return PAM_SYSTEM_ERR;
	}
	ch.sock = sv[1];
	ch.devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
	stack = mmap(NULL, CHILD_STACK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
	if (ch.devnull < 0 || stack == MAP_FAILED || mprotect(stack, 4096, PROT_NONE) != 0) {
		pam_syslog(pamh, LOG_ERR, "preparing to start the checker: %m");
		if (stack != MAP_FAILED)
			munmap(stack, CHILD_STACK);
		if (ch.devnull >= 0)
			close(ch.devnull);
		close(sv[0]);
		close(sv[1]);
		return PAM_SYSTEM_ERR;
	}
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &saved);
	*pid = clone(child_main, stack + CHILD_STACK, CLONE_VM | CLONE_VFORK | SIGCHLD, &ch);
	err = errno;
	pthread_sigmask(SIG_SETMASK, &saved, NULL);
	munmap(stack, CHILD_STACK);
	close(sv[1]);
	close(ch.devnull);
	if (*pid < 0) {
		errno = err;
		pam_syslog(pamh, LOG_ERR, "clone: %m");
		close(sv[0]);
		return PAM_SYSTEM_ERR;
	}
	*sock = sv[0];
	return PAM_SUCCESS;
}

/* EOF on the socket means the checker has exited or is exiting. Returns 1 on EOF. */
static int wait_eof(int fd, long long deadline)
{
	for (;;) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		long long left = deadline - now_ms();
		char c;
		ssize_t r;

		if (left <= 0)
			return 0;
		r = poll(&pfd, 1, (int)left);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return 0;
		r = read(fd, &c, 1);
		if (r < 0 && errno == EINTR)
			continue;
		return r == 0;
	}
}

/*
 * Waits for our own child only. The checker exits right after its verdict;
 * one that lingers, or that failed, is killed. Returns PAM_SUCCESS if it
 * exited 0, or if the host reaped it first (then the verdict stands on its
 * own), and PAM_AUTH_ERR otherwise.
 */
int reap(pam_handle_t *pamh, int sock, pid_t pid, int kill_now)
{
	int status = 0;
	pid_t r;

	if (!kill_now && !wait_eof(sock, now_ms() + EXIT_GRACE_MS)) {
		pam_syslog(pamh, LOG_ERR, "checker did not exit after its verdict");
		kill_now = 1;
	}
	close(sock);
	if (kill_now)
		kill(pid, SIGKILL);
	do
		r = waitpid(pid, &status, 0);
	while (r < 0 && errno == EINTR);
	if (r < 0)
		return errno == ECHILD ? PAM_SUCCESS : PAM_AUTH_ERR;
	if (WIFSIGNALED(status) && !kill_now) {
		pam_syslog(pamh, LOG_ERR, "checker was killed by signal %d", WTERMSIG(status));
		return PAM_AUTH_ERR;
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) != 0 && !kill_now) {
		pam_syslog(pamh, LOG_ERR, "checker exited with status %d", WEXITSTATUS(status));
		return PAM_AUTH_ERR;
	}
	return kill_now ? PAM_AUTH_ERR : PAM_SUCCESS;
}


/*
 * Connects to pam-totp-agent at path. PAM_SUCCESS with *sock connected to
 * an agent running as root; PAM_IGNORE when there is none to use, and the
 * module starts the checker: no socket (no systemd, agent=off elsewhere),
 * a refused or full one (the backlog: connect does not wait), or one that
 * is not root's. The peer's credentials are what counts: a socket file
 * can be replaced where its directory allows, a listener's uid cannot.
 */
int agent_connect(pam_handle_t *pamh, const char *path, int *sock)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct ucred cred;
	socklen_t len = sizeof(cred);
	struct stat st;
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path) || lstat(path, &st) != 0)
		return PAM_IGNORE;
	if (!S_ISSOCK(st.st_mode) || st.st_uid != 0 || (st.st_mode & (S_IWGRP | S_IWOTH))) {
		pam_syslog(pamh, LOG_WARNING, "agent %s: not a socket that only root can use: not used", path);
		return PAM_IGNORE;
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return PAM_IGNORE;
	if (connect(fd, (const struct sockaddr *)&sa, sizeof(sa)) != 0) {
		close(fd);
		return PAM_IGNORE;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || len != sizeof(cred) || cred.uid != 0) {
		pam_syslog(pamh, LOG_WARNING, "agent %s: the process listening is not root's: not used", path);
		close(fd);
		return PAM_IGNORE;
	}
	/* Blocking again: every read polls with a deadline, and frames are small. */
	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) != 0) {
		close(fd);
		return PAM_IGNORE;
	}
	*sock = fd;
	return PAM_SUCCESS;
}

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * pam_totp.so: a TOTP second factor.
 *
 * This module does no checking itself. For each pam_sm_authenticate it
 * starts pam-totp-check (a Go program) with clone + execve, a clean
 * environment and one socketpair, relays the checker's prompts to the
 * application's conversation function, and returns the checker's verdict.
 * A Go runtime inside sshd would hang logins (docs/architecture.md), so no
 * Go code is ever loaded into the host process.
 *
 * It fails closed: a missing, crashing, silent or garbled checker gives
 * PAM_AUTH_ERR and one syslog line, never success and never a hang. The
 * wire format is docs/protocol.md; internal/protocol is the other side.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <pwd.h>
#include <sched.h>
#include <shadow.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#define PAM_SM_AUTH
#include <security/pam_ext.h>
#include <security/pam_modules.h>
#include <security/pam_modutil.h>

#ifndef CHECKER_PATH
#define CHECKER_PATH "/usr/libexec/pam-totp/pam-totp-check"
#endif

#define PROTO_VERSION "1"

/*
 * Frame types: internal/protocol's Type constants, by the same names.
 * TestFrameTypesAgreeWithTheModule compares the two lists.
 */
enum frame_type {
	FRAME_REQUEST = 'Q',
	FRAME_ANSWER = 'A',
	FRAME_CONV_FAILED = 'X',
	FRAME_PROMPT_ECHO_OFF = 'P',
	FRAME_PROMPT_ECHO_ON = 'E',
	FRAME_INFO = 'I',
	FRAME_ERROR = 'R',
	FRAME_SET_AUTHTOK = 'T',
	FRAME_PENDING = 'N',
	FRAME_VERDICT = 'V',
};
#define MAX_PAYLOAD 8192     /* any frame, both directions */
#define MAX_ANSWER 512       /* PAM_MAX_RESP_SIZE */
#define MAX_FRAMES 64        /* frames per authentication */
#define DEFAULT_TIMEOUT 10   /* seconds the checker may take between two prompts */
#define EXIT_GRACE_MS 2000   /* time the checker has to exit after its verdict */
#define FAIL_DELAY_US 2000000

/* With directory= the module starts the checker's sibling that has the directory's code. */
#define DIRECTORY_CHECKER_SUFFIX "-directory"

struct config {
	const char *checker;
	char directory_checker[PATH_MAX];
	int timeout_ms;
	int want_authtok;
	int nodelay;
	int silent; /* PAM_SILENT: no info or error messages */
	int secret_as_user; /* secret= names a file the user owns (the default: in the home) */
	const char *run_as; /* user=: the account that owns the secret files, or NULL */
	int directory;      /* directory=: the enrollments are in the directory, which only root may reach */
	const char *require_group; /* only its members are asked for a code */
	const char *exempt_group;  /* its members are never asked */
	/* The checker's own prompt, which the module shows itself when the password was refused. */
	const char *prompt;
	int echo_code;
	int code_in_password; /* forward_pass, use_first_pass, try_first_pass: the password carries the code */
};

/* Who the checker runs as: set in the child before execve. */
struct identity {
	uid_t uid;
	gid_t gid;
	int change; /* 0: keep the host's credentials */
};

struct buf {
	char data[MAX_PAYLOAD];
	size_t len;
};

static int parse_config(pam_handle_t *pamh, int flags, int argc, const char **argv, struct config *c)
{
	c->silent = (flags & PAM_SILENT) != 0;
	c->checker = CHECKER_PATH;
	c->timeout_ms = DEFAULT_TIMEOUT * 1000;
	c->want_authtok = 0;
	c->nodelay = 0;
	c->secret_as_user = 1;
	c->run_as = NULL;
	c->directory = 0;
	c->require_group = NULL;
	c->exempt_group = NULL;
	c->prompt = "Verification code: ";
	c->echo_code = 0;
	c->code_in_password = 0;
	for (int i = 0; i < argc; i++) {
		if (strncmp(argv[i], "checker=", 8) == 0) {
			c->checker = argv[i] + 8;
		} else if (strncmp(argv[i], "timeout=", 8) == 0) {
			char *end = NULL;
			long t;
			errno = 0;
			t = strtol(argv[i] + 8, &end, 10);
			if (errno != 0 || end == argv[i] + 8 || *end != '\0' || t < 1 || t > 300) {
				pam_syslog(pamh, LOG_ERR, "bad option %s: want timeout=1..300", argv[i]);
				return PAM_AUTH_ERR;
			}
			c->timeout_ms = (int)t * 1000;
		} else if (strcmp(argv[i], "use_first_pass") == 0 || strcmp(argv[i], "try_first_pass") == 0) {
			c->want_authtok = 1;
			c->code_in_password = 1;
		} else if (strcmp(argv[i], "enroll=login") == 0) {
			/* enroll=login only checks that an earlier module set one */
			c->want_authtok = 1;
		} else if (strcmp(argv[i], "forward_pass") == 0) {
			c->code_in_password = 1;
		} else if (strncmp(argv[i], "prompt=", 7) == 0 && argv[i][7] != '\0') {
			c->prompt = argv[i] + 7;
		} else if (strncmp(argv[i], "authtok_prompt=", 15) == 0 && argv[i][15] != '\0') {
			c->prompt = argv[i] + 15;
		} else if (strcmp(argv[i], "echo_code") == 0 || strcmp(argv[i], "echo_verification_code") == 0) {
			c->echo_code = 1;
		} else if (strcmp(argv[i], "nodelay") == 0) {
			c->nodelay = 1;
		} else if (strncmp(argv[i], "secret=", 7) == 0) {
			/* The same rule as internal/options.Access (TestOwnerRuleAgrees); the last one counts. */
			const char *t = argv[i] + 7;
			c->secret_as_user = t[0] == '~' || strncmp(t, "%h", 2) == 0 || strncmp(t, "${HOME}", 7) == 0 ||
					    strstr(t, "${USER}") != NULL;
		} else if (strncmp(argv[i], "user=", 5) == 0) {
			if (argv[i][5] == '\0') {
				pam_syslog(pamh, LOG_ERR, "bad option %s: want user=NAME or user=UID", argv[i]);
				return PAM_AUTH_ERR;
			}
			c->run_as = argv[i] + 5;
		} else if (strncmp(argv[i], "directory=", 10) == 0) {
			c->directory = 1;
		} else if (strncmp(argv[i], "require_group=", 14) == 0) {
			c->require_group = argv[i] + 14;
		} else if (strncmp(argv[i], "exempt_group=", 13) == 0) {
			c->exempt_group = argv[i] + 13;
		}
		/* Every other option is the checker's to accept or refuse. */
	}
	if (c->directory) {
		int n = snprintf(c->directory_checker, sizeof(c->directory_checker), "%s%s", c->checker,
				 DIRECTORY_CHECKER_SUFFIX);

		if (n < 0 || (size_t)n >= sizeof(c->directory_checker)) {
			pam_syslog(pamh, LOG_ERR, "checker=%s: path too long", c->checker);
			return PAM_AUTH_ERR;
		}
		c->checker = c->directory_checker;
	}
	return PAM_SUCCESS;
}

/*
 * The checker runs as root, so it must be a file only root can change: the
 * resolved path and every directory above it root-owned and not writable by
 * group or others (a sticky directory such as /tmp is fine).
 */
static int checker_is_safe(pam_handle_t *pamh, const char *path, char **resolved)
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

static int add_field(struct buf *b, const char *key, const char *val)
{
	size_t kl = strlen(key), vl = strlen(val ? val : "");

	if (b->len + kl + 1 + vl + 1 > sizeof(b->data))
		return -1;
	memcpy(b->data + b->len, key, kl);
	b->data[b->len + kl] = '=';
	memcpy(b->data + b->len + kl + 1, val ? val : "", vl);
	b->data[b->len + kl + 1 + vl] = '\0';
	b->len += kl + 1 + vl + 1;
	return 0;
}

static const char *item(pam_handle_t *pamh, int type)
{
	const void *v = NULL;

	if (pam_get_item(pamh, type, &v) != PAM_SUCCESS)
		return NULL;
	return v;
}

/*
 * The checker never holds more privilege than the file it reads needs: as
 * the account named by user= if given, else as the user for a secret the
 * user owns, else as root for the system store and for the directory (all
 * ids, so that a sudo caller cannot signal it). An unknown user's checker
 * reads no file and keeps the host's credentials.
 */
static int choose_identity(pam_handle_t *pamh, const struct config *c, const struct passwd *pw, struct identity *id)
{
	id->change = pw != NULL && geteuid() == 0;
	id->uid = 0;
	id->gid = 0;
	if (!id->change || c->directory)
		return PAM_SUCCESS; /* root: the host's key to the directory is root's */
	if (c->run_as != NULL) {
		const struct passwd *as;
		char *end = NULL;
		unsigned long n;

		errno = 0;
		n = strtoul(c->run_as, &end, 10);
		if (c->run_as[0] >= '0' && c->run_as[0] <= '9' && errno == 0 && *end == '\0' && n <= UINT_MAX)
			as = pam_modutil_getpwuid(pamh, (uid_t)n);
		else
			as = pam_modutil_getpwnam(pamh, c->run_as);
		if (as == NULL) {
			pam_syslog(pamh, LOG_ERR, "option user=%s: no such account", c->run_as);
			return PAM_AUTH_ERR;
		}
		id->uid = as->pw_uid;
		id->gid = as->pw_gid;
	} else if (c->secret_as_user) {
		id->uid = pw->pw_uid;
		id->gid = pw->pw_gid;
	}
	return PAM_SUCCESS;
}

/* A hash that some password matches: not empty, not locked ("!"), not "*" or "x". */
static int usable_hash(const char *h)
{
	return h != NULL && h[0] != '\0' && h[0] != '!' && h[0] != '*' && strcmp(h, "x") != 0;
}

/* A local account file, opened without following a link. */
static FILE *open_local(const char *path)
{
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	FILE *f;

	if (fd < 0)
		return NULL;
	f = fdopen(fd, "r");
	if (f == NULL)
		close(fd);
	return f;
}

/*
 * Whether pam_unix decides this account's password: the account is in the
 * local /etc/passwd under the name and uid NSS gave, and its hash there or
 * in /etc/shadow is one a password can match. The files are read directly,
 * never through NSS, whose sss or ldap sources know accounts pam_unix
 * cannot check. Where the files cannot be read (a host not running as
 * root) the answer is no: the checker then decides, as for any account.
 */
static int unix_holds_password(const struct passwd *pw)
{
	struct passwd local, *lp = NULL;
	struct spwd sp, *spp = NULL;
	char buf[4096];
	int found = 0, usable = 0;
	FILE *f;

	if (pw == NULL || (f = open_local("/etc/passwd")) == NULL)
		return 0;
	while (fgetpwent_r(f, &local, buf, sizeof(buf), &lp) == 0 && lp != NULL) {
		if (strcmp(lp->pw_name, pw->pw_name) == 0) {
			found = lp->pw_uid == pw->pw_uid;
			usable = found && usable_hash(lp->pw_passwd);
			break;
		}
	}
	fclose(f);
	if (!found || usable)
		return usable;
	if ((f = open_local("/etc/shadow")) == NULL)
		return 0;
	while (fgetspent_r(f, &sp, buf, sizeof(buf), &spp) == 0 && spp != NULL) {
		if (strcmp(spp->sp_namp, pw->pw_name) == 0) {
			usable = usable_hash(spp->sp_pwdp);
			break;
		}
	}
	explicit_bzero(buf, sizeof(buf));
	fclose(f);
	return usable;
}

/*
 * pam_unix records its verdict for its own pam_sm_setcred as module data.
 * When it ran before us in this pass of the stack and refused the
 * password, the login fails whatever the code: the module then shows the
 * code prompt itself and starts no checker, so a wrong password never runs
 * code as the account named, never compares or counts a code (an attacker
 * without the password cannot lock the owner out) and never enrolls.
 *
 * The record is from this pass only if pam_unix ran before us in it. libpam
 * clears PAM_AUTHTOK when each pam_authenticate starts, and pam_unix sets it
 * when it reads the password, so a record without PAM_AUTHTOK is from an
 * earlier pass in which pam_unix ran after us (sudo's second try). A record
 * we saw at our previous run on this handle is stale too: pam_unix
 * allocates a new one each time it runs. Without a fresh record nothing is
 * assumed.
 *
 * pam_unix refuses every account it cannot check, and a stack may go on to
 * a module that can (pam_sss, pam_ldap, pam_winbind, pam_krb5: the common-auth
 * pam-auth-update writes for sssd). So its refusal counts only for an
 * account whose password pam_unix itself holds: see unix_holds_password.
 */
#define SEEN_UNIX_DATA "pam_totp_seen_unix_verdict"

static int password_failed(pam_handle_t *pamh, const struct passwd *pw)
{
	const void *ret = NULL, *seen = NULL;

	if (pam_get_data(pamh, "unix_setcred_return", &ret) != PAM_SUCCESS || ret == NULL)
		return 0;
	if (pam_get_data(pamh, SEEN_UNIX_DATA, &seen) == PAM_SUCCESS && seen == ret)
		return 0;
	/* Only the address is kept, to compare; it is never followed. */
	if (pam_set_data(pamh, SEEN_UNIX_DATA, (void *)ret, NULL) != PAM_SUCCESS)
		return 0;
	if (item(pamh, PAM_AUTHTOK) == NULL)
		return 0;
	return *(const int *)ret != PAM_SUCCESS && unix_holds_password(pw);
}

/*
 * The same prompt as the checker's, answered and thrown away: what the
 * user sees must not tell that the password was wrong. The log names the
 * account (an admin's name from the passwd database), not what was typed,
 * which could be anything.
 */
static int refuse_after_prompt(pam_handle_t *pamh, const struct config *c, const struct passwd *pw)
{
	char *resp = NULL;

	if (pam_prompt(pamh, c->echo_code ? PAM_PROMPT_ECHO_ON : PAM_PROMPT_ECHO_OFF, &resp, "%s", c->prompt) ==
		    PAM_SUCCESS &&
	    resp != NULL)
		explicit_bzero(resp, strlen(resp));
	free(resp);
	pam_syslog(pamh, LOG_NOTICE,
		   "user=%s outcome=fail reason=\"the password was refused earlier in the stack; no checker started\"",
		   pw != NULL ? pw->pw_name : "(unknown)");
	return PAM_AUTH_ERR;
}

/*
 * The enrollment is the account's, never the spelling typed: where NSS
 * matches names without regard to case or takes aliases (sssd with
 * case_sensitive = false, winbind, user@domain), "ALICE" is alice's
 * account, and must find alice's enrollment, not a file of its own. So the
 * checker gets the name the lookup resolved, and the typed one for its log.
 */
static int build_request(pam_handle_t *pamh, const struct config *c, const char *typed, const struct passwd *pw,
			 const char *activate, int argc, const char **argv, struct buf *b, struct identity *id)
{
	char num[32];
	int rc = 0;

	if (choose_identity(pamh, c, pw, id) != PAM_SUCCESS)
		return PAM_AUTH_ERR;
	b->len = 0;
	rc |= add_field(b, "v", PROTO_VERSION);
	rc |= add_field(b, "user", pw != NULL ? pw->pw_name : typed);
	if (pw != NULL && strcmp(pw->pw_name, typed) != 0)
		rc |= add_field(b, "typed", typed);
	if (pw != NULL) {
		snprintf(num, sizeof(num), "%lu", (unsigned long)pw->pw_uid);
		rc |= add_field(b, "uid", num);
		snprintf(num, sizeof(num), "%lu", (unsigned long)pw->pw_gid);
		rc |= add_field(b, "gid", num);
		rc |= add_field(b, "home", pw->pw_dir);
	}
	rc |= add_field(b, "service", item(pamh, PAM_SERVICE));
	rc |= add_field(b, "rhost", item(pamh, PAM_RHOST));
	rc |= add_field(b, "tty", item(pamh, PAM_TTY));
	rc |= add_field(b, "ruser", item(pamh, PAM_RUSER));
	if (c->want_authtok && item(pamh, PAM_AUTHTOK) != NULL)
		rc |= add_field(b, "authtok", item(pamh, PAM_AUTHTOK));
	if (activate != NULL)
		rc |= add_field(b, "activate", activate);
	if (c->silent)
		rc |= add_field(b, "silent", "1");
	for (int i = 0; i < argc; i++)
		rc |= add_field(b, "opt", argv[i]);
	if (rc != 0) {
		pam_syslog(pamh, LOG_ERR, "request for the checker too large (options or items too long)");
		return PAM_BUF_ERR;
	}
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
static int spawn(pam_handle_t *pamh, const char *path, const struct identity *id, pid_t *pid, int *sock)
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

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Reads exactly n bytes before the deadline. 0 on success, -1 otherwise. */
static int read_full(int fd, char *p, size_t n, long long deadline)
{
	while (n > 0) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		long long left = deadline - now_ms();
		ssize_t r;

		if (left <= 0)
			return -1;
		r = poll(&pfd, 1, left > INT_MAX ? INT_MAX : (int)left);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		r = read(fd, p, n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

static int send_frame(int fd, enum frame_type type, const char *payload, size_t len)
{
	unsigned char hdr[3] = {(unsigned char)type, (unsigned char)(len >> 8), (unsigned char)(len & 0xff)};
	struct iovec iov[2] = {{hdr, sizeof(hdr)}, {(void *)payload, len}};
	struct msghdr msg = {.msg_iov = iov, .msg_iovlen = 2};
	size_t total = sizeof(hdr) + len;
	ssize_t w;

	if (len > MAX_PAYLOAD)
		return -1;
	/* MSG_NOSIGNAL: a dead checker must not raise SIGPIPE in the host. */
	do
		w = sendmsg(fd, &msg, MSG_NOSIGNAL);
	while (w < 0 && errno == EINTR);
	/* The payload is small against the socket buffer: a short write means trouble. */
	return w == (ssize_t)total ? 0 : -1;
}

/* Relays one prompt; the user's typing does not count against the timeout. */
static int relay_prompt(pam_handle_t *pamh, int sock, int style, const char *text)
{
	char *resp = NULL;
	int rc = pam_prompt(pamh, style, &resp, "%s", text);

	if (rc != PAM_SUCCESS || resp == NULL) {
		free(resp);
		return send_frame(sock, FRAME_CONV_FAILED, NULL, 0);
	}
	/* A longer answer is cut to one byte over the limit, so the checker sees it as too long. */
	size_t len = strnlen(resp, MAX_ANSWER + 1);
	rc = send_frame(sock, FRAME_ANSWER, resp, len);
	explicit_bzero(resp, len);
	free(resp);
	return rc;
}

/*
 * An enrollment made at this login waits under a random name until the
 * login succeeds as a whole; pam_sm_setcred activates it. The name goes
 * into the PAM environment, which sshd carries from its authentication
 * child to the process that calls pam_setcred (module data would not be).
 */
#define PENDING_ENV "PAM_TOTP_ENROLL"
#define MAX_PENDING 64
/* Module data: the pending name our authentication received, and that pam_setcred has run. */
#define PENDING_DATA "pam_totp_pending"
#define SETCRED_DATA "pam_totp_setcred_done"

static void free_data(pam_handle_t *pamh, void *data, int status)
{
	(void)pamh;
	(void)status;
	free(data);
}

static int valid_pending(const char *p, size_t len)
{
	if (len < 32 || len > MAX_PENDING)
		return 0;
	for (size_t i = 0; i < len; i++)
		if (!((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'a' && p[i] <= 'f')))
			return 0;
	return 1;
}

static int set_pending(pam_handle_t *pamh, const char *name, size_t len)
{
	char env[sizeof(PENDING_ENV) + 1 + MAX_PENDING];
	char *copy;

	if (!valid_pending(name, len) || pam_getenv(pamh, PENDING_ENV) != NULL) {
		pam_syslog(pamh, LOG_ERR, "checker sent a bad or second pending enrollment");
		return -1;
	}
	snprintf(env, sizeof(env), "%s=%.*s", PENDING_ENV, (int)len, name);
	if (pam_putenv(pamh, env) != PAM_SUCCESS) {
		pam_syslog(pamh, LOG_ERR, "cannot keep the pending enrollment in the PAM environment");
		return -1;
	}
	/* The copy a host that authenticates in this process keeps, to tell our name from a foreign one. */
	copy = strndup(name, len);
	if (copy == NULL || pam_set_data(pamh, PENDING_DATA, copy, free_data) != PAM_SUCCESS) {
		free(copy);
		pam_syslog(pamh, LOG_ERR, "cannot keep the pending enrollment's name");
		return -1;
	}
	return 0;
}

/*
 * Runs the conversation; returns the checker's verdict (PAM_SUCCESS,
 * PAM_AUTH_ERR, PAM_IGNORE), or PAM_SYSTEM_ERR when the checker broke the
 * protocol.
 */
static int converse(pam_handle_t *pamh, int sock, const struct config *c, int *set_authtok)
{
	struct buf in;

	for (int frames = 0; frames < MAX_FRAMES; frames++) {
		unsigned char hdr[3];
		char type;

		if (read_full(sock, (char *)hdr, sizeof(hdr), now_ms() + c->timeout_ms) != 0) {
			pam_syslog(pamh, LOG_ERR, "checker gave no answer in time or closed the connection");
			return PAM_SYSTEM_ERR;
		}
		type = (char)hdr[0];
		in.len = ((size_t)hdr[1] << 8) | hdr[2];
		if (in.len > MAX_PAYLOAD - 1 ||
		    read_full(sock, in.data, in.len, now_ms() + c->timeout_ms) != 0) {
			pam_syslog(pamh, LOG_ERR, "checker sent an oversized or truncated frame");
			return PAM_SYSTEM_ERR;
		}
		in.data[in.len] = '\0';
		if (memchr(in.data, '\0', in.len) != NULL) {
			pam_syslog(pamh, LOG_ERR, "checker sent a NUL byte in a text frame");
			return PAM_SYSTEM_ERR;
		}
		switch (type) {
		case FRAME_PROMPT_ECHO_OFF:
		case FRAME_PROMPT_ECHO_ON:
			if (relay_prompt(pamh, sock, type == FRAME_PROMPT_ECHO_OFF ? PAM_PROMPT_ECHO_OFF : PAM_PROMPT_ECHO_ON,
					 in.data) != 0) {
				pam_syslog(pamh, LOG_ERR, "checker went away during the conversation");
				return PAM_SYSTEM_ERR;
			}
			break;
		case FRAME_INFO:
			if (!c->silent)
				pam_info(pamh, "%s", in.data);
			break;
		case FRAME_ERROR:
			if (!c->silent)
				pam_error(pamh, "%s", in.data);
			break;
		case FRAME_SET_AUTHTOK:
			if (*set_authtok || pam_set_item(pamh, PAM_AUTHTOK, in.data) != PAM_SUCCESS) {
				explicit_bzero(in.data, in.len);
				pam_syslog(pamh, LOG_ERR, "cannot set PAM_AUTHTOK from checker");
				return PAM_SYSTEM_ERR;
			}
			*set_authtok = 1;
			explicit_bzero(in.data, in.len);
			break;
		case FRAME_PENDING:
			if (set_pending(pamh, in.data, in.len) != 0)
				return PAM_SYSTEM_ERR;
			break;
		case FRAME_VERDICT:
			if (in.len == 1 && in.data[0] == 'S')
				return PAM_SUCCESS;
			if (in.len == 1 && in.data[0] == 'F')
				return PAM_AUTH_ERR;
			if (in.len == 1 && in.data[0] == 'I')
				return PAM_IGNORE;
			pam_syslog(pamh, LOG_ERR, "checker sent an unknown verdict");
			return PAM_SYSTEM_ERR;
		default:
			pam_syslog(pamh, LOG_ERR, "checker sent an unknown frame type 0x%02x", hdr[0]);
			return PAM_SYSTEM_ERR;
		}
	}
	pam_syslog(pamh, LOG_ERR, "checker sent too many frames");
	return PAM_SYSTEM_ERR;
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
static int reap(pam_handle_t *pamh, int sock, pid_t pid, int kill_now)
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
 * Group policies are decided here, with the host's NSS, before any checker
 * is started: a user they exempt gets PAM_IGNORE without a prompt. Returns
 * PAM_SUCCESS to ask for a code, PAM_IGNORE, or PAM_AUTH_ERR on a
 * configuration error.
 */
static int group_policy(pam_handle_t *pamh, const struct config *c, const char *user)
{
	const char *groups[2] = {c->exempt_group, c->require_group};

	for (int i = 0; i < 2; i++) {
		if (groups[i] != NULL && pam_modutil_getgrnam(pamh, groups[i]) == NULL) {
			pam_syslog(pamh, LOG_ERR, "option %s=%s: no such group", i == 0 ? "exempt_group" : "require_group",
				   groups[i]);
			return PAM_AUTH_ERR;
		}
	}
	if (c->exempt_group != NULL && pam_modutil_user_in_group_nam_nam(pamh, user, c->exempt_group)) {
		pam_syslog(pamh, LOG_INFO, "user %s is in exempt_group %s: not asked for a code", user, c->exempt_group);
		return PAM_IGNORE;
	}
	if (c->require_group != NULL && !pam_modutil_user_in_group_nam_nam(pamh, user, c->require_group)) {
		pam_syslog(pamh, LOG_INFO, "user %s is not in require_group %s: not asked for a code", user,
			   c->require_group);
		return PAM_IGNORE;
	}
	return PAM_SUCCESS;
}

/*
 * Starts the checker for user, runs its conversation and returns its
 * verdict: PAM_SUCCESS, PAM_IGNORE or PAM_AUTH_ERR. activate is NULL for an
 * authentication, or the pending enrollment pam_sm_setcred activates.
 */
static int run_checker(pam_handle_t *pamh, const struct config *c, const char *user, const struct passwd *pw,
		       const char *activate, int argc, const char **argv)
{
	struct buf req = {.len = 0};
	struct identity id;
	char *checker = NULL;
	int sock = -1, set_authtok = 0, rc;
	pid_t pid;

	rc = checker_is_safe(pamh, c->checker, &checker);
	if (rc == PAM_SUCCESS)
		rc = build_request(pamh, c, user, pw, activate, argc, argv, &req, &id);
	if (rc == PAM_SUCCESS)
		rc = spawn(pamh, checker, &id, &pid, &sock);
	if (rc != PAM_SUCCESS)
		goto out;
	if (send_frame(sock, FRAME_REQUEST, req.data, req.len) != 0) {
		pam_syslog(pamh, LOG_ERR, "cannot send the request to the checker");
		rc = PAM_SYSTEM_ERR;
	} else {
		rc = converse(pamh, sock, c, &set_authtok);
	}
	/* A verdict stands only if the checker also exited cleanly. */
	if (reap(pamh, sock, pid, rc == PAM_SYSTEM_ERR) != PAM_SUCCESS)
		rc = PAM_AUTH_ERR;
out:
	/* The request may hold PAM_AUTHTOK. */
	explicit_bzero(req.data, sizeof(req.data));
	free(checker);
	/* Whatever went wrong, the module fails closed. */
	return rc == PAM_SUCCESS || rc == PAM_IGNORE ? rc : PAM_AUTH_ERR;
}

PAM_EXTERN int pam_sm_authenticate(pam_handle_t *pamh, int flags, int argc, const char **argv)
{
	struct config c;
	const struct passwd *pw;
	const char *user = NULL;
	int rc;

	if (parse_config(pamh, flags, argc, argv, &c) != PAM_SUCCESS)
		return PAM_AUTH_ERR;
	if (!c.nodelay)
		pam_fail_delay(pamh, FAIL_DELAY_US);
	if (pam_get_user(pamh, &user, NULL) != PAM_SUCCESS || user == NULL || user[0] == '\0') {
		pam_syslog(pamh, LOG_ERR, "cannot get the user name");
		return PAM_AUTH_ERR;
	}
	/* A pending enrollment of an earlier, failed attempt on this handle is void. */
	if (pam_getenv(pamh, PENDING_ENV) != NULL)
		pam_putenv(pamh, PENDING_ENV);
	pam_set_data(pamh, PENDING_DATA, NULL, NULL);
	pam_set_data(pamh, SETCRED_DATA, NULL, NULL);
	pw = pam_modutil_getpwnam(pamh, user);
	rc = group_policy(pamh, &c, pw != NULL ? pw->pw_name : user);
	if (rc != PAM_SUCCESS)
		return rc;
	if (!c.code_in_password && password_failed(pamh, pw))
		return refuse_after_prompt(pamh, &c, pw);
	return run_checker(pamh, &c, user, pw, NULL, argc, argv);
}

/*
 * Hosts call pam_setcred only after the whole authentication stack has
 * succeeded: the moment to activate an enrollment made at this login
 * (enroll=login). Without one there is nothing to do.
 *
 * Only a name this module made is acted on. The PAM environment also takes
 * what pam_env reads from a user's ~/.pam_environment, and sshd calls
 * pam_setcred again after the session has opened. So the first pam_setcred
 * on a handle after our authentication is the only one that activates, and
 * where our authentication ran in this process (su, sudo, login) the name
 * must also be the one it received. A foreign value is logged, removed and
 * ignored: it never fails the login.
 */
PAM_EXTERN int pam_sm_setcred(pam_handle_t *pamh, int flags, int argc, const char **argv)
{
	static const char done = 1;
	struct config c;
	const struct passwd *pw;
	const char *pending, *user = NULL;
	const void *ours = NULL, *seen = NULL;
	char name[MAX_PENDING + 1];
	int rc;

	pending = pam_getenv(pamh, PENDING_ENV);
	if (pam_get_data(pamh, SETCRED_DATA, &seen) != PAM_SUCCESS)
		seen = NULL;
	if (pam_get_data(pamh, PENDING_DATA, &ours) != PAM_SUCCESS)
		ours = NULL;
	pam_set_data(pamh, SETCRED_DATA, (void *)&done, NULL);
	if (pending == NULL)
		return PAM_SUCCESS;
	if (seen != NULL || !valid_pending(pending, strlen(pending)) || (ours != NULL && strcmp(ours, pending) != 0)) {
		pam_syslog(pamh, LOG_WARNING, "%s in the PAM environment was not set by this login's authentication: ignored",
			   PENDING_ENV);
		pam_putenv(pamh, PENDING_ENV);
		return PAM_SUCCESS;
	}
	memcpy(name, pending, strlen(pending) + 1);
	/* Used once, and never seen by the session. */
	pam_putenv(pamh, PENDING_ENV);
	pam_set_data(pamh, PENDING_DATA, NULL, NULL);
	if (flags & PAM_DELETE_CRED)
		return PAM_SUCCESS;
	if (parse_config(pamh, flags, argc, argv, &c) != PAM_SUCCESS ||
	    pam_get_user(pamh, &user, NULL) != PAM_SUCCESS || user == NULL || user[0] == '\0')
		return PAM_CRED_ERR;
	pw = pam_modutil_getpwnam(pamh, user);
	rc = run_checker(pamh, &c, user, pw, name, argc, argv);
	return rc == PAM_SUCCESS ? PAM_SUCCESS : PAM_CRED_ERR;
}

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * pam_totp.so's shared declarations. The module is four files, one role
 * each, as Linux-PAM's larger modules are split:
 *   pam_totp.c   the PAM entry points: who is asked, the request, the verdict
 *   options.c    the module's own options (the checker parses every option)
 *   transport.c  how the request reaches the decision engine: a connected
 *                pam-totp-agent, or a pam-totp-check started per login
 *   relay.c      the frames of docs/protocol.md, relayed to the application
 */
#ifndef PAM_TOTP_H
#define PAM_TOTP_H

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
#include <sys/un.h>
#include <sys/wait.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#define PAM_SM_AUTH
#include <security/pam_ext.h>
#include <security/pam_modules.h>
#include <security/pam_modutil.h>

/* Only the PAM entry points leave the module (-fvisibility=hidden). */
#define PAM_TOTP_EXPORT __attribute__((visibility("default")))

#ifndef CHECKER_PATH
#define CHECKER_PATH "/usr/libexec/pam-totp/pam-totp-check"
#endif
#ifndef AGENT_PATH
#define AGENT_PATH "/run/pam-totp/agent.sock"
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
	FRAME_DECLINE = 'D',
};
#define MAX_PAYLOAD 8192     /* any frame, both directions */
#define MAX_ANSWER 512       /* PAM_MAX_RESP_SIZE */
#define MAX_FRAMES 64        /* frames per authentication */
#define DEFAULT_TIMEOUT 10   /* seconds the checker may take between two prompts */
#define EXIT_GRACE_MS 2000   /* time the checker has to exit after its verdict */
#define FAIL_DELAY_US 2000000

/* converse's answer when the agent declined the login: start the checker. */
#define DECLINED (-1)

/* With directory= the module starts the checker's sibling that has the directory's code. */
#define DIRECTORY_CHECKER_SUFFIX "-directory"

struct config {
	const char *checker;
	char directory_checker[PATH_MAX];
	const char *agent; /* agent=: the agent's socket, or NULL for agent=off */
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

/* options.c */
int parse_config(pam_handle_t *pamh, int flags, int argc, const char **argv, struct config *c);
int agent_serves(const struct config *c);

/* transport.c */
int checker_is_safe(pam_handle_t *pamh, const char *path, char **resolved);
int spawn(pam_handle_t *pamh, const char *path, const struct identity *id, pid_t *pid, int *sock);
int reap(pam_handle_t *pamh, int sock, pid_t pid, int kill_now);
int agent_connect(pam_handle_t *pamh, const char *path, int *sock);

/* relay.c */
long long now_ms(void);
int send_frame(int fd, enum frame_type type, const char *payload, size_t len);
int valid_pending(const char *p, size_t len);
int converse(pam_handle_t *pamh, int sock, const struct config *c, int *set_authtok, int may_decline);

#endif

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The options the module itself acts on. Every option also goes to the
 * checker, which accepts or refuses it: an unknown option fails there.
 */
#include "pam_totp.h"

int parse_config(pam_handle_t *pamh, int flags, int argc, const char **argv, struct config *c)
{
	c->silent = (flags & PAM_SILENT) != 0;
	c->checker = CHECKER_PATH;
	c->agent = AGENT_PATH;
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
		} else if (strcmp(argv[i], "agent=off") == 0) {
			c->agent = NULL;
		} else if (strncmp(argv[i], "agent=", 6) == 0) {
			if (argv[i][6] != '/') {
				pam_syslog(pamh, LOG_ERR, "bad option %s: want agent=off or agent=/ABSOLUTE/PATH", argv[i]);
				return PAM_AUTH_ERR;
			}
			c->agent = argv[i] + 6;
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
 * pam-totp-agent runs as root and takes the logins whose checker would run
 * as root anyway: the directory and the system store (a secret= outside
 * the home, without user=). Files a user or user= owns stay with a checker
 * running as their owner; a host that is not root (a screen locker)
 * cannot start a root checker, and the agent takes no policy from it
 * (internal/options.Agent is the same rule).
 */
int agent_serves(const struct config *c)
{
	return c->agent != NULL && geteuid() == 0 && (c->directory || (!c->secret_as_user && c->run_as == NULL));
}

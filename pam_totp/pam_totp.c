/* SPDX-License-Identifier: Apache-2.0 */
/*
 * pam_totp.so: a TOTP second factor.
 *
 * This module does no checking itself. For each pam_sm_authenticate it
 * hands the request to the decision engine, pam-totp-agent over its
 * socket where it serves the login, else pam-totp-check (a Go program)
 * started with clone + execve, a clean environment and one socketpair;
 * relays the prompts to the application's conversation function, and
 * returns the verdict.
 * A Go runtime inside sshd would hang logins (docs/architecture.md), so no
 * Go code is ever loaded into the host process.
 *
 * It fails closed: a missing, crashing, silent or garbled checker gives
 * PAM_AUTH_ERR and one syslog line, never success and never a hang. The
 * wire format is docs/protocol.md; internal/protocol is the other side.
 */
#include "pam_totp.h"

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
 * Hands the request for user to the decision engine and returns its
 * verdict: PAM_SUCCESS, PAM_IGNORE or PAM_AUTH_ERR. activate is NULL for
 * an authentication, or the pending enrollment pam_sm_setcred activates.
 * The agent is asked first where it serves the login; where there is
 * none, or it declines before anything else, the checker is started and
 * gets the same request. An agent that fails after that fails the login:
 * it may have charged the attempt, and a second decision would charge it
 * again.
 */
static int run_checker(pam_handle_t *pamh, const struct config *c, const char *user, const struct passwd *pw,
		       const char *activate, int argc, const char **argv)
{
	struct buf req = {.len = 0};
	struct identity id;
	char *checker = NULL;
	int sock = -1, set_authtok = 0, rc;
	pid_t pid;

	rc = build_request(pamh, c, user, pw, activate, argc, argv, &req, &id);
	if (rc == PAM_SUCCESS && agent_serves(c) && agent_connect(pamh, c->agent, &sock) == PAM_SUCCESS) {
		if (send_frame(sock, FRAME_REQUEST, req.data, req.len) == 0)
			rc = converse(pamh, sock, c, &set_authtok, 1);
		else
			rc = DECLINED; /* nothing reached the agent */
		close(sock);
		if (rc != DECLINED)
			goto out;
		rc = PAM_SUCCESS;
	}
	if (rc == PAM_SUCCESS)
		rc = checker_is_safe(pamh, c->checker, &checker);
	if (rc == PAM_SUCCESS)
		rc = spawn(pamh, checker, &id, &pid, &sock);
	if (rc != PAM_SUCCESS)
		goto out;
	if (send_frame(sock, FRAME_REQUEST, req.data, req.len) != 0) {
		pam_syslog(pamh, LOG_ERR, "cannot send the request to the checker");
		rc = PAM_SYSTEM_ERR;
	} else {
		rc = converse(pamh, sock, c, &set_authtok, 0);
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

PAM_TOTP_EXPORT PAM_EXTERN int pam_sm_authenticate(pam_handle_t *pamh, int flags, int argc, const char **argv)
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
PAM_TOTP_EXPORT PAM_EXTERN int pam_sm_setcred(pam_handle_t *pamh, int flags, int argc, const char **argv)
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

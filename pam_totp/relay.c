/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The frames of docs/protocol.md on the module's side: sent, read with a
 * deadline, and relayed to the application's conversation function. The
 * same loop serves a spawned checker and a connected agent.
 */
#include "pam_totp.h"

long long now_ms(void)
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

int send_frame(int fd, enum frame_type type, const char *payload, size_t len)
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

static void free_data(pam_handle_t *pamh, void *data, int status)
{
	(void)pamh;
	(void)status;
	free(data);
}

int valid_pending(const char *p, size_t len)
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
 * PAM_AUTH_ERR, PAM_IGNORE), PAM_SYSTEM_ERR when the checker broke the
 * protocol, or DECLINED when an agent (may_decline) declined the login.
 */
int converse(pam_handle_t *pamh, int sock, const struct config *c, int *set_authtok, int may_decline)
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
		case FRAME_DECLINE:
			/* The agent's first frame only: nothing was shown or decided. */
			if (may_decline && frames == 0 && in.len == 0)
				return DECLINED;
			pam_syslog(pamh, LOG_ERR, "checker sent a decline where it may not");
			return PAM_SYSTEM_ERR;
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


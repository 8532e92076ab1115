/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target: whatever a checker could send, decoded by the module's
 * real converse() (this file includes relay.c), as an agent's or a checker's
 * conversation (may_decline alternates), over a real socketpair,
 * with prompts relayed through a real libpam handle. Built and run with
 * AddressSanitizer and UndefinedBehaviorSanitizer by make fuzz (long) and
 * make test (short).
 */
#include "../relay.c"

#include <security/pam_appl.h>
#include <stdint.h>

static int answer(int n, const struct pam_message **msg, struct pam_response **resp, void *data)
{
	struct pam_response *r = calloc((size_t)n, sizeof(*r));

	(void)data;
	if (r == NULL)
		return PAM_BUF_ERR;
	for (int i = 0; i < n; i++)
		if (msg[i]->msg_style == PAM_PROMPT_ECHO_OFF || msg[i]->msg_style == PAM_PROMPT_ECHO_ON)
			r[i].resp = strdup("123456");
	*resp = r;
	return PAM_SUCCESS;
}

static struct pam_conv conv = {answer, NULL};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static pam_handle_t *pamh;
	struct config c = {.checker = "", .timeout_ms = 100};
	static int may_decline;
	int sv[2], set_authtok = 0;

	if (pamh == NULL && pam_start("pam-totp-fuzz", "nobody", &conv, &pamh) != PAM_SUCCESS)
		abort();
	if (size > 60000) /* below the socket buffer: written at once */
		return 0;
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
		abort();
	if (size > 0 && write(sv[1], data, size) != (ssize_t)size)
		abort();
	shutdown(sv[1], SHUT_WR);
	converse(pamh, sv[0], &c, &set_authtok, may_decline);
	may_decline = !may_decline;
	pam_putenv(pamh, PENDING_ENV); /* each input starts without a pending enrollment */
	close(sv[0]);
	close(sv[1]);
	return 0;
}

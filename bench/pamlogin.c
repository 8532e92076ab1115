/* SPDX-License-Identifier: Apache-2.0 */
/*
 * pamlogin: one authentication through real libpam in a fresh process, for
 * make bench. Every prompt is answered with CODE. Prints the peak RSS (KiB)
 * of this process and of its largest waited-for child (the checker).
 *
 *   pamlogin CONFDIR SERVICE USER CODE
 */
#include <security/pam_appl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

static int answer(int n, const struct pam_message **msg, struct pam_response **resp, void *code)
{
	struct pam_response *r = calloc((size_t)n, sizeof(*r));

	if (r == NULL)
		return PAM_BUF_ERR;
	for (int i = 0; i < n; i++) {
		if (msg[i]->msg_style == PAM_PROMPT_ECHO_OFF || msg[i]->msg_style == PAM_PROMPT_ECHO_ON)
			r[i].resp = strdup(code);
	}
	*resp = r;
	return PAM_SUCCESS;
}

int main(int argc, char **argv)
{
	struct pam_conv conv = {answer, NULL};
	struct rusage self, kids;
	pam_handle_t *h = NULL;
	int rc;

	if (argc != 5) {
		fprintf(stderr, "usage: pamlogin CONFDIR SERVICE USER CODE\n");
		return 2;
	}
	conv.appdata_ptr = argv[4];
	rc = pam_start_confdir(argv[2], argv[3], &conv, argv[1], &h);
	if (rc == PAM_SUCCESS)
		rc = pam_authenticate(h, 0);
	pam_end(h, rc);
	getrusage(RUSAGE_SELF, &self);
	getrusage(RUSAGE_CHILDREN, &kids);
	printf("%ld %ld\n", self.ru_maxrss, kids.ru_maxrss);
	return rc == PAM_SUCCESS ? 0 : 1;
}

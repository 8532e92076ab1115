/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A test NSS module that finds /etc/passwd and /etc/shadow entries by name
 * without regard to case, as sssd does with case_sensitive = false: the
 * entry it returns carries the account's own (canonical) name. Built and
 * put into a private mount namespace by test/identity_test.go only.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <nss.h>
#include <pwd.h>
#include <shadow.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

enum nss_status _nss_pamtotpci_getpwnam_r(const char *name, struct passwd *pw, char *buf, size_t len, int *err)
{
	FILE *f = fopen("/etc/passwd", "re");
	struct passwd *r;
	enum nss_status st = NSS_STATUS_NOTFOUND;

	if (f == NULL) {
		*err = errno;
		return NSS_STATUS_UNAVAIL;
	}
	while (fgetpwent_r(f, pw, buf, len, &r) == 0)
		if (strcasecmp(r->pw_name, name) == 0) {
			st = NSS_STATUS_SUCCESS;
			break;
		}
	fclose(f);
	if (st != NSS_STATUS_SUCCESS)
		*err = ENOENT;
	return st;
}

enum nss_status _nss_pamtotpci_getspnam_r(const char *name, struct spwd *sp, char *buf, size_t len, int *err)
{
	FILE *f = fopen("/etc/shadow", "re");
	struct spwd *r;
	enum nss_status st = NSS_STATUS_NOTFOUND;

	if (f == NULL) {
		*err = errno;
		return NSS_STATUS_UNAVAIL;
	}
	while (fgetspent_r(f, sp, buf, len, &r) == 0)
		if (strcasecmp(r->sp_namp, name) == 0) {
			st = NSS_STATUS_SUCCESS;
			break;
		}
	fclose(f);
	if (st != NSS_STATUS_SUCCESS)
		*err = ENOENT;
	return st;
}

// SPDX-License-Identifier: Apache-2.0

// Command pam-totp-check is started by pam_totp.so for every
// authentication, with its socket to the module on standard input, already
// running as the user whose home it reads (or as root for the system store).
// It is not meant to be run by hand. See docs/architecture.md. With
// directory= the module starts pam-totp-check-directory instead, so that
// this one, which every login of the file store starts, carries no LDAP
// and TLS code.
package main

import "pamtotp/internal/check"

func main() { check.Main(nil, nil) }

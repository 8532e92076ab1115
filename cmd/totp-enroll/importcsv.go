// SPDX-License-Identifier: Apache-2.0

package main

import (
	"errors"
	"io"
	"time"

	"pamtotp/internal/tokenimport"
)

const importCSVUsage = `Usage: totp-enroll --user NAME import csv FILE [options]
       totp-enroll import csv --users FILE [options]

Imports hardware tokens from a semicolon-separated UTF-8 file, one token a
line:  hex key;time step;comment   (with --users: user;hex key;time step;comment)
Blank lines and lines starting with # are skipped.
The key has at least 128 bits; an empty time step means 30 seconds. Each
token is added as hw (hw-2, ...) to the user's file, which is created if
need be. The whole file is refused on the first bad line unless --skip-bad.

Options:
  --user NAME            the user the tokens are for
  --users                the first field of each line is the user (root only)
  --secret-file TEMPLATE where to write (default ~/.pam_totp)
  --skip-bad             report bad lines and import the rest
  --dry-run              say what would be done; write nothing
  --valid-from DATE, --valid-until DATE
                         accept the tokens' codes only from, or only before,
                         DATE (YYYY-MM-DD, UTC, or RFC 3339)
  --directory FILE       into the users' entries in the directory (the
                         module's directory=), with --bind-dn DN and
                         --bind-password-file FILE for the admin's identity
`

func runImportCSV(args []string, stdout, stderr io.Writer) int {
	c := newImportCommand("import csv", importCSVUsage)
	users := c.fs.Bool("users", false, "")
	in, err := c.start(args, stdout, stderr, func() error {
		if *users == (*c.user != "") {
			return errors.New("want either --user NAME or --users")
		}
		if *c.user != "" {
			_, err := lookupAccount(*c.user)
			return err
		}
		return nil
	})
	if err != nil {
		return exitStatus(err)
	}
	entries, bad := tokenimport.ParseCSV(in.data, *c.user, time.Now())
	return c.finish(in, entries, bad, stdout, stderr)
}

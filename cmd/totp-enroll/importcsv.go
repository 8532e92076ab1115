// SPDX-License-Identifier: Apache-2.0

package main

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"pamtotp/internal/options"
	"pamtotp/internal/otp"
	"pamtotp/internal/secret"
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
`

func runImportCSV(args []string, stdout, stderr io.Writer) int {
	c := newImportCommand("import csv", importCSVUsage)
	users := c.fs.Bool("users", false, "")
	loc, data, file, exit := c.start(args, stdout, stderr, func() error {
		if *users == (*c.user != "") {
			return errors.New("want either --user NAME or --users")
		}
		if *c.user != "" {
			_, err := lookupAccount(*c.user)
			return err
		}
		return nil
	})
	if exit >= 0 {
		return exit
	}
	entries, bad := parseCSV(data, *c.user, time.Now())
	return c.finish(loc, file, entries, bad, stdout, stderr)
}

// parseCSV reads the lines; with user "" the first field names the user.
func parseCSV(data []byte, user string, now time.Time) ([]importEntry, []error) {
	if !utf8.Valid(data) {
		return nil, []error{errors.New("the file is not UTF-8")}
	}
	text := strings.TrimPrefix(string(data), "\ufeff")
	return parseLines(text, func(l string) (*importEntry, error) { return parseCSVLine(l, user, now) })
}

func parseCSVLine(l, user string, now time.Time) (*importEntry, error) {
	f := strings.Split(l, ";")
	if user == "" {
		if len(f) != 4 {
			return nil, errors.New("want user;hex key;time step;comment")
		}
		user, f = strings.TrimSpace(f[0]), f[1:]
		if err := options.ValidUser(user); err != nil {
			return nil, err
		}
	} else if len(f) != 3 {
		return nil, errors.New("want hex key;time step;comment")
	}
	key, err := hex.DecodeString(strings.TrimSpace(f[0]))
	if err != nil {
		return nil, errors.New("the key is not hexadecimal")
	}
	if len(key) < 16 || len(key) > otp.MaxKeyBytes {
		return nil, fmt.Errorf("the key must be 16 to %d bytes (128 bits at least), not %d", otp.MaxKeyBytes, len(key))
	}
	period := 30
	if s := strings.TrimSpace(f[1]); s != "" {
		if period, err = strconv.Atoi(s); err != nil {
			return nil, fmt.Errorf("time step %q is not a number", s)
		}
	}
	t := secret.Token{Type: secret.TOTP, Key: key, Params: otp.Params{Algorithm: otp.SHA1, Digits: 6, Period: period},
		Created: now.Unix(), Comment: strings.TrimSpace(f[2])}
	if err := t.Validate(); err != nil {
		return nil, err
	}
	if err := secret.CheckComment(t.Comment); err != nil {
		return nil, err
	}
	return &importEntry{user: user, base: "hw", token: t, last: -1}, nil
}

// SPDX-License-Identifier: Apache-2.0

package main

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"pamtotp/internal/pskc"
	"pamtotp/internal/tokenimport"
)

const importPSKCUsage = `Usage: totp-enroll --user NAME import pskc FILE [options]

Imports the key packages of a PSKC file (RFC 6030) from a token vendor:
plaintext secrets, AES-CBC with a pre-shared key (--key), or a key derived
from a password with PBKDF2 (--password-file, or --password, which other
users can see in the process list). The HMAC-SHA1 ValueMAC of an encrypted
secret is always checked. HOTP and TOTP; digits, counter and time step are
taken from the file. Each key becomes a token named after its serial number
(token-SERIAL), or pskc. A wrong key or password, or a changed file, is
refused and nothing is written.

Options:
  --user NAME            the user the tokens are for
  --key HEX              the pre-shared AES key
  --password PW          the password of a PBKDF2-derived key
  --password-file FILE   read the password from the first line of FILE
  --secret-file TEMPLATE where to write (default ~/.pam_totp)
  --skip-bad             report key packages that cannot be used and import the rest
  --dry-run              say what would be done; write nothing
  --directory FILE       into the users' entries in the directory (the
                         module's directory=), with --bind-dn DN and
                         --bind-password-file FILE for the admin's identity
`

func runImportPSKC(args []string, stdout, stderr io.Writer) int {
	c := newImportCommand("import pskc", importPSKCUsage)
	keyHex := c.fs.String("key", "", "")
	password := c.fs.String("password", "", "")
	passwordFile := c.fs.String("password-file", "", "")
	var cred pskc.Credentials
	var acct *account
	in, err := c.start(args, stdout, stderr, func() error {
		var err error
		switch {
		case *c.user == "" && os.Geteuid() == 0:
			return errors.New("--user NAME is required")
		case *password != "" && *passwordFile != "":
			return errors.New("--password and --password-file exclude each other")
		case *keyHex != "":
			if cred.PSK, err = hex.DecodeString(*keyHex); err != nil {
				return errors.New("--key: not hexadecimal")
			}
		}
		cred.Password = *password
		if *passwordFile != "" {
			pw, err := readInput(*passwordFile)
			if err != nil {
				return err
			}
			cred.Password, _, _ = strings.Cut(strings.TrimRight(string(pw), "\r\n"), "\n")
		}
		if c.dirs.conf != "" {
			acct, err = directoryAccount(*c.user)
		} else {
			acct, err = lookupAccount(*c.user)
		}
		return err
	})
	if err != nil {
		return exitStatus(err)
	}
	keys, bad, err := pskc.ParseAll(in.data, cred)
	if err != nil {
		fmt.Fprintf(stderr, "totp-enroll import pskc: %s: %v; nothing was imported\n", in.file, err)
		return exitError
	}
	var entries []tokenimport.Entry
	now := time.Now()
	for _, k := range keys {
		e, err := tokenimport.FromPSKC(k, acct.name, now)
		if err != nil {
			bad = append(bad, fmt.Errorf("key package %d (serial %q): %w", k.Package, k.Serial, err))
			continue
		}
		e.Line = k.Package
		entries = append(entries, *e)
	}
	return c.finish(in, entries, bad, stdout, stderr)
}

// SPDX-License-Identifier: Apache-2.0

package main

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"slices"
	"strings"
	"time"

	"pamtotp/internal/options"
	"pamtotp/internal/pskc"
	"pamtotp/internal/tokenimport"
)

const importPSKCUsage = `Usage: totp-enroll --user NAME import pskc FILE [--serial S] [options]
       totp-enroll import pskc FILE [--users MAP] [options]

Imports the key packages of a PSKC file (RFC 6030) from a token vendor:
plaintext secrets, or secrets encrypted with AES-CBC, the AES key wrap,
3DES-CBC or the 3DES key wrap, under a pre-shared key (--key) or a key
derived from a password with PBKDF2 (--password-file, or --password, which
other users can see in the process list). Every encrypted secret's ValueMAC
(HMAC-SHA1, SHA224, SHA256, SHA384 or SHA512), or its key wrap, is
checked: a wrong key or password, or a changed file, is refused and
nothing is written. HOTP and TOTP; the hash, digits, counter, time step
and time drift are taken from the file, and its start and expiry dates
become the token's validity. Each key becomes a token named after its
serial number (token-SERIAL), or pskc.

Refused, by serial and with the reason (--skip-bad imports the others):
OCRA, PIN and other keys; a key that has expired; a policy pam_totp cannot
honour (a server-checked PIN, a limited number of uses, anything unknown);
a time origin (T0) other than 1970. A signed file is said to be signed:
the signature is not checked.

Each token goes to one user: --user with --serial for one token, --users
MAP for many, or, as root without either, the user the file names for
each (its UserId, or the uid= of a UserId that is a DN). A file with
several tokens and only --user is refused, so that no account ends up
opened by a whole box of devices; so are two tokens with one key.

Options:
  --user NAME            the user the token is for
  --serial S             with --user: import only the token with serial S
  --users MAP            each token to its user: MAP has lines serial;user
                         (# comments); a token not in MAP is a bad one
  --key HEX              the pre-shared AES key
  --password PW          the password of a PBKDF2-derived key
  --password-file FILE   read the password from the first line of FILE
  --secret-file TEMPLATE where to write (default ~/.pam_totp)
  --skip-bad             report key packages that cannot be used and import the rest
  --ignore-expiry        import expired keys too, without their expiry date
  --dry-run              say what would be done; write nothing
  --valid-from DATE, --valid-until DATE
                         accept the tokens' codes only from, or only before,
                         DATE (YYYY-MM-DD, UTC, or RFC 3339)
  --directory FILE       into the users' entries in the directory (the
                         module's directory=), with --bind-dn DN and
                         --bind-password-file FILE for the admin's identity
`

func runImportPSKC(args []string, stdout, stderr io.Writer) int {
	c := newImportCommand("import pskc", importPSKCUsage)
	keyHex := c.fs.String("key", "", "")
	password := c.fs.String("password", "", "")
	passwordFile := c.fs.String("password-file", "", "")
	serial := c.fs.String("serial", "", "")
	usersFile := c.fs.String("users", "", "")
	ignoreExpiry := c.fs.Bool("ignore-expiry", false, "")
	var owners map[string]string // serial -> user, from --users
	var cred pskc.Credentials
	var acct *account
	in, err := c.start(args, stdout, stderr, func() error {
		var err error
		switch {
		case *usersFile != "" && (*c.user != "" || *serial != ""):
			return errors.New("--users MAP gives each token its user: not with --user or --serial")
		case *serial != "" && *c.user == "" && os.Geteuid() == 0:
			return errors.New("--serial goes with --user NAME")
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
		switch {
		case *usersFile != "":
			owners, err = readOwners(*usersFile)
		case *c.user == "" && os.Geteuid() == 0:
			// The file's own UserIds say whose each token is.
		case c.dirs.conf != "":
			acct, err = directoryAccount(*c.user)
		default:
			acct, err = lookupAccount(*c.user)
		}
		return err
	})
	if err != nil {
		return exitStatus(err)
	}
	pf, err := pskc.ParseAll(in.data, cred)
	if err != nil {
		fmt.Fprintf(stderr, "totp-enroll import pskc: %s: %v; nothing was imported\n", in.file, err)
		return exitError
	}
	if pf.Signed {
		fmt.Fprintf(stderr, "totp-enroll import pskc: %s is signed (XML-DSig), and the signature was NOT checked: what protects the secrets is the key or password and their MACs\n", in.file)
	}
	keys, bad := pf.Keys, pf.Bad
	if *serial != "" {
		var one []pskc.Key
		for _, k := range keys {
			if k.Serial == *serial {
				one = append(one, k)
			}
		}
		if len(one) == 0 {
			why := fmt.Sprintf("no token with serial %q", *serial)
			for _, e := range bad {
				if pe, ok := e.(*pskc.PackageError); ok && pe.Serial == *serial {
					why = e.Error() // it is there, and cannot be used
				}
			}
			fmt.Fprintf(stderr, "totp-enroll import pskc: %s: %s; nothing was imported\n", in.file, why)
			return exitError
		}
		keys, bad = one, nil // the other packages are not being imported
	}
	fromFile := owners == nil && acct == nil // root gave neither --user nor --users
	if fromFile && !slices.ContainsFunc(keys, func(k pskc.Key) bool { return k.User != "" }) {
		fmt.Fprintf(stderr, "totp-enroll import pskc: %s names no user for its tokens: give --user NAME or --users MAP; nothing was imported\n", in.file)
		return exitUsage
	}
	if owners == nil && !fromFile && len(keys) > 1 && (len(bad) == 0 || *c.skipBad) { // bad packages first, as importEntries refuses them
		fmt.Fprintf(stderr, "totp-enroll import pskc: %s has %d tokens, and --user gives them all to one account, which each of them would then open; give --serial S for one, or --users MAP (lines serial;user) to give each its user; nothing was imported\n", in.file, len(keys))
		return exitError
	}
	seen := map[string]string{}
	for _, k := range keys {
		if other, ok := seen[string(k.Secret)]; ok {
			fmt.Fprintf(stderr, "totp-enroll import pskc: %s: tokens %q and %q have the same key, so each would open the other's account; nothing was imported\n", in.file, other, k.Serial)
			return exitError
		}
		seen[string(k.Secret)] = k.Serial
	}
	var entries []tokenimport.Entry
	now := time.Now()
	for _, k := range keys {
		if *ignoreExpiry {
			k.ValidUntil = time.Time{}
		}
		e, err := tokenimport.FromPSKC(k, "", now)
		switch {
		case err != nil:
		case owners != nil:
			if e.User = owners[k.Serial]; e.User == "" {
				err = errors.New("not in --users")
			}
		case fromFile:
			switch e.User = fileOwner(k.User); {
			case e.User == "":
				err = fmt.Errorf("the file names no user for it (UserId %q): give --users MAP", k.User)
			case isRoot(e.User):
				// A file from outside does not get to give root a token.
				err = fmt.Errorf("the file names %s: give --user %s --serial %s if that is meant", e.User, e.User, k.Serial)
			}
		default:
			e.User = acct.name
		}
		if err != nil {
			bad = append(bad, &pskc.PackageError{Package: k.Package, ID: k.ID, Serial: k.Serial, Err: err})
			continue
		}
		e.Line = k.Package
		entries = append(entries, *e)
	}
	return c.finish(in, entries, bad, stdout, stderr)
}

// isRoot reports whether name is root, or another name of uid 0.
func isRoot(name string) bool {
	if name == "root" {
		return true
	}
	u, err := user.Lookup(name)
	return err == nil && u.Uid == "0"
}

// fileOwner is the user name in a PSKC UserId: the name itself, or the
// uid of a distinguished name (RFC 6030's "UID=jsmith,DC=example-bank,DC=net").
func fileOwner(id string) string {
	for _, rdn := range strings.Split(id, ",") {
		if k, v, ok := strings.Cut(strings.TrimSpace(rdn), "="); ok && strings.EqualFold(strings.TrimSpace(k), "uid") {
			id = strings.TrimSpace(v)
			break
		}
	}
	if options.ValidUser(id) != nil {
		return ""
	}
	return id
}

// readOwners reads --users: lines of serial;user.
func readOwners(name string) (map[string]string, error) {
	data, err := readInput(name)
	if err != nil {
		return nil, err
	}
	owners := map[string]string{}
	for n, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		serial, user, ok := strings.Cut(line, ";")
		serial, user = strings.TrimSpace(serial), strings.TrimSpace(user)
		switch {
		case !ok || serial == "" || user == "":
			return nil, fmt.Errorf("--users %s: line %d: want serial;user", name, n+1)
		case owners[serial] != "":
			return nil, fmt.Errorf("--users %s: line %d: serial %q given twice", name, n+1, serial)
		}
		owners[serial] = user
	}
	return owners, nil
}

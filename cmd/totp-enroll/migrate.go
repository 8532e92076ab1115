// SPDX-License-Identifier: Apache-2.0

package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"pamtotp/internal/directory"
	"pamtotp/internal/options"
	"pamtotp/internal/secret"
)

const migrateUsage = `Usage: totp-enroll migrate [--user NAME | --all | --home-root DIR | --users-from FILE] [options]

Converts pam_google_authenticator files to pam_totp's format, keeping the
secret, the scratch codes, the clock skew and the replay state. The old
file is left as it is; pam_totp reads ~/.pam_totp first.

Options:
  --user NAME            migrate NAME (root only; default: yourself)
  --all                  every account in /etc/passwd that has a file (root only)
  --home-root DIR        every account NSS knows (sssd, LDAP, winbind too) whose
                         name is a directory in DIR, such as /home (root only)
  --users-from FILE      the accounts named in FILE, one per line (root only)
                         With these three, accounts without a file to move are
                         passed over without a word.
  --from TEMPLATE        the old file (default ~/.google_authenticator)
  --secret-file TEMPLATE the new file (default ~/.pam_totp; may be the
                         root-owned store, e.g. /var/lib/pam-totp/%u)
  --dry-run              say what would be done; write nothing
  --force                replace an existing pam_totp file

Into the directory (docs/fleet.md):
  --to-directory FILE    move each user's enrollment into the directory of
                         this configuration (the module's directory=), with
                         its replay state: the pam_totp file at --secret-file
                         if there is one, else the --from file. The files
                         stay as they are.
  --bind-dn DN           bind as DN instead of the host's identity
  --bind-password-file FILE   its password (default: asked on the terminal)
`

type migrateConfig struct {
	user       string
	all        bool   // several accounts: --all, --home-root or --users-from
	homeRoot   string // --home-root
	usersFrom  string // --users-from
	from, to   *location
	dry, force bool
	dir        *directory.Config // --to-directory
}

func runMigrate(args []string, stdout, stderr io.Writer) int {
	c := &migrateConfig{}
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	from := fs.String("from", options.GoogleSecret, "")
	to := fs.String("secret-file", options.DefaultSecret, "")
	fs.StringVar(&c.user, "user", "", "")
	fs.BoolVar(&c.all, "all", false, "")
	fs.StringVar(&c.homeRoot, "home-root", "", "")
	fs.StringVar(&c.usersFrom, "users-from", "", "")
	fs.BoolVar(&c.dry, "dry-run", false, "")
	fs.BoolVar(&c.force, "force", false, "")
	var dirs dirFlags
	dirs.register(fs)
	fs.StringVar(&dirs.conf, "to-directory", "", "")
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, migrateUsage)
		return exitOK
	}
	if err == nil && fs.NArg() > 0 {
		err = fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if n := btoi(c.all) + btoi(c.homeRoot != "") + btoi(c.usersFrom != "") + btoi(c.user != ""); err == nil && n > 1 {
		err = errors.New("--user, --all, --home-root and --users-from exclude each other")
	}
	if err == nil {
		c.from, err = parseLocation("--from", *from)
	}
	if err == nil {
		c.to, err = parseLocation("--secret-file", *to)
	}
	if err == nil && c.to.opts.AsUser() && !c.from.opts.AsUser() && dirs.conf == "" {
		err = errors.New("cannot migrate from the root-owned store into users' homes")
	}
	if err == nil {
		c.dir, err = dirs.config()
	}
	if err != nil {
		fmt.Fprintf(stderr, "totp-enroll migrate: %v (see migrate --help)\n", err)
		return exitUsage
	}

	var accounts []*account
	switch {
	case c.all:
		accounts, err = localAccounts()
	case c.homeRoot != "" || c.usersFrom != "":
		c.all = true
		accounts, err = namedAccounts(c.homeRoot, c.usersFrom)
	default:
		var a *account
		a, err = lookupAccount(c.user)
		accounts = []*account{a}
	}
	if err != nil {
		fmt.Fprintf(stderr, "totp-enroll migrate: %v\n", err)
		return exitUsage
	}
	failed, done := 0, 0
	for _, a := range accounts {
		ok, err := migrateAccount(c, a, stdout)
		switch {
		case err != nil:
			fmt.Fprintf(stderr, "totp-enroll migrate: %s: %v\n", a.name, err)
			failed++
		case ok:
			done++
		case !c.all:
			fmt.Fprintf(stderr, "totp-enroll migrate: %s has no pam_google_authenticator file\n", a.name)
			failed++
		}
	}
	verb := "migrated"
	if c.dry {
		verb = "would migrate"
	}
	fmt.Fprintf(stdout, "%s %d, failed %d\n", verb, done, failed)
	if failed > 0 {
		return exitError
	}
	return exitOK
}

// migrateAccount converts one user's file. It reports false without an
// error when there is nothing to convert.
func migrateAccount(c *migrateConfig, a *account, stdout io.Writer) (bool, error) {
	if c.dir != nil {
		return migrateToDirectory(c, a, stdout)
	}
	src, err := c.from.path(a)
	if err != nil {
		return false, err
	}
	dst, err := c.to.path(a)
	if err != nil {
		return false, err
	}
	found := false
	err = c.to.as(a, func() error {
		// The old file is locked as logins lock it, so none changes it
		// while it is read; root reads a home only with the owner checks.
		old, err := secret.Lock(src, c.from.access(a))
		if errors.Is(err, secret.ErrNotEnrolled) {
			return nil
		}
		if err != nil {
			return err
		}
		defer old.Close()
		if old.Google() == nil {
			return fmt.Errorf("%s is not a pam_google_authenticator file", src)
		}
		found = true
		file, state, notes, err := convertGoogle(old)
		if err != nil {
			return err
		}
		// What the real run would refuse, a dry run refuses too.
		if _, err := os.Lstat(dst); err == nil && !c.force {
			return fmt.Errorf("%s exists: %s is enrolled already (use --force to replace it)", dst, a.name)
		}
		if !c.to.opts.AsUser() {
			// A missing store is made, root's and 0700, by the real run.
			if err := secret.CheckStoreDir(dst, 0); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
		t := file.Tokens[0]
		fmt.Fprintf(stdout, "%s: %s -> %s: %s, %d scratch codes, drift %d steps\n",
			a.name, src, dst, t.Describe(), len(file.Scratch), state.Token(&t).Drift)
		for _, n := range notes {
			fmt.Fprintf(stdout, "  note: %s\n", n)
		}
		if c.dry {
			return nil
		}
		if !c.to.opts.AsUser() {
			if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
				return err
			}
			if err := secret.CheckStoreDir(dst, 0); err != nil {
				return err
			}
		}
		return secret.Create(dst, c.to.access(a), file, state, c.force)
	})
	return found, err
}

// hasFile says whether a has a file at one of the locations, looked at as
// the identity that reads it there.
func hasFile(a *account, locs ...*location) (bool, error) {
	for _, loc := range locs {
		path, err := loc.path(a)
		if err != nil {
			return false, err
		}
		found := false
		err = loc.as(a, func() error {
			_, err := os.Lstat(path)
			found = err == nil
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) {
				return nil // a home the user cannot enter has nothing of theirs
			}
			return err
		})
		if err != nil || found {
			return found, err
		}
	}
	return false, nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// convertGoogle turns an opened pam_google_authenticator file into a
// pam_totp enrollment, and says what does not carry over.
func convertGoogle(old *secret.LockedEnrollment) (*secret.File, *secret.State, []string, error) {
	g := old.Google()
	t := old.File.Tokens[0]
	oldState := old.State.Token(&t)
	t.Name, t.Created = "default", time.Now().Unix()
	if err := t.Validate(); err != nil {
		return nil, nil, nil, fmt.Errorf("cannot convert: %w (keep this user on the old file)", err)
	}
	file := &secret.File{Tokens: []secret.Token{t}, Scratch: append([]string(nil), old.File.Scratch...)}
	state := secret.NewState()
	ts := state.Token(&t)
	ts.Used, ts.LastStep, ts.Drift = oldState.Used, oldState.LastStep, oldState.Drift
	state.Failures, state.LockedUntil = old.State.Failures, old.State.LockedUntil

	var notes []string
	if t.Type == secret.TOTP && g.Window != 3 {
		notes = append(notes, fmt.Sprintf("WINDOW_SIZE %d: pam_totp uses the module's window= (steps each side, default 1)", g.Window))
	}
	if t.Type == secret.HOTP && g.Window != 3 {
		notes = append(notes, fmt.Sprintf("WINDOW_SIZE %d: pam_totp uses the module's hotp_window= (default 10)", g.Window))
	}
	if g.RateLimit {
		notes = append(notes, fmt.Sprintf("RATE_LIMIT %d per %d s: pam_totp's deny= and unlock_time= apply instead", g.RateN, g.RateSeconds))
	}
	if !g.DisallowReuse && t.Type == secret.TOTP {
		notes = append(notes, "reuse was allowed: pam_totp refuses every reused code")
	}
	if len(g.Resetting) > 0 {
		notes = append(notes, "a clock resync in progress is dropped")
	}
	if len(g.Last) > 0 {
		notes = append(notes, "grace_period's record of recent logins is dropped")
	}
	return file, state, notes, nil
}

// migrateToDirectory moves one user's enrollment into the directory: the
// pam_totp file if there is one, else pam_google_authenticator's. The file
// stays locked, as logins lock it, until the directory has the state, so
// that no code used here meanwhile is missing from it.
func migrateToDirectory(c *migrateConfig, a *account, stdout io.Writer) (bool, error) {
	// Nothing to move, nothing to ask the directory (root and the system
	// accounts have no entry there).
	if has, err := hasFile(a, c.to, c.from); err != nil || !has {
		return false, err
	}
	d := directory.New(c.dir, a.name)
	defer d.Close()
	// Connected and bound as root, before reading a home as its owner.
	if _, _, err := d.Enrollment(); err == nil && !c.force {
		return false, fmt.Errorf("%s is enrolled in the directory already (use --force to replace)", a.name)
	} else if err != nil && !errors.Is(err, secret.ErrNotEnrolled) {
		return false, err
	}
	found := false
	for _, loc := range []*location{c.to, c.from} {
		src, err := loc.path(a)
		if err != nil {
			return false, err
		}
		err = loc.as(a, func() error {
			old, err := secret.Lock(src, loc.access(a))
			if errors.Is(err, secret.ErrNotEnrolled) {
				return nil
			}
			if err != nil {
				return err
			}
			defer old.Close()
			found = true
			file, state, notes := old.File, old.State, []string(nil)
			if old.Google() != nil {
				if file, state, notes, err = convertGoogle(old); err != nil {
					return err
				}
			}
			fmt.Fprintf(stdout, "%s: %s -> %s: %d token(s), %d scratch codes, replay state kept\n",
				a.name, src, c.dir.Path, len(file.Tokens), len(file.Scratch))
			for _, n := range notes {
				fmt.Fprintf(stdout, "  note: %s\n", n)
			}
			if c.dry {
				return nil
			}
			return d.Create(file, state, c.force)
		})
		if found || err != nil {
			return found, err
		}
	}
	return false, nil
}

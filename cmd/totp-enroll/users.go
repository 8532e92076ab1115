// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/user"
	"strconv"
	"strings"

	"pamtotp/internal/options"
	"pamtotp/internal/privilege"
	"pamtotp/internal/secret"
)

// account is a user and where their enrollment lives.
type account struct {
	name     string
	uid, gid int
	home     string
	shell    string // from /etc/passwd, for localAccounts only
}

func accountOf(u *user.User) (*account, error) {
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("user %s has a non-numeric uid or gid", u.Username)
	}
	return &account{name: u.Username, uid: uid, gid: gid, home: u.HomeDir}, nil
}

// lookupAccount finds a user by name, or yourself for ""; only root may
// name another user.
func lookupAccount(name string) (*account, error) {
	var u *user.User
	var err error
	switch {
	case name == "":
		u, err = user.LookupId(strconv.Itoa(os.Getuid()))
	case os.Getuid() != 0:
		return nil, errors.New("--user is for root; without it you work on yourself")
	default:
		if u, err = user.Lookup(name); err != nil {
			return nil, fmt.Errorf("no user %q", name)
		}
	}
	if err != nil {
		return nil, err
	}
	return accountOf(u)
}

// localAccounts lists /etc/passwd, for --all. Accounts only known to NSS
// services (LDAP, sssd) must be named one by one with --user.
func localAccounts() ([]*account, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("--all is for root")
	}
	f, err := os.Open("/etc/passwd")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []*account
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		p := strings.Split(sc.Text(), ":")
		if len(p) < 7 || strings.HasPrefix(p[0], "#") {
			continue
		}
		uid, err1 := strconv.Atoi(p[2])
		gid, err2 := strconv.Atoi(p[3])
		if err1 != nil || err2 != nil || options.ValidUser(p[0]) != nil {
			continue
		}
		out = append(out, &account{name: p[0], uid: uid, gid: gid, home: p[5], shell: p[6]})
	}
	return out, sc.Err()
}

// namedAccounts are the accounts NSS knows (sssd, LDAP, winbind as well as
// the local files) whose name is a directory in homeRoot, or a line of
// usersFrom. A name NSS does not know is passed over (lost+found).
func namedAccounts(homeRoot, usersFrom string) ([]*account, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("--home-root and --users-from are for root")
	}
	var names []string
	if homeRoot != "" {
		entries, err := os.ReadDir(homeRoot)
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			if e.IsDir() {
				names = append(names, e.Name())
			}
		}
	}
	if usersFrom != "" {
		data, err := readInput(usersFrom)
		if err != nil {
			return nil, err
		}
		for _, l := range strings.Split(string(data), "\n") {
			if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
				names = append(names, l)
			}
		}
	}
	var out []*account
	for _, n := range names {
		if options.ValidUser(n) != nil {
			continue
		}
		u, err := user.Lookup(n)
		if err != nil {
			continue
		}
		a, err := accountOf(u)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}

// location is a secret file template as the module's secret= reads it.
type location struct {
	opts *options.Options
}

func parseLocation(flagName, tmpl string) (*location, error) {
	o, err := options.Parse([]string{"secret=" + tmpl})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", flagName, err)
	}
	return &location{o}, nil
}

// path is the file of a for this template.
func (l *location) path(a *account) (string, error) {
	return options.Expand(l.opts.Secret, a.name, a.home)
}

// access is who must own a's file: a itself, or root in the store (the
// module's rule, options.Access; totp-enroll has no user=, so it cannot fail).
func (l *location) access(a *account) secret.Access {
	acc, _ := l.opts.Access(a.uid)
	return acc
}

// as runs fn with the identity that a's files at l need: as the user for
// their own files (never root in a user's home), as root for the store.
func (l *location) as(a *account, fn func() error) error {
	if l.opts.AsUser() {
		return privilege.As(a.uid, a.gid, fn)
	}
	if os.Geteuid() != 0 {
		return errors.New("the root-owned store needs root")
	}
	return fn()
}

// parseInterspersed parses flags that may come before or after the
// positional arguments, and returns those.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

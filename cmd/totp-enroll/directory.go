// SPDX-License-Identifier: Apache-2.0

package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	"golang.org/x/term"

	"pamtotp/internal/directory"
	"pamtotp/internal/options"
)

// dirFlags point a command at the directory instead of files: the
// host's configuration (the module's directory=), and an admin's own
// identity in place of the host's.
type dirFlags struct {
	conf, bindDN, bindPasswordFile string
}

// globalFlags are the flags every command takes; splitCommand moves them
// behind the command's own arguments.
var globalFlags = []string{"user", "secret-file", "directory", "bind-dn", "bind-password-file"}

func (d *dirFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&d.conf, "directory", "", "")
	fs.StringVar(&d.bindDN, "bind-dn", "", "")
	fs.StringVar(&d.bindPasswordFile, "bind-password-file", "", "")
}

// config loads the directory's configuration, with the admin's bind if
// one was given; nil without --directory.
func (d *dirFlags) config() (*directory.Config, error) {
	if d.conf == "" {
		if d.bindDN != "" || d.bindPasswordFile != "" {
			return nil, errors.New("--bind-dn and --bind-password-file go with --directory")
		}
		return nil, nil
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("--directory: the directory's configuration is root's; run as root")
	}
	c, err := directory.Load(d.conf)
	if err != nil {
		return nil, err
	}
	switch {
	case d.bindDN == "" && d.bindPasswordFile != "":
		return nil, errors.New("--bind-password-file goes with --bind-dn")
	case d.bindDN == "":
		return c, nil
	}
	pw, err := d.password()
	if err != nil {
		return nil, err
	}
	return c.WithBind(d.bindDN, pw), nil
}

// password reads the admin's bind password from --bind-password-file, or
// asks on the terminal without echo.
func (d *dirFlags) password() (string, error) {
	if d.bindPasswordFile != "" {
		data, err := directory.ReadOwnFile(d.bindPasswordFile)
		if err != nil {
			return "", fmt.Errorf("--bind-password-file: %w", err)
		}
		pw := strings.TrimRight(string(data), "\r\n")
		if pw == "" || strings.ContainsAny(pw, "\r\n") || len(pw) > 4096 {
			return "", errors.New("--bind-password-file: want one line, the password")
		}
		return pw, nil
	}
	tty, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	if err != nil {
		return "", errors.New("--bind-dn: no terminal to ask for the password on; use --bind-password-file")
	}
	defer tty.Close()
	fmt.Fprintf(tty, "Password for %s: ", d.bindDN)
	pw, err := term.ReadPassword(int(tty.Fd()))
	fmt.Fprintln(tty)
	if err != nil {
		return "", fmt.Errorf("reading the password: %w", err)
	}
	return string(pw), nil
}

// directoryAccount is a user of the directory. They need not be known to
// this machine: the directory is the fleet's.
func directoryAccount(name string) (*account, error) {
	if name == "" {
		return nil, errors.New("--directory needs --user NAME")
	}
	if err := options.ValidUser(name); err != nil {
		return nil, fmt.Errorf("--user: %w", err)
	}
	return &account{name: name, uid: -1, gid: -1}, nil
}

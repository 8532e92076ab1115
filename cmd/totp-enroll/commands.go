// SPDX-License-Identifier: Apache-2.0

// The command table of totp-enroll: every command, its arguments, whether
// it is root's, its help and flags, and the function that runs it. --help,
// the bash completion and the docs are tested against it
// (TestCommandsAreDocumented).
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"pamtotp/internal/directory"
	"pamtotp/internal/options"
	"pamtotp/internal/secret"
)

// A command runs with its arguments and exits with the returned status.
type command func(args []string, stdin io.Reader, stdout, stderr io.Writer) int

// commandFlags are the values of the commands' own flags, fresh for each
// run of totp-enroll.
type commandFlags struct {
	syncRange, generate, count int
	hotpSkip                   int
	clear, regenerate, all     bool
	json                       bool
	qr, issuer, label          string
}

// newCommands returns the commands.
func newCommands() map[string]command {
	fl := &commandFlags{}
	token := map[string]*tokenCommand{
		// A user's own tokens (tokens.go).
		"list":    {help: "Lists the user's tokens.", run: listTokens},
		"remove":  {args: "NAME ", nargs: 1, help: "Removes a token; its codes stop working at once.", run: removeToken},
		"disable": {args: "NAME ", nargs: 1, help: "Disables a token (a lost device); the others keep working.", run: setDisabled(true)},
		"enable":  {args: "NAME ", nargs: 1, help: "Enables a disabled token again.", run: setDisabled(false)},
		// Root's (admin.go).
		"show": {args: "NAME ", opts: "[--qr utf8|ansi|none] [--issuer TEXT] [--label TEXT] ", nargs: 1, root: true,
			help:  "Shows a token's QR code again (root only: a secret should not leave the server twice by accident).",
			flags: fl.showFlags, run: fl.show},
		"status": {opts: "[--all] [--json] ", root: true, help: "Shows each token's type, creation, last use and drift, and the failures and lock; --all: one row per enrolled user; --json: for monitoring.",
			flags: fl.statusFlags, run: fl.status, all: func() bool { return fl.all }},
		"unlock": {root: true, help: "Clears the failure count and the lock, and starts locks at unlock_time again.", run: unlock},
		"sync": {args: "NAME CODE1 CODE2 ", opts: "[--range STEPS] ", nargs: 3, root: true,
			help:  "Resynchronises a token from two consecutive codes, searching --range STEPS (default 600) each side of now.",
			flags: fl.syncFlags, run: fl.syncToken},
		"passcodes": {opts: "--generate N | --clear ", root: true, help: "--generate N makes N one-time admin passcodes (8 digits, no expiry, single use, shown once); --clear removes them all.",
			flags: fl.passcodeFlags, run: fl.passcodes},
		"scratch": {opts: "--regenerate [--count N] ", root: true, help: "--regenerate makes new scratch codes (--count N, default 5); the old ones stop working.",
			flags: fl.scratchFlags, run: fl.scratch},
		"reset": {root: true, help: "Removes the enrollment: the next login fails, or passes with nullok.", run: reset},
		"restored": {opts: "[--all] [--hotp-skip N] ", root: true,
			help:  "After a restore from a back-up: moves each HOTP counter on by --hotp-skip (default 100), counts each TOTP token used up to now, and revokes every scratch code and passcode, so that no code used since the back-up works again; --all: every enrolled user.",
			flags: fl.restoredFlags, run: fl.restored, all: func() bool { return fl.all }},
	}
	commands := map[string]command{
		"migrate": func(args []string, _ io.Reader, stdout, stderr io.Writer) int {
			return runMigrate(args, stdout, stderr)
		},
		"import": runImport,
		"doctor": runDoctor,
	}
	commands["help"] = func(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
		switch {
		case len(args) == 0:
			fmt.Fprint(stdout, usage)
			return exitOK
		case len(args) > 2 || (len(args) == 2 && args[0] != "import"):
			fmt.Fprintln(stderr, "totp-enroll help: want one command, or import KIND")
			return exitUsage
		case args[0] == "add":
			fmt.Fprint(stdout, addUsage)
			return exitOK
		}
		run, ok := commands[args[0]]
		if !ok || args[0] == "help" {
			fmt.Fprintf(stderr, "totp-enroll help: no command %q (see totp-enroll help)\n", args[0])
			return exitUsage
		}
		return run(append(args[1:], "--help"), stdin, stdout, stderr)
	}
	for name, c := range token {
		commands[name] = func(args []string, _ io.Reader, stdout, stderr io.Writer) int {
			return runTokenCommand(name, c, args, stdout, stderr)
		}
	}
	return commands
}

// A tokenCommand works on one user's enrollment.
type tokenCommand struct {
	args  string // the positional arguments, for the usage line
	opts  string // the command's own flags, for the usage line
	nargs int
	root  bool // an admin command
	help  string
	flags func(fs *flag.FlagSet) func() error // extra flags, and their check
	run   func(t *target, pos []string, out io.Writer) error
	// all says the command was given --all: it then needs no --user.
	all func() bool
}

// target is the user a command works on, and their files.
type target struct {
	acct *account
	loc  *location
	path string
	// dir is the user's entry with --directory; path then names the
	// configuration.
	dir *directory.Account
	// until: how long read waits for a lock held by another process; zero
	// is secret.LockTimeout from now.
	until time.Time
}

// update changes the enrollment under the lock that logins take, as the
// identity that owns the files.
func (t *target) update(change func(*secret.File, *secret.State) error) error {
	if t.dir != nil {
		return t.notEnrolled(t.dir.Update(change))
	}
	return t.loc.as(t.acct, func() error { return secret.Update(t.path, t.loc.access(t.acct), change) })
}

// updateAndSay is update for a change that says what it did: said only
// once it is written, and once. A change runs again when a login overtook
// it, and a refused write has done nothing.
func (t *target) updateAndSay(out io.Writer, change func(*secret.File, *secret.State, io.Writer) error) error {
	var said bytes.Buffer
	err := t.update(func(f *secret.File, st *secret.State) error {
		said.Reset()
		return change(f, st, &said)
	})
	if err == nil {
		out.Write(said.Bytes())
	}
	return err
}

// read returns the enrollment as it is now.
func (t *target) read() (*secret.File, *secret.State, error) {
	if t.dir != nil {
		f, st, err := t.dir.Enrollment()
		return f, st, t.notEnrolled(err)
	}
	var f *secret.File
	var st *secret.State
	err := t.loc.as(t.acct, func() error {
		until := t.until
		if until.IsZero() {
			until = time.Now().Add(secret.LockTimeout)
		}
		a, err := secret.LockBy(t.path, t.loc.access(t.acct), until)
		if err != nil {
			return err
		}
		defer a.Close()
		f, st = a.File, a.State
		return nil
	})
	return f, st, t.notEnrolled(err)
}

// notEnrolled says where the enrollment was looked for.
func (t *target) notEnrolled(err error) error {
	switch {
	case !errors.Is(err, secret.ErrNotEnrolled):
		return err
	case t.dir != nil:
		return fmt.Errorf("%s is not enrolled in the directory (%s)", t.acct.name, t.path)
	}
	return fmt.Errorf("%s is not enrolled (%s does not exist)", t.acct.name, t.path)
}

// close ends the target's connection to the directory, if any.
func (t *target) close() {
	if t.dir != nil {
		t.dir.Close()
	}
}

// runTokenCommand parses a command's flags, finds the user and runs it.
func runTokenCommand(name string, c *tokenCommand, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	userName := fs.String("user", "", "")
	secretFile := fs.String("secret-file", options.DefaultSecret, "")
	var dirs dirFlags
	dirs.register(fs)
	check := func() error { return nil }
	if c.flags != nil {
		check = c.flags(fs)
	}
	pos, err := parseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprintf(stdout, "Usage: totp-enroll %s %s%s[--user NAME] [--secret-file TEMPLATE | --directory FILE [--bind-dn DN [--bind-password-file FILE]]]\n\n%s\n", name, c.args, c.opts, c.help)
		return exitOK
	}
	if err == nil && len(pos) != c.nargs {
		err = fmt.Errorf("want %s", strings.TrimSpace(c.args))
		if c.nargs == 0 {
			err = fmt.Errorf("unexpected argument %q", pos[0])
		}
	}
	if err == nil {
		err = check()
	}
	if err == nil && c.root && os.Geteuid() != 0 {
		err = fmt.Errorf("%s is an admin command: run it as root", name)
	}
	t := &target{}
	if err == nil {
		t.loc, err = parseLocation("--secret-file", *secretFile)
	}
	var dc *directory.Config
	if err == nil {
		dc, err = dirs.config()
	}
	switch {
	case err == nil && dc != nil && *userName == "" && c.all != nil && c.all():
		t.acct, t.dir, t.path = &account{uid: -1, gid: -1}, directory.New(dc, ""), "directory "+dc.Path
	case err == nil && dc != nil:
		if t.acct, err = directoryAccount(*userName); err == nil {
			t.dir, t.path = directory.New(dc, t.acct.name), "directory "+dc.Path
		}
	case err == nil:
		if t.acct, err = lookupAccount(*userName); err == nil {
			t.path, err = t.loc.path(t.acct)
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "totp-enroll %s: %v (see %s --help)\n", name, err, name)
		return exitUsage
	}
	defer t.close()
	if err := c.run(t, pos, stdout); err != nil {
		fmt.Fprintf(stderr, "totp-enroll %s: %v\n", name, err)
		return exitError
	}
	return exitOK
}

// splitCommand finds a command after the global --user and --secret-file
// flags. The command's arguments come first in rest, then those flags.
func splitCommand(commands map[string]command, args []string) (name string, rest []string, ok bool) {
	var globals []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		flagName, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if strings.HasPrefix(a, "-") && slices.Contains(globalFlags, flagName) {
			switch {
			case hasValue:
				globals = append(globals, a)
				continue
			case i+1 < len(args):
				globals = append(globals, a, args[i+1])
				i++
				continue
			}
			return "", nil, false
		}
		if _, known := commands[a]; known || a == "add" {
			return a, append(append([]string(nil), args[i+1:]...), globals...), true
		}
		return "", nil, false
	}
	return "", nil, false
}

const importUsage = `Usage: totp-enroll import csv|pskc|oath FILE [options]

Imports tokens from another system's file: csv (hardware tokens' seeds),
pskc (a token vendor's PSKC file, RFC 6030), oath (pam_oath's users file).
Each kind has its own help: totp-enroll help import KIND.
`

func runImport(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "totp-enroll import: want oath, csv or pskc (see import --help)")
		return exitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help":
		fmt.Fprint(stdout, importUsage)
		return exitOK
	case "oath":
		return runImportOath(args[1:], stdout, stderr)
	case "csv":
		return runImportCSV(args[1:], stdout, stderr)
	case "pskc":
		return runImportPSKC(args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "totp-enroll import: unknown kind %q: want oath, csv or pskc\n", args[0])
	return exitUsage
}

// SPDX-License-Identifier: Apache-2.0

// Command totp-enroll enrolls a user for pam_totp: it makes a secret, shows
// it as a QR code, confirms a code from the app and writes the secret file
// with scratch codes. See docs/totp-enroll.md and totp-enroll --help.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"pamtotp/internal/directory"
	"pamtotp/internal/enroll"
	"pamtotp/internal/options"
	"pamtotp/internal/otp"
	"pamtotp/internal/privilege"
	"pamtotp/internal/secret"
	"pamtotp/internal/verify"
)

// Exit codes, documented in --help.
const (
	exitOK        = 0
	exitError     = 1 // the work failed: file exists, I/O, permissions
	exitUsage     = 2 // bad command line
	exitNoConfirm = 3 // the confirmation code was wrong three times
)

const usage = `Usage: totp-enroll [--user NAME] [--secret-file TEMPLATE] [options]
       totp-enroll [--user NAME] [--secret-file TEMPLATE] COMMAND [arguments]

Without a command, enrolls a user for pam_totp: makes a 160-bit secret,
shows it as a QR code and as text, asks for a code from the authenticator
app to confirm, writes the secret file and prints single-use scratch codes.

Options (enrollment and add):
  --user NAME            work on NAME instead of yourself (root only)
  --secret-file TEMPLATE the secret file, as the module's secret= option
                         (default ~/.pam_totp; %u user, %h or ~ home)
  --name NAME            the token's name (default "default")
  --type totp|hotp       time-based (default) or counter-based
  --counter N            hotp: the token's first counter (default 0)
  --comment TEXT         a note about the token, e.g. the device
  --valid-from DATE, --valid-until DATE
                         accept its codes only from, or only before, DATE
                         (YYYY-MM-DD, UTC, or RFC 3339), e.g. a contractor's
  --issuer TEXT          issuer shown by the app (default: this host's name)
  --label TEXT           account shown by the app (default: user@host)
  --digits 6|7|8         code length (default 6)
  --period SECONDS       time step, 10..120 (default 30)
  --algorithm ALG        SHA1, SHA256 or SHA512 (default SHA1)
  --scratch-codes N      scratch codes to make, 0..10 (default 5)
  --qr utf8|ansi|none    QR code style (default utf8)
  --secret BASE32        enroll this secret instead of a new one
  --no-confirm           do not ask for a code; never reads standard input
  --force                replace an existing enrollment
  --directory FILE       the user's entry in the LDAP directory FILE describes
                         (the module's directory=; root only), for enrollment
                         and every command that manages tokens
  --bind-dn DN           bind to the directory as DN (password asked, or
                         --bind-password-file FILE) instead of as the host

Commands for your own tokens (root: for anyone's, with --user):
  add --name NAME [options]  add a token (phone, tablet, hardware token)
  list                       list the tokens
  remove NAME                remove a token
  disable NAME, enable NAME  stop or resume accepting a token's codes

Admin commands (root):
  show NAME                  show a token's QR code again
  doctor [--pam-dir DIR] [--sshd-config FILE] [--sshd-service NAME] [--json]
                             check the PAM stacks, sshd, accounts and clock
  status [--all] [--json]    tokens, last use, drift, failures and lock;
                             --all: one row per enrolled user; --json: for monitoring
  unlock                     clear the failures and the lock
  sync NAME CODE1 CODE2 [--range STEPS]   resynchronise from two consecutive codes
  passcodes --generate N | --clear        one-time admin passcodes
  scratch --regenerate [--count N]        new scratch codes
  reset                      remove the enrollment
  restored [--all] [--hotp-skip N]        after a restore from a back-up: no code
                             used since the back-up works again
  import csv FILE [--users] [--skip-bad] [--dry-run]
  import pskc FILE [--key HEX | --password-file FILE] [--skip-bad]
  import oath FILE [--skip-bad] [--dry-run]
  migrate [--all] [--dry-run]             convert pam_google_authenticator files
  migrate --to-directory FILE [--user NAME | --all]
                             move enrollments into the directory with their state

Each command has --help, and totp-enroll help COMMAND says the same.
totp-enroll(1) has it all; an example session is in
/usr/share/doc/pam-totp/admin-guide.md. totp-enroll --version prints the
version.

Exit status: 0 done; 1 failed (nothing was written); 2 bad command line;
3 the confirmation code was wrong three times (nothing was written).
`

// version is the package's version (packaging/deb/changelog; TestVersion
// holds the two together).
const version = "0.1.0"

// addUsage is add's own help.
const addUsage = `Usage: totp-enroll add --name NAME [options] [--user NAME] [--secret-file TEMPLATE | --directory FILE]

Adds a token (a second phone, a tablet, a hardware token) to an existing
enrollment, with the enrollment's options: --name (required, not taken),
--type, --counter, --comment, --valid-from, --valid-until, --issuer, --label, --digits, --period,
--algorithm, --qr, --secret, --no-confirm. The enrollment keeps its scratch
codes. See totp-enroll --help for each option.
`

type config struct {
	user, secretFile, name, issuer, label, qr, secret string
	digits, period, scratch                           int
	algorithm, kind, comment                          string
	validFrom, validUntil                             string
	counter                                           int64
	noConfirm, force                                  bool
	add                                               bool // add a token to an enrollment
	dirs                                              dirFlags
}

// writer is where an enrollment is written: the user's files, or their
// entry in the directory.
type writer struct {
	acct     *account
	where    string
	enrolled bool
	create   func(f *secret.File, st *secret.State, force bool) error
	update   func(change func(*secret.File, *secret.State) error) error
	close    func()
}

// writer finds the user and where their enrollment goes, and drops to
// the user for good when it goes into their home. The exit code is for
// the error.
func (c *config) writer() (*writer, int, error) {
	dc, err := c.dirs.config()
	if err != nil {
		return nil, exitUsage, err
	}
	if dc != nil {
		acct, err := directoryAccount(c.user)
		if err != nil {
			return nil, exitUsage, err
		}
		d := directory.New(dc, acct.name)
		_, _, err = d.Enrollment()
		if err != nil && !errors.Is(err, secret.ErrNotEnrolled) {
			d.Close()
			return nil, exitError, err
		}
		return &writer{acct: acct, where: "directory " + dc.Path, enrolled: err == nil,
			create: d.Create, update: d.Update, close: func() { d.Close() }}, exitOK, nil
	}
	target, err := lookupAccount(c.user)
	if err != nil {
		return nil, exitUsage, err
	}
	loc, err := parseLocation("--secret-file", c.secretFile)
	if err != nil {
		return nil, exitUsage, err
	}
	path, err := loc.path(target)
	if err != nil {
		return nil, exitUsage, fmt.Errorf("--secret-file: %w", err)
	}
	acc := loc.access(target)
	if loc.opts.AsUser() {
		// Never write a user's home as root: become the user first, for good.
		if err := privilege.Drop(target.uid, target.gid); err != nil {
			return nil, exitError, err
		}
	} else if os.Geteuid() != 0 {
		return nil, exitError, fmt.Errorf("%s is in the root-owned store: run totp-enroll as root", path)
	} else if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, exitError, err
	}
	_, statErr := os.Lstat(path)
	return &writer{acct: target, where: path, enrolled: statErr == nil,
		create: func(f *secret.File, st *secret.State, force bool) error {
			return secret.Create(path, acc, f, st, force)
		},
		update: func(change func(*secret.File, *secret.State) error) error { return secret.Update(path, acc, change) },
		close:  func() {}}, exitOK, nil
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fail := func(code int, format string, a ...any) int {
		fmt.Fprintf(stderr, "totp-enroll: "+format+"\n", a...)
		return code
	}
	if len(args) == 1 && (args[0] == "--version" || args[0] == "-version") {
		fmt.Fprintf(stdout, "totp-enroll %s\n", version)
		return exitOK
	}
	commands := newCommands()
	if name, rest, ok := splitCommand(commands, args); ok && name != "add" {
		return commands[name](rest, stdin, stdout, stderr)
	} else if ok {
		args = append(rest, "--add")
	}
	c, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) && slices.Contains(args, "--add") {
		fmt.Fprint(stdout, addUsage)
		return exitOK
	}
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	if err != nil {
		return fail(exitUsage, "%v (see --help)", err)
	}
	w, code, err := c.writer()
	if err != nil {
		return fail(code, "%v", err)
	}
	defer w.close()
	target := w.acct
	switch {
	case c.add && !w.enrolled:
		return fail(exitError, "%s is not enrolled yet: run totp-enroll without add first", target.name)
	case !c.add && !c.force && w.enrolled && c.dirs.conf != "":
		return fail(exitError, "%s is enrolled in the %s (use --force to replace)", target.name, w.where)
	case !c.add && !c.force && w.enrolled:
		return fail(exitError, "%s exists: %s is enrolled (use --force to replace)", w.where, target.name)
	}

	tok, err := newToken(c)
	if err != nil {
		return fail(exitUsage, "%v", err)
	}
	if c.add {
		c.scratch = 0 // the enrollment keeps its scratch codes
	}
	scratch, err := enroll.ScratchCodes(c.scratch)
	if err != nil {
		return fail(exitError, "%v", err)
	}
	tok.Issuer, tok.Label = appNames(c.issuer, c.label, target.name, tok)
	verb := "Enrolling"
	if c.add {
		verb = "Adding a token for"
	}
	how := "Scan this QR code with an authenticator app:\n"
	if c.qr == enroll.QRNone {
		how = "Add it to an authenticator app with the secret or the URI below."
	}
	fmt.Fprintf(stdout, "%s %s (token %q). %s\n", verb, target.name, tok.Name, how)
	if err := showToken(stdout, tok.Issuer, tok.Label, tok, c.qr); err != nil {
		return fail(exitUsage, "%v", err)
	}

	file := &secret.File{Tokens: []secret.Token{*tok}, Scratch: scratch}
	state := secret.NewState()
	if !c.noConfirm {
		if !confirm(file, state, stdin, stdout) {
			return fail(exitNoConfirm, "the code was wrong three times; nothing was written (check the phone's clock)")
		}
	}
	if c.add {
		err := w.update(func(f *secret.File, st *secret.State) error {
			if f.Token(tok.Name) != nil {
				return fmt.Errorf("%s already has a token %q (choose another --name)", target.name, tok.Name)
			}
			if err := f.Add(*tok); err != nil {
				return fmt.Errorf("%s: %w", target.name, err)
			}
			if ts := state.Tokens[tok.Fingerprint()]; ts != nil {
				st.Tokens[tok.Fingerprint()] = ts
			}
			return nil
		})
		if err != nil {
			return fail(exitError, "%v", err)
		}
		fmt.Fprintf(stdout, "Added token %q to %s\n", tok.Name, w.where)
		return exitOK
	}
	// Under the enrollment lock: the state (it records the confirmation
	// code as used), then the secret. Without a confirmation there is
	// nothing to record, and a state file that exists is kept: it may hold
	// a lockout.
	st := state
	if c.noConfirm {
		st = nil
	}
	if err := w.create(file, st, c.force); err != nil {
		return fail(exitError, "%v", err)
	}
	fmt.Fprintf(stdout, "Written: %s\n", w.where)
	if len(scratch) > 0 {
		fmt.Fprintf(stdout, "\nEmergency scratch codes (each works once; keep them apart from the phone):\n")
		for _, s := range scratch {
			fmt.Fprintf(stdout, "  %s\n", s)
		}
	}
	return exitOK
}

func parseFlags(args []string, stderr io.Writer) (*config, error) {
	c := &config{}
	fs := flag.NewFlagSet("totp-enroll", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&c.user, "user", "", "")
	fs.StringVar(&c.secretFile, "secret-file", options.DefaultSecret, "")
	fs.StringVar(&c.name, "name", "default", "")
	fs.StringVar(&c.issuer, "issuer", "", "")
	fs.StringVar(&c.label, "label", "", "")
	fs.IntVar(&c.digits, "digits", otp.DefaultParams.Digits, "")
	fs.IntVar(&c.period, "period", otp.DefaultParams.Period, "")
	fs.StringVar(&c.algorithm, "algorithm", string(otp.DefaultParams.Algorithm), "")
	fs.IntVar(&c.scratch, "scratch-codes", 5, "")
	fs.StringVar(&c.qr, "qr", enroll.QRUTF8, "")
	fs.StringVar(&c.secret, "secret", "", "")
	fs.BoolVar(&c.noConfirm, "no-confirm", false, "")
	fs.BoolVar(&c.force, "force", false, "")
	fs.BoolVar(&c.add, "add", false, "")
	fs.StringVar(&c.kind, "type", string(secret.TOTP), "")
	fs.Int64Var(&c.counter, "counter", 0, "")
	fs.StringVar(&c.comment, "comment", "", "")
	fs.StringVar(&c.validFrom, "valid-from", "", "")
	fs.StringVar(&c.validUntil, "valid-until", "", "")
	c.dirs.register(fs)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if c.scratch < 0 || c.scratch > 10 {
		return nil, errors.New("--scratch-codes must be 0..10")
	}
	switch c.qr {
	case enroll.QRUTF8, enroll.QRANSI, enroll.QRNone:
	default:
		return nil, fmt.Errorf("--qr must be utf8, ansi or none, not %q", c.qr)
	}
	for _, s := range []string{c.issuer, c.label} {
		if err := secret.CheckAppText(s); s != "" && err != nil {
			return nil, fmt.Errorf("--issuer and --label: %w", err)
		}
	}
	return c, nil
}

func newToken(c *config) (*secret.Token, error) {
	alg, err := otp.ParseAlgorithm(c.algorithm)
	if err != nil {
		return nil, fmt.Errorf("--algorithm: %w", err)
	}
	if kind := secret.Kind(c.kind); kind != secret.TOTP && kind != secret.HOTP {
		return nil, fmt.Errorf("--type must be totp or hotp, not %q", c.kind)
	}
	t := &secret.Token{Name: c.name, Type: secret.Kind(c.kind), Params: otp.Params{Algorithm: alg, Digits: c.digits, Period: c.period},
		Created: time.Now().Unix(), Comment: c.comment}
	if t.Type == secret.HOTP {
		t.Params.Period, t.Counter = 0, c.counter
	}
	if err := setValidity(t, c.validFrom, c.validUntil); err != nil {
		return nil, err
	}
	if c.secret != "" {
		t.Key, err = otp.DecodeKey(c.secret)
	} else {
		t.Key, err = enroll.NewKey()
	}
	if err != nil {
		return nil, fmt.Errorf("--secret: %w", err)
	}
	if err := t.Validate(); err != nil {
		return nil, err
	}
	return t, nil
}

// appNames are the issuer and the account name the app shows for tok:
// the ones given, else this host and user@host, with the token's name
// when it is not the default, so that two tokens of one user in one phone
// can be told apart.
func appNames(issuer, label, user string, tok *secret.Token) (string, string) {
	host, _ := os.Hostname()
	if issuer == "" {
		issuer = host
	}
	if label == "" {
		label = user + "@" + host
		if tok.Name != "default" {
			label += " (" + tok.Name + ")"
		}
	}
	return issuer, label
}

// confirm asks for a code from the app on the terminal.
func confirm(f *secret.File, st *secret.State, stdin io.Reader, stdout io.Writer) bool {
	in := bufio.NewReader(io.LimitReader(stdin, 4096))
	ask := func() (string, error) {
		fmt.Fprint(stdout, "Code from the app, to confirm: ")
		line, err := in.ReadString('\n')
		if code := strings.TrimSpace(line); code != "" || err == nil {
			return code, nil
		}
		fmt.Fprintln(stdout)
		return "", err
	}
	wrong := func(bool) { fmt.Fprintln(stdout, "That code is not right.") }
	ok, _ := enroll.Confirm(f, st, time.Now().Unix(), verify.DefaultPolicy.InitialWindow, ask, wrong)
	if ok {
		fmt.Fprintln(stdout, "Confirmed.")
	}
	return ok
}

// setValidity sets the token's validity dates to --valid-from and
// --valid-until; one not given is unbounded.
func setValidity(t *secret.Token, from, until string) error {
	t.ValidFrom, t.ValidUntil = 0, 0
	for _, d := range []struct {
		flag, value string
		to          *int64
	}{{"--valid-from", from, &t.ValidFrom}, {"--valid-until", until, &t.ValidUntil}} {
		if d.value == "" {
			continue
		}
		at, err := time.Parse(time.RFC3339, d.value)
		if err != nil {
			if at, err = time.Parse(time.DateOnly, d.value); err != nil {
				return fmt.Errorf("%s: %q is not YYYY-MM-DD or an RFC 3339 time", d.flag, d.value)
			}
		}
		*d.to = at.Unix()
	}
	if t.ValidUntil != 0 && t.ValidUntil <= t.ValidFrom {
		return errors.New("--valid-until must come after --valid-from")
	}
	return nil
}

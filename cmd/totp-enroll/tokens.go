// SPDX-License-Identifier: Apache-2.0

package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"pamtotp/internal/enroll"
	"pamtotp/internal/options"
	"pamtotp/internal/otp"
	"pamtotp/internal/secret"
)

// A tokenCommand works on one user's enrollment.
type tokenCommand struct {
	args  string // the positional arguments, for the usage line
	nargs int
	root  bool // an admin command
	help  string
	flags func(fs *flag.FlagSet) func() error // extra flags, and their check
	run   func(t *target, pos []string, out io.Writer) error
}

// target is the user a command works on, and their files.
type target struct {
	acct *account
	loc  *location
	path string
}

// update changes the enrollment under the lock that logins take, as the
// identity that owns the files.
func (t *target) update(change func(*secret.File, *secret.State) error) error {
	return t.loc.as(t.acct, func() error { return secret.Update(t.path, t.loc.access(t.acct), change) })
}

// read returns the enrollment as it is now.
func (t *target) read() (*secret.File, *secret.State, error) {
	var f *secret.File
	var st *secret.State
	err := t.loc.as(t.acct, func() error {
		a, err := secret.Lock(t.path, t.loc.access(t.acct))
		if err != nil {
			return err
		}
		defer a.Close()
		f, st = a.File, a.State
		return nil
	})
	if errors.Is(err, secret.ErrNotEnrolled) {
		err = fmt.Errorf("%s is not enrolled (%s does not exist)", t.acct.name, t.path)
	}
	return f, st, err
}

// runTokenCommand parses a command's flags, finds the user and runs it.
func runTokenCommand(name string, c *tokenCommand, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	userName := fs.String("user", "", "")
	secretFile := fs.String("secret-file", options.DefaultSecret, "")
	check := func() error { return nil }
	if c.flags != nil {
		check = c.flags(fs)
	}
	pos, err := parseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprintf(stdout, "Usage: totp-enroll %s %s[--user NAME] [--secret-file TEMPLATE]\n\n%s\n", name, c.args, c.help)
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
	if err == nil {
		t.acct, err = lookupAccount(*userName)
	}
	if err == nil {
		t.path, err = t.loc.path(t.acct)
	}
	if err != nil {
		fmt.Fprintf(stderr, "totp-enroll %s: %v (see %s --help)\n", name, err, name)
		return exitUsage
	}
	if err := c.run(t, pos, stdout); err != nil {
		fmt.Fprintf(stderr, "totp-enroll %s: %v\n", name, err)
		return exitError
	}
	return exitOK
}

func tokenNamed(f *secret.File, name string) (*secret.Token, error) {
	t := f.Token(name)
	if t == nil {
		return nil, fmt.Errorf("no token %q", name)
	}
	return t, nil
}

func setDisabled(disabled bool) func(t *target, pos []string, out io.Writer) error {
	return func(t *target, pos []string, out io.Writer) error {
		return t.update(func(f *secret.File, _ *secret.State) error {
			tok, err := tokenNamed(f, pos[0])
			if err != nil {
				return err
			}
			tok.Disabled = disabled
			word := map[bool]string{true: "disabled", false: "enabled"}[disabled]
			fmt.Fprintf(out, "%s: token %s %s\n", t.acct.name, tok.Name, word)
			return nil
		})
	}
}

func when(unix int64) string {
	if unix == 0 {
		return "never"
	}
	return time.Unix(unix, 0).UTC().Format("2006-01-02 15:04:05 UTC")
}

func listTokens(t *target, _ []string, out io.Writer) error {
	f, st, err := t.read()
	if err != nil {
		return err
	}
	for i := range f.Tokens {
		tok := &f.Tokens[i]
		state := "enabled"
		if tok.Disabled {
			state = "disabled"
		}
		fmt.Fprintf(out, "%-20s %-8s %-32s last used %s", tok.Name, state, tok.Describe(), when(st.Token(tok).At))
		if tok.Comment != "" {
			fmt.Fprintf(out, "  # %s", tok.Comment)
		}
		fmt.Fprintln(out)
	}
	fmt.Fprintf(out, "scratch codes left: %d, admin passcodes left: %d\n",
		unused(f.Scratch, st), unused(f.Passcodes, st))
	return nil
}

func unused(codes []string, st *secret.State) int {
	n := 0
	for _, c := range codes {
		if !st.ScratchIsUsed(c) {
			n++
		}
	}
	return n
}

func status(t *target, _ []string, out io.Writer) error {
	f, st, err := t.read()
	if err != nil {
		return err
	}
	now := time.Now().Unix()
	fmt.Fprintf(out, "user %s, file %s\n", t.acct.name, t.path)
	for i := range f.Tokens {
		tok := &f.Tokens[i]
		ts := st.Token(tok)
		enabled := "enabled"
		if tok.Disabled {
			enabled = "disabled"
		}
		fmt.Fprintf(out, "token %s: %s, %s, created %s, last used %s", tok.Name, tok.Describe(), enabled, when(tok.Created), when(ts.At))
		if tok.Type == secret.TOTP {
			fmt.Fprintf(out, ", drift %+d steps (%+d s)", ts.Drift, ts.Drift*int64(tok.Params.Period))
		} else if ts.Used {
			fmt.Fprintf(out, ", last counter %d", ts.LastStep)
		}
		if ts.Pending {
			fmt.Fprint(out, ", resync pending")
		}
		fmt.Fprintln(out)
	}
	lock := "not locked"
	if st.LockedUntil > now {
		lock = "locked until " + when(st.LockedUntil)
	}
	fmt.Fprintf(out, "failures %d, %s, locks since the last success %d, wrong codes since the last success %d\n",
		st.Failures, lock, st.Lockouts, st.Missed)
	fmt.Fprintf(out, "scratch codes left %d, admin passcodes left %d\n", unused(f.Scratch, st), unused(f.Passcodes, st))
	return nil
}

// syncToken finds two consecutive codes within the range and sets the
// token's drift (TOTP) or counter (HOTP) to the second; both count as used.
func syncToken(rng *int) func(t *target, pos []string, out io.Writer) error {
	return func(t *target, pos []string, out io.Writer) error {
		return t.update(func(f *secret.File, st *secret.State) error {
			tok, err := tokenNamed(f, pos[0])
			if err != nil {
				return err
			}
			for _, c := range pos[1:] {
				if !otp.IsDigits(c, tok.Params.Digits) {
					return fmt.Errorf("a code of %s is %d digits", tok.Name, tok.Params.Digits)
				}
			}
			ts := st.Token(tok)
			now := time.Now().Unix()
			from, to, center := int64(0), int64(0), int64(0)
			if tok.Type == secret.HOTP {
				from = tok.Counter
				if ts.Used {
					from = ts.LastStep + 1
				}
				to, center = from+int64(*rng), from
			} else {
				center = otp.Step(now, tok.Params.Period)
				from, to = max(center-int64(*rng), 0), center+int64(*rng)
				if ts.Used {
					from = max(from, ts.LastStep+1) // used codes stay used
				}
			}
			best, found := int64(0), false
			for s := from; s < to; s++ {
				a, _ := otp.Code(tok.Key, uint64(s), tok.Params)
				b, _ := otp.Code(tok.Key, uint64(s+1), tok.Params)
				if otp.Equal(pos[1], a) && otp.Equal(pos[2], b) && (!found || abs(s+1-center) < abs(best-center)) {
					best, found = s+1, true
				}
			}
			if !found {
				return fmt.Errorf("%s: no two consecutive codes match within %d steps; nothing was changed", tok.Name, *rng)
			}
			ts.Used, ts.LastStep, ts.At = true, best, now
			ts.Pending, ts.PendingStep, ts.PendingOffset = false, 0, 0
			if tok.Type == secret.HOTP {
				fmt.Fprintf(out, "%s: token %s is at counter %d\n", t.acct.name, tok.Name, best)
				return nil
			}
			ts.Drift = best - center
			fmt.Fprintf(out, "%s: token %s drift set to %+d steps (%+d s)\n", t.acct.name, tok.Name, ts.Drift, ts.Drift*int64(tok.Params.Period))
			return nil
		})
	}
}

func abs(x int64) int64 {
	if x < 0 {
		return -x
	}
	return x
}

func printCodes(out io.Writer, title string, codes []string) {
	fmt.Fprintln(out, title)
	for _, c := range codes {
		fmt.Fprintf(out, "  %s\n", c)
	}
}

// A command runs with its arguments and exits with the returned status.
type command func(args []string, stdin io.Reader, stdout, stderr io.Writer) int

// newCommands returns the commands; the flag values a command's run reads
// are local to one call.
func newCommands() map[string]command {
	var syncRange, generate, count int
	var clear, regenerate bool
	var qr, issuer, label string
	token := map[string]*tokenCommand{
		"list": {help: "Lists the user's tokens.", run: listTokens},
		"remove": {args: "NAME ", nargs: 1, help: "Removes a token; its codes stop working at once.",
			run: func(t *target, pos []string, out io.Writer) error {
				return t.update(func(f *secret.File, _ *secret.State) error {
					if _, err := tokenNamed(f, pos[0]); err != nil {
						return err
					}
					if len(f.Tokens) == 1 {
						return fmt.Errorf("%s is the last token: use reset to remove the enrollment", pos[0])
					}
					for i := range f.Tokens {
						if f.Tokens[i].Name == pos[0] {
							f.Tokens = append(f.Tokens[:i:i], f.Tokens[i+1:]...)
							break
						}
					}
					fmt.Fprintf(out, "%s: token %s removed\n", t.acct.name, pos[0])
					return nil
				})
			}},
		"disable": {args: "NAME ", nargs: 1, help: "Disables a token (a lost device); the others keep working.", run: setDisabled(true)},
		"enable":  {args: "NAME ", nargs: 1, help: "Enables a disabled token again.", run: setDisabled(false)},
		"show": {args: "NAME ", nargs: 1, root: true,
			help: "Shows a token's QR code again (root only: a secret should not leave the server twice by accident).",
			flags: func(fs *flag.FlagSet) func() error {
				fs.StringVar(&qr, "qr", enroll.QRUTF8, "")
				fs.StringVar(&issuer, "issuer", "", "")
				fs.StringVar(&label, "label", "", "")
				return func() error { return nil }
			},
			run: func(t *target, pos []string, out io.Writer) error {
				f, _, err := t.read()
				if err != nil {
					return err
				}
				tok, err := tokenNamed(f, pos[0])
				if err != nil {
					return err
				}
				host, _ := os.Hostname()
				if issuer == "" {
					issuer = host
				}
				if label == "" {
					label = t.acct.name + "@" + host
				}
				return showToken(out, issuer, label, tok, qr)
			}},
		"status": {root: true, help: "Shows each token's type, creation, last use and drift, and the failures and lock.", run: status},
		"unlock": {root: true, help: "Clears the failure count and the lock, and starts locks at unlock_time again.",
			run: func(t *target, _ []string, out io.Writer) error {
				return t.update(func(_ *secret.File, st *secret.State) error {
					// Missed stays: the user is still told of the wrong codes.
					st.Failures, st.LockedUntil, st.FailedAt, st.Lockouts = 0, 0, nil, 0
					fmt.Fprintf(out, "%s: unlocked\n", t.acct.name)
					return nil
				})
			}},
		"sync": {args: "NAME CODE1 CODE2 ", nargs: 3, root: true,
			help: "Resynchronises a token from two consecutive codes, searching --range STEPS (default 600) each side of now.",
			flags: func(fs *flag.FlagSet) func() error {
				fs.IntVar(&syncRange, "range", 600, "")
				return func() error {
					if syncRange < 1 || syncRange > 100000 {
						return errors.New("--range must be 1..100000")
					}
					return nil
				}
			},
			run: syncToken(&syncRange)},
		"passcodes": {root: true, help: "--generate N makes N one-time admin passcodes (8 digits, no expiry, single use, shown once); --clear removes them all.",
			flags: func(fs *flag.FlagSet) func() error {
				fs.IntVar(&generate, "generate", 0, "")
				fs.BoolVar(&clear, "clear", false, "")
				return func() error {
					if clear == (generate != 0) || generate < 0 || generate > 20 {
						return errors.New("want --generate 1..20 or --clear")
					}
					return nil
				}
			},
			run: func(t *target, _ []string, out io.Writer) error {
				var codes []string
				err := t.update(func(f *secret.File, _ *secret.State) error {
					if clear {
						f.Passcodes = nil
						return nil
					}
					var err error
					if codes, err = enroll.ScratchCodes(generate); err != nil {
						return err
					}
					f.Passcodes = append(f.Passcodes, codes...)
					return nil
				})
				if err != nil {
					return err
				}
				if clear {
					fmt.Fprintf(out, "%s: admin passcodes cleared\n", t.acct.name)
				} else {
					printCodes(out, t.acct.name+": admin passcodes (each works once; they are not shown again):", codes)
				}
				return nil
			}},
		"scratch": {root: true, help: "--regenerate makes new scratch codes (--count N, default 5); the old ones stop working.",
			flags: func(fs *flag.FlagSet) func() error {
				fs.BoolVar(&regenerate, "regenerate", false, "")
				fs.IntVar(&count, "count", 5, "")
				return func() error {
					if !regenerate || count < 1 || count > 10 {
						return errors.New("want --regenerate [--count 1..10]")
					}
					return nil
				}
			},
			run: func(t *target, _ []string, out io.Writer) error {
				var codes []string
				err := t.update(func(f *secret.File, _ *secret.State) error {
					var err error
					codes, err = enroll.ScratchCodes(count)
					f.Scratch = codes
					return err
				})
				if err == nil {
					printCodes(out, t.acct.name+": new scratch codes (the old ones no longer work):", codes)
				}
				return err
			}},
		"reset": {root: true, help: "Removes the enrollment: the next login fails, or passes with nullok.",
			run: func(t *target, _ []string, out io.Writer) error {
				return t.loc.as(t.acct, func() error {
					a, err := secret.Lock(t.path, t.loc.access(t.acct))
					if err != nil {
						return err
					}
					defer a.Close()
					// The state first: without the secret it means nothing.
					if err := os.Remove(secret.StatePath(t.path)); err != nil && !errors.Is(err, os.ErrNotExist) {
						return err
					}
					if err := os.Remove(t.path); err != nil {
						return err
					}
					fmt.Fprintf(out, "%s: enrollment removed (%s)\n", t.acct.name, t.path)
					return nil
				})
			}},
	}
	commands := map[string]command{
		"migrate": func(args []string, _ io.Reader, stdout, stderr io.Writer) int {
			return runMigrate(args, stdout, stderr)
		},
		"import": runImport,
	}
	for name, c := range token {
		commands[name] = func(args []string, _ io.Reader, stdout, stderr io.Writer) int {
			return runTokenCommand(name, c, args, stdout, stderr)
		}
	}
	return commands
}

// splitCommand finds a command after the global --user and --secret-file
// flags. The command's arguments come first in rest, then those flags.
func splitCommand(commands map[string]command, args []string) (name string, rest []string, ok bool) {
	var globals []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--user" || a == "-user" || a == "--secret-file" || a == "-secret-file":
			if i+1 < len(args) {
				globals = append(globals, a, args[i+1])
				i++
				continue
			}
			return "", nil, false
		case strings.HasPrefix(a, "--user=") || strings.HasPrefix(a, "--secret-file="):
			globals = append(globals, a)
			continue
		}
		if _, known := commands[a]; known || a == "add" {
			return a, append(append([]string(nil), args[i+1:]...), globals...), true
		}
		return "", nil, false
	}
	return "", nil, false
}

func runImport(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "totp-enroll import: want oath, csv or pskc (see --help)")
		return exitUsage
	}
	switch args[0] {
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

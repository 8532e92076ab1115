// SPDX-License-Identifier: Apache-2.0

package main

import (
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"pamtotp/internal/options"
	"pamtotp/internal/otp"
	"pamtotp/internal/secret"
)

const importOathUsage = `Usage: totp-enroll import oath FILE [options]

Imports pam_oath's users file (oath-toolkit): lines of
  TYPE USER PIN HEXKEY [COUNTER [LASTOTP [TIME]]]
with TYPE HOTP, HOTP/E, HOTP/E/8, HOTP/T30, HOTP/T60/8 and so on. Each line
becomes a token named oath (oath-2, ... for more) in that user's pam_totp
file, which is created or added to. The counter, and for time-based lines
the time of the last code, carry over, so no used code works again.
The whole file is refused on the first bad line unless --skip-bad.

Options:
  --user NAME            import only NAME's lines
  --secret-file TEMPLATE where to write (default ~/.pam_totp)
  --skip-bad             report bad lines and import the rest
  --dry-run              say what would be done; write nothing
`

// importEntry is one token to import: from a line of a users file, or a
// key package.
type importEntry struct {
	line  int
	user  string
	base  string // the token's name, or the start of it if taken
	token secret.Token
	last  int64 // the step or counter of the last code used, -1 if none
}

func runImportOath(args []string, stdout, stderr io.Writer) int {
	c := newImportCommand("import oath", importOathUsage)
	loc, data, file, exit := c.start(args, stdout, stderr, func() error { return nil })
	if exit >= 0 {
		return exit
	}
	entries, bad := parseOath(data, time.Now())
	var keep []importEntry
	for _, e := range entries {
		if *c.user == "" || e.user == *c.user {
			keep = append(keep, e)
		}
	}
	return c.finish(loc, file, keep, bad, stdout, stderr)
}

// importCommand is what the import commands share: their common flags,
// reading FILE, and writing and reporting the tokens.
type importCommand struct {
	name, usage  string
	fs           *flag.FlagSet
	user, to     *string
	skipBad, dry *bool
}

func newImportCommand(name, usage string) *importCommand {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return &importCommand{name: name, usage: usage, fs: fs,
		user: fs.String("user", "", ""), to: fs.String("secret-file", options.DefaultSecret, ""),
		skipBad: fs.Bool("skip-bad", false, ""), dry: fs.Bool("dry-run", false, "")}
}

// start parses the flags (check judges the command's own), and reads FILE.
// An exit status of 0 or more means: stop with it.
func (c *importCommand) start(args []string, stdout, stderr io.Writer, check func() error) (*location, []byte, string, int) {
	pos, err := parseInterspersed(c.fs, args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, c.usage)
		return nil, nil, "", exitOK
	}
	if err == nil && len(pos) != 1 {
		err = errors.New("want exactly one FILE")
	}
	if err == nil {
		err = check()
	}
	var loc *location
	if err == nil {
		loc, err = parseLocation("--secret-file", *c.to)
	}
	if err != nil {
		fmt.Fprintf(stderr, "totp-enroll %s: %v (see %s --help)\n", c.name, err, c.name)
		return nil, nil, "", exitUsage
	}
	data, err := readInput(pos[0])
	if err != nil {
		fmt.Fprintf(stderr, "totp-enroll %s: %v\n", c.name, err)
		return nil, nil, "", exitError
	}
	return loc, data, pos[0], -1
}

func (c *importCommand) finish(loc *location, file string, entries []importEntry, bad []error, stdout, stderr io.Writer) int {
	return importEntries(c.name, file, loc, entries, bad, *c.skipBad, *c.dry, stdout, stderr)
}

// importEntries writes the entries into their users' files, each user's at
// once. A bad entry (or an unknown user) refuses the whole import unless
// skipBad; then bad entries are reported and left out.
func importEntries(cmd, file string, loc *location, entries []importEntry, bad []error, skipBad, dry bool, stdout, stderr io.Writer) int {
	accounts := map[string]*account{}
	var users []string
	var keep []importEntry
	for _, e := range entries {
		if accounts[e.user] == nil {
			a, err := lookupAccount(e.user)
			if err != nil {
				bad = append(bad, fmt.Errorf("line %d: %v", e.line, err))
				continue
			}
			accounts[e.user] = a
			users = append(users, e.user)
		}
		keep = append(keep, e)
	}
	if len(bad) > 0 && !skipBad {
		fmt.Fprintf(stderr, "totp-enroll %s: %s: %v; nothing was imported\n", cmd, file, bad[0])
		return exitError
	}
	for _, e := range bad {
		fmt.Fprintf(stderr, "totp-enroll %s: skipped %v\n", cmd, e)
	}
	failed := 0
	for _, name := range users {
		var mine []importEntry
		for _, e := range keep {
			if e.user == name {
				mine = append(mine, e)
			}
		}
		if err := importFor(loc, accounts[name], mine, dry, stdout); err != nil {
			fmt.Fprintf(stderr, "totp-enroll %s: %s: %v\n", cmd, name, err)
			failed++
		}
	}
	fmt.Fprintf(stdout, "users %d, tokens %d, bad lines %d, failed users %d\n", len(users)-failed, len(keep), len(bad), failed)
	if failed > 0 {
		return exitError
	}
	return exitOK
}

// readInput reads FILE, or standard input for "-", bounded like every file
// pam_totp reads.
func readInput(name string) ([]byte, error) {
	var r io.Reader = os.Stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, 4<<20+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	if len(data) > 4<<20 {
		return nil, fmt.Errorf("%s is larger than 4 MiB", name)
	}
	return data, nil
}

// importFor adds a user's tokens to their file, creating it if need be.
func importFor(loc *location, a *account, entries []importEntry, dry bool, stdout io.Writer) error {
	path, err := loc.path(a)
	if err != nil {
		return err
	}
	return loc.as(a, func() error {
		add := func(f *secret.File, st *secret.State) error {
			for _, e := range entries {
				t := e.token
				t.Name = freeName(f, e.base)
				if err := f.Add(t); err != nil {
					return fmt.Errorf("line %d: %w", e.line, err)
				}
				if e.last >= 0 {
					ts := st.Token(&t)
					ts.Used, ts.LastStep = true, e.last
				}
				fmt.Fprintf(stdout, "%s: line %d: token %s (%s) -> %s\n", a.name, e.line, t.Name, describe(&t), path)
			}
			return nil
		}
		if !loc.opts.AsUser() && !dry {
			if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
				return err
			}
			if err := secret.CheckStoreDir(path, 0); err != nil {
				return err
			}
		}
		if _, err := os.Lstat(path); err == nil {
			if dry {
				f, err := secret.Read(path, loc.access(a))
				if err != nil {
					return err
				}
				return add(f, secret.NewState())
			}
			return secret.Update(path, loc.access(a), add)
		}
		f, st := &secret.File{}, secret.NewState()
		if err := add(f, st); err != nil || dry {
			return err
		}
		return secret.Create(path, loc.access(a), f, st, false)
	})
}

// freeName is base, or base-2, base-3, ... if taken.
func freeName(f *secret.File, base string) string {
	name := base
	for i := 2; f.Token(name) != nil; i++ {
		name = fmt.Sprintf("%s-%d", base, i)
	}
	return name
}

func describe(t *secret.Token) string {
	if t.Type == secret.HOTP {
		return fmt.Sprintf("counter-based, %d digits, next counter %d", t.Params.Digits, t.Counter)
	}
	return fmt.Sprintf("time-based, %d digits, %d s", t.Params.Digits, t.Params.Period)
}

// parseLines runs parse on each line that is neither blank nor a comment
// ('#'), and returns the entries of the good lines and one error a bad line.
func parseLines(data string, parse func(line string) (*importEntry, error)) ([]importEntry, []error) {
	var out []importEntry
	var bad []error
	for i, l := range strings.Split(data, "\n") {
		l = strings.TrimRight(l, "\r")
		if t := strings.TrimSpace(l); t == "" || t[0] == '#' {
			continue
		}
		e, err := parse(l)
		if err != nil {
			bad = append(bad, fmt.Errorf("line %d: %w", i+1, err))
			continue
		}
		e.line = i + 1
		out = append(out, *e)
	}
	return out, bad
}

// parseOath reads a pam_oath users file.
func parseOath(data []byte, now time.Time) ([]importEntry, []error) {
	return parseLines(string(data), func(l string) (*importEntry, error) { return parseOathLine(l, now) })
}

func parseOathLine(l string, now time.Time) (*importEntry, error) {
	f := strings.Fields(l)
	if len(f) < 4 || len(f) > 7 {
		return nil, errors.New("want TYPE USER PIN HEXKEY [COUNTER [LASTOTP [TIME]]]")
	}
	t := secret.Token{Type: secret.HOTP, Params: otp.Params{Algorithm: otp.SHA1, Digits: 6}, Created: now.Unix()}
	parts := strings.Split(f[0], "/")
	if parts[0] != "HOTP" || len(parts) > 3 {
		return nil, fmt.Errorf("unknown token type %q", f[0])
	}
	for i, p := range parts[1:] {
		switch {
		case i == 0 && p == "E":
		case i == 0 && strings.HasPrefix(p, "T"):
			n, err := strconv.Atoi(p[1:])
			if err != nil {
				return nil, fmt.Errorf("bad time step in %q", f[0])
			}
			t.Type, t.Params.Period = secret.TOTP, n
		default:
			n, err := strconv.Atoi(p)
			if err != nil {
				return nil, fmt.Errorf("bad digits in %q", f[0])
			}
			t.Params.Digits = n
		}
	}
	if err := options.ValidUser(f[1]); err != nil {
		return nil, err
	}
	if f[2] != "-" && f[2] != "+" {
		return nil, errors.New("a PIN in the users file is not supported (pam_totp stacks after the password module); remove it first")
	}
	key, err := hex.DecodeString(f[3])
	if err != nil {
		return nil, errors.New("the key is not hexadecimal")
	}
	if len(key) < otp.MinKeyBytes || len(key) > otp.MaxKeyBytes {
		return nil, fmt.Errorf("the key must be %d to %d bytes, not %d", otp.MinKeyBytes, otp.MaxKeyBytes, len(key))
	}
	t.Key = key
	e := &importEntry{user: f[1], base: "oath", token: t, last: -1}
	if len(f) >= 5 && e.token.Type == secret.HOTP {
		// pam_oath stores the next counter to try.
		if e.token.Counter, err = strconv.ParseInt(f[4], 10, 64); err != nil || e.token.Counter < 0 {
			return nil, fmt.Errorf("bad counter %q", f[4])
		}
	}
	if len(f) == 7 && e.token.Type == secret.TOTP {
		// pam_oath writes local time with an L, or UTC with a Z.
		loc, stamp := time.Local, strings.TrimSuffix(f[6], "L")
		if strings.HasSuffix(f[6], "Z") {
			loc, stamp = time.UTC, strings.TrimSuffix(f[6], "Z")
		}
		at, err := time.ParseInLocation("2006-01-02T15:04:05", stamp, loc)
		if err != nil {
			return nil, fmt.Errorf("bad time of the last code %q", f[6])
		}
		e.last = otp.Step(at.Unix(), t.Params.Period)
	}
	if err := e.token.Validate(); err != nil {
		return nil, err
	}
	return e, nil
}

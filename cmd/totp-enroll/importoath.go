// SPDX-License-Identifier: Apache-2.0

package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"pamtotp/internal/directory"
	"pamtotp/internal/options"
	"pamtotp/internal/secret"
	"pamtotp/internal/tokenimport"
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
  --valid-from DATE, --valid-until DATE
                         accept the tokens' codes only from, or only before,
                         DATE (YYYY-MM-DD, UTC, or RFC 3339)
  --directory FILE       into the users' entries in the directory (the
                         module's directory=), with --bind-dn DN and
                         --bind-password-file FILE for the admin's identity
`

func runImportOath(args []string, stdout, stderr io.Writer) int {
	c := newImportCommand("import oath", importOathUsage)
	in, err := c.start(args, stdout, stderr, func() error { return nil })
	if err != nil {
		return exitStatus(err)
	}
	entries, bad := tokenimport.ParseOath(in.data, time.Now())
	var keep []tokenimport.Entry
	for _, e := range entries {
		if *c.user == "" || e.User == *c.user {
			keep = append(keep, e)
		}
	}
	return c.finish(in, keep, bad, stdout, stderr)
}

// importCommand is what the import commands share: their common flags,
// reading FILE, and writing and reporting the tokens.
type importCommand struct {
	name, usage  string
	fs           *flag.FlagSet
	user, to     *string
	skipBad, dry *bool
	from, until  *string // --valid-from, --valid-until: for every token
	dirs         dirFlags
}

func newImportCommand(name, usage string) *importCommand {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c := &importCommand{name: name, usage: usage, fs: fs,
		user: fs.String("user", "", ""), to: fs.String("secret-file", options.DefaultSecret, ""),
		skipBad: fs.Bool("skip-bad", false, ""), dry: fs.Bool("dry-run", false, ""),
		from: fs.String("valid-from", "", ""), until: fs.String("valid-until", "", "")}
	c.dirs.register(fs)
	return c
}

// importInput is what an import command read: where to write, the file's
// name and its bytes.
type importInput struct {
	loc   *location
	dir   *directory.Config // --directory: into the directory instead
	file  string
	data  []byte
	named string // --user: the one account the admin named, or ""
}

// stop ends a command with an exit status; what to say was said.
type stop int

func (s stop) Error() string { return fmt.Sprintf("exit status %d", int(s)) }

// exitStatus is the exit status err ends a command with.
func exitStatus(err error) int {
	var s stop
	if errors.As(err, &s) {
		return int(s)
	}
	return exitError
}

// start parses the flags (check judges the command's own), and reads FILE.
// An error is a stop: the command ends with its status.
func (c *importCommand) start(args []string, stdout, stderr io.Writer, check func() error) (*importInput, error) {
	pos, err := parseInterspersed(c.fs, args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, c.usage)
		return nil, stop(exitOK)
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
	var dir *directory.Config
	if err == nil {
		dir, err = c.dirs.config()
	}
	if err != nil {
		fmt.Fprintf(stderr, "totp-enroll %s: %v (see %s --help)\n", c.name, err, c.name)
		return nil, stop(exitUsage)
	}
	data, err := readInput(pos[0])
	if err != nil {
		fmt.Fprintf(stderr, "totp-enroll %s: %v\n", c.name, err)
		return nil, stop(exitError)
	}
	return &importInput{loc: loc, dir: dir, file: pos[0], data: data, named: *c.user}, nil
}

func (c *importCommand) finish(in *importInput, entries []tokenimport.Entry, bad []error, stdout, stderr io.Writer) int {
	if *c.from != "" || *c.until != "" {
		for i := range entries {
			// The admin's dates replace the file's.
			if err := setValidity(&entries[i].Token, *c.from, *c.until); err != nil {
				fmt.Fprintf(stderr, "totp-enroll %s: %v; nothing was imported\n", c.name, err)
				return exitUsage
			}
		}
	}
	return importEntries(c.name, in, entries, bad, *c.skipBad, *c.dry, stdout, stderr)
}

// importEntries writes the entries into their users' files, each user's at
// once. A bad entry (or an unknown user) refuses the whole import unless
// skipBad; then bad entries are reported and left out.
func importEntries(cmd string, in *importInput, entries []tokenimport.Entry, bad []error, skipBad, dry bool, stdout, stderr io.Writer) int {
	file := in.file
	accounts := map[string]*account{}
	var users []string
	var keep []tokenimport.Entry
	lookup := lookupAccount
	if in.dir != nil {
		lookup = directoryAccount // the directory's users need not be this machine's
	}
	for _, e := range entries {
		if accounts[e.User] == nil {
			a, err := lookup(e.User)
			if err == nil && e.User != in.named && rootsAccount(a) {
				// A name from a file (a vendor's, an old module's) does not
				// get to give root a token; the admin names root to mean it.
				err = fmt.Errorf("the file names %s, whose account is root's (uid 0): give --user %s if that is meant", e.User, e.User)
			}
			if err != nil {
				bad = append(bad, fmt.Errorf("line %d: %v", e.Line, err))
				continue
			}
			accounts[e.User] = a
			users = append(users, e.User)
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
		var mine []tokenimport.Entry
		for _, e := range keep {
			if e.User == name {
				mine = append(mine, e)
			}
		}
		importer := importFor
		if in.dir != nil {
			importer = importIntoDirectory(in.dir)
		}
		if err := importer(in.loc, accounts[name], mine, dry, stdout); err != nil {
			fmt.Fprintf(stderr, "totp-enroll %s: %s: %v\n", cmd, name, err)
			failed++
		}
	}
	unit := "lines"
	if cmd == "import pskc" {
		unit = "key packages"
	}
	fmt.Fprintf(stdout, "users %d, tokens %d, bad %s %d, failed users %d\n", len(users)-failed, len(keep), unit, len(bad), failed)
	if failed > 0 {
		return exitError
	}
	if len(keep) == 0 && len(bad) > 0 {
		// --skip-bad with every entry bad: a script that checks the exit
		// status must not believe something was imported.
		fmt.Fprintf(stderr, "totp-enroll %s: %s: nothing was imported (every one of its %s was bad)\n", cmd, file, unit)
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

// rootsAccount says whether a is root's: uid 0 as NSS gives it, or for a
// directory's user (whose uid is not known here) a name NSS gives uid 0.
// With the directory, the entry written is the one whose uid is this name
// byte for byte, so "Root" can never reach uid=root's entry either.
func rootsAccount(a *account) bool {
	if a.uid == 0 {
		return true
	}
	return a.uid < 0 && isRoot(a.name)
}

// importFor adds a user's tokens to their file, creating it if need be.
func importFor(loc *location, a *account, entries []tokenimport.Entry, dry bool, stdout io.Writer) error {
	path, err := loc.path(a)
	if err != nil {
		return err
	}
	return loc.as(a, func() error {
		add := adder(a, entries, path, stdout)
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

// adder adds entries to an enrollment, and says so.
func adder(a *account, entries []tokenimport.Entry, where string, stdout io.Writer) func(*secret.File, *secret.State) error {
	return func(f *secret.File, st *secret.State) error {
		for _, e := range entries {
			t := e.Token
			t.Name = freeName(f, e.Base)
			if err := f.Add(t); err != nil {
				return fmt.Errorf("line %d: %w", e.Line, err)
			}
			if e.Last >= 0 {
				ts := st.Token(&t)
				ts.Used, ts.LastStep = true, e.Last
			}
			if e.Drift != 0 {
				st.Token(&t).Drift = e.Drift
			}
			fmt.Fprintf(stdout, "%s: line %d: token %s (%s) -> %s\n", a.name, e.Line, t.Name, t.Describe(), where)
		}
		// What a login reads is bounded; --dry-run must refuse what the
		// real run would.
		if n := len(f.Marshal()); n > secret.MaxFileSize {
			return fmt.Errorf("%d tokens make a file of %d bytes, more than the %d a login reads", len(f.Tokens), n, secret.MaxFileSize)
		}
		return nil
	}
}

// importIntoDirectory is importFor for the user's entry in the directory.
func importIntoDirectory(c *directory.Config) func(*location, *account, []tokenimport.Entry, bool, io.Writer) error {
	return func(_ *location, a *account, entries []tokenimport.Entry, dry bool, stdout io.Writer) error {
		d := directory.New(c, a.name)
		defer d.Close()
		add := adder(a, entries, "directory "+c.Path, stdout)
		f, st, err := d.Enrollment()
		switch {
		case errors.Is(err, secret.ErrNotEnrolled):
			f, st = &secret.File{}, secret.NewState()
			if err := add(f, st); err != nil || dry {
				return err
			}
			return d.Create(f, st, false)
		case err != nil:
			return err
		case dry:
			return add(f, st)
		}
		return d.Update(add)
	}
}

// freeName is base, or base-2, base-3, ... if taken.
func freeName(f *secret.File, base string) string {
	name := base
	for i := 2; f.Token(name) != nil; i++ {
		name = fmt.Sprintf("%s-%d", base, i)
	}
	return name
}

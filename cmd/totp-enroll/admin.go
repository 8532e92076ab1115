// SPDX-License-Identifier: Apache-2.0

// Root's commands on one user's enrollment: show, status, unlock, sync,
// passcodes, scratch, reset.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"pamtotp/internal/enroll"
	"pamtotp/internal/otp"
	"pamtotp/internal/secret"
	"strings"
	"text/tabwriter"
	"time"
)

func (fl *commandFlags) showFlags(fs *flag.FlagSet) func() error {
	fs.StringVar(&fl.qr, "qr", enroll.QRUTF8, "")
	fs.StringVar(&fl.issuer, "issuer", "", "")
	fs.StringVar(&fl.label, "label", "", "")
	return func() error { return nil }
}

// show prints a token's QR code, secret and URI again.
func (fl *commandFlags) show(t *target, pos []string, out io.Writer) error {
	f, _, err := t.read()
	if err != nil {
		return err
	}
	tok, err := tokenNamed(f, pos[0])
	if err != nil {
		return err
	}
	// As enrolled, so that a rescan replaces the app's entry; older
	// enrollments did not keep them and get the defaults.
	issuer, label := fl.issuer, fl.label
	if issuer == "" {
		issuer = tok.Issuer
	}
	if label == "" {
		label = tok.Label
	}
	issuer, label = appNames(issuer, label, t.acct.name, tok)
	return showToken(out, issuer, label, tok, fl.qr)
}

// unlock clears the failures and the lock, and ends the doubling.
func unlock(t *target, _ []string, out io.Writer) error {
	return t.updateAndSay(out, func(_ *secret.File, st *secret.State, out io.Writer) error {
		// Missed stays: the user is still told of the wrong codes.
		st.Failures, st.LockedUntil, st.FailedAt, st.Lockouts = 0, 0, nil, 0
		fmt.Fprintf(out, "%s: unlocked\n", t.acct.name)
		return nil
	})
}

func (fl *commandFlags) syncFlags(fs *flag.FlagSet) func() error {
	fs.IntVar(&fl.syncRange, "range", 600, "")
	return func() error {
		if fl.syncRange < 1 || fl.syncRange > 100000 {
			return errors.New("--range must be 1..100000")
		}
		return nil
	}
}

func (fl *commandFlags) passcodeFlags(fs *flag.FlagSet) func() error {
	fs.IntVar(&fl.generate, "generate", 0, "")
	fs.BoolVar(&fl.clear, "clear", false, "")
	return func() error {
		if fl.clear == (fl.generate != 0) || fl.generate < 0 || fl.generate > 20 {
			return errors.New("want --generate 1..20 or --clear")
		}
		return nil
	}
}

// passcodes makes one-time admin passcodes, or clears them.
func (fl *commandFlags) passcodes(t *target, _ []string, out io.Writer) error {
	var codes []string
	err := t.update(func(f *secret.File, _ *secret.State) error {
		if fl.clear {
			f.Passcodes = nil
			return nil
		}
		var err error
		if codes, err = enroll.ScratchCodes(fl.generate); err != nil {
			return err
		}
		f.Passcodes = append(f.Passcodes, codes...)
		return nil
	})
	if err != nil {
		return err
	}
	if fl.clear {
		fmt.Fprintf(out, "%s: admin passcodes cleared\n", t.acct.name)
	} else {
		printCodes(out, t.acct.name+": admin passcodes (each works once; they are not shown again):", codes)
	}
	return nil
}

func (fl *commandFlags) scratchFlags(fs *flag.FlagSet) func() error {
	fs.BoolVar(&fl.regenerate, "regenerate", false, "")
	fs.IntVar(&fl.count, "count", 5, "")
	return func() error {
		if !fl.regenerate || fl.count < 1 || fl.count > 10 {
			return errors.New("want --regenerate [--count 1..10]")
		}
		return nil
	}
}

// scratch replaces the scratch codes with new ones.
func (fl *commandFlags) scratch(t *target, _ []string, out io.Writer) error {
	var codes []string
	err := t.update(func(f *secret.File, _ *secret.State) error {
		var err error
		codes, err = enroll.ScratchCodes(fl.count)
		f.Scratch = codes
		return err
	})
	if err == nil {
		printCodes(out, t.acct.name+": new scratch codes (the old ones no longer work):", codes)
	}
	return err
}

func (fl *commandFlags) statusFlags(fs *flag.FlagSet) func() error {
	fs.BoolVar(&fl.all, "all", false, "")
	fs.BoolVar(&fl.json, "json", false, "")
	return func() error { return nil }
}

// status shows one user's enrollment, or with --all every enrolled user's
// of the --secret-file location, one row each; --json for monitoring. A
// user whose file cannot be read gets a row that says why, and the others
// still come.
func (fl *commandFlags) status(t *target, _ []string, out io.Writer) error {
	if !fl.all {
		if !fl.json {
			return statusText(t, out)
		}
		row := userStatusOf(t)
		if row.Error != "" {
			return errors.New(row.Error)
		}
		return writeJSON(out, row)
	}
	rows := []userStatus{}
	err := t.everyone(func(u *target) error {
		rows = append(rows, userStatusOf(u))
		return nil
	})
	if err != nil {
		return err
	}
	return fl.writeStatus(out, rows)
}

// everyone runs fn for each enrolled user: the directory's, or those of
// /etc/passwd with a file where t's --secret-file says.
func (t *target) everyone(fn func(u *target) error) error {
	if t.dir != nil {
		names, err := t.dir.Users()
		if err != nil {
			return err
		}
		for _, n := range names {
			acct, err := directoryAccount(n)
			if err != nil {
				continue // a name no login could have
			}
			u := &target{acct: acct, path: t.path, dir: t.dir.Other(n)}
			err = fn(u)
			u.close()
			if err != nil {
				return err
			}
		}
		return nil
	}
	accounts, err := localAccounts()
	if err != nil {
		return err
	}
	// One wait in all: a user who holds their own lock (a stopped login,
	// or on purpose) costs the others nothing once it has passed.
	until := time.Now().Add(secret.LockTimeout)
	for _, a := range accounts {
		path, err := t.loc.path(a)
		if err != nil {
			continue
		}
		if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) {
			continue // not enrolled
		}
		if err := fn(&target{acct: a, loc: t.loc, path: path, until: until}); err != nil {
			return err
		}
	}
	return nil
}

// writeStatus writes status --all's rows, as a table or as JSON.
func (fl *commandFlags) writeStatus(out io.Writer, rows []userStatus) error {
	if fl.json {
		return writeJSON(out, rows)
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "USER\tTOKENS\tLAST USE\tDRIFT\tFAILURES\tLOCKED\tSCRATCH\tPASSCODES")
	for _, r := range rows {
		if r.Error != "" {
			fmt.Fprintf(tw, "%s\tcannot read: %s\n", r.User, r.Error)
			continue
		}
		var toks, drift []string
		last := int64(0)
		for _, tok := range r.Tokens {
			toks = append(toks, tok.Name+"("+tok.Kind+")")
			if tok.Kind == string(secret.TOTP) {
				drift = append(drift, fmt.Sprintf("%+d", tok.DriftSteps))
			}
			last = max(last, tok.LastUsed)
		}
		locked := "no"
		if r.Locked {
			locked = "until " + when(r.LockedUntil)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%d\t%d\n", r.User, strings.Join(toks, ","), when(last),
			strings.Join(drift, ","), r.Failures, locked, r.ScratchLeft, r.PasscodesLeft)
	}
	return tw.Flush()
}

// userStatus is one user's row of status --json.
type userStatus struct {
	User          string        `json:"user"`
	File          string        `json:"file"`
	Error         string        `json:"error,omitempty"` // the file cannot be read; nothing else is known
	Tokens        []tokenStatus `json:"tokens"`
	Failures      int           `json:"failures"`
	Locked        bool          `json:"locked"`
	LockedUntil   int64         `json:"locked_until,omitempty"` // Unix time
	Lockouts      int           `json:"lockouts"`               // locks since the last success
	Missed        int           `json:"wrong_codes_since_last_success"`
	ScratchLeft   int           `json:"scratch_codes_left"`
	PasscodesLeft int           `json:"passcodes_left"`
}

type tokenStatus struct {
	Name          string `json:"name"`
	Kind          string `json:"kind"` // totp or hotp
	Description   string `json:"description"`
	Enabled       bool   `json:"enabled"`
	Created       int64  `json:"created,omitempty"`   // Unix time
	LastUsed      int64  `json:"last_used,omitempty"` // Unix time
	DriftSteps    int64  `json:"drift_steps"`
	ResyncPending bool   `json:"resync_pending"`
	ValidFrom     int64  `json:"valid_from,omitempty"`  // Unix time
	ValidUntil    int64  `json:"valid_until,omitempty"` // Unix time
	// For the text form only.
	period   int
	used     bool
	lastStep int64
}

func userStatusOf(t *target) userStatus {
	row := userStatus{User: printable(t.acct.name), File: printable(t.path), Tokens: []tokenStatus{}}
	f, st, err := t.read()
	if err != nil {
		row.Error = printable(err.Error())
		return row
	}
	for i := range f.Tokens {
		tok := &f.Tokens[i]
		ts := st.Token(tok)
		last := ts.At
		if last == 0 && ts.Used && tok.Type == secret.TOTP {
			// A state carried over by migrate knows the step, not the
			// time: the step's own time, less the drift, is when it was.
			last = (ts.LastStep - ts.Drift) * int64(tok.Params.Period)
		}
		row.Tokens = append(row.Tokens, tokenStatus{Name: printable(tok.Name), Kind: string(tok.Type), Description: printable(tok.Describe()),
			Enabled: !tok.Disabled, Created: tok.Created, LastUsed: last, DriftSteps: ts.Drift, ResyncPending: ts.Pending,
			ValidFrom: tok.ValidFrom, ValidUntil: tok.ValidUntil,
			period: tok.Params.Period, used: ts.Used, lastStep: ts.LastStep})
	}
	row.Failures, row.Lockouts, row.Missed = st.Failures, st.Lockouts, st.Missed
	if st.LockedUntil > time.Now().Unix() {
		row.Locked, row.LockedUntil = true, st.LockedUntil
	}
	row.ScratchLeft, row.PasscodesLeft = unused(f.Scratch, st), unused(f.Passcodes, st)
	return row
}

func writeJSON(out io.Writer, v any) error {
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// statusText prints one user's status for a person.
func statusText(t *target, out io.Writer) error {
	r := userStatusOf(t)
	if r.Error != "" {
		return errors.New(r.Error)
	}
	fmt.Fprintf(out, "user %s, file %s\n", r.User, r.File)
	for _, tok := range r.Tokens {
		enabled := "enabled"
		if !tok.Enabled {
			enabled = "disabled"
		}
		lastUsed := when(tok.LastUsed)
		if tok.LastUsed == 0 && tok.used {
			lastUsed = "at a time not recorded"
		}
		fmt.Fprintf(out, "token %s: %s, %s, created %s, last used %s", tok.Name, tok.Description, enabled, when(tok.Created), lastUsed)
		if tok.Kind == string(secret.TOTP) {
			fmt.Fprintf(out, ", drift %+d steps (%+d s)", tok.DriftSteps, tok.DriftSteps*int64(tok.period))
		} else if tok.used {
			fmt.Fprintf(out, ", last counter %d", tok.lastStep)
		}
		if tok.ResyncPending {
			fmt.Fprint(out, ", resync pending")
		}
		if v := secret.Validity(tok.ValidFrom, tok.ValidUntil); v != "" {
			fmt.Fprintf(out, ", %s", v)
		}
		fmt.Fprintln(out)
	}
	lock := "not locked"
	if r.Locked {
		lock = "locked until " + when(r.LockedUntil)
	}
	fmt.Fprintf(out, "failures %d, %s, locks since the last success %d, wrong codes since the last success %d\n",
		r.Failures, lock, r.Lockouts, r.Missed)
	fmt.Fprintf(out, "scratch codes left %d, admin passcodes left %d\n", r.ScratchLeft, r.PasscodesLeft)
	return nil
}

// syncToken finds two consecutive codes within the range and sets the
// token's drift (TOTP) or counter (HOTP) to the second; both count as used.
func (fl *commandFlags) syncToken(t *target, pos []string, out io.Writer) error {
	return t.updateAndSay(out, func(f *secret.File, st *secret.State, out io.Writer) error {
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
			to, center = from+int64(fl.syncRange), from
		} else {
			center = otp.Step(now, tok.Params.Period)
			from, to = max(center-int64(fl.syncRange), 0), center+int64(fl.syncRange)
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
			return fmt.Errorf("%s: no two consecutive codes match within %d steps; nothing was changed", tok.Name, fl.syncRange)
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

// reset removes the enrollment: the state first, then the secret.
func reset(t *target, _ []string, out io.Writer) error {
	if t.dir != nil {
		if err := t.notEnrolled(t.dir.Remove()); err != nil {
			return err
		}
		fmt.Fprintf(out, "%s: enrollment removed (%s)\n", t.acct.name, t.path)
		return nil
	}
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
}

func abs(x int64) int64 {
	if x < 0 {
		return -x
	}
	return x
}

// SPDX-License-Identifier: Apache-2.0

package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"pamtotp/internal/otp"
	"pamtotp/internal/secret"
)

// After a restore from a back-up (slapcat/slapadd, or homes from tape),
// the login state is what it was then: a HOTP code, a scratch code or an
// admin passcode used since works once more. restored takes that back:
//   - each HOTP counter moves on by --hotp-skip, so the codes a token
//     showed since the back-up are behind it (choose at least the codes a
//     user could have used since: logins a day times days);
//   - each TOTP token counts as used up to now: a code of the past (a
//     restore of minutes ago) is a replay;
//   - every scratch code and admin passcode is used up: all were issued
//     before the back-up, and any may have been used since. The users
//     need new ones (scratch --regenerate).

// restoredFlags are restored's own flags.
func (fl *commandFlags) restoredFlags(fs *flag.FlagSet) func() error {
	fs.BoolVar(&fl.all, "all", false, "")
	fs.IntVar(&fl.hotpSkip, "hotp-skip", 100, "")
	return func() error {
		if fl.hotpSkip < 1 || fl.hotpSkip > 1_000_000 {
			return errors.New("--hotp-skip must be 1..1000000")
		}
		return nil
	}
}

func (fl *commandFlags) restored(t *target, _ []string, out io.Writer) error {
	if !fl.all {
		return fl.restoreOne(t, out)
	}
	failed := 0
	err := t.everyone(func(u *target) error {
		if err := fl.restoreOne(u, out); err != nil {
			fmt.Fprintf(out, "%s: NOT done: %v\n", u.acct.name, err)
			failed++
		}
		return nil
	})
	if err == nil && failed > 0 {
		err = fmt.Errorf("%d users were not done: run it again for them (--user NAME)", failed)
	}
	return err
}

func (fl *commandFlags) restoreOne(t *target, out io.Writer) error {
	return t.updateAndSay(out, func(f *secret.File, st *secret.State, out io.Writer) error {
		now := time.Now().Unix()
		hotp, totp := 0, 0
		for i := range f.Tokens {
			tok := &f.Tokens[i]
			ts := st.Token(tok)
			if tok.Type == secret.HOTP {
				last := tok.Counter - 1
				if ts.Used {
					last = ts.LastStep
				}
				ts.Used, ts.LastStep = true, last+int64(fl.hotpSkip)
				hotp++
				continue
			}
			if step := otp.Step(now, tok.Params.Period) + ts.Drift; !ts.Used || ts.LastStep < step {
				ts.Used, ts.LastStep = true, step
			}
			totp++
		}
		revoked := 0
		for _, c := range append(append([]string{}, f.Scratch...), f.Passcodes...) {
			if !st.ScratchIsUsed(c) {
				st.ScratchUsed = append(st.ScratchUsed, c)
				revoked++
			}
		}
		fmt.Fprintf(out, "%s: %d HOTP tokens moved on by %d counters, %d TOTP tokens used up to now, %d scratch codes and passcodes revoked",
			t.acct.name, hotp, fl.hotpSkip, totp, revoked)
		if revoked > 0 {
			fmt.Fprintf(out, " (new ones: totp-enroll --user %s scratch --regenerate)", t.acct.name)
		}
		fmt.Fprintln(out)
		return nil
	})
}

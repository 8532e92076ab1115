// SPDX-License-Identifier: Apache-2.0

package enroll

import (
	"pamtotp/internal/secret"
	"pamtotp/internal/verify"
)

// ConfirmTries is how often a new token's code is asked for.
const ConfirmTries = 3

// Confirm asks, through ask, for a code of f's tokens (scratch codes do
// not count) up to ConfirmTries times, and records the accepted one in st
// so that it cannot be used again. The token is new: its clock may be off
// by initialWindow steps, as at its first login. After a wrong code it
// calls wrong, which is told whether another try follows; it never shows
// the right code, which anyone at the terminal could read. An error from
// ask ends the confirmation.
func Confirm(f *secret.File, st *secret.State, now int64, initialWindow int, ask func() (string, error), wrong func(again bool)) (bool, error) {
	tokens := &secret.File{Tokens: f.Tokens}
	p := verify.Policy{Behind: 1, Ahead: 1, InitialWindow: initialWindow, HOTPWindow: verify.DefaultPolicy.HOTPWindow}
	for try := 1; try <= ConfirmTries; try++ {
		code, err := ask()
		if err != nil {
			return false, err
		}
		if verify.Check(tokens, st, code, now, p).Outcome == verify.OK {
			st.Missed = 0 // the owner's own typing, not guesses to report
			return true, nil
		}
		wrong(try < ConfirmTries)
	}
	return false, nil
}

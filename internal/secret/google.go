// SPDX-License-Identifier: Apache-2.0

package secret

import (
	"fmt"
	"os"
	"slices"

	"pamtotp/internal/gafile"
	"pamtotp/internal/otp"
)

// GoogleToken is the name a pam_google_authenticator file's token goes by
// in logs and in totp-enroll.
const GoogleToken = "google-authenticator"

// google is a pam_google_authenticator file seen as an enrollment: one
// token, its scratch codes, and a State built from the file's own lines.
// update writes a changed State back into those lines.
type google struct {
	ga    *gafile.File
	file  *File
	state *State
	grace []Grace // the LASTn lines as read, to see whether they changed
	mode  os.FileMode
	orig  []byte
}

func parseGoogle(data []byte, mode os.FileMode) (*google, error) {
	ga, err := gafile.Parse(data)
	if err != nil {
		return nil, err
	}
	return fromGoogle(ga, data, mode), nil
}

func fromGoogle(ga *gafile.File, data []byte, mode os.FileMode) *google {
	t := Token{Name: GoogleToken, Type: TOTP, Key: ga.Key,
		Params: otp.Params{Algorithm: otp.DefaultParams.Algorithm, Digits: otp.DefaultDigit, Period: ga.Step}}
	if ga.HOTP {
		t.Type, t.Params.Period, t.Counter = HOTP, 0, ga.Counter
	}
	f := &File{Tokens: []Token{t}, Scratch: append([]string(nil), ga.Scratch...)}
	st := NewState()
	ts := st.Token(&t)
	if !ga.HOTP {
		if len(ga.Used) > 0 {
			ts.Used, ts.LastStep = true, slices.Max(ga.Used)
		}
		ts.Drift = ga.Skew
		if n := len(ga.Resetting); n > 0 {
			p := ga.Resetting[n-1]
			ts.Pending, ts.PendingStep, ts.PendingOffset = true, p.Step+p.Skew, p.Skew
		}
	}
	st.Failures, st.LockedUntil, st.Lockouts, st.Missed = ga.Failures, ga.LockedUntil, ga.Lockouts, ga.Missed
	st.FailedAt = append([]int64(nil), ga.RateTimes...)
	for _, l := range ga.Last {
		if ValidPlace(l.Host) && len(st.Grace) < MaxGrace {
			st.Grace = append(st.Grace, Grace{l.Host, l.Time})
		}
	}
	return &google{ga: ga, file: f, state: st, grace: slices.Clone(st.Grace), mode: mode, orig: data}
}

// update writes st into the file's lines and returns the new text, and
// whether it differs from what was read.
func (g *google) update(st *State) ([]byte, bool) {
	ga := g.ga
	t := &g.file.Tokens[0]
	if ts := st.Tokens[t.Fingerprint()]; ts != nil {
		if ga.HOTP {
			if ts.Used && ts.LastStep+1 != ga.Counter {
				ga.Set(gafile.HOTPCounterKey, fmt.Sprint(ts.LastStep+1))
			}
		} else {
			g.updateTOTP(ts)
		}
	}
	for _, u := range st.ScratchUsed {
		ga.RemoveScratch(u)
	}
	lockout := fmt.Sprintf("%d %d %d %d", st.Failures, st.LockedUntil, st.Lockouts, st.Missed)
	switch {
	case lockout == "0 0 0 0":
		ga.Delete(gafile.LockoutKey)
	case lockout != fmt.Sprintf("%d %d %d %d", ga.Failures, ga.LockedUntil, ga.Lockouts, ga.Missed):
		ga.Set(gafile.LockoutKey, lockout)
	}
	if ga.RateLimit && !slices.Equal(st.FailedAt, ga.RateTimes) {
		v := fmt.Sprintf("%d %d", ga.RateN, ga.RateSeconds)
		if len(st.FailedAt) > 0 {
			v += " " + gafile.Ints(st.FailedAt)
		}
		ga.Set(gafile.RateLimitKey, v)
	}
	if !slices.Equal(st.Grace, g.grace) {
		for i := 0; i <= gafile.MaxLast; i++ {
			ga.Delete(gafile.LastKey(i))
		}
		// Set puts each new line right after line 1: the last set comes first.
		for i := len(st.Grace) - 1; i >= 0; i-- {
			ga.Set(gafile.LastKey(i), fmt.Sprintf("%s %d", st.Grace[i].Place, st.Grace[i].Time))
		}
	}
	data := ga.Marshal()
	return data, string(data) != string(g.orig)
}

func (g *google) updateTOTP(ts *TokenState) {
	ga := g.ga
	newest := int64(-1)
	if len(ga.Used) > 0 {
		newest = slices.Max(ga.Used)
	}
	if ts.Used && ts.LastStep > newest {
		// pam_google_authenticator's list: the steps of accepted codes,
		// without those a window or more before the newest. pam_totp refuses
		// every step up to the newest; the list stays for the old module.
		keep := []int64{}
		for _, u := range ga.Used {
			if ts.LastStep-u < int64(ga.Window) {
				keep = append(keep, u)
			}
		}
		ga.Set(gafile.DisallowReuseKey, gafile.Ints(append(keep, ts.LastStep)))
	}
	if ts.Drift != ga.Skew {
		ga.Set(gafile.TimeSkewKey, fmt.Sprint(ts.Drift))
	}
	var want []gafile.Pair
	if ts.Pending {
		want = []gafile.Pair{{Step: ts.PendingStep - ts.PendingOffset, Skew: ts.PendingOffset}}
	}
	n := len(ga.Resetting)
	switch {
	case want == nil && n > 0:
		ga.Delete(gafile.ResettingKey)
	case want != nil && (n == 0 || ga.Resetting[n-1] != want[0]):
		ga.Set(gafile.ResettingKey, fmt.Sprintf("%d%+d", want[0].Step, want[0].Skew))
	}
}

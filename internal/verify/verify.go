// Package verify decides whether a typed code opens an enrollment, and
// updates its state: window around the learned drift, a wider window on a
// token's first use, resynchronisation from two consecutive far-off codes,
// replay refusal (RFC 6238 section 5.2; RFC 4226 counters only move
// forward), single-use scratch codes, the failure lockout and an optional
// rate limit. It does no I/O; the caller holds the lock and saves the
// state before it reports success.
package verify

import (
	"pamtotp/internal/otp"
	"pamtotp/internal/secret"
)

// Policy is the part of the module options (and, for a
// pam_google_authenticator file, of the file) that verification needs.
type Policy struct {
	Behind, Ahead int   // TOTP steps accepted before and after now+drift
	InitialWindow int   // steps each side for a TOTP token never used before
	FixedDrift    bool  // an accepted code does not move the drift; only a resync does
	ResyncRange   int   // TOTP steps searched each side of now for a far-off clock; 0: none
	HOTPWindow    int   // HOTP counters accepted, from the next expected one
	HOTPResync    int   // HOTP counters searched beyond the window for a resync; 0: none
	HOTPAdvance   bool  // a wrong code moves the HOTP counter on by one
	Deny          int   // failures that lock the user; 0 never locks
	UnlockTime    int64 // seconds a lock lasts
	RateLimit     int   // failures allowed within RateSeconds; 0: no rate limit
	RateSeconds   int64
}

// DefaultPolicy is used where the module options say nothing.
var DefaultPolicy = Policy{Behind: 1, Ahead: 1, InitialWindow: 10, ResyncRange: 1500,
	HOTPWindow: 10, HOTPResync: 1000, Deny: 5, UnlockTime: 300}

// Outcome is what a check decided.
type Outcome string

const (
	OK            Outcome = "ok"
	BadCode       Outcome = "bad code"
	Malformed     Outcome = "malformed code"
	Replay        Outcome = "replay"
	Locked        Outcome = "locked"
	RateLimited   Outcome = "rate limited"
	ResyncPending Outcome = "resync pending"
)

// Result says what happened and to which token.
type Result struct {
	Outcome       Outcome
	Token         string // token name, "scratch", or "" if none matched
	DriftAdjusted bool
	Drift         int64 // the token's drift after the check, in steps
	NowLocked     bool  // this failure locked the user
}

// Check decides on code at Unix time now and updates st. st must be saved
// whatever the outcome: failures and pending resyncs are state too.
func Check(f *secret.File, st *secret.State, code string, now int64, p Policy) Result {
	if st.LockedUntil > now {
		return Result{Outcome: Locked}
	}
	if p.RateLimit > 0 {
		recent := st.FailedAt[:0:0]
		for _, t := range st.FailedAt {
			if t > now-p.RateSeconds && t <= now {
				recent = append(recent, t)
			}
		}
		st.FailedAt = recent
		if len(recent) >= p.RateLimit {
			// Refused unchecked and not recorded: the limit is a rate,
			// so the user gets in again once the old failures age out.
			return Result{Outcome: RateLimited}
		}
	}
	if !wellFormed(f, code) {
		// It cannot match anything, so it is no guess and does not count:
		// garbage must not lock a user out. sshd's password method, for
		// one, answers the code prompt with the password.
		return Result{Outcome: Malformed}
	}
	// Scratch codes first, as pam_google_authenticator does, so that using
	// one does not move a HOTP counter.
	r := Result{Outcome: OK, Token: "scratch"}
	switch {
	case checkOnce(f.Scratch, st, code):
	case checkOnce(f.Passcodes, st, code):
		r.Token = "passcode"
	default:
		r = checkTokens(f, st, code, now, p)
	}
	if r.Outcome == OK {
		st.Failures, st.LockedUntil = 0, 0
		return r
	}
	if p.RateLimit > 0 {
		st.FailedAt = append(st.FailedAt, now)
	}
	st.Failures++
	if p.Deny > 0 && st.Failures >= p.Deny {
		st.Failures, st.LockedUntil = 0, now+p.UnlockTime
		r.NowLocked = true
	}
	return r
}

// wellFormed reports whether code has the form of some token's code or of a
// scratch code.
func wellFormed(f *secret.File, code string) bool {
	if len(f.Scratch)+len(f.Passcodes) > 0 && otp.IsDigits(code, otp.ScratchLen) {
		return true
	}
	for _, t := range f.Tokens {
		if !t.Disabled && otp.IsDigits(code, t.Params.Digits) {
			return true
		}
	}
	return false
}

func checkTokens(f *secret.File, st *secret.State, code string, now int64, p Policy) Result {
	best := Result{Outcome: BadCode}
	for i := range f.Tokens {
		t := &f.Tokens[i]
		if t.Disabled || !otp.IsDigits(code, t.Params.Digits) {
			continue
		}
		var r Result
		if t.Type == secret.HOTP {
			r = checkHOTP(t, st.Token(t), code, now, p)
		} else {
			r = checkToken(t, st.Token(t), code, now, p)
		}
		if r.Outcome == OK {
			return r
		}
		if rank(r.Outcome) > rank(best.Outcome) {
			best = r
		}
	}
	return best
}

// rank orders failures so the log names the most telling one.
func rank(o Outcome) int {
	switch o {
	case Replay:
		return 2
	case ResyncPending:
		return 1
	}
	return 0
}

func checkToken(t *secret.Token, ts *secret.TokenState, code string, now int64, p Policy) Result {
	r := Result{Outcome: BadCode, Token: t.Name, Drift: ts.Drift}
	T := otp.Step(now, t.Params.Period)
	behind, ahead := int64(p.Behind), int64(p.Ahead)
	if !ts.Used {
		behind, ahead = max(behind, int64(p.InitialWindow)), max(ahead, int64(p.InitialWindow))
	}
	matched, replay := false, false
	var step int64
	// Every step in the window is computed and compared: no early exit, so
	// the time taken does not tell where (or whether) a code matched.
	for o := -behind; o <= ahead; o++ {
		s := T + ts.Drift + o
		if s < 0 || !matches(t, s, code) {
			continue
		}
		switch {
		case ts.Used && s <= ts.LastStep:
			replay = true
		case !matched:
			matched, step = true, s
		}
	}
	if matched {
		off := step - T
		if p.FixedDrift {
			off = ts.Drift
		}
		accept(ts, &r, step, off, now)
		return r
	}
	if replay {
		r.Outcome = Replay
		return r
	}
	if p.ResyncRange == 0 {
		return r
	}
	return resync(t, ts, code, T, now, p, r)
}

// checkHOTP looks at the counters from the next expected one. The counter
// only moves forward, so a code is never accepted twice.
func checkHOTP(t *secret.Token, ts *secret.TokenState, code string, now int64, p Policy) Result {
	r := Result{Outcome: BadCode, Token: t.Name}
	next := t.Counter
	if ts.Used {
		next = ts.LastStep + 1
	}
	matched, replay := false, false
	var counter int64
	for c := next; c < next+int64(p.HOTPWindow); c++ {
		if !matched && matches(t, c, code) {
			matched, counter = true, c
		}
	}
	for c := max(next-int64(p.HOTPWindow), 0); c < next; c++ {
		if matches(t, c, code) {
			replay = true
		}
	}
	switch {
	case matched:
		ts.Used, ts.LastStep, ts.At = true, counter, now
		ts.Pending, ts.PendingStep, ts.PendingOffset = false, 0, 0
		r.Outcome = OK
		return r
	case replay:
		if p.HOTPAdvance {
			ts.Used, ts.LastStep = true, next
		}
		r.Outcome = Replay
		return r
	}
	// A far-off counter is remembered; the code of the counter after it
	// completes the resync.
	for c := next + int64(p.HOTPWindow); c < next+int64(p.HOTPWindow)+int64(p.HOTPResync); c++ {
		if !matches(t, c, code) {
			continue
		}
		if ts.Pending && c == ts.PendingStep+1 {
			ts.Used, ts.LastStep, ts.At = true, c, now
			ts.Pending, ts.PendingStep, ts.PendingOffset = false, 0, 0
			r.Outcome, r.DriftAdjusted = OK, true
			return r
		}
		ts.Pending, ts.PendingStep, ts.PendingOffset = true, c, 0
		r.Outcome = ResyncPending
		return r
	}
	if p.HOTPAdvance {
		ts.Used, ts.LastStep = true, next
	}
	return r
}

// resync searches a wide range around now. A first far-off match is only
// remembered; the next consecutive code (the following step, entered within
// a step of the same offset) completes it and is accepted and recorded, so
// it cannot be replayed.
func resync(t *secret.Token, ts *secret.TokenState, code string, T, now int64, p Policy, r Result) Result {
	var far []int64
	for s := T - int64(p.ResyncRange); s <= T+int64(p.ResyncRange); s++ {
		if s >= 0 && (!ts.Used || s > ts.LastStep) && matches(t, s, code) {
			far = append(far, s)
		}
	}
	if len(far) == 0 {
		return r
	}
	if ts.Pending {
		for _, s := range far {
			off := s - T
			if s > ts.PendingStep && s <= ts.PendingStep+2 && abs(off-ts.PendingOffset) <= 1 {
				accept(ts, &r, s, off, now)
				return r
			}
		}
	}
	closest := far[0]
	for _, s := range far {
		if abs(s-T) < abs(closest-T) {
			closest = s
		}
	}
	ts.Pending, ts.PendingStep, ts.PendingOffset = true, closest, closest-T
	r.Outcome = ResyncPending
	return r
}

func accept(ts *secret.TokenState, r *Result, step, offset, now int64) {
	r.DriftAdjusted = offset != ts.Drift
	ts.Used, ts.LastStep, ts.Drift, ts.At = true, step, offset, now
	ts.Pending, ts.PendingStep, ts.PendingOffset = false, 0, 0
	r.Outcome, r.Drift = OK, offset
}

func matches(t *secret.Token, step int64, code string) bool {
	want, err := otp.Code(t.Key, uint64(step), t.Params)
	return err == nil && otp.Equal(code, want)
}

// checkOnce accepts an unused single-use code from codes and records it.
func checkOnce(codes []string, st *secret.State, code string) bool {
	if !otp.IsDigits(code, otp.ScratchLen) {
		return false
	}
	found := false
	for _, s := range codes {
		if otp.Equal(code, s) && !st.ScratchIsUsed(s) {
			found = true
		}
	}
	if found {
		st.ScratchUsed = append(st.ScratchUsed, code)
	}
	return found
}

func abs(x int64) int64 {
	if x < 0 {
		return -x
	}
	return x
}

// SPDX-License-Identifier: Apache-2.0

// Package verify decides whether a typed code opens an enrollment, and
// updates its state: window around the learned drift, a wider window on a
// token's first use, resynchronisation from two consecutive codes a few
// steps off, replay refusal (RFC 6238 section 5.2; RFC 4226 counters only
// move forward) shared by every token with the same key, single-use
// scratch codes, a failure lockout that lengthens each time and an
// optional rate limit. It does no I/O; the caller holds the lock.
//
// Every guess counts: Admit says whether a code may be compared at all,
// and Charge records the attempt as failed. The caller saves a charged
// state where the next login sees it before it calls Check, so that no
// kill, signal or resource limit can stop a wrong code from being
// counted while a right one goes through (docs/security.md).
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
	ResyncRange   int   // TOTP steps a used token may move between two logins; 0: no resync
	HOTPWindow    int   // HOTP counters accepted, from the next expected one
	HOTPResync    int   // HOTP counters searched beyond the window for a resync; 0: none
	HOTPAdvance   bool  // a wrong code moves the HOTP counter on by one
	Deny          int   // failures that lock the user; 0 never locks
	UnlockTime    int64 // seconds the first lock lasts; each further one lasts twice as long
	MaxUnlockTime int64 // the longest a lock lasts
	RateLimit     int   // failures allowed within RateSeconds; 0: no rate limit
	RateSeconds   int64
}

// DefaultPolicy is used where the module options say nothing.
var DefaultPolicy = Policy{Behind: 1, Ahead: 1, InitialWindow: 10, ResyncRange: 10,
	HOTPWindow: 10, HOTPResync: 1000, Deny: 5, UnlockTime: 300, MaxUnlockTime: 86400}

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
	// Outside: the code could only be for a token outside its validity
	// dates, whose codes are not compared.
	Outside Outcome = "token outside its validity dates"
)

// Result says what happened and to which token.
type Result struct {
	Outcome       Outcome
	Token         string // token name, "scratch", or "" if none matched
	DriftAdjusted bool
	Drift         int64 // the token's drift after the check, in steps
	NowLocked     bool  // this failure locked the user
	LockedFor     int64 // seconds of that lock
	Missed        int   // with OK: wrong codes the user has not been told of
}

// Check decides on code at Unix time now and updates st. st must be saved
// whatever the outcome: failures and pending resyncs are state too. A
// success ends the lock and its doubling but leaves st.Missed: the caller
// clears it once it has told the user, which not every login can.
func Check(f *secret.File, st *secret.State, code string, now int64, p Policy) Result {
	if r, ok := Admit(f, st, code, now, p); !ok {
		return r
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
		r.Missed = st.Missed
		st.Failures, st.LockedUntil, st.Lockouts = 0, 0, 0
		return r
	}
	r.NowLocked, r.LockedFor = Charge(st, now, p)
	return r
}

// Admit reports whether code may be compared at all. It is not while the
// user is locked or over the rate limit, and a code of no token's form
// cannot match anything: it is no guess and does not count, so garbage
// cannot lock a user out (sshd's password method, for one, answers the
// code prompt with the password).
func Admit(f *secret.File, st *secret.State, code string, now int64, p Policy) (Result, bool) {
	if st.LockedUntil > now {
		return Result{Outcome: Locked}, false
	}
	if p.RateLimit > 0 && len(recentFailures(st, now, p)) >= p.RateLimit {
		// Refused unchecked and not recorded: the limit is a rate, so the
		// user gets in again once the old failures age out.
		return Result{Outcome: RateLimited}, false
	}
	if !wellFormed(f, code) {
		return Result{Outcome: Malformed}, false
	}
	return Result{}, true
}

// Charge records one attempt as failed, as a wrong code leaves it, and
// reports whether that locked the user and for how long. Each lock lasts
// twice as long as the one before, up to MaxUnlockTime, until a success
// or an admin's unlock.
func Charge(st *secret.State, now int64, p Policy) (bool, int64) {
	if p.RateLimit > 0 {
		st.FailedAt = append(recentFailures(st, now, p), now)
	}
	st.Failures++
	st.Missed++
	if p.Deny == 0 || st.Failures < p.Deny {
		return false, 0
	}
	d := p.UnlockTime
	for i := 0; i < st.Lockouts && (p.MaxUnlockTime == 0 || d < p.MaxUnlockTime); i++ {
		d *= 2
	}
	if p.MaxUnlockTime > 0 {
		d = min(d, max(p.MaxUnlockTime, p.UnlockTime))
	}
	st.Failures, st.LockedUntil = 0, now+d
	st.Lockouts++
	return true, d
}

func recentFailures(st *secret.State, now int64, p Policy) []int64 {
	var recent []int64
	for _, t := range st.FailedAt {
		if t > now-p.RateSeconds && t <= now {
			recent = append(recent, t)
		}
	}
	return recent
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
	shareReplayState(f, st)
	defer shareReplayState(f, st)
	best := Result{Outcome: BadCode}
	outside := ""
	for i := range f.Tokens {
		t := &f.Tokens[i]
		if t.Disabled || !otp.IsDigits(code, t.Params.Digits) {
			continue
		}
		if !t.ValidAt(now) {
			outside = t.Name
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
	if best.Outcome == BadCode && outside != "" {
		best = Result{Outcome: Outside, Token: outside}
	}
	return best
}

// shareReplayState gives tokens with the same key, kind and period the
// newest last step of any of them. Their codes at one step are the same
// (a 6-digit code is the tail of the 8-digit one), so a code accepted
// through one must be a replay through the others. totp-enroll refuses
// such duplicates; this covers files written by hand or before it did.
func shareReplayState(f *secret.File, st *secret.State) {
	for i := range f.Tokens {
		a := &f.Tokens[i]
		for j := range f.Tokens {
			b := &f.Tokens[j]
			if i == j || !a.SameKey(b) || a.Type != b.Type || a.Params.Period != b.Params.Period {
				continue
			}
			sa, sb := st.Token(a), st.Token(b)
			if sb.Used && (!sa.Used || sb.LastStep > sa.LastStep) {
				sa.Used, sa.LastStep = true, sb.LastStep
			}
		}
	}
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
	if p.ResyncRange == 0 || !ts.Used {
		// A token never used has its wider initial window and no resync:
		// codes further off are the admin's totp-enroll sync.
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

// resync searches ResyncRange steps each side of where the token's clock
// was at its last login, beyond the window: a used token's clock moves a
// few steps between two logins, never hours, so old codes (phished or
// recorded) never resynchronise. A first match is only remembered; the
// next consecutive code (the following step, entered within a step of the
// same offset) completes it and is accepted and recorded, so it cannot be
// replayed.
func resync(t *secret.Token, ts *secret.TokenState, code string, T, now int64, p Policy, r Result) Result {
	var far []int64
	for o := -int64(p.ResyncRange); o <= int64(p.ResyncRange); o++ {
		s := T + ts.Drift + o
		if s >= 0 && s > ts.LastStep && matches(t, s, code) {
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
		if abs(s-T-ts.Drift) < abs(closest-T-ts.Drift) {
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

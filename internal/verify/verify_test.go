// SPDX-License-Identifier: Apache-2.0

package verify

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"pamtotp/internal/otp"
	"pamtotp/internal/secret"
)

const t0 = 1_800_000_000 // a Unix time on a 30 s boundary

func newFile() *secret.File {
	return &secret.File{
		Tokens:  []secret.Token{{Name: "phone", Key: []byte("12345678901234567890"), Params: otp.Params{Algorithm: otp.SHA1, Digits: 6, Period: 30}}},
		Scratch: []string{"11111111", "22222222"},
	}
}

// codeAt is the phone's code for the step offset steps away from now.
func codeAt(t *testing.T, f *secret.File, now int64, offset int64) string {
	t.Helper()
	tok := f.Tokens[0]
	c, err := otp.Code(tok.Key, uint64(otp.Step(now, tok.Params.Period)+offset), tok.Params)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// A login: the code the phone shows at phoneOffset steps from the server's
// step, typed at time now.
type login struct {
	now         int64
	phoneOffset int64
	code        string // used instead of the phone's code when set
	typed       bool   // code is what was typed, even if empty
	want        Outcome
	wantDrift   int64
}

func run(t *testing.T, p Policy, steps []login) {
	t.Helper()
	f, st := newFile(), secret.NewState()
	for i, l := range steps {
		code := l.code
		if code == "" && !l.typed {
			code = codeAt(t, f, l.now, l.phoneOffset)
		}
		r := Check(f, st, code, l.now, p)
		if r.Outcome != l.want {
			t.Fatalf("login %d: outcome %q, want %q", i, r.Outcome, l.want)
		}
		if r.Outcome == OK && r.Token == "phone" && r.Drift != l.wantDrift {
			t.Fatalf("login %d: drift %d, want %d", i, r.Drift, l.wantDrift)
		}
		// The state must survive a save and a load unchanged in effect.
		back, err := secret.ParseState(st.Marshal(f))
		if err != nil {
			t.Fatalf("login %d: state does not parse: %v", i, err)
		}
		st = back
	}
}

func TestCheck(t *testing.T) {
	p := DefaultPolicy
	tests := []struct {
		name   string
		policy Policy
		logins []login
	}{
		{"current code", p, []login{{now: t0, want: OK}}},
		{"replay of the same code", p, []login{{now: t0, want: OK}, {now: t0 + 5, want: Replay}}},
		{"an older code after a newer one", p, []login{
			{now: t0, want: OK},
			{now: t0 + 30, phoneOffset: 0, want: OK},
			{now: t0 + 30, phoneOffset: -1, want: Replay}}},
		{"next step accepted", p, []login{{now: t0, want: OK}, {now: t0 + 30, want: OK}}},
		{"window edge +1 and -1", p, []login{
			{now: t0, want: OK},
			{now: t0 + 60, phoneOffset: 1, want: OK, wantDrift: 1},
			{now: t0 + 150, phoneOffset: 2, want: OK, wantDrift: 2}}},
		{"outside the window once used", p, []login{
			{now: t0, want: OK},
			{now: t0 + 60, phoneOffset: 3, want: ResyncPending}}},
		{"first use allows a larger drift", p, []login{{now: t0, phoneOffset: -8, want: OK, wantDrift: -8}}},
		{"drift is learned and followed", p, []login{
			{now: t0, phoneOffset: -8, want: OK, wantDrift: -8},
			{now: t0 + 90, phoneOffset: -8, want: OK, wantDrift: -8},
			{now: t0 + 120, phoneOffset: -7, want: OK, wantDrift: -7}}},
		{"two consecutive codes a few steps off resync", p, []login{
			{now: t0, want: OK},
			{now: t0 + 30, phoneOffset: 6, want: ResyncPending},
			{now: t0 + 45, phoneOffset: 7, want: OK, wantDrift: 7},
			{now: t0 + 45, phoneOffset: 7, want: Replay},
			{now: t0 + 70, phoneOffset: 7, want: OK, wantDrift: 7}}},
		{"codes that are not consecutive do not resync", p, []login{
			{now: t0, want: OK},
			{now: t0 + 30, phoneOffset: 5, want: ResyncPending},
			{now: t0 + 30, phoneOffset: 9, want: ResyncPending}}},
		{"old codes never resync a used token", p, []login{
			{now: t0, want: OK},
			{now: t0 + 30, phoneOffset: -200, want: BadCode},
			{now: t0 + 30, phoneOffset: -199, want: BadCode},
			{now: t0 + 30, phoneOffset: 11, want: BadCode},
			{now: t0 + 30, phoneOffset: 12, want: BadCode}}},
		{"resync moves from the learned drift, not from now", p, []login{
			{now: t0, phoneOffset: -8, want: OK, wantDrift: -8},
			{now: t0 + 600, phoneOffset: -16, want: ResyncPending},
			{now: t0 + 615, phoneOffset: -15, want: OK, wantDrift: -15}}},
		{"a token never used starts at most the initial window off", p, []login{
			{now: t0, phoneOffset: -11, want: BadCode},
			{now: t0, phoneOffset: -10, want: OK, wantDrift: -10}}},
		{"a token never used does not resync", p, []login{
			{now: t0, phoneOffset: 30, want: BadCode},
			{now: t0 + 15, phoneOffset: 31, want: BadCode}}},
		{"wrong code", p, []login{{now: t0, code: "000000", want: BadCode}}},
		{"malformed input never locks", Policy{Behind: 1, Ahead: 1, Deny: 2, UnlockTime: 300}, []login{
			{now: t0, typed: true, want: Malformed}, {now: t0, code: "12345", want: Malformed},
			{now: t0, code: "1234567", want: Malformed}, {now: t0, code: "12 456", want: Malformed},
			{now: t0, code: "abcdef", want: Malformed}, {now: t0, code: "hunter2", want: Malformed},
			{now: t0, want: OK}}},
		{"scratch code works once", p, []login{
			{now: t0, code: "11111111", want: OK},
			{now: t0, code: "11111111", want: BadCode},
			{now: t0, code: "22222222", want: OK}}},
		{"each lock lasts twice as long, up to the cap", Policy{Behind: 1, Ahead: 1, Deny: 1, UnlockTime: 100, MaxUnlockTime: 250}, []login{
			{now: t0, code: "000000", want: BadCode},
			{now: t0 + 99, want: Locked},
			{now: t0 + 100, code: "000000", want: BadCode},
			{now: t0 + 299, want: Locked},
			{now: t0 + 300, code: "000000", want: BadCode},
			{now: t0 + 549, want: Locked},
			{now: t0 + 550, code: "000000", want: BadCode},
			{now: t0 + 799, want: Locked},
			{now: t0 + 800, want: OK},
			{now: t0 + 830, code: "000000", want: BadCode},
			{now: t0 + 929, want: Locked},
			{now: t0 + 930, want: OK}}},
		{"lockout after deny failures, then unlock", Policy{Behind: 1, Ahead: 1, Deny: 3, UnlockTime: 300}, []login{
			{now: t0, code: "000000", want: BadCode},
			{now: t0, code: "000000", want: BadCode},
			{now: t0, code: "000000", want: BadCode},
			{now: t0 + 10, want: Locked},
			{now: t0 + 301, want: OK}}},
		{"success resets the failure count", Policy{Behind: 1, Ahead: 1, Deny: 2, UnlockTime: 300}, []login{
			{now: t0, code: "000000", want: BadCode},
			{now: t0, want: OK},
			{now: t0 + 30, code: "000000", want: BadCode},
			{now: t0 + 30, want: OK}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { run(t, tt.policy, tt.logins) })
	}
}

func TestLongAnswerIsRefused(t *testing.T) {
	f, st := newFile(), secret.NewState()
	long := make([]byte, 1<<20)
	for i := range long {
		long[i] = '1'
	}
	if r := Check(f, st, string(long), t0, DefaultPolicy); r.Outcome != Malformed || st.Failures != 0 {
		t.Fatalf("1 MB answer: %+v, failures %d", r, st.Failures)
	}
}

func TestSeveralTokensKeepTheirOwnState(t *testing.T) {
	f := newFile()
	f.Tokens = append(f.Tokens, secret.Token{Name: "tablet", Key: []byte("abcdefghijabcdefghij"),
		Params: otp.Params{Algorithm: otp.SHA256, Digits: 8, Period: 60}})
	st := secret.NewState()
	tab := f.Tokens[1]
	c, _ := otp.Code(tab.Key, uint64(otp.Step(t0, 60)), tab.Params)
	if r := Check(f, st, c, t0, DefaultPolicy); r.Outcome != OK || r.Token != "tablet" {
		t.Fatalf("tablet: %+v", r)
	}
	if r := Check(f, st, codeAt(t, f, t0, 0), t0, DefaultPolicy); r.Outcome != OK || r.Token != "phone" {
		t.Fatalf("phone after tablet: %+v", r)
	}
}

// One key enrolled as a 6-digit and an 8-digit token: the 6-digit code is
// the tail of the 8-digit one, so a code seen through one is a replay
// through the other.
func TestSameKeySharesReplayState(t *testing.T) {
	f := newFile()
	eight := f.Tokens[0]
	eight.Name, eight.Params.Digits = "eight", 8
	f.Tokens = append(f.Tokens, eight)
	st := secret.NewState()
	long, _ := otp.Code(eight.Key, uint64(otp.Step(t0, 30)), eight.Params)
	if r := Check(f, st, long, t0, DefaultPolicy); r.Outcome != OK || r.Token != "eight" {
		t.Fatalf("8-digit code: %+v", r)
	}
	if r := Check(f, st, long[2:], t0+5, DefaultPolicy); r.Outcome != Replay {
		t.Fatalf("its last 6 digits through the 6-digit token: %+v, want a replay", r)
	}
	if r := Check(f, st, codeAt(t, f, t0+30, 0), t0+30, DefaultPolicy); r.Outcome != OK {
		t.Fatalf("the next step's code: %+v", r)
	}
}

// Charge leaves the state exactly as a wrong code does, so a state saved
// after Charge and before Check already counts the guess.
func TestChargeIsWhatAWrongCodeLeaves(t *testing.T) {
	p := Policy{Behind: 1, Ahead: 1, Deny: 3, UnlockTime: 300, MaxUnlockTime: 3000, RateLimit: 10, RateSeconds: 60}
	f := newFile()
	charged, wrong := secret.NewState(), secret.NewState()
	for i := 0; i < 7; i++ {
		now := int64(t0 + 700*i)
		if _, ok := Admit(f, charged, "000000", now, p); !ok {
			t.Fatalf("attempt %d not admitted", i)
		}
		Charge(charged, now, p)
		Check(f, wrong, "000000", now, p)
		a := fmt.Sprint(charged.Failures, charged.LockedUntil, charged.Lockouts, charged.Missed, charged.FailedAt)
		if b := fmt.Sprint(wrong.Failures, wrong.LockedUntil, wrong.Lockouts, wrong.Missed, wrong.FailedAt); a != b {
			t.Fatalf("attempt %d: charged %s, a wrong code left %s", i, a, b)
		}
	}
	if charged.Missed != 7 || charged.Lockouts != 2 {
		t.Fatalf("missed %d, lockouts %d; want 7 and 2", charged.Missed, charged.Lockouts)
	}
	now := charged.LockedUntil
	r := Check(f, charged, codeAt(t, f, now, 0), now, p)
	// The lock ends; the count stays until the caller has told the user.
	if r.Outcome != OK || r.Missed != 7 || charged.Missed != 7 || charged.Lockouts != 0 || charged.Failures != 0 {
		t.Fatalf("success after 7 wrong codes: %+v, state %+v", r, charged)
	}
	for _, tt := range []struct {
		name string
		st   *secret.State
		code string
		want Outcome
	}{
		{"locked", &secret.State{LockedUntil: t0 + 1}, codeAt(t, f, t0, 0), Locked},
		{"rate limited", &secret.State{FailedAt: []int64{t0 - 1, t0 - 2, t0 - 3, t0 - 4, t0 - 5, t0 - 6, t0 - 7, t0 - 8, t0 - 9, t0 - 10}}, "000000", RateLimited},
		{"malformed", secret.NewState(), "12345", Malformed},
	} {
		if r, ok := Admit(f, tt.st, tt.code, t0, p); ok || r.Outcome != tt.want {
			t.Errorf("%s: admitted %v, outcome %q; want refused as %q", tt.name, ok, r.Outcome, tt.want)
		}
	}
}

func TestGoogleStylePolicy(t *testing.T) {
	// pam_google_authenticator's WINDOW_SIZE 3 with TIME_SKEW fixed.
	p := Policy{Behind: 1, Ahead: 1, FixedDrift: true, ResyncRange: 1500}
	run(t, p, []login{
		{now: t0, phoneOffset: 1, want: OK, wantDrift: 0},
		{now: t0 + 90, phoneOffset: -1, want: OK, wantDrift: 0}, // drift did not move to +1
		{now: t0 + 120, phoneOffset: 2, want: ResyncPending},
		{now: t0 + 150, phoneOffset: 2, want: OK, wantDrift: 2}, // only a resync moves it
	})
	// An even WINDOW_SIZE (4) reaches one step further ahead than behind.
	p4 := Policy{Behind: 1, Ahead: 2, FixedDrift: true}
	run(t, p4, []login{{now: t0, phoneOffset: 2, want: OK}})
	run(t, p4, []login{{now: t0, phoneOffset: -2, want: BadCode}})
	run(t, Policy{Behind: 1, Ahead: 1, FixedDrift: true}, []login{{now: t0, phoneOffset: 3, want: BadCode}})
}

func TestRateLimit(t *testing.T) {
	p := Policy{Behind: 1, Ahead: 1, RateLimit: 2, RateSeconds: 30}
	run(t, p, []login{
		{now: t0, code: "000000", want: BadCode},
		{now: t0 + 1, want: OK}, // successes do not count
		{now: t0 + 2, code: "000000", want: BadCode},
		{now: t0 + 3, phoneOffset: 1, want: RateLimited}, // even the right code is not checked
		{now: t0 + 3, code: "junk", want: RateLimited},
		{now: t0 + 31, phoneOffset: 1, want: OK, wantDrift: 1}, // the first failure aged out
	})
}

// hotpFile is RFC 4226's test key, counter-based, starting at counter 0.
func hotpFile() *secret.File {
	return &secret.File{Tokens: []secret.Token{{Name: "key", Type: secret.HOTP, Key: []byte("12345678901234567890"),
		Params: otp.Params{Algorithm: otp.SHA1, Digits: 6}}}}
}

func TestHOTPVectors(t *testing.T) {
	// The repository's one copy of RFC 4226's vectors (internal/otp/testdata/README.md).
	data, err := os.ReadFile("../otp/testdata/rfc4226-vectors.tsv")
	if err != nil {
		t.Fatal(err)
	}
	f, st := hotpFile(), secret.NewState()
	p := DefaultPolicy
	n := 0
	for _, l := range strings.Split(string(data), "\n") {
		fields := strings.Fields(l)
		if len(fields) < 2 || !otp.IsDigits(fields[len(fields)-1], 6) {
			continue
		}
		// Each vector in order is the next counter: every one is accepted once.
		code := fields[len(fields)-1]
		if r := Check(f, st, code, t0, p); r.Outcome != OK {
			t.Fatalf("vector %s: %+v", l, r)
		}
		if r := Check(f, st, code, t0, p); r.Outcome != Replay {
			t.Fatalf("vector %s reused: %+v", l, r)
		}
		n++
	}
	if n != 10 {
		t.Fatalf("read %d vectors, want 10", n)
	}
}

func TestHOTP(t *testing.T) {
	code := func(c int64) string {
		f := hotpFile()
		s, _ := otp.Code(f.Tokens[0].Key, uint64(c), f.Tokens[0].Params)
		return s
	}
	type step struct {
		counter int64
		want    Outcome
	}
	tests := []struct {
		name  string
		p     Policy
		steps []step
	}{
		{"look-ahead window", Policy{HOTPWindow: 10}, []step{{9, OK}, {10, OK}, {21, BadCode}, {20, OK}}},
		{"older counters are refused", Policy{HOTPWindow: 10}, []step{{5, OK}, {3, Replay}, {5, Replay}, {6, OK}}},
		{"resync from two consecutive codes", Policy{HOTPWindow: 3, HOTPResync: 100}, []step{
			{50, ResyncPending}, {52, ResyncPending}, {53, OK}, {53, Replay}, {54, OK}}},
		{"no resync without a range", Policy{HOTPWindow: 3}, []step{{50, BadCode}, {51, BadCode}}},
		{"a miss moves the counter on (google)", Policy{HOTPWindow: 3, HOTPAdvance: true}, []step{
			{-1, BadCode}, {0, Replay}, {1, Replay}, {3, OK}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, st := hotpFile(), secret.NewState()
			for i, s := range tt.steps {
				c := "000000"
				if s.counter >= 0 {
					c = code(s.counter)
				}
				if c == "000000" && s.counter >= 0 {
					t.Fatal("test key gives 000000")
				}
				if r := Check(f, st, c, t0, tt.p); r.Outcome != s.want {
					t.Fatalf("step %d (counter %d): %q, want %q", i, s.counter, r.Outcome, s.want)
				}
			}
		})
	}
}

// A token's codes count only within its validity dates: the right code
// before its start or from its expiry on is refused and charged, and
// says why.
func TestValidityDates(t *testing.T) {
	for _, tc := range []struct {
		name       string
		from, till int64
		want       Outcome
	}{
		{"within", t0 - 100, t0 + 100, OK},
		{"not yet", t0 + 30, 0, Outside},
		{"expired", 0, t0, Outside},
		{"expired a second ago", t0 - 1000, t0 - 1, Outside},
		{"no dates", 0, 0, OK},
	} {
		f, st := newFile(), secret.NewState()
		f.Tokens[0].ValidFrom, f.Tokens[0].ValidUntil = tc.from, tc.till
		r := Check(f, st, codeAt(t, f, t0, 0), t0, DefaultPolicy)
		if r.Outcome != tc.want {
			t.Errorf("%s: %+v, want %q", tc.name, r, tc.want)
		}
		if tc.want != OK && (st.Failures != 1 || r.Token != "phone") {
			t.Errorf("%s: failures %d, token %q: an attempt outside the dates is a charged failure naming the token", tc.name, st.Failures, r.Token)
		}
	}
}

// SPDX-License-Identifier: Apache-2.0

package directory

import (
	"fmt"
	"strings"
	"testing"

	"pamtotp/internal/secret"
)

// csn is an entryCSN of slapd's form, n microseconds into a second: the
// records' order.
func csn(n int) string { return fmt.Sprintf("20261206120000.%06dZ#000000#001#000000", n) }

func okRec(fp string, step int64, drift int64, n int) record {
	return record{kind: recOK, fp: fp, step: step, at: 1000 + step, drift: drift, csn: csn(n), dn: fmt.Sprintf("cn=ok-%s-%d", fp, step)}
}
func failRec(n int) record {
	return record{kind: recFail, csn: csn(n), dn: fmt.Sprintf("cn=fail-%d", n)}
}
func lockRec(until int64, lockouts, n int) record {
	return record{kind: recLock, until: until, lockouts: lockouts, csn: csn(n), dn: fmt.Sprintf("cn=lock-%d", n)}
}
func scratchRec(code string, n int) record {
	return record{kind: recScratch, hash: scratchHash(code), csn: csn(n), dn: "cn=scratch-" + scratchHash(code)}
}

// TestFold: what each side of a partition wrote survives whichever side's
// pamTOTPState replication kept.
func TestFold(t *testing.T) {
	f := sampleFile(t)
	fp := f.Tokens[0].Fingerprint()
	base := func(text string) *secret.State {
		st, err := secret.ParseState([]byte("pam_totp-state 1\n" + text))
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	cases := []struct {
		name  string
		state string
		recs  []record
		want  string // lines the folded state must have, in Marshal's text
		not   string // a line it must not have
	}{
		{name: "no records: the state as it is", state: "failures 2\n", want: "failures 2"},
		{name: "a step the kept state lacks", state: "failures 1\n", recs: []record{okRec(fp, 50, 0, 1)}, want: "last=50"},
		{name: "the highest step and its drift", state: "token " + fp + " last=40 drift=0\n",
			recs: []record{okRec(fp, 45, 2, 1), okRec(fp, 47, -1, 2), okRec(fp, 46, 3, 3)}, want: "last=47 at=1047 drift=-1"},
		{name: "the state's own step when higher", state: "token " + fp + " last=60 drift=1\n",
			recs: []record{okRec(fp, 47, -1, 2)}, want: "last=60 drift=1"},
		{name: "charges of both sides add up", state: "failures 2\n", recs: []record{failRec(1), failRec(2), failRec(3)}, want: "failures 3"},
		{name: "charges before a success do not count", recs: []record{failRec(1), failRec(2), okRec(fp, 9, 0, 3), failRec(4)}, want: "failures 1"},
		{name: "charges before a lock do not count", recs: []record{failRec(1), lockRec(5000, 1, 2), failRec(3)}, want: "failures 1\nlocked-until 5000\nlockouts 1"},
		{name: "a lock holds though the kept state has none", state: "failures 1\n", recs: []record{lockRec(5000, 2, 1)}, want: "locked-until 5000\nlockouts 2"},
		{name: "the later of two locks", recs: []record{lockRec(5000, 1, 1), lockRec(4000, 1, 2)}, want: "locked-until 5000"},
		{name: "lockouts end with a success", recs: []record{lockRec(100, 3, 1), okRec(fp, 9, 0, 2)}, not: "lockouts"},
		{name: "a used scratch code", recs: []record{scratchRec("12345678", 1)}, want: "scratch-used 12345678"},
		{name: "a scratch code resets charges", recs: []record{failRec(1), scratchRec("12345678", 2)}, not: "failures"},
		{name: "a record of another token is no state of this one", recs: []record{okRec("00000000000000ff", 9, 0, 1)}, not: "last="},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := string(fold(base(c.state), c.recs, f).Marshal(f))
			if c.want != "" && !strings.Contains(got, c.want) {
				t.Fatalf("folded state\n%s\nlacks %q", got, c.want)
			}
			if c.not != "" && strings.Contains(got, c.not) {
				t.Fatalf("folded state\n%s\nhas %q", got, c.not)
			}
		})
	}
}

// TestFoldIsIdempotent: a fact in both the state and a record is counted
// once, so a state that absorbed its records folds to itself.
func TestFoldIsIdempotent(t *testing.T) {
	f := sampleFile(t)
	fp := f.Tokens[0].Fingerprint()
	recs := []record{okRec(fp, 7, 1, 1), failRec(2), failRec(3), lockRec(9000, 1, 4), failRec(5), scratchRec("12345678", 0)}
	once := fold(secret.NewState(), recs, f)
	twice := fold(once, recs, f)
	if a, b := once.Marshal(f), twice.Marshal(f); string(a) != string(b) {
		t.Fatalf("folding again changed the state:\n%s\n---\n%s", a, b)
	}
}

// TestNewRecords: each change a login makes has its record, and the ok
// and scratch records are named by what they stand for, so that the add
// is refused where the same code was used.
func TestNewRecords(t *testing.T) {
	f := sampleFile(t)
	fp := f.Tokens[0].Fingerprint()
	old := secret.NewState()
	old.Failures = 1
	charged := old.Clone()
	charged.Failures = 2
	ok := old.Clone()
	ok.Failures = 0
	ts := ok.Token(&f.Tokens[0])
	ts.Used, ts.LastStep, ts.At, ts.Drift = true, 77, 2310, -1
	ok.ScratchUsed = []string{"12345678"}
	locked := old.Clone()
	locked.Failures, locked.LockedUntil, locked.Lockouts = 0, 500, 1
	cases := []struct {
		name string
		st   *secret.State
		want []string // the records' names (fail and lock: their prefix) and data
	}{
		{name: "a charge", st: charged, want: []string{"fail- "}},
		{name: "a success and a scratch code", st: ok, want: []string{"ok-" + fp + "-77 at=2310 drift=-1", "scratch-" + scratchHash("12345678") + " at="}},
		{name: "a lock", st: locked, want: []string{"lock- until=500 lockouts=1"}},
		{name: "nothing new", st: old.Clone()},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			recs := newRecords(old, c.st, f)
			if len(recs) != len(c.want) {
				t.Fatalf("records %+v, want %d", recs, len(c.want))
			}
			for i, w := range c.want {
				name, data, _ := strings.Cut(w, " ")
				if !strings.HasPrefix(recs[i].name, name) || !strings.HasPrefix(recs[i].data(), data) {
					t.Fatalf("record %q %q, want %q", recs[i].name, recs[i].data(), w)
				}
				// What is written parses back as what it says.
				if _, err := parseRecord("cn="+recs[i].name, recs[i].name, recs[i].data(), csn(1)); err != nil {
					t.Fatalf("a record written does not parse: %v", err)
				}
			}
		})
	}
}

// TestObsolete: what a login may delete changes nothing the fold says.
func TestObsolete(t *testing.T) {
	f := sampleFile(t)
	fp := f.Tokens[0].Fingerprint()
	recs := []record{
		failRec(1), okRec(fp, 10, 0, 2), failRec(3), lockRec(100, 1, 4), okRec(fp, 12, 1, 5),
		lockRec(200, 2, 6), failRec(7), scratchRec("99999999", 0), okRec("00000000000000ff", 3, 0, 0),
	}
	obs := obsolete(recs, f, 1000)
	var names []string
	for _, r := range obs {
		names = append(names, r.dn)
	}
	want := "cn=fail-1 cn=ok-" + fp + "-10 cn=fail-3 cn=lock-4 cn=scratch-" + scratchHash("99999999") + " cn=ok-00000000000000ff-3"
	if strings.Join(names, " ") != want {
		t.Fatalf("obsolete %v\nwant %s", names, want)
	}
	var kept []record
	for _, r := range recs {
		if !strings.Contains(want, r.dn+" ") && !strings.HasSuffix(want, r.dn) {
			kept = append(kept, r)
		}
	}
	for _, st := range []*secret.State{secret.NewState(), func() *secret.State { s := secret.NewState(); s.Failures = 3; return s }()} {
		if a, b := fold(st, recs, f).Marshal(f), fold(st, kept, f).Marshal(f); string(a) != string(b) {
			t.Fatalf("deleting the obsolete records changed the state:\n%s\n---\n%s", a, b)
		}
	}
}

// TestContradicted: an admin's unlock deletes the locks and charges that
// would lock the user again, and leaves the used steps.
func TestContradicted(t *testing.T) {
	f := sampleFile(t)
	fp := f.Tokens[0].Fingerprint()
	recs := []record{okRec(fp, 10, 0, 1), failRec(2), lockRec(5000, 1, 3), failRec(4)}
	st := fold(secret.NewState(), recs, f)
	st.Failures, st.LockedUntil, st.Lockouts, st.Missed = 0, 0, 0, 0
	var names []string
	for _, r := range contradicted(recs, st, f) {
		names = append(names, r.dn)
	}
	if got := strings.Join(names, " "); got != "cn=fail-2 cn=lock-3 cn=fail-4" {
		t.Fatalf("an unlock deletes %q, want the charges and the lock", got)
	}
}

// TestParseRecord: a record read from the network is of a known form, or
// the login refuses it.
func TestParseRecord(t *testing.T) {
	good := csn(5)
	cases := []struct {
		name, data, csn string
		ok              bool
	}{
		{"ok-0123456789abcdef-42", "at=1 drift=-2", good, true},
		{"scratch-0123456789abcdef", "at=1", good, true},
		{"fail-1765000000000000000-0a1b2c3d", "", good, true},
		{"lock-1765000000000000000-0a1b2c3d", "until=10 lockouts=2", good, true},
		{"ok-0123456789abcdef-42", "at=1", good, false},            // no drift
		{"ok-0123456789abcdef-042", "at=1 drift=0", good, false},   // not canonical
		{"ok-0123456789abcdef--4", "at=1 drift=0", good, false},    // negative
		{"ok-0123456789ABCDEF-42", "at=1 drift=0", good, false},    // upper case
		{"fail-1765000000000000000-0a1b2c3d", "at=1", good, false}, // data where none is
		{"lock-1765000000000000000-0a1b2c3d", "until=10 until=11", good, false},
		{"lock-1765000000000000000-0a1b2c3d", "until=10 lockouts=-1", good, false},
		{"grace-1", "", good, false},                                 // unknown
		{"fail-1765000000000000000-0a1b2c3d", "", "20261206", false}, // not a CSN
		{"fail-1765000000000000000-0a1b2c3d", "", strings.Replace(good, "#001#", "#0x1#", 1), false},
	}
	for _, c := range cases {
		_, err := parseRecord("cn="+c.name+",uid=u", c.name, c.data, c.csn)
		if (err == nil) != c.ok {
			t.Errorf("%q %q %q: error %v, want ok=%v", c.name, c.data, c.csn, err, c.ok)
		}
	}
}

// TestObsoleteCharges: with deny=0 (no lock) a stream of wrong codes
// keeps the newest maxCharges charges, and the count of the fold does not
// drop below them.
func TestObsoleteCharges(t *testing.T) {
	f := sampleFile(t)
	var recs []record
	for i := range maxCharges + 10 {
		recs = append(recs, failRec(i+1))
	}
	obs := obsolete(recs, f, 0)
	if len(obs) != 10 || obs[0].dn != "cn=fail-1" || obs[9].dn != "cn=fail-10" {
		t.Fatalf("obsolete charges %d (first %v), want the oldest 10", len(obs), obs[0].dn)
	}
	if n := fold(secret.NewState(), recs[10:], f).Failures; n != maxCharges {
		t.Fatalf("the kept charges fold to %d failures, want %d", n, maxCharges)
	}
}

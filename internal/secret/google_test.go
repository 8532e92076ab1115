// SPDX-License-Identifier: Apache-2.0

package secret

import (
	"os"
	"strings"
	"testing"
)

func TestGoogleFileAsEnrollment(t *testing.T) {
	data, err := os.ReadFile("../gafile/testdata/state.txt")
	if err != nil {
		t.Fatal(err)
	}
	g, err := parseGoogle(data, 0o400)
	if err != nil {
		t.Fatal(err)
	}
	tok := &g.file.Tokens[0]
	ts := g.state.Tokens[tok.Fingerprint()]
	if tok.Type != TOTP || tok.Params.Period != 30 || ts == nil || !ts.Used || ts.LastStep != 59846081 || ts.Drift != -2 ||
		!ts.Pending || ts.PendingStep != 59846078 || ts.PendingOffset != -3 || g.state.Failures != 2 ||
		len(g.state.Grace) != 2 || len(g.file.Scratch) != 2 {
		t.Fatalf("read as %+v %+v %+v", tok, ts, g.state)
	}
	if out, changed := g.update(g.state.Clone()); changed || string(out) != string(data) {
		t.Fatalf("an unchanged state rewrote the file:\n%s", out)
	}

	st := g.state.Clone()
	ts = st.Tokens[tok.Fingerprint()]
	ts.LastStep, ts.Drift, ts.Pending = 59846090, 5, false
	st.ScratchUsed = []string{"11111111"}
	st.Failures = 0
	st.Remember("192.0.2.7", 1763839999)
	out, changed := g.update(st)
	if !changed {
		t.Fatal("not changed")
	}
	text := string(out)
	for _, want := range []string{`" DISALLOW_REUSE 59846090`, `" TIME_SKEW 5`, `" LAST0 192.0.2.7 1763839999`,
		`" LAST1 10.0.0.1 1763830000`, `" SOMETHING_NEW 1 2`} {
		if !strings.Contains(text, want) {
			t.Errorf("missing %q in\n%s", want, text)
		}
	}
	for _, gone := range []string{"RESETTING_TIME_SKEW", "PAM_TOTP_LOCKOUT", "11111111", "59846080"} {
		if strings.Contains(text, gone) {
			t.Errorf("%q left in\n%s", gone, text)
		}
	}
	back, err := parseGoogle(out, 0o400)
	if err != nil || back.state.Tokens[tok.Fingerprint()].LastStep != 59846090 {
		t.Fatalf("written file reads back wrong: %v", err)
	}
}

func TestGoogleHOTPCounter(t *testing.T) {
	data, err := os.ReadFile("../gafile/testdata/hotp.txt")
	if err != nil {
		t.Fatal(err)
	}
	g, err := parseGoogle(data, 0o400)
	if err != nil {
		t.Fatal(err)
	}
	tok := &g.file.Tokens[0]
	if tok.Type != HOTP || tok.Counter != 1 {
		t.Fatalf("%+v", tok)
	}
	st := g.state.Clone()
	ts := st.Token(tok)
	ts.Used, ts.LastStep = true, 4 // counter 4 accepted
	out, _ := g.update(st)
	if !strings.Contains(string(out), `" HOTP_COUNTER 5`) {
		t.Fatalf("counter not moved:\n%s", out)
	}
}

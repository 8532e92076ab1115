// SPDX-License-Identifier: Apache-2.0

package secret

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseFileGood(t *testing.T) {
	for _, name := range []string{"good-one.txt", "good-two.txt"} {
		data, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		f, err := ParseFile(data)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		back, err := ParseFile(f.Marshal())
		if err != nil || len(back.Tokens) != len(f.Tokens) || len(back.Scratch) != len(f.Scratch) {
			t.Fatalf("%s: round trip: %v", name, err)
		}
		for i := range f.Tokens {
			if string(back.Tokens[i].Key) != string(f.Tokens[i].Key) || back.Tokens[i].Params != f.Tokens[i].Params {
				t.Errorf("%s: token %d changed in round trip", name, i)
			}
		}
	}
}

// The issuer and the account name given to the app survive a round trip.
func TestIssuerAndLabelKept(t *testing.T) {
	data := "pam_totp 1\ntoken phone2 type=totp secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP issuer=ACME+Corp label=alice%40web1+%28phone2%29\n"
	f, err := ParseFile([]byte(data))
	if err != nil {
		t.Fatal(err)
	}
	if tok := f.Tokens[0]; tok.Issuer != "ACME Corp" || tok.Label != "alice@web1 (phone2)" {
		t.Fatalf("issuer %q label %q", tok.Issuer, tok.Label)
	}
	back, err := ParseFile(f.Marshal())
	if err != nil || back.Tokens[0].Issuer != "ACME Corp" || back.Tokens[0].Label != "alice@web1 (phone2)" {
		t.Fatalf("round trip: %v %+v", err, back)
	}
}

func TestParseFileRejects(t *testing.T) {
	const tok = "token phone type=totp secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
	tests := map[string]string{
		"empty":            "",
		"no header":        tok + "\n",
		"future version":   "pam_totp 2\n" + tok + "\n",
		"no token":         "pam_totp 1\nscratch 12345678\n",
		"not base32":       "pam_totp 1\ntoken p type=totp secret=JBSWY3DPEHPK3PX1JBSWY3DP\n",
		"short key":        "pam_totp 1\ntoken p type=totp secret=JBSWY3DP\n",
		"unknown field":    "pam_totp 1\n" + tok + " color=red\n",
		"repeated field":   "pam_totp 1\n" + tok + " digits=6 digits=8\n",
		"digits 9":         "pam_totp 1\n" + tok + " digits=9\n",
		"period 5":         "pam_totp 1\n" + tok + " period=5\n",
		"bad algorithm":    "pam_totp 1\n" + tok + " algorithm=MD5\n",
		"unknown type":     "pam_totp 1\ntoken p type=motp secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP\n",
		"no type":          "pam_totp 1\ntoken p secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP\n",
		"bad name":         "pam_totp 1\ntoken ../x type=totp secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP\n",
		"duplicate token":  "pam_totp 1\n" + tok + "\n" + tok + "\n",
		"short scratch":    "pam_totp 1\n" + tok + "\nscratch 1234567\n",
		"dup scratch":      "pam_totp 1\n" + tok + "\nscratch 12345678\nscratch 12345678\n",
		"unknown keyword":  "pam_totp 1\n" + tok + "\nallow everyone\n",
		"NUL byte":         "pam_totp 1\n" + tok + "\x00\n",
		"control char":     "pam_totp 1\n" + tok + "\x1b[2J\n",
		"state not secret": "pam_totp-state 1\n",
		"too large":        "pam_totp 1\n" + tok + "\n" + strings.Repeat("#\n", MaxFileSize),
		"colon in issuer":  "pam_totp 1\n" + tok + " issuer=a%3Ab\n",
		"long label":       "pam_totp 1\n" + tok + " label=" + strings.Repeat("x", 201) + "\n",
	}
	for name, in := range tests {
		if _, err := ParseFile([]byte(in)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestStateRoundTripAndPruning(t *testing.T) {
	data, err := os.ReadFile("testdata/good-two.txt")
	if err != nil {
		t.Fatal(err)
	}
	f, err := ParseFile(data)
	if err != nil {
		t.Fatal(err)
	}
	st := NewState()
	ts := st.Token(&f.Tokens[0])
	ts.Used, ts.LastStep, ts.Drift = true, 59845191, -2
	ts.Pending, ts.PendingStep, ts.PendingOffset = true, 59845300, 109
	st.ScratchUsed = []string{f.Scratch[0], "99999999"} // the second is not in the file
	st.Failures, st.LockedUntil = 3, 1800000000
	st.Tokens["00000000deadbeef"] = &TokenState{Used: true, LastStep: 1} // a removed token
	back, err := ParseState(st.Marshal(f))
	if err != nil {
		t.Fatal(err)
	}
	got := back.Token(&f.Tokens[0])
	if *got != *ts || back.Failures != 3 || back.LockedUntil != 1800000000 {
		t.Fatalf("state changed: %+v %+v", got, back)
	}
	if len(back.ScratchUsed) != 1 || len(back.Tokens) != 1 {
		t.Fatalf("stale entries kept: %v, %d tokens", back.ScratchUsed, len(back.Tokens))
	}
	for _, bad := range []string{"", "pam_totp 1\n", "pam_totp-state 1\nfailures -1\n", "pam_totp-state 1\ntoken x last=abc\n",
		"pam_totp-state 1\ntoken x pending=5\n", "pam_totp-state 1\nwhatever\n", "pam_totp-state 1\nscratch-used 12\n"} {
		if _, err := ParseState([]byte(bad)); err == nil {
			t.Errorf("state %q accepted", bad)
		}
	}
}

func TestFingerprintDependsOnKey(t *testing.T) {
	a := Token{Key: []byte("12345678901234567890")}
	b := Token{Key: []byte("12345678901234567891")}
	if a.Fingerprint() == b.Fingerprint() || len(a.Fingerprint()) != 16 {
		t.Fatal("fingerprints must differ and be 16 hex digits")
	}
	if strings.Contains(a.Fingerprint(), "3132") {
		t.Fatal("fingerprint looks like the key")
	}
}

func TestStateClone(t *testing.T) {
	tok := &Token{Key: []byte("12345678901234567890")}
	st := NewState()
	st.Token(tok).LastStep = 5
	st.ScratchUsed = []string{"12345678"}
	st.Failures = 2
	c := st.Clone()
	c.Token(tok).LastStep = 9
	c.ScratchUsed[0] = "87654321"
	c.ScratchUsed = append(c.ScratchUsed, "11111111")
	c.Failures = 3
	if st.Token(tok).LastStep != 5 || st.ScratchUsed[0] != "12345678" || len(st.ScratchUsed) != 1 || st.Failures != 2 {
		t.Fatalf("changing the clone changed the original: %+v %+v", st, st.Token(tok))
	}
	if c.Token(tok).LastStep != 9 || c.Failures != 3 {
		t.Fatal("the clone lost its changes")
	}
}

func TestValidityRoundTrip(t *testing.T) {
	in := "pam_totp 1\ntoken hw type=totp algorithm=SHA1 digits=6 period=30 secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ valid-from=1600000000 valid-until=1900000000\n"
	f, err := ParseFile([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	tok := f.Tokens[0]
	if tok.ValidFrom != 1600000000 || tok.ValidUntil != 1900000000 || !tok.ValidAt(1700000000) || tok.ValidAt(1900000000) || tok.ValidAt(1599999999) {
		t.Fatalf("%+v", tok)
	}
	if back, err := ParseFile(f.Marshal()); err != nil || back.Tokens[0].ValidUntil != 1900000000 || back.Tokens[0].ValidFrom != 1600000000 {
		t.Fatalf("round trip: %+v %v", back, err)
	}
	for _, bad := range []string{"valid-until=1500000000", "valid-until=-5", "valid-until=x"} {
		line := strings.Replace(in, "valid-until=1900000000", bad, 1)
		if _, err := ParseFile([]byte(line)); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

// SPDX-License-Identifier: Apache-2.0

package directory

import (
	"strings"
	"testing"

	"pamtotp/internal/otp"
	"pamtotp/internal/secret"
)

func sampleFile(t testing.TB) *secret.File {
	key, err := otp.DecodeKey("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ")
	if err != nil {
		t.Fatal(err)
	}
	return &secret.File{Tokens: []secret.Token{{Name: "default", Type: secret.TOTP, Key: key, Created: 1, Params: otp.DefaultParams}},
		Scratch: []string{"12345678"}}
}

func TestDecodeEntry(t *testing.T) {
	f := sampleFile(t)
	good := [][]byte{f.Marshal()}
	state := [][]byte{secret.NewState().Marshal(f)}
	cls := []string{"inetOrgPerson", "pamTOTPUser"}
	cases := []struct {
		name                  string
		classes               []string
		sec, st, pending      [][]byte
		want                  string // "" for success
		enrolled, wantPending bool
	}{
		{name: "enrolled", classes: cls, sec: good, st: state, enrolled: true},
		{name: "not enrolled", classes: []string{"inetOrgPerson"}},
		{name: "no state yet", classes: cls, sec: good, enrolled: true},
		{name: "two secrets", classes: cls, sec: [][]byte{good[0], good[0]}, want: "has 2 values"},
		{name: "empty secret", classes: cls, sec: [][]byte{{}}, want: "is empty"},
		{name: "oversized state", classes: cls, sec: good, st: [][]byte{[]byte(strings.Repeat("x", secret.MaxFileSize+1))}, want: "larger than"},
		{name: "garbage secret", classes: cls, sec: [][]byte{[]byte("hello")}, want: "pamTOTPSecret"},
		{name: "garbage state", classes: cls, sec: good, st: [][]byte{[]byte("failures many\n")}, want: "pamTOTPState"},
		{name: "values without the class", sec: good, want: "object class"},
		{name: "pending only", classes: cls, pending: [][]byte{[]byte(encodePending("n", f, secret.NewState()))}, wantPending: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e, err := decodeEntry("uid=x", c.classes, c.sec, c.st, c.pending)
			switch {
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("error %v, want one with %q", err, c.want)
			case c.want != "":
				return
			case err != nil:
				t.Fatalf("refused: %v", err)
			case (e.file != nil) != c.enrolled || (e.pendingRaw != "") != c.wantPending || e.state == nil:
				t.Fatalf("enrolled %v pending %q state %v", e.file != nil, e.pendingRaw, e.state)
			}
		})
	}
}

func TestPendingRoundTrip(t *testing.T) {
	f := sampleFile(t)
	st := secret.NewState()
	st.Failures = 2
	name, g, st2, err := decodePending(encodePending("abc", f, st))
	if err != nil || name != "abc" || string(g.Marshal()) != string(f.Marshal()) || st2.Failures != 2 {
		t.Fatalf("round trip: %q %v %v", name, st2, err)
	}
	for _, bad := range []string{"", "abc", "abc\n!!\n!!", "\nAAAA\nAAAA"} {
		if _, _, _, err := decodePending(bad); err == nil {
			t.Errorf("decodePending(%q) accepted", bad)
		}
	}
}

func TestAssertionEncodesTheFilter(t *testing.T) {
	c := unchanged(attrSecret, "a(b)*\\c\n")
	p := c.Encode()
	if len(p.Children) != 3 || len(p.Children[2].Children) != 1 {
		t.Fatalf("the control has no filter in its value: %d parts", len(p.Children))
	}
	if c.GetControlType() != oidAssertion {
		t.Fatal("wrong control type")
	}
}

// FuzzDecodeEntry: whatever a directory sends, the decoder refuses it or
// returns a parsed, bounded entry; it never panics.
func FuzzDecodeEntry(f *testing.F) {
	file := sampleFile(f)
	f.Add(file.Marshal(), secret.NewState().Marshal(file), []byte(encodePending("n", file, secret.NewState())))
	f.Add([]byte("pam_totp 1\n"), []byte("failures 3\n"), []byte("x\ny\nz"))
	f.Fuzz(func(t *testing.T, sec, st, pending []byte) {
		e, err := decodeEntry("uid=x", []string{classUser}, [][]byte{sec}, [][]byte{st}, [][]byte{pending})
		if err != nil {
			return
		}
		if len(e.secretRaw) > secret.MaxFileSize || len(e.stateRaw) > secret.MaxFileSize {
			t.Fatal("an oversized value was accepted")
		}
		if e.file != nil {
			if _, err := marshalFile(e.file); err != nil {
				t.Fatalf("a parsed secret does not write back: %v", err)
			}
		}
		decodePending(e.pendingRaw)
	})
}

// FuzzParseConfig: a configuration file never panics the parser.
func FuzzParseConfig(f *testing.F) {
	f.Add([]byte("uri ldaps://a.example\nbase dc=x\nca_file /ca\ncert_file /c\nkey_file /k\n"))
	f.Add([]byte("uri ldapi://%2Frun%2Fslapd%2Fldapi\nuser_dn uid=%u,dc=x\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err == nil && len(c.URIs) == 0 {
			t.Fatal("a configuration without uri was accepted")
		}
	})
}

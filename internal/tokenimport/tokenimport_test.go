// SPDX-License-Identifier: Apache-2.0

package tokenimport

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"pamtotp/internal/otp"
	"pamtotp/internal/pskc"
	"pamtotp/internal/secret"
)

var now = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)

func read(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestParseOathFile(t *testing.T) {
	entries, bad := ParseOath(read(t, "users.oath"), now)
	if len(bad) != 0 {
		t.Fatalf("bad lines: %v", bad)
	}
	z := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC).Unix()
	want := []struct {
		line    int
		user    string
		kind    secret.Kind
		digits  int
		period  int
		counter int64
		last    int64
	}{
		{2, "alice", secret.HOTP, 6, 0, 0, -1},
		{3, "bob", secret.HOTP, 8, 0, 13, 12}, // a code was accepted at 12: the next is 13
		{4, "carol", secret.TOTP, 6, 30, 0, -1},
		{5, "dave", secret.TOTP, 8, 60, 0, otp.Step(z, 60)},
	}
	if len(entries) != len(want) {
		t.Fatalf("%d entries, want %d", len(entries), len(want))
	}
	for i, w := range want {
		e := entries[i]
		if e.Line != w.line || e.User != w.user || e.Base != "oath" || e.Token.Type != w.kind || e.Token.Params.Digits != w.digits ||
			e.Token.Params.Period != w.period || e.Token.Counter != w.counter || e.Last != w.last ||
			string(e.Token.Key) != "12345678901234567890" || e.Token.Created != now.Unix() {
			t.Errorf("line %d: got %+v, want %+v", w.line, e, w)
		}
	}
}

func TestParseOathRefuses(t *testing.T) {
	key := "3132333435363738393031323334353637383930"
	for _, tt := range []struct{ line, want string }{
		{"HOTP alice", "want TYPE USER PIN HEXKEY"},
		{"TOTP alice - " + key, "unknown token type"},
		{"HOTP/T/8 alice - " + key, "bad time step"},
		{"HOTP/E/x alice - " + key, "bad digits"},
		{"HOTP/E/9 alice - " + key, "digits"},
		{"HOTP ../root - " + key, "unsupported user name"},
		{"HOTP alice 1234 " + key, "a PIN in the users file is not supported"},
		{"HOTP alice - zz", "not hexadecimal"},
		{"HOTP alice - 3132", "the secret must be"},
		{"HOTP alice - " + key + " -1", "bad counter"},
		{"HOTP/T30 alice - " + key + " 0 123456 yesterday", "bad time of the last code"},
		{"HOTP/T5 alice - " + key, "period"},
	} {
		entries, bad := ParseOath([]byte(tt.line+"\n"), now)
		if len(entries) != 0 || len(bad) != 1 || !strings.Contains(bad[0].Error(), tt.want) || !strings.HasPrefix(bad[0].Error(), "line 1: ") {
			t.Errorf("%q: entries %v, errors %v; want one error with %q", tt.line, entries, bad, tt.want)
		}
	}
}

func TestParseCSVFile(t *testing.T) {
	entries, bad := ParseCSV(read(t, "tokens.csv"), "alice", now)
	if len(bad) != 0 || len(entries) != 2 {
		t.Fatalf("entries %v, bad %v", entries, bad)
	}
	if e := entries[0]; e.Line != 2 || e.User != "alice" || e.Base != "hw" || e.Token.Params.Period != 30 || e.Token.Comment != "Feitian c200 #1" || e.Last != -1 {
		t.Errorf("line 2: %+v", e)
	}
	if e := entries[1]; e.Line != 3 || e.Token.Params.Period != 60 || len(e.Token.Key) != 22 {
		t.Errorf("line 3: %+v", e)
	}
	entries, bad = ParseCSV([]byte("\ufeffbob;"+strings.Repeat("ab", 16)+";;\n"), "", now)
	if len(bad) != 0 || len(entries) != 1 || entries[0].User != "bob" {
		t.Errorf("--users line with a byte order mark: %v, %v", entries, bad)
	}
}

func TestParseCSVRefuses(t *testing.T) {
	key := strings.Repeat("ab", 16)
	for _, tt := range []struct{ user, line, want string }{
		{"alice", key + ";30", "want hex key;time step;comment"},
		{"", key + ";30;x", "want user;hex key;time step;comment"},
		{"", "-x;" + key + ";30;x", "unsupported user name"},
		{"alice", "xyz;30;x", "not hexadecimal"},
		{"alice", strings.Repeat("ab", 15) + ";30;x", "128 bits at least"},
		{"alice", key + ";thirty;x", "is not a number"},
		{"alice", key + ";7;x", "period"},
		{"alice", key + ";30;" + strings.Repeat("x", 201), "at most 200 bytes"},
		{"alice", key + ";30;\x01", "control characters"},
	} {
		entries, bad := ParseCSV([]byte(tt.line+"\n"), tt.user, now)
		if len(entries) != 0 || len(bad) != 1 || !strings.Contains(bad[0].Error(), tt.want) {
			t.Errorf("%q: entries %v, errors %v; want one error with %q", tt.line, entries, bad, tt.want)
		}
	}
	if _, bad := ParseCSV([]byte{0xff, 0xfe, '\n'}, "alice", now); len(bad) != 1 || !strings.Contains(bad[0].Error(), "not UTF-8") {
		t.Errorf("not UTF-8: %v", bad)
	}
}

func TestFromPSKC(t *testing.T) {
	key := []byte("12345678901234567890")
	e, err := FromPSKC(pskc.Key{Secret: key, HOTP: true, Digits: 8, Counter: 5, Serial: "987654321", Issuer: "Issuer"}, "alice", now)
	if err != nil || e.Base != "token-987654321" || e.Token.Type != secret.HOTP || e.Token.Counter != 5 || e.Token.Comment != "Issuer 987654321" {
		t.Fatalf("HOTP key package: %+v, %v", e, err)
	}
	e, err = FromPSKC(pskc.Key{Secret: key, Digits: 6, Period: 30, Serial: "has space"}, "alice", now)
	if err != nil || e.Base != "pskc" || e.Token.Type != secret.TOTP {
		t.Fatalf("TOTP key package with a serial that is no token name: %+v, %v", e, err)
	}
	if _, err := FromPSKC(pskc.Key{Secret: key[:5], Digits: 6, Period: 30}, "alice", now); err == nil {
		t.Fatal("a 40-bit secret was accepted")
	}
}

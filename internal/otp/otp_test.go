// SPDX-License-Identifier: Apache-2.0

package otp

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// readVectors reads a tab-separated fixture from testdata (copies of the
// RFCs' vectors, see testdata/README.md), skipping comments and the header
// row.
func readVectors(t *testing.T, name string) [][]string {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", name))
	if err != nil {
		t.Fatalf("fixture: %v", err)
	}
	defer f.Close()
	var rows [][]string
	s := bufio.NewScanner(f)
	for s.Scan() {
		line := s.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Split(line, "\t")
		if _, err := strconv.ParseInt(fields[0], 10, 64); err != nil {
			continue // header
		}
		rows = append(rows, fields)
	}
	if len(rows) == 0 {
		t.Fatalf("%s: no vectors", name)
	}
	return rows
}

func TestRFC4226(t *testing.T) {
	key := []byte("12345678901234567890")
	for _, row := range readVectors(t, "rfc4226-vectors.tsv") {
		c, _ := strconv.ParseUint(row[0], 10, 64)
		got, err := Code(key, c, Params{Algorithm: SHA1, Digits: 6, Period: 30})
		if err != nil || got != row[1] {
			t.Errorf("counter %d: got %q, %v; want %s", c, got, err, row[1])
		}
	}
}

func TestRFC6238(t *testing.T) {
	keys := []struct {
		alg Algorithm
		key string
	}{
		{SHA1, "12345678901234567890"},
		{SHA256, "12345678901234567890123456789012"},
		{SHA512, "1234567890123456789012345678901234567890123456789012345678901234"},
	}
	rows := readVectors(t, "rfc6238-vectors.tsv")
	for _, row := range rows {
		unix, _ := strconv.ParseInt(row[0], 10, 64)
		for i, k := range keys {
			p := Params{Algorithm: k.alg, Digits: 8, Period: 30}
			got, err := Code([]byte(k.key), uint64(Step(unix, 30)), p)
			if want := row[i+1]; err != nil || got != want {
				t.Errorf("%s at %d: got %q, %v; want %s", k.alg, unix, got, err, want)
			}
		}
	}
}

func TestDecodeKey(t *testing.T) {
	tests := []struct {
		in      string
		wantLen int
		wantErr bool
	}{
		{"JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP", 20, false},
		{"jbsw y3dp-ehpk 3pxp jbsw y3dp ehpk 3pxp", 20, false},
		{"JBSWY3DPEHPK3PXP", 10, false},
		{"JBSWY3DP", 0, true},                 // 40 bits: too short
		{"JBSWY3DPEHPK3PX1JBSWY3DP", 0, true}, // 1 is not base32
		{"", 0, true},
	}
	for _, tt := range tests {
		key, err := DecodeKey(tt.in)
		if (err != nil) != tt.wantErr || len(key) != tt.wantLen {
			t.Errorf("DecodeKey(%q) = %d bytes, %v", tt.in, len(key), err)
		}
	}
	key := []byte("0123456789abcdefghij")
	if back, err := DecodeKey(EncodeKey(key)); err != nil || string(back) != string(key) {
		t.Errorf("round trip: %q, %v", back, err)
	}
}

func TestParamsValidate(t *testing.T) {
	good := Params{Algorithm: SHA256, Digits: 8, Period: 60}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, p := range []Params{
		{Algorithm: "MD5", Digits: 6, Period: 30},
		{Algorithm: SHA1, Digits: 9, Period: 30},
		{Algorithm: SHA1, Digits: 5, Period: 30},
		{Algorithm: SHA1, Digits: 6, Period: 9},
		{Algorithm: SHA1, Digits: 6, Period: 121},
	} {
		if p.Validate() == nil {
			t.Errorf("%+v accepted", p)
		}
	}
}

func TestIsDigits(t *testing.T) {
	for s, want := range map[string]bool{"123456": true, "12345": false, "12345a": false, "1234567": false, "12 456": false} {
		if IsDigits(s, 6) != want {
			t.Errorf("IsDigits(%q) != %v", s, want)
		}
	}
}

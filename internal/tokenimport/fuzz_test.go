// SPDX-License-Identifier: Apache-2.0

package tokenimport

import (
	"testing"
)

// Whatever a vendor's file holds: no panic, and every entry is a token
// the secret file format accepts.
func FuzzParseCSV(f *testing.F) {
	f.Add([]byte("3132333435363738393031323334353637383930;;Feitian\n"), "alice")
	f.Add([]byte("bob;3132333435363738393031323334353637383930;60;c\n"), "")
	f.Fuzz(func(t *testing.T, data []byte, user string) {
		entries, _ := ParseCSV(data, user, now)
		check(t, entries)
	})
}

func FuzzParseOath(f *testing.F) {
	f.Add([]byte("HOTP/T60/8\tdave\t-\t3132333435363738393031323334353637383930\t0\t49381737\t2026-11-20T10:00:00Z\n"))
	f.Add([]byte("HOTP/E/8 bob - 3132333435363738393031323334353637383930 12\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		entries, _ := ParseOath(data, now)
		check(t, entries)
	})
}

func check(t *testing.T, entries []Entry) {
	for _, e := range entries {
		tok := e.Token
		tok.Name = e.Base
		if err := tok.Validate(); err != nil {
			t.Fatalf("line %d: an invalid token came through: %v", e.Line, err)
		}
	}
}

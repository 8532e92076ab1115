// SPDX-License-Identifier: Apache-2.0

package verifier

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// TestLockedUsersGauge: the gauge is counted when scraped, not again
// within lockedEvery however often it is scraped, and left out when the
// count fails.
func TestLockedUsersGauge(t *testing.T) {
	tests := []struct {
		name  string
		n     int
		err   error
		want  string
		wantN bool
	}{
		{"counted", 3, nil, "pam_totp_verifier_locked_users 3\n", true},
		{"none", 0, nil, "pam_totp_verifier_locked_users 0\n", true},
		{"directory down", 0, errors.New("down"), "pam_totp_verifier_locked_users ", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := NewMetrics()
			calls := 0
			m.CountLocked(func() (int, error) { calls++; return tt.n, tt.err })
			for range 3 {
				var b bytes.Buffer
				m.Write(&b)
				out := b.String()
				if !strings.Contains(out, "# TYPE pam_totp_verifier_locked_users gauge\n") {
					t.Fatalf("no TYPE line:\n%s", out)
				}
				if got := strings.Contains(out, "\n"+tt.want); got != tt.wantN {
					t.Fatalf("sample %q present: %v, want %v:\n%s", tt.want, got, tt.wantN, out)
				}
			}
			if calls != 1 {
				t.Errorf("three scrapes counted %d times, want once", calls)
			}
		})
	}
	var b bytes.Buffer
	NewMetrics().Write(&b)
	if strings.Contains(b.String(), "locked_users") {
		t.Errorf("metrics without a count serve the gauge:\n%s", b.String())
	}
}

// SPDX-License-Identifier: Apache-2.0

package verify

import (
	"testing"

	"pamtotp/internal/secret"
)

// Any answer at any time: no panic; an answer that cannot be a code never
// counts as a failure; a wrong well-formed code never succeeds by chance
// of the fuzzer (it is compared with the real codes).
func FuzzCheck(f *testing.F) {
	f.Add("123456", int64(t0))
	f.Add("", int64(0))
	f.Add("11111111", int64(-5))
	f.Fuzz(func(t *testing.T, code string, now int64) {
		file, st := newFile(), secret.NewState()
		r := Check(file, st, code, now, DefaultPolicy)
		if r.Outcome == Malformed && st.Failures != 0 {
			t.Fatal("a malformed answer counted as a failure")
		}
		if r.Outcome == OK && r.Token == "scratch" && code != "11111111" && code != "22222222" {
			t.Fatalf("scratch accepted %q", code)
		}
		if _, err := secret.ParseState(st.Marshal(file)); err != nil {
			t.Fatalf("state after %q does not parse: %v", code, err)
		}
	})
}

// SPDX-License-Identifier: Apache-2.0

package test

import (
	"testing"
	"time"
)

// BenchmarkNodelayOracle is part of `make bench`: with nodelay, how long a
// wrong code takes for a name that is no account, an account without an
// enrollment, and an enrolled account, interleaved in one run through real
// libpam. docs/security.md quotes it: the difference is what nodelay
// reveals. A benchmark, not a test: it asserts nothing about time.
func BenchmarkNodelayOracle(b *testing.B) {
	needRoot(b, "oathtool", "openssl")
	enrolled, bare := newUser(b), newUser(b)
	enroll(b, enrolled)
	dir := service(b, module("required", "deny=0"))
	kinds := []struct{ name, user string }{
		{"no such account", "pamtotp-nobody"},
		{"account, not enrolled", bare.name},
		{"enrolled account", enrolled.name},
	}
	const rounds = 100
	times := make([][]time.Duration, len(kinds))
	for r := 0; r < rounds; r++ {
		for i, k := range kinds {
			start := time.Now()
			authenticate(b, dir, k.user, &conv{answers: []string{"000000"}})
			times[i] = append(times[i], time.Since(start))
		}
	}
	for i, k := range kinds {
		b.Logf("%-22s wrong code, median of %d: %s", k.name, rounds, ms(medianDuration(times[i])))
	}
}

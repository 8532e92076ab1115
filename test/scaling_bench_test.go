// SPDX-License-Identifier: Apache-2.0

package test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// BenchmarkLoginScaling is part of `make bench`: per-login time as the work
// grows, through real libpam (one pam_authenticate in this process per
// login, a fresh checker each time): 10, 1,000 and 100,000 enrolled users
// in one root-owned store, and one user with 1 or 20 tokens. It writes
// docs/benchmarks-scaling.md. A benchmark, not a test: it asserts nothing
// about time.
func BenchmarkLoginScaling(b *testing.B) {
	needRoot(b, "oathtool", "openssl")
	const logins = 60
	// measure is the median of logins wrong-code logins (deny=0: every one
	// is charged, compared and saved, as a guess is).
	measure := func(dir, name string) time.Duration {
		var ds []time.Duration
		for i := 0; i < logins; i++ {
			start := time.Now()
			authenticate(b, dir, name, &conv{answers: []string{"000000"}})
			ds = append(ds, time.Since(start))
		}
		return medianDuration(ds)
	}
	var report strings.Builder
	fmt.Fprintf(&report, `# Benchmarks: cost as work grows

Written by `+"`make bench`"+` (test/scaling_bench_test.go) on %s. Each figure is
the median wall time of %d logins through real libpam in one process (a
fresh checker per login) with a wrong code, which is charged, compared and
saved like any guess. Compare rows of one run only: the machine's speed
moves between runs (docs/benchmarks.md has the peers).

| enrolled users in the store | per login |
|---|---|
`, time.Now().UTC().Format("2006-01-02"), logins)

	store := filepath.Join(workDir, "scaling-store")
	if err := os.MkdirAll(store, 0o700); err != nil {
		b.Fatal(err)
	}
	u := newUser(b)
	enroll(b, u, "--secret-file", store+"/%u")
	dir := service(b, module("required", "deny=0", "secret="+store+"/%u"))
	sample, err := os.ReadFile(filepath.Join(store, u.name))
	if err != nil {
		b.Fatal(err)
	}
	have := 1
	for _, n := range []int{10, 1000, 100000} {
		// The other users' files: the login opens one, whatever the count.
		for ; have < n; have++ {
			if err := os.WriteFile(filepath.Join(store, fmt.Sprintf("scaling%06d", have)), sample, 0o600); err != nil {
				b.Fatal(err)
			}
		}
		d := measure(dir, u.name)
		b.Logf("%6d users in the store: %s per login", n, ms(d))
		fmt.Fprintf(&report, "| %d | %s |\n", n, ms(d))
	}

	report.WriteString("\n| tokens of the user | per login |\n|---|---|\n")
	v := newUser(b)
	enroll(b, v)
	for i := 2; i <= 20; i++ {
		mustEnroll(b, "--user", v.name, "add", "--name", fmt.Sprintf("t%d", i), "--no-confirm", "--qr", "none")
	}
	home := service(b, module("required", "deny=0"))
	one := newUser(b)
	enroll(b, one)
	for _, c := range []struct {
		tokens int
		u      *user
	}{{1, one}, {20, v}} {
		d := measure(home, c.u.name)
		b.Logf("%2d tokens: %s per login", c.tokens, ms(d))
		fmt.Fprintf(&report, "| %d | %s |\n", c.tokens, ms(d))
	}
	report.WriteString(`
The number of users in the store does not enter a login: it opens one file
by name. Tokens do, a little: a wrong code is compared with every step of
every token's window, in constant time (21 steps for a token never used),
so 20 tokens compute 420 codes. In a Go benchmark on 2026-11-30 that took
0.44 ms through pquerna/otp and 0.28 ms computing the HMAC directly, both
small against the run-to-run noise of these rows (about 2 ms here).

With the directory store, users in the directory: benchmarks-directory.md
(10 to 100,000 entries); logins at once for a fleet, against two servers:
benchmarks-fleet.md (200 at once, replication lag, failover).

Reproduce: ` + "`make bench`" + ` as root, or only this table:
` + "`go test -run '^$' -bench LoginScaling -benchtime 1x ./test/`" + ` (as root, after ` + "`make`" + `).
`)
	if err := os.WriteFile(filepath.Join("..", "docs", "benchmarks-scaling.md"), []byte(report.String()), 0o644); err != nil {
		b.Fatal(err)
	}
}

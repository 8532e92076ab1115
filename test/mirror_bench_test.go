// SPDX-License-Identifier: Apache-2.0

package test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// BenchmarkDirectoryFleet is part of `make bench`: the mirror-mode pair
// of TestMirror*, with two hosts listing both servers. It measures 200
// logins at once for 200 users, half through each host (failures, logins
// per second, p50 and p99); how long a login's write takes to reach the
// other server; and a login's cost through a failover, with the first
// server dead (refusing connections, or accepting and never answering),
// before and after the host remembers it. It writes
// docs/benchmarks-fleet.md. A benchmark, not a test: it asserts nothing
// about time.
func BenchmarkDirectoryFleet(b *testing.B) {
	needRoot(b, "oathtool", "openssl")
	if _, err := os.Stat(filepath.Join(buildDir, "pamlogin")); err != nil {
		b.Skip("needs build/pamlogin: run make bench")
	}
	p := startMirrorPair(b)
	const n, runs = 200, 3
	users := make([]*user, n)
	var ldif strings.Builder
	for i := range users {
		users[i] = newUser(b)
		users[i].secret = newSecret(b)
		p.s1.addUser(b, users[i])
		ldif.WriteString(secretLDIF(users[i], "pam_totp 1\ntoken default type=totp algorithm=SHA1 digits=6 period=30 secret="+users[i].secret+"\n"))
	}
	p.s1.modify(b, ldif.String())
	p.waitFor(b, "server 2's copy of the last user", func() bool {
		out, err := p.s2.toolAs("", "ldapsearch", ldapRoot, ldapRootPW, "-LLL", "-b", userDN(users[n-1]), "-s", "base", "pamTOTPSecret")
		return err == nil && strings.Contains(out, "pamTOTPSecret")
	})
	// Hosts as an admin sets them up: both servers, the defaults for the
	// time-outs.
	conf := func(host string, uris ...string) string {
		return p.s1.hostConfLines(b, host, []string{"uri " + strings.Join(uris, " "), "base ou=people," + ldapSuffix, "ca_file " + p.s1.ca,
			"cert_file " + filepath.Join(p.s1.certs, hostCert(host)+".pem"), "key_file " + filepath.Join(p.s1.certs, hostCert(host)+".key")})
	}
	svc := service(b)
	line := func(name, c string, opts ...string) {
		l := module("required", append([]string{"directory=" + c}, opts...)...)
		if err := os.WriteFile(filepath.Join(svc, name), []byte(l+"\n"), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	line("a", conf("a", p.s1.ldaps, p.s2.ldaps))
	line("b", conf("b", p.s1.ldaps, p.s2.ldaps))

	// 200 at once: every login starts together, a fresh pamlogin each.
	var bursts []fleetBurst
	for run := 0; run < runs; run++ {
		// A step of its own for each run: its codes are new to every user.
		time.Sleep(time.Until(time.Unix((time.Now().Unix()/30+1)*30, 0)))
		times := make([]time.Duration, n)
		failed := 0
		var mu sync.Mutex
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i, u := range users {
			wg.Add(1)
			go func() {
				defer wg.Done()
				host := []string{"a", "b"}[i%2]
				c := code(b, u.secret, 0)
				<-start
				t0 := time.Now()
				err := exec.Command(filepath.Join(buildDir, "pamlogin"), svc, host, u.name, c).Run()
				times[i] = time.Since(t0)
				if err != nil {
					mu.Lock()
					failed++
					mu.Unlock()
				}
			}()
		}
		t0 := time.Now()
		close(start)
		wg.Wait()
		wall := time.Since(t0)
		sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
		bursts = append(bursts, fleetBurst{failed, float64(n) / wall.Seconds(), times[n/2], times[n*99/100]})
	}

	// Replication lag: a login through server 1, and the time until
	// server 2 has its state.
	line("s1", conf("s1", p.s1.ldaps), "deny=0")
	var lags []time.Duration
	for i := 0; i < 20; i++ {
		u := users[i]
		before := stateOn(p.s2, u)
		exec.Command(filepath.Join(buildDir, "pamlogin"), svc, "s1", u.name, "000000").Run()
		t0 := time.Now()
		for stateOn(p.s2, u) == before && time.Since(t0) < 10*time.Second {
		}
		lags = append(lags, time.Since(t0))
	}

	// Failover: one user's wrong-code logins (deny=0: charged, compared,
	// saved), median of 40.
	u := users[0]
	timed := func(name string) time.Duration {
		t0 := time.Now()
		exec.Command(filepath.Join(buildDir, "pamlogin"), svc, name, u.name, "000000").Run()
		return time.Since(t0)
	}
	median := func(name string) time.Duration {
		var ds []time.Duration
		for i := 0; i < 40; i++ {
			ds = append(ds, timed(name))
		}
		return medianDuration(ds)
	}
	silent := silentServer(b) // accepts, never answers
	line("normal", conf("normal", p.s1.ldaps, p.s2.ldaps), "deny=0")
	line("silent", conf("silent", "ldaps://"+silent, p.s2.ldaps), "deny=0")
	normal := median("normal")
	silentFirst := timed("silent")
	silentMarked := median("silent")
	p.s1.kill(b)
	refusedFirst := timed("normal")
	refusedMarked := median("normal")
	writeFleetReport(b, n, bursts, lags, normal, refusedFirst, refusedMarked, silentFirst, silentMarked)
}

type fleetBurst struct {
	failed   int
	perSec   float64
	p50, p99 time.Duration
}

func writeFleetReport(b testing.TB, n int, bursts []fleetBurst, lags []time.Duration, normal, refusedFirst, refusedMarked, silentFirst, silentMarked time.Duration) {
	var rows strings.Builder
	for i, r := range bursts {
		fmt.Fprintf(&rows, "| %d | %d of %d | %.0f | %s | %s |\n", i+1, r.failed, n, r.perSec, ms(r.p50), ms(r.p99))
	}
	sort.Slice(lags, func(i, j int) bool { return lags[i] < lags[j] })
	report := fmt.Sprintf(`# Benchmarks: a fleet against two directory servers

Written by `+"`make bench`"+` (test/mirror_bench_test.go) on %s.
%s
Two slapd (Debian's, %s) in mirror mode, serverID 1 and 2, each a
syncrepl consumer of the other (refreshAndPersist, StartTLS), on loopback
with temporary mdb databases: the set-up of docs/fleet.md, "Two servers".
Both hosts list both servers, server 1 first, with the default time-outs;
they bind with their client certificates.

## %d logins at once

%d users, each logging in once with the code of a fresh step, half
through host A and half through host B, all started together (a fresh
pamlogin each, so %d checkers, TLS handshakes and binds at once). slapd
runs with its default 16 threads.

| run | failed | logins per second | p50 | p99 |
|---|---|---|---|---|
%s
## Replication

How long a login's state takes to reach server 2 after the login through
server 1 returned, polled with ldapsearch (each poll costs a few ms, which
these figures include): median %s, largest %s of 20.

That is the window in which two servers taking writes at once can each
accept one code (docs/security.md): with one server taking writes (uri in
the same order on every host) there is no such window.

## Failover

One user's wrong-code logins (deny=0: charged, compared, saved) through a
host listing server 1 then server 2: the first login after server 1
failed, and the median of the 40 after it (server 1 then remembered as down):

| server 1 | the first login | the next 40 (median) |
|---|---|---|
| up | | %s |
| killed (its port refuses connections) | %s | %s |
| accepting connections and never answering (a hung server) | %s | %s |

A refused connection costs nothing to notice. A server that accepts and
never answers costs the first login one `+"`timeout`"+` (3 s by default); for
`+"`down_for`"+` (30 s) after, the hosts try it last. A server whose host is
gone (no answer to the TCP connect at all) costs one `+"`connect_timeout`"+` (1 s)
by construction; not measured here, as loopback cannot drop a connect.

## slapd's limits at fleet size

Each login is one short connection: TCP, TLS, bind, a search and two
modifies, closed when the checker exits. What bounds slapd (slapd.conf(5),
slapd-config(5)):

- `+"`threads`"+` (default 16): operations served at once. A login's
  operations take about 0.1 ms each inside slapd (docs/benchmarks-directory.md),
  so the default serves the bursts above; raise it only if the monitor
  backend (`+"`cn=Monitor`"+`, cn=Threads) shows operations waiting.
- open connections: one file descriptor each, for the login's few
  milliseconds. Debian's slapd starts from its init script under systemd,
  whose default open-file limit for a service is 1024; for bursts of more
  than a few hundred logins at once, raise it with a drop-in for
  slapd.service (`+"`LimitNOFILE=`"+`).
- `+"`sizelimit`"+` (default 500): a login's search asks for at most 2
  entries and is not affected; `+"`totp-enroll status --all`"+` pages its
  search, 500 at a time.
- `+"`idletimeout`"+`: not needed for logins, which close their
  connections; it bounds connections a broken client leaves open.
- `+"`conn_max_pending`"+`, `+"`conn_max_pending_auth`"+` (100, 1000):
  requests queued per connection; a login sends one at a time.

Reproduce: `+"`make bench`"+` as root, or only this page:
`+"`go test -run '^$' -bench DirectoryFleet -benchtime 1x ./test/`"+` (as root, after `+"`make all build/pamlogin`"+`).
`, time.Now().UTC().Format("2006-01-02"), benchMachine(), slapdVersion(), n, n, n, rows.String(),
		ms(lags[len(lags)/2]), ms(lags[len(lags)-1]),
		ms(normal), ms(refusedFirst), ms(refusedMarked), ms(silentFirst), ms(silentMarked))
	if err := os.WriteFile("../docs/benchmarks-fleet.md", []byte(report), 0o644); err != nil {
		b.Fatal(err)
	}
	b.Log("\n" + report)
}

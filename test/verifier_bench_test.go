// SPDX-License-Identifier: Apache-2.0

package test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// BenchmarkVerifier is part of `make bench`: a login through the host's
// agent and a pam-totp-verifier against a system-store login through the
// agent (libpam, interleaved, and sshd), the same through the exec'd
// checker, 200 logins at once through two hosts and two verifiers in
// front of a mirror pair, and a verifier killed during a stream of
// logins. It writes docs/benchmarks-verifier.md. A benchmark, not a test:
// it asserts nothing about time.
func BenchmarkVerifier(b *testing.B) {
	needRoot(b, "oathtool", "openssl", "/usr/sbin/sshd", "ssh-keygen", "systemd-socket-activate")
	needSyncprov(b)
	if _, err := os.Stat(filepath.Join(buildDir, "pamlogin")); err != nil {
		b.Skip("needs build/pamlogin: run make bench")
	}
	a := startAgent(b)
	store := filepath.Join(workDir, "verifier-bench-store")
	if err := os.MkdirAll(store, 0o700); err != nil {
		b.Fatal(err)
	}
	pair := startMirrorPairACL(b, "pam-totp-acl-verifier.conf")
	// The bench makes thousands of logins a minute from one host: past
	// the default host_rate (600 a minute), which it would measure instead.
	v1 := startVerifier(b, pair.s1, pair.s1, "verifier-1", "host_rate 100000 60")
	v2 := startVerifier(b, pair.s2, pair.s1, "verifier-2", "host_rate 100000 60")
	confA := verifierHostConf(b, pair.s1, "host-a", v1, v2)
	confB := verifierHostConf(b, pair.s1, "host-b", v1, v2)
	// The same directory without the hop: the host reads and writes it
	// itself, with verifier 1's identity.
	direct := pair.s1.hostConfLines(b, "direct", []string{"uri " + pair.s1.ldaps, "base ou=people," + ldapSuffix, "ca_file " + pair.s1.ca,
		"cert_file " + filepath.Join(pair.s1.certs, "verifier-1.pem"), "key_file " + filepath.Join(pair.s1.certs, "verifier-1.key"), "timeout 2"})
	const nUsers, runs, sshdUsers, stream = 200, 5, 30, 150
	users := make([]*user, nUsers)
	enrolled := make([][]byte, nUsers)
	var secrets strings.Builder
	for i := range users {
		u := newUser(b)
		enroll(b, u, "--secret-file", store+"/%u")
		sec, err := os.ReadFile(filepath.Join(store, u.name))
		if err == nil {
			enrolled[i], err = os.ReadFile(filepath.Join(store, u.name+".state"))
		}
		if err != nil {
			b.Fatal(err)
		}
		pair.s1.addUser(b, u)
		secrets.WriteString(secretLDIF(u, string(sec)))
		users[i] = u
	}
	pair.s1.modify(b, secrets.String())
	lines := map[string]string{
		"agent":            module("required", "secret="+store+"/%u", "agent="+a.socket),
		"verifier":         module("required", "directory="+confA, "agent="+a.socket),
		"verifier-checker": module("required", "directory="+confA, "agent=off"),
		"verifier-b":       module("required", "directory="+confB, "agent="+a.socket),
		"directory":        module("required", "directory="+direct, "agent="+a.socket),
	}
	svc := service(b)
	for name, line := range lines {
		if err := os.WriteFile(filepath.Join(svc, name), []byte(line+"\n"), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	// Every run starts from the enrolled, unused state, on both servers.
	reset := func() {
		for i, u := range users {
			rewriteSynced(b, filepath.Join(store, u.name+".state"), enrolled[i])
		}
		pair.s1.resetStates(b, users)
		pair.waitFor(b, "the reset on server 2", func() bool {
			a, b2 := stateOn(pair.s1, users[nUsers-1]), stateOn(pair.s2, users[nUsers-1])
			return a != "" && a == b2 && !strings.Contains(a, "last=")
		})
	}
	login := func(name string, u *user, c string) error {
		m := syslogs.mark()
		out, err := exec.Command(filepath.Join(buildDir, "pamlogin"), svc, name, u.name, c).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s login of %s: %v %s\n%s", name, u.name, err, out, strings.Join(syslogs.since(m), "\n"))
		}
		return nil
	}
	times := map[string][]time.Duration{}

	// 1. libpam, a fresh process per login, the services interleaved and
	// their order rotated from run to run.
	interleave(b, times, "libpam/", []string{"agent", "directory", "verifier", "verifier-checker"}, runs, reset, users, login)

	// 2. sshd, one login at a time.
	sshds := map[string]*sshd{}
	for _, name := range []string{"agent", "verifier"} {
		sshds[name] = startSSHD(b, false, "auth required pam_unix.so nodelay", lines[name])
	}
	for run := 0; run < 3; run++ {
		for i := range 2 {
			name := []string{"agent", "verifier"}[(i+run)%2]
			reset()
			start := time.Now()
			for _, u := range users[:sshdUsers] {
				if err := authOnly(sshds[name].addr, u.name, u.password, code(b, u.secret, 0)); err != nil {
					b.Fatalf("sshd %s login of %s: %v", name, u.name, err)
				}
			}
			times["sshd/"+name] = append(times["sshd/"+name], time.Since(start)/sshdUsers)
		}
	}

	// 3. 200 logins at once, through hosts A and B in turn.
	reset()
	logins := make([]func() error, len(users))
	for i, u := range users {
		c, name := code(b, u.secret, 0), []string{"verifier", "verifier-b"}[i%2]
		logins[i] = func() error { return login(name, u, c) }
	}
	burst := burstOf(logins)

	// 4. Verifier 1 killed during a stream of logins through host A.
	reset()
	var before, after []time.Duration
	streamFailed := 0
	for i, u := range users[:stream] {
		if i == stream/3 {
			v1.kill()
		}
		t0 := time.Now()
		if err := login("verifier", u, code(b, u.secret, 0)); err != nil {
			streamFailed++
		}
		if i < stream/3 {
			before = append(before, time.Since(t0))
		} else {
			after = append(after, time.Since(t0))
		}
	}
	sort.Slice(after, func(i, j int) bool { return after[i] < after[j] })
	writeVerifierReport(b, times, burst, nUsers, runs, sshdUsers, stream, streamFailed, medianDuration(before), medianDuration(after), after[len(after)-1])
}

func writeVerifierReport(b testing.TB, times map[string][]time.Duration, burst burstFigures, users, runs, sshdUsers, stream, streamFailed int, before, after, worst time.Duration) {
	sp := func(k string) spread { return spreadOf(times[k]) }
	row := func(path, name, what string) string {
		s := sp(path + "/" + name)
		return fmt.Sprintf("| %s | %s | %s | %s |", path, what, s, ratio(s.med, sp(path+"/agent").med))
	}
	report := fmt.Sprintf(`# Benchmarks: pam-totp-verifier

Written by `+"`make bench`"+` (test/verifier_bench_test.go) on %s.
%s

Two slapd in mirror mode with the verifiers' ACL, a pam-totp-verifier beside
each (as its own user, with its own TLS connection to its slapd), and the
host's pam-totp-agent socket-activated as its unit is; all on loopback. The
host's directory.conf names both verifiers. "system store, agent" is a root
store read by the agent (`+"`secret=/…/%%u`"+`), the fastest login pam_totp has on
one host; "directory=, through the agent" is the same directory read and
written by the host itself (with a verifier's identity, which the verifiers'
ACL lets read the secrets), so that the difference to the verifier's row is
the verifier's own hop. The verifiers' host_rate is raised for the run (it
makes thousands of logins a minute from one host). Each figure is the median per-login time (smallest–largest) of %d
runs in which %d users each log in once with a right code; the services' runs
alternate, their order rotated.

| path | login | per login | / system store through the agent |
|---|---|---|---|
%s
%s
%s
%s
%s
%s

"libpam" is build/pamlogin, a fresh process per login; "sshd" is the SSH
handshake and keyboard-interactive authentication (pam_unix, then the
module), one login at a time, %d users a run, 3 runs.

## 200 logins at once through two hosts and two verifiers

Every user's login started at the same moment, each a fresh process, half
through host A's configuration and half through host B's, all through the
agent: %d of %d failed; median %s, 99th percentile %s.

## A verifier killed during a stream of logins

%d logins one after the other through host A; verifier 1 was killed (SIGKILL)
before login %d, between two logins. %d failed. Median login before the kill
%s, after it %s; the slowest after it %s (the first after the kill finds the
kept connection dead and connects to verifier 2; verifier 1 is then marked
down for down_for and tried last).

Reproduce: `+"`make bench`"+` as root, or only this page:
`+"`go test -run '^$' -bench Verifier -benchtime 1x ./test/`"+` (as root, after `+"`make all build/pamlogin`"+`).
`, time.Now().UTC().Format("2006-01-02"), strings.TrimSpace(benchMachine()), runs, users,
		row("libpam", "agent", "system store, agent"), row("libpam", "directory", "directory=, through the agent"),
		row("libpam", "verifier", "verifier, through the agent"),
		row("libpam", "verifier-checker", "verifier, through the checker (agent=off)"),
		row("sshd", "agent", "system store, agent"), row("sshd", "verifier", "verifier, through the agent"),
		sshdUsers, burst.failed, users, ms(burst.p50), ms(burst.p99),
		stream, stream/3+1, streamFailed, ms(before), ms(after), ms(worst))
	if err := os.WriteFile("../docs/benchmarks-verifier.md", []byte(report), 0o644); err != nil {
		b.Fatal(err)
	}
	b.Log("\n" + report)
}

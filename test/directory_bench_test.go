// SPDX-License-Identifier: Apache-2.0

package test

import (
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"pamtotp/internal/secret"
)

// BenchmarkDirectory is part of `make bench`: a login with directory=
// against the same login with the file store, through libpam (pamlogin, a
// fresh process per login) and through sshd, against a slapd of the
// test's own on loopback; the round trips of one login, read off slapd's
// own log; and the cost with 10, 1,000 and 100,000 users in the
// directory. It writes docs/benchmarks-directory.md. A benchmark, not a
// test: it asserts nothing about time.
func BenchmarkDirectory(b *testing.B) {
	needRoot(b, "oathtool", "openssl", "/usr/sbin/sshd", "ssh-keygen")
	if _, err := os.Stat(filepath.Join(buildDir, "pamlogin")); err != nil {
		b.Skip("needs build/pamlogin: run make bench")
	}
	d := startSlapd(b)
	conf := d.hostConf(b, "host-a")
	// A diagnostic only, never a set-up to use: the same slapd without
	// waiting for its disk, to show what its durable commits cost.
	nosync := startSlapdWith(b, "dbnosync", true)
	nosyncConf := nosync.hostConf(b, "host-a")
	const nUsers, runs = 100, 5
	users := make([]*user, nUsers)
	for i := range users {
		users[i] = newUser(b)
		enroll(b, users[i]) // the file store: ~/.pam_totp, as the usual set-up
		d.addUser(b, users[i])
		secretFile, err := os.ReadFile(filepath.Join(users[i].home, ".pam_totp"))
		if err != nil {
			b.Fatal(err)
		}
		d.setSecret(b, users[i], string(secretFile))
		nosync.addUser(b, users[i])
		nosync.setSecret(b, users[i], string(secretFile))
	}
	svc := service(b) // the services go in below
	lines := map[string]string{
		"files":     module("required"),
		"directory": module("required", "directory="+conf),
		"nosync":    module("required", "directory="+nosyncConf),
	}
	// With PAMTOTP_BENCH_BASE (make bench-against REV=...), that build's
	// directory login runs interleaved with this one's, against the same
	// slapd, and the comparison goes to build/bench-against-directory.md.
	base := os.Getenv("PAMTOTP_BENCH_BASE")
	if base != "" {
		dir := filepath.Join(libDir, "base")
		if out, err := exec.Command("sh", "-c", `mkdir -p "$2" && install -m 0755 "$1/pam_totp.so" "$1/pam-totp-check" "$1/pam-totp-check-directory" "$2/"`, "sh", base, dir).CombinedOutput(); err != nil {
			b.Fatalf("installing the base build from %s: %v %s", base, err, out)
		}
		lines["nosync"] = fmt.Sprintf("auth required %s/pam_totp.so checker=%s/pam-totp-check nodelay directory=%s", dir, dir, conf)
	}
	for name, line := range lines {
		if err := os.WriteFile(filepath.Join(svc, name), []byte(line+"\n"), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	enrolled := map[*user][]byte{}
	for _, u := range users {
		data, err := os.ReadFile(filepath.Join(u.home, ".pam_totp.state"))
		if err != nil {
			b.Fatal(err)
		}
		enrolled[u] = data
	}
	// Every run starts from the enrolled, unused state, as totp-enroll
	// left it: each user logs in once per run, with the code of the step.
	resetStates := func() {
		for _, u := range users {
			rewriteSynced(b, filepath.Join(u.home, ".pam_totp.state"), enrolled[u])
		}
		for _, s := range []*slapd{d, nosync} {
			s.resetStates(b, users)
		}
	}
	// fresh resets the states and gives every user's code of this step.
	fresh := func() []string {
		resetStates()
		cs := make([]string, nUsers)
		for i, u := range users {
			cs[i] = code(b, u.secret, 0)
		}
		return cs
	}
	libpamRun := func(name string) time.Duration {
		cs := fresh()
		start := time.Now()
		for i, u := range users {
			if out, err := exec.Command(filepath.Join(buildDir, "pamlogin"), svc, name, u.name, cs[i]).CombinedOutput(); err != nil {
				b.Fatalf("%s login of %s: %v %s", name, u.name, err, out)
			}
		}
		return time.Since(start) / nUsers
	}
	sshFiles := startSSHD(b, false, "auth required pam_unix.so nodelay", lines["files"])
	sshDir := startSSHD(b, false, "auth required pam_unix.so nodelay", lines["directory"])
	sshRun := func(s *sshd) time.Duration {
		cs := fresh()
		start := time.Now()
		for i, u := range users {
			if err := authOnly(s.addr, u.name, u.password, cs[i]); err != nil {
				b.Fatalf("sshd login of %s: %v", u.name, err)
			}
		}
		return time.Since(start) / nUsers
	}
	times := map[string][]time.Duration{}
	order := []string{"files", "directory", "nosync"}
	for run := 0; run < runs; run++ {
		for i := range order {
			name := order[(i+run)%3]
			times["libpam/"+name] = append(times["libpam/"+name], libpamRun(name))
		}
		order := order[:2]
		for i := range order {
			name := order[(i+run)%2]
			s := map[string]*sshd{"files": sshFiles, "directory": sshDir}[name]
			times["sshd/"+name] = append(times["sshd/"+name], sshRun(s))
		}
	}

	// The round trips of one right-code login, as slapd logged them.
	resetStates()
	m := syslogs.mark()
	u := users[0]
	if out, err := exec.Command(filepath.Join(buildDir, "pamlogin"), svc, "directory", u.name, code(b, u.secret, 0)).CombinedOutput(); err != nil {
		b.Fatalf("login: %v %s", err, out)
	}
	ops := slapdOps(syslogs.since(m))
	if base != "" {
		resetStates()
		m := syslogs.mark()
		if out, err := exec.Command(filepath.Join(buildDir, "pamlogin"), svc, "nosync", u.name, code(b, u.secret, 0)).CombinedOutput(); err != nil {
			b.Fatalf("login with the base build: %v %s", err, out)
		}
		writeDirectoryAgainstReport(b, times, ops, slapdOps(syslogs.since(m)), nUsers, runs)
		return
	}

	// Scale: one user's wrong-code logins (deny=0: charged, compared,
	// saved) with 10, 1,000 and 100,000 entries in a directory of its own.
	sd := startSlapd(b)
	sd.addUser(b, u)
	secretFile, err := os.ReadFile(filepath.Join(u.home, ".pam_totp"))
	if err != nil {
		b.Fatal(err)
	}
	sd.setSecret(b, u, string(secretFile))
	scaleSvc := service(b, module("required", "deny=0", "directory="+sd.hostConf(b, "host-b")))
	scale := map[int]time.Duration{}
	have := 1
	for _, n := range []int{10, 1000, 100000} {
		sd.bulkAdd(b, have, n)
		have = n
		// Each size from the same start: the charges of the size before
		// would otherwise be records this one reads.
		sd.clearRecords(b)
		var ds []time.Duration
		for i := 0; i < 60; i++ {
			start := time.Now()
			exec.Command(filepath.Join(buildDir, "pamlogin"), scaleSvc, "pamtotp-test", u.name, "000000").Run()
			ds = append(ds, time.Since(start))
		}
		scale[n] = medianDuration(ds)
	}
	writeDirectoryReport(b, times, ops, scale, nUsers, runs)
}

// slapdOps lists the operations of the last connection in slapd's log lines.
// Each is named with the time slapd took for it (etime).
func slapdOps(lines []string) []string {
	op := regexp.MustCompile(`conn=(\d+) op=(\d+) (BIND|SRCH|MOD|ADD|DEL|UNBIND|EXT) `)
	result := regexp.MustCompile(`conn=(\d+) op=(\d+) (?:SEARCH )?RESULT .*etime=([0-9.]+)`)
	names := map[string]string{}
	perConn := map[string][]string{}
	last := ""
	for _, l := range lines {
		if m := op.FindStringSubmatch(l); m != nil {
			if _, seen := names[m[1]+"/"+m[2]]; !seen {
				names[m[1]+"/"+m[2]] = m[3]
			}
		}
		if m := result.FindStringSubmatch(l); m != nil {
			if name, ok := names[m[1]+"/"+m[2]]; ok {
				var secs float64
				fmt.Sscan(m[3], &secs)
				perConn[m[1]] = append(perConn[m[1]], fmt.Sprintf("%s (%.2f ms in slapd)", name, secs*1000))
				last = m[1]
			}
		}
	}
	return perConn[last]
}

func writeDirectoryReport(b testing.TB, times map[string][]time.Duration, ops []string, scale map[int]time.Duration, users, runs int) {
	row := func(path string) string {
		f, dir := spreadOf(times[path+"/files"]), spreadOf(times[path+"/directory"])
		return fmt.Sprintf("| %s | %s | %s | **%s** |", path, f, dir, ratio(dir.med, f.med))
	}
	f, ns := spreadOf(times["libpam/files"]), spreadOf(times["libpam/nosync"])
	nosyncRow := fmt.Sprintf("| libpam, slapd with dbnosync (a diagnostic: what slapd's durable commits cost; never run it so) | %s | %s | %s |", f, ns, ratio(ns.med, f.med))
	report := fmt.Sprintf(`# Benchmarks: the directory store

Written by `+"`make bench`"+` (test/directory_bench_test.go) on %s.
%s
slapd (Debian's, %s) runs on loopback with a temporary mdb
database, TLS with the test's own CA, and the host binds with its client
certificate (SASL EXTERNAL). Each figure is the median per-login time
(smallest–largest) of %d runs in which %d users each log in once with a
right code; the two stores' runs alternate.

| path | file store (~/.pam_totp) | directory= | directory / files |
|---|---|---|---|
%s
%s
%s

"libpam" is build/pamlogin, a fresh process per login; "sshd" is the SSH
handshake and keyboard-interactive authentication (pam_unix, then the
module), one login at a time. The dbnosync row shows that slapd's own
commits are not where the time goes; docs/benchmarks.md says where it does.

## Round trips of one login

A right code, as slapd logged the connection: %s. Before them, the TCP
connection and the TLS 1.3 handshake (one round trip, with the client's
certificate). The second search reads the user's state records, the ADD
after each MOD is the record of what it wrote (docs/fleet.md, "The
guarantee"). A wrong code makes one modify and one add fewer: the state
it leaves is the charge already written. Every few logins, deletes of the
records that no longer count go out together, in one more round trip.
The connection is closed when the checker exits.

## Users in the directory

One user's wrong-code logins (deny=0: charged, compared, saved), median of
60, with the directory holding the entries below; each size starts without
state records, and its 60 charges leave up to 60 (a login reads them all).

| entries | per login |
|---|---|
| 10 | %s |
| 1000 | %s |
| 100000 | %s |

The host finds the user with a subtree search on `+"`(uid=NAME)`"+`,
which the `+"`uid eq`"+` index answers without looking at the other
entries; with `+"`user_dn`"+` it is a base search.

Reproduce: `+"`make bench`"+` as root, or only this page:
`+"`go test -run '^$' -bench Directory -benchtime 1x ./test/`"+` (as root, after `+"`make all build/pamlogin`"+`).
`, time.Now().UTC().Format("2006-01-02"), benchMachine(), slapdVersion(), runs, users,
		row("libpam"), row("sshd"), nosyncRow, strings.Join(ops, ", "), ms(scale[10]), ms(scale[1000]), ms(scale[100000]))
	if err := os.WriteFile("../docs/benchmarks-directory.md", []byte(report), 0o644); err != nil {
		b.Fatal(err)
	}
	b.Log("\n" + report)
}

// rewriteSynced rewrites the file at path in place with data and waits for
// the disk: a bench's reset between runs.
func rewriteSynced(b testing.TB, path string, data []byte) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if err != nil {
		b.Fatal(err)
	}
	f.Close()
}

// resetStates gives users the state of a fresh enrollment in s: an empty
// pamTOTPState and no records.
func (s *slapd) resetStates(b testing.TB, users []*user) {
	var ldif strings.Builder
	empty := base64.StdEncoding.EncodeToString(secret.NewState().Marshal(&secret.File{}))
	for _, u := range users {
		fmt.Fprintf(&ldif, "dn: %s\nchangetype: modify\nreplace: pamTOTPState\npamTOTPState:: %s\n\n", userDN(u), empty)
	}
	s.modify(b, ldif.String())
	s.clearRecords(b)
}

// clearRecords deletes every state record in s, as the directory's root.
func (s *slapd) clearRecords(b testing.TB) {
	out := s.tool(b, "", "ldapsearch", "-LLL", "-o", "ldif-wrap=no", "-b", ldapSuffix, "(objectClass=pamTOTPRecord)", "1.1")
	var dns []string
	for _, l := range strings.Split(out, "\n") {
		if dn, ok := strings.CutPrefix(l, "dn: "); ok {
			dns = append(dns, dn)
		}
	}
	if len(dns) > 0 {
		s.tool(b, strings.Join(dns, "\n")+"\n", "ldapdelete")
	}
}

// writeDirectoryAgainstReport compares this build's directory login with the base
// build's (in the "nosync" slot, against the same slapd as "directory").
func writeDirectoryAgainstReport(b testing.TB, times map[string][]time.Duration, ops, baseOps []string, users, runs int) {
	this, base := spreadOf(times["libpam/directory"]), spreadOf(times["libpam/nosync"])
	report := fmt.Sprintf(`# The directory login, this tree against %s

Written by `+"`make bench-against`"+` (test/directory_bench_test.go) on %s.
%s
The median per-login time (smallest–largest) of %d runs in which %d users
each log in once with a right code through libpam (build/pamlogin), both
builds against the same slapd, their runs alternating.

| build | directory= login | this / base |
|---|---|---|
| base | %s | |
| this tree | %s | **%s** |

Round trips of one right-code login, as slapd logged them:
- base: %s
- this tree: %s
`, os.Getenv("PAMTOTP_BENCH_REV"), time.Now().UTC().Format("2006-01-02"), benchMachine(), runs, users,
		base, this, ratio(this.med, base.med), strings.Join(baseOps, ", "), strings.Join(ops, ", "))
	if err := os.WriteFile("../build/bench-against-directory.md", []byte(report), 0o644); err != nil {
		b.Fatal(err)
	}
	b.Log("\n" + report)
}

func slapdVersion() string {
	out, _ := exec.Command("dpkg-query", "-W", "-f", "${Version}", "slapd").Output()
	return strings.TrimSpace(string(out))
}

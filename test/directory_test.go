// SPDX-License-Identifier: Apache-2.0

package test

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/msteinert/pam/v2"
	"golang.org/x/sys/unix"

	"pamtotp/internal/protocol"
)

// fleet is one slapd and two hosts, A and B, each with its own
// certificate and configuration file, as two PAM services.
type fleet struct {
	d          *slapd
	confA      string
	confB      string
	svcA, svcB string // pam_start_confdir directories
}

func newFleet(t *testing.T, opts ...string) *fleet {
	t.Helper()
	f := &fleet{d: startSlapd(t)}
	f.confA, f.confB = f.d.hostConf(t, "host-a"), f.d.hostConf(t, "host-b")
	f.svcA = service(t, module("required", append([]string{"directory=" + f.confA}, opts...)...))
	f.svcB = service(t, module("required", append([]string{"directory=" + f.confB}, opts...)...))
	return f
}

// enrollDir enrolls u in the directory with totp-enroll, bound as the
// admin identity.
func (f *fleet) enrollDir(t *testing.T, u *user) {
	t.Helper()
	f.d.addUser(t, u)
	u.secret = newSecret(t)
	out, err := enrollCmd(t, "--user", u.name, "--secret", u.secret, "--no-confirm", "--qr", "none", "--scratch-codes", "2",
		"--directory", f.confA, "--bind-dn", ldapAdmin, "--bind-password-file", f.d.adminPass)
	if err != nil {
		t.Fatalf("totp-enroll --directory: %v\n%s", err, out)
	}
	if !strings.Contains(out, "Written: directory "+f.confA) {
		t.Fatalf("totp-enroll did not say where it wrote:\n%s", out)
	}
	u.scratch = regexp.MustCompile(`(?m)^  (\d{8})$`).FindAllString(out, -1)
	for i := range u.scratch {
		u.scratch[i] = strings.TrimSpace(u.scratch[i])
	}
	if len(u.scratch) != 2 {
		t.Fatalf("totp-enroll printed %d scratch codes, want 2:\n%s", len(u.scratch), out)
	}
	if v := f.d.attr(t, u, "pamTOTPSecret"); len(v) != 1 {
		t.Fatalf("the entry has %d pamTOTPSecret values after enrolling, want 1", len(v))
	}
}

// atOnce makes n logins of u with code at the same moment, through the
// services in turn, and counts those that got in.
func atOnce(t *testing.T, services []string, u *user, code string, n int) int {
	t.Helper()
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok := 0
	start := make(chan struct{})
	for i := range n {
		svc := services[i%len(services)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			if loginWith(t, svc, u, code) == nil {
				mu.Lock()
				ok++
				mu.Unlock()
			}
		}()
	}
	close(start)
	wg.Wait()
	return ok
}

func loginWith(t *testing.T, svc string, u *user, code string) error {
	t.Helper()
	return authenticate(t, svc, u.name, &conv{answers: []string{code}})
}

// TestDirectoryOneEnrollmentTwoHosts: enrolled once, a user logs in on A
// and on B, and a code used on one host is refused on the other.
func TestDirectoryOneEnrollmentTwoHosts(t *testing.T) {
	f := newFleet(t)
	u := newUser(t)
	f.enrollDir(t, u)
	if _, err := os.Stat(filepath.Join(u.home, ".pam_totp")); err == nil {
		t.Fatal("enrolling in the directory wrote a file in the home")
	}
	waitForFreshStep(30, 8) // the codes below are of this step and the next
	m := syslogs.mark()
	c := code(t, u.secret, 0)
	if err := loginWith(t, f.svcA, u, c); err != nil {
		t.Fatalf("login on A with a fresh code: %v", err)
	}
	expectLog(t, m, `user=`+u.name+` .*service=pamtotp-test .*outcome=ok`)
	if err := loginWith(t, f.svcB, u, c); err == nil {
		t.Fatal("the code used on A was accepted again on B")
	}
	expectLog(t, m, `user=`+u.name+` .*outcome=fail reason=replay`)
	if st := f.d.attr(t, u, "pamTOTPState"); len(st) != 1 || !strings.Contains(st[0], "last=") {
		t.Fatalf("the directory's state does not record the used code: %q", st)
	}
	// The next code works on B: B is a host of the fleet, not refused.
	if err := loginWith(t, f.svcB, u, code(t, u.secret, 1)); err != nil {
		t.Fatalf("login on B with the next code: %v", err)
	}
	// A scratch code works once, fleet-wide.
	if err := loginWith(t, f.svcB, u, u.scratch[0]); err != nil {
		t.Fatalf("scratch code on B: %v", err)
	}
	if err := loginWith(t, f.svcA, u, u.scratch[0]); err == nil {
		t.Fatal("a scratch code used on B worked again on A")
	}
}

// TestDirectoryOneCodeFiftyLogins: 50 logins at once with one code, 25
// through each host, give exactly one success.
func TestDirectoryOneCodeFiftyLogins(t *testing.T) {
	f := newFleet(t)
	u := newUser(t)
	f.enrollDir(t, u)
	waitForFreshStep(30, 8)
	c := code(t, u.secret, 0)
	m := syslogs.mark()
	if ok := atOnce(t, []string{f.svcA, f.svcB}, u, c, 50); ok != 1 {
		t.Fatalf("50 parallel logins with one code through two hosts: %d succeeded, want exactly 1", ok)
	}
	throughRunAgent(t, m)
}

// TestDirectoryLockoutAddsUp: wrong codes on A and on B count against one
// limit, and unlock through either host's configuration clears it.
func TestDirectoryLockoutAddsUp(t *testing.T) {
	f := newFleet(t, "deny=4")
	u := newUser(t)
	f.enrollDir(t, u)
	wrong := wrongCode(t, u)
	for i := range 4 {
		svc := f.svcA
		if i%2 == 1 {
			svc = f.svcB
		}
		if err := loginWith(t, svc, u, wrong); err == nil {
			t.Fatal("a wrong code was accepted")
		}
	}
	m := syslogs.mark()
	if err := loginWith(t, f.svcA, u, code(t, u.secret, 0)); err == nil {
		t.Fatal("after 2 wrong codes on A and 2 on B (deny=4), a right code was accepted: the hosts counted apart")
	}
	expectLog(t, m, `user=`+u.name+` .*outcome=fail reason="?locked`)
	out, err := enrollCmd(t, "unlock", "--user", u.name, "--directory", f.confB, "--bind-dn", ldapAdmin, "--bind-password-file", f.d.adminPass)
	if err != nil {
		t.Fatalf("unlock through B's configuration: %v\n%s", err, out)
	}
	if err := loginWith(t, f.svcA, u, code(t, u.secret, 1)); err != nil {
		t.Fatalf("after unlock, a right code on A: %v", err)
	}
}

// wrongCode is a six-digit code that is none of u's codes near now.
func wrongCode(t *testing.T, u *user) string {
	t.Helper()
	near := map[string]bool{}
	for off := -3; off <= 3; off++ {
		near[code(t, u.secret, off)] = true
	}
	for _, c := range []string{"000000", "111111", "222222", "333333"} {
		if !near[c] {
			return c
		}
	}
	t.Fatal("no wrong code found")
	return ""
}

// TestDirectoryUserCannotReadOwnSecret: bound with their own LDAP
// password, a user can neither read nor change their secret or state, and
// neither can an anonymous client.
func TestDirectoryUserCannotReadOwnSecret(t *testing.T) {
	f := newFleet(t)
	u := newUser(t)
	f.enrollDir(t, u)
	for _, who := range []struct{ dn, pw string }{{userDN(u), u.password}, {"", ""}} {
		out, err := f.d.toolAs("", "ldapsearch", who.dn, who.pw, "-LLL", "-b", userDN(u), "-s", "base", "(objectClass=*)", "*", "pamTOTPSecret", "pamTOTPState")
		if err != nil {
			t.Fatalf("ldapsearch as %q: %v\n%s", who.dn, err, out)
		}
		if !strings.Contains(out, "uid: "+u.name) {
			t.Fatalf("ldapsearch as %q did not return the entry at all (the test would prove nothing):\n%s", who.dn, out)
		}
		if strings.Contains(out, "pamTOTPSecret") || strings.Contains(out, "pamTOTPState") {
			t.Fatalf("bound as %q, the user's pam_totp attributes were readable:\n%s", who.dn, out)
		}
		// Nor found by searching for them.
		out, _ = f.d.toolAs("", "ldapsearch", who.dn, who.pw, "-LLL", "-b", userDN(u), "-s", "base", "(pamTOTPSecret=*)", "dn")
		if strings.Contains(out, "dn:") {
			t.Fatalf("bound as %q, a search on pamTOTPSecret found the entry:\n%s", who.dn, out)
		}
	}
	for _, attr := range []string{"pamTOTPSecret", "pamTOTPState"} {
		ldif := fmt.Sprintf("dn: %s\nchangetype: modify\nreplace: %s\n%s: x\n", userDN(u), attr, attr)
		out, err := f.d.toolAs(ldif, "ldapmodify", userDN(u), u.password)
		if err == nil || !strings.Contains(out, "Insufficient access") {
			t.Fatalf("the user replaced their own %s: err=%v\n%s", attr, err, out)
		}
	}
	if err := loginWith(t, f.svcA, u, code(t, u.secret, 0)); err != nil {
		t.Fatalf("the enrollment was changed by the user's attempts: %v", err)
	}
}

// TestDirectoryDownFailsClosed: with slapd killed, logins fail within
// the directory's timeout with a log line, except root's local
// break-glass token with fallback=local. slapd restarted, logins work and
// nothing was lost.
func TestDirectoryDownFailsClosed(t *testing.T) {
	f := newFleet(t)
	u := newUser(t)
	f.enrollDir(t, u)
	store := storeFor(t)
	local := newUser(t) // stands in for root: a local break-glass enrollment
	enroll(t, local, "--secret-file", store+"/%u")
	f.d.addUser(t, local)
	fallback := service(t, module("required", "directory="+f.confA, "fallback=local", "secret="+store+"/%u"))
	// The stand-in has an entry in the directory too: doctor says that its
	// local token opens the account whenever the directory is unreachable.
	out, _ := doctorRun(t, map[string][]string{"sshd": {"auth requisite pam_unix.so", module("required", "directory="+f.confA, "fallback=local", "secret="+store+"/%u")}}, "")
	if !regexp.MustCompile(`WARNING .*the fallback=local store \S+ holds enrollments of users the directory also has: (\S+, )*` + local.name + `\b`).MatchString(out) {
		t.Fatalf("doctor did not warn of a fallback=local store with a directory user's enrollment:\n%s", out)
	}
	waitForFreshStep(30, 10) // the codes below are of the step before this one, this one and the next
	if err := loginWith(t, f.svcA, u, code(t, u.secret, -1)); err != nil {
		t.Fatalf("login before the directory went down: %v", err)
	}
	f.d.kill(t) // as a crash: nothing may be lost
	for _, svc := range []string{f.svcA, fallback} {
		m := syslogs.mark()
		began := time.Now()
		if err := loginWith(t, svc, u, code(t, u.secret, 0)); err == nil {
			t.Fatal("a login succeeded with the directory down")
		}
		took := time.Since(began)
		expectLog(t, m, `user=`+u.name+` .*outcome=fail reason=".*the directory cannot be reached`)
		// The configuration's timeout is 2 s; refused connections fail at once.
		if took > 9*time.Second {
			t.Fatalf("with the directory down a login took %v: past the module's time-out", took)
		}
	}
	m := syslogs.mark()
	if err := loginWith(t, fallback, local, code(t, local.secret, 0)); err != nil {
		t.Fatalf("the local break-glass token with fallback=local: %v", err)
	}
	expectLog(t, m, `user=`+local.name+` .*fallback=local .*outcome=ok`)
	if err := loginWith(t, f.svcA, local, code(t, local.secret, 1)); err == nil {
		t.Fatal("without fallback=local the local enrollment was used")
	}
	f.d.start(t)
	if err := loginWith(t, f.svcB, u, code(t, u.secret, -1)); err == nil {
		t.Fatal("after slapd was killed and restarted, the code used before was accepted again: the state was lost")
	}
	if err := loginWith(t, f.svcB, u, code(t, u.secret, 0)); err != nil {
		t.Fatalf("after the restart, a fresh code on B: %v", err)
	}
}

// TestDirectoryBadEntryFailsClosed: a malformed or oversized value in the
// entry fails the login with a log line, never as "not enrolled" (which
// nullok would let through).
func TestDirectoryBadEntryFailsClosed(t *testing.T) {
	f := newFleet(t, "nullok")
	cases := []struct {
		name, ldif, log string
	}{
		{"garbage secret", "replace: pamTOTPSecret\npamTOTPSecret: not a secret file\n", `pamTOTPSecret`},
		{"garbage state", "replace: pamTOTPState\npamTOTPState: failures many\n", `pamTOTPState`},
		{"oversized state", "replace: pamTOTPState\npamTOTPState: " + strings.Repeat("x", 70000) + "\n", `pamTOTPState is larger than`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			u := newUser(t)
			f.enrollDir(t, u)
			f.d.modify(t, "dn: "+userDN(u)+"\nchangetype: modify\n"+c.ldif)
			m := syslogs.mark()
			if err := loginWith(t, f.svcA, u, code(t, u.secret, 0)); err == nil {
				t.Fatal("a login succeeded over a broken entry")
			}
			expectLog(t, m, `user=`+u.name+` .*outcome=fail reason=".*`+c.log)
		})
	}
	t.Run("no entry", func(t *testing.T) {
		u := newUser(t) // local only: not in the directory
		m := syslogs.mark()
		if err := loginWith(t, f.svcA, u, "123456"); err == nil {
			t.Fatal("a user without an entry passed (nullok took the directory's silence for 'not enrolled')")
		}
		expectLog(t, m, `user=`+u.name+` .*outcome=fail reason=".*no entry`)
	})
}

// TestDirectoryConfigRefused: a configuration others can read, or one
// that would send the host's password in clear, fails closed.
func TestDirectoryConfigRefused(t *testing.T) {
	f := newFleet(t)
	u := newUser(t)
	f.enrollDir(t, u)
	os.Chmod(f.confA, 0o644)
	m := syslogs.mark()
	if err := loginWith(t, f.svcA, u, code(t, u.secret, 0)); err == nil {
		t.Fatal("a login succeeded with a world-readable directory configuration")
	}
	expectLog(t, m, `outcome=fail reason=".*has mode 0644`)
	os.Chmod(f.confA, 0o600)
	pw := filepath.Join(f.d.dir, "host.pw")
	os.WriteFile(pw, []byte("x\n"), 0o600)
	clear := f.d.hostConfLines(t, "clear", []string{"uri " + strings.Replace(f.d.ldaps, "ldaps", "ldap", 1), "base ou=people," + ldapSuffix,
		"bind_dn cn=host-a,ou=hosts," + ldapSuffix, "bind_password_file " + pw})
	svc := service(t, module("required", "directory="+clear))
	m = syslogs.mark()
	if err := loginWith(t, svc, u, code(t, u.secret, 0)); err == nil {
		t.Fatal("a login succeeded with a configuration without ca_file")
	}
	expectLog(t, m, `outcome=fail reason=".*ca_file is required`)
}

// TestDirectoryEnrollAtLoginOnce: first logins with enroll=login on A and
// B at the same time give one enrollment, and afterwards both hosts ask
// for a code of that one.
func TestDirectoryEnrollAtLoginOnce(t *testing.T) {
	f := newFleet(t)
	u := newUser(t)
	waitForFreshStep(30, 8)
	f.d.addUser(t, u)
	stackA := strings.Join([]string{"auth required pam_unix.so nodelay", module("required", "directory="+f.confA, "enroll=login")}, "\n")
	stackB := strings.Join([]string{"auth required pam_unix.so nodelay", module("required", "directory="+f.confB, "enroll=login")}, "\n")
	winner := firstLoginsAtOnce(t, []string{service(t, stackA), service(t, stackB)}, u)
	if vals := f.d.attr(t, u, "pamTOTPSecret"); len(vals) != 1 {
		t.Fatalf("two first logins left %d secrets in the entry, want 1", len(vals))
	}
	// The enrollment is the winner's (its confirmation used the code of
	// this step), and both hosts ask for its codes and share its state.
	if err := loginWith(t, f.svcA, u, code(t, winner, 1)); err != nil {
		t.Fatalf("after enrolling, the next code of the enrollment on A: %v", err)
	}
	c := &conv{answers: []string{code(t, winner, 1)}}
	if err := authenticate(t, f.svcB, u.name, c); err == nil {
		t.Fatal("the code used on A was accepted on B")
	}
	if len(c.prompts) != 1 || c.prompts[0] != "Verification code: " {
		t.Fatalf("B did not ask the enrolled user for a code: prompts %q", c.prompts)
	}
}

// TestDirectoryMigrate: a pam_totp file and a ~/.google_authenticator
// move into the directory with their replay state: nobody re-enrolls, and
// a code used before the move is refused after it.
func TestDirectoryMigrate(t *testing.T) {
	f := newFleet(t)
	for _, kind := range []string{"pam_totp", "google"} {
		t.Run(kind, func(t *testing.T) {
			u := newUser(t)
			f.d.addUser(t, u)
			var local string
			if kind == "google" {
				needGoogle(t)
				gaEnroll(t, u, "-t", "-d", "-u", "-w", "3")
				local = service(t, fmt.Sprintf("auth required %s/pam_totp.so checker=%s/pam-totp-check nodelay", libDir, libDir))
			} else {
				enroll(t, u)
				local = service(t, module("required"))
			}
			waitForFreshStep(30, 8)
			c := code(t, u.secret, 0)
			if err := loginWith(t, local, u, c); err != nil {
				t.Fatalf("login with the local file before the move: %v", err)
			}
			out, err := enrollCmd(t, "migrate", "--to-directory", f.confA, "--user", u.name,
				"--bind-dn", ldapAdmin, "--bind-password-file", f.d.adminPass)
			if err != nil {
				t.Fatalf("migrate --to-directory: %v\n%s", err, out)
			}
			if err := loginWith(t, f.svcB, u, c); err == nil {
				t.Fatal("the code used before the move was accepted after it")
			}
			if err := loginWith(t, f.svcB, u, code(t, u.secret, 1)); err != nil {
				t.Fatalf("a fresh code after the move, without re-enrolling: %v", err)
			}
		})
	}
}

// TestDirectoryKilledAfterCharge: a checker killed between its charge and
// its success leaves the attempt counted in the directory. The checker
// reaches slapd through a gate that passes the client's bytes one read at
// a time, and looks at the directory before each: once the charge is in,
// the next bytes can only be the success, and the checker is killed
// instead. Nothing here depends on timing.
func TestDirectoryKilledAfterCharge(t *testing.T) {
	f := newFleet(t)
	u := newUser(t)
	f.enrollDir(t, u)
	if st := f.d.attr(t, u, "pamTOTPState"); len(st) != 1 || strings.Contains(st[0], "failures") {
		t.Fatalf("the state before the test is %q, want one without failures", st)
	}
	g := newGate(t, strings.TrimPrefix(f.d.ldaps, "ldaps://"))
	conf := f.d.hostConfLines(t, "gated", []string{"uri ldaps://" + g.addr, "base ou=people," + ldapSuffix, "ca_file " + f.d.ca,
		"cert_file " + filepath.Join(f.d.certs, "host-a.pem"), "key_file " + filepath.Join(f.d.certs, "host-a.key"), "timeout 30"})
	// The module's timeout= as a module line would give it: the
	// directory's timeout 30 must fit in it.
	req := (&protocol.Req{User: u.name, Known: true, UID: u.uid, GID: u.gid, Home: u.home, Service: "kill-test",
		Options: []string{"directory=" + conf, "timeout=60"}}).Marshal()
	cmd, verdict := startCheckerAt(t, filepath.Join(libDir, "pam-totp-check-directory"), req, &syscall.Credential{}, code(t, u.secret, 0))
	charged := func() bool {
		st := f.d.attr(t, u, "pamTOTPState")
		return len(st) == 1 && strings.Contains(st[0], "failures 1")
	}
	killed, ended := false, false
	var v byte
gated:
	for {
		select {
		case chunk, ok := <-g.chunks:
			if !ok {
				break gated
			}
			if charged() {
				cmd.Process.Kill() // our own child, by its pid; its success is never passed on
				killed = true
				break gated
			}
			chunk.pass <- true
		case v = <-verdict: // the checker ended without going through the gate to the end
			ended = true
			break gated
		}
	}
	cmd.Wait()
	if !ended {
		v = <-verdict
	}
	if v == protocol.Success {
		t.Fatal("the checker sent a success: it was not stopped between the charge and the success")
	}
	if !killed {
		t.Fatalf("the checker ended without its charge ever reaching the directory (state %q)", f.d.attr(t, u, "pamTOTPState"))
	}
	if !charged() {
		t.Fatalf("after the kill the state is %q: the attempt was not counted", f.d.attr(t, u, "pamTOTPState"))
	}
}

// gate is a TCP proxy to slapd that holds each read from the client until
// the test passes it on; the server's answers go through freely.
type gate struct {
	addr   string
	chunks chan gateChunk
}

type gateChunk struct{ pass chan bool }

func newGate(t *testing.T, target string) *gate {
	t.Helper()
	g := &gate{chunks: make(chan gateChunk)}
	g.addr = proxyOnce(t, target, func() bool {
		ch := gateChunk{pass: make(chan bool)}
		g.chunks <- ch
		return <-ch.pass
	}, nil, func() { close(g.chunks) })
	return g
}

// proxyOnce proxies one connection to target. Before it passes on a chunk
// from the client it asks fromClient, and before one from the server
// fromServer (nil: always pass); a false closes both sides. done runs when
// the connection is over. Later connections are refused.
func proxyOnce(t *testing.T, target string, fromClient, fromServer func() bool, done func()) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	// pass copies from src to dst, asking ask before each chunk.
	pass := func(dst, src net.Conn, ask func() bool) {
		buf := make([]byte, 64<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				if ask != nil && !ask() {
					return
				}
				if _, err := dst.Write(buf[:n]); err != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}
	go func() {
		if done != nil {
			defer done()
		}
		c, err := l.Accept()
		l.Close()
		if err != nil {
			return
		}
		defer c.Close()
		s, err := net.Dial("tcp", target)
		if err != nil {
			return
		}
		defer s.Close()
		go func() { pass(c, s, fromServer); c.Close(); s.Close() }()
		pass(s, c, fromClient)
	}()
	return l.Addr().String()
}

// TestDirectoryThroughSSHDAndSudo: the same enrollment through two real
// sshd, one per host with its own configuration and certificate, and
// through real sudo; the state is the fleet's.
func TestDirectoryThroughSSHDAndSudo(t *testing.T) {
	f := newFleet(t)
	u := newUser(t)
	f.enrollDir(t, u)
	sshA := startSSHD(t, false, "auth required pam_unix.so nodelay", module("required", "directory="+f.confA))
	sshB := startSSHD(t, false, "auth required pam_unix.so nodelay", module("required", "directory="+f.confB))
	svc := "sudo-" + u.name
	writeEtc(t, "/etc/pam.d/"+svc, hostStack("directory="+f.confA), 0o644)
	writeEtc(t, "/etc/sudoers.d/"+u.name, fmt.Sprintf("Defaults:%s pam_service=%s, passwd_tries=1, !lecture\n%s ALL=(root) ALL\n", u.name, svc, u.name), 0o440)
	sudo := &host{name: "sudo", runner: u, victim: u, service: svc, success: "uid=0(root)", argv: []string{"sudo", "-k", "id"}}

	waitForFreshStep(30, 10) // the codes below are of the step before this one, this one and the next
	if out, err := sshA.login(u.name, u.password, code(t, u.secret, -1), kbdFirst); err != nil {
		t.Fatalf("ssh through host A: %v\n%s", err, out)
	}
	if _, err := sshB.login(u.name, u.password, code(t, u.secret, -1), kbdFirst); err == nil {
		t.Fatal("the code used through sshd on A was accepted by sshd on B")
	}
	if out, err := sshB.login(u.name, u.password, code(t, u.secret, 0), kbdFirst); err != nil {
		t.Fatalf("ssh through host B with the next code: %v\n%s", err, out)
	}
	if sudo.attempt(t, nil, code(t, u.secret, 0), nil, 20*time.Second) {
		t.Fatal("sudo on A accepted the code used through sshd on B")
	}
	if !sudo.attempt(t, nil, code(t, u.secret, 1), nil, 20*time.Second) {
		t.Fatalf("sudo on A refused a fresh code; it showed %q", sudo.shown)
	}
}

// TestDirectoryUnsafeOrBrokenServer: a server whose certificate is not of
// ca_file, one that accepts and never answers, and one without pam_totp's
// schema each fail the login closed, with a log line, within the time-outs.
func TestDirectoryUnsafeOrBrokenServer(t *testing.T) {
	f := newFleet(t)
	u := newUser(t)
	f.enrollDir(t, u)
	other := filepath.Join(f.d.dir, "other-ca")
	os.Mkdir(other, 0o700)
	openssl(t, other, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
		"-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=another CA")
	silent := silentServer(t)
	bare := startSlapdWith(t, "", false)
	bare.addUser(t, u)
	cert := []string{"cert_file " + filepath.Join(f.d.certs, "host-a.pem"), "key_file " + filepath.Join(f.d.certs, "host-a.key")}
	cases := []struct {
		name  string
		lines []string
		log   string
	}{
		{"a certificate of another CA", append([]string{"uri " + f.d.ldaps, "base ou=people," + ldapSuffix, "ca_file " + other + "/ca.pem"}, cert...),
			`TLS: tls: failed to verify certificate`},
		{"StartTLS with a certificate of another CA", append([]string{"uri " + f.d.ldap, "base ou=people," + ldapSuffix, "ca_file " + other + "/ca.pem"}, cert...),
			`StartTLS: .*certificate`},
		{"a server that never answers", append([]string{"uri ldaps://" + silent, "base ou=people," + ldapSuffix, "ca_file " + f.d.ca, "timeout 1"}, cert...),
			`the directory cannot be reached: .*no answer within 1s`},
		{"no pam_totp schema", []string{"uri " + bare.ldaps, "base ou=people," + ldapSuffix, "ca_file " + bare.ca,
			"cert_file " + filepath.Join(bare.certs, "host-a.pem"), "key_file " + filepath.Join(bare.certs, "host-a.key")},
			`no entry for .*` + u.name + `.* that this host may read .*schema not loaded`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			conf := f.d.hostConfLines(t, "broken", c.lines)
			svc := service(t, module("required", "nullok", "directory="+conf))
			m := syslogs.mark()
			began := time.Now()
			if err := loginWith(t, svc, u, code(t, u.secret, 0)); err == nil {
				t.Fatal("the login succeeded")
			}
			if took := time.Since(began); took > 9*time.Second {
				t.Fatalf("the login took %v: not within the directory's timeout and the module's", took)
			}
			expectLog(t, m, `user=`+u.name+` .*outcome=fail reason=".*`+c.log)
		})
	}
}

// TestDirectoryDoctor: doctor --directory passes a sound set-up and names
// a missing schema, a secret that anonymous clients can read, and a stack
// where root has no way in while the directory is down.
func TestDirectoryDoctor(t *testing.T) {
	f := newFleet(t)
	u := newUser(t)
	f.enrollDir(t, u)
	out, err := enrollCmd(t, "doctor", "--directory", f.confA, "--user", u.name)
	if err != nil || strings.Contains(out, "ERROR") {
		t.Fatalf("doctor --directory on a sound set-up: %v\n%s", err, out)
	}
	before := f.d.attr(t, u, "pamTOTPState")
	if err := loginWith(t, f.svcA, u, code(t, u.secret, 0)); err != nil {
		t.Fatalf("doctor's access check changed the enrollment: %v (state before %q)", err, before)
	}
	leaky := startSlapdWith(t, "access to * by * read", true)
	leaky.addUser(t, u)
	leaky.setSecret(t, u, "# pam_totp secret file\npam_totp 1\n")
	bare := startSlapdWith(t, "", false)
	for _, c := range []struct {
		d    *slapd
		want string
	}{{leaky, "an anonymous client can read or find pam_totp's attributes of 1 entries"}, {bare, "pam_totp's schema is not loaded"}} {
		conf := c.d.hostConf(t, "host-a")
		out, err := enrollCmd(t, "doctor", "--directory", conf)
		if exitCode(err) != 1 || !strings.Contains(out, "ERROR") || !strings.Contains(out, c.want) {
			t.Fatalf("doctor --directory: exit %d, want 1 and %q:\n%s", exitCode(err), c.want, out)
		}
	}
	out, _ = doctorRun(t, map[string][]string{"sshd": {"auth required pam_unix.so", module("required", "directory="+f.confA)}}, "")
	if !strings.Contains(out, "directory= without fallback=local") {
		t.Fatalf("doctor did not warn that root has no way in while the directory is down:\n%s", out)
	}
}

// TestDirectoryTokenCommands: the commands that manage a user's tokens
// work on the directory, bound as the admin, and every host sees the
// change at once.
func TestDirectoryTokenCommands(t *testing.T) {
	f := newFleet(t, "deny=0")
	u := newUser(t)
	f.enrollDir(t, u)
	dir := []string{"--user", u.name, "--directory", f.confA, "--bind-dn", ldapAdmin, "--bind-password-file", f.d.adminPass}
	run := func(args ...string) string {
		t.Helper()
		out, err := enrollCmd(t, append(args, dir...)...)
		if err != nil {
			t.Fatalf("totp-enroll %v: %v\n%s", args, err, out)
		}
		return out
	}
	waitForFreshStep(30, 12)
	phone2 := newSecret(t)
	run("add", "--name", "phone2", "--secret", phone2, "--no-confirm", "--qr", "none")
	if out := run("list"); !strings.Contains(out, "phone2") || !strings.Contains(out, "default") {
		t.Fatalf("list after add:\n%s", out)
	}
	if err := loginWith(t, f.svcB, u, code(t, phone2, 0)); err != nil {
		t.Fatalf("the added token on B: %v", err)
	}
	run("disable", "phone2")
	if err := loginWith(t, f.svcA, u, code(t, phone2, 1)); err == nil {
		t.Fatal("a disabled token still works on A")
	}
	run("enable", "phone2")
	if err := loginWith(t, f.svcA, u, code(t, phone2, 1)); err != nil {
		t.Fatalf("the enabled token on A: %v", err)
	}
	run("remove", "phone2")
	if out := run("list"); strings.Contains(out, "phone2") {
		t.Fatalf("list after remove:\n%s", out)
	}
	if out := run("show", "default"); !strings.Contains(out, "otpauth://totp/") {
		t.Fatalf("show:\n%s", out)
	}
	if out := run("status"); !strings.Contains(out, "token default") {
		t.Fatalf("status:\n%s", out)
	}
	if out := run("status", "--all"); !strings.Contains(out, u.name) {
		t.Fatalf("status --all does not list the enrolled user:\n%s", out)
	}
	// sync: the phone runs 50 steps ahead.
	if out := run("sync", "default", code(t, u.secret, 50), code(t, u.secret, 51)); !strings.Contains(out, "drift set to +51 steps") {
		t.Fatalf("sync:\n%s", out)
	}
	if err := loginWith(t, f.svcB, u, code(t, u.secret, 52)); err != nil {
		t.Fatalf("after sync, on B: %v", err)
	}
	out := run("passcodes", "--generate", "1")
	pcs := regexp.MustCompile(`(?m)^  (\d{8})$`).FindAllStringSubmatch(out, -1)
	if len(pcs) != 1 {
		t.Fatalf("passcodes:\n%s", out)
	}
	if err := loginWith(t, f.svcA, u, pcs[0][1]); err != nil {
		t.Fatalf("a passcode on A: %v", err)
	}
	if err := loginWith(t, f.svcB, u, pcs[0][1]); err == nil {
		t.Fatal("a passcode used on A worked again on B")
	}
	out = run("scratch", "--regenerate", "--count", "2")
	if fresh := regexp.MustCompile(`(?m)^  (\d{8})$`).FindAllStringSubmatch(out, -1); len(fresh) != 2 {
		t.Fatalf("scratch --regenerate:\n%s", out)
	}
	if err := loginWith(t, f.svcA, u, u.scratch[1]); err == nil {
		t.Fatal("an old scratch code still works after --regenerate")
	}
	run("reset")
	if v := f.d.attr(t, u, "pamTOTPSecret"); len(v) != 0 {
		t.Fatalf("reset left %d secrets in the entry", len(v))
	}
	if err := loginWith(t, f.svcB, u, code(t, u.secret, 53)); err == nil {
		t.Fatal("a login after reset got in")
	}
	// With the example ACL a host may add a secret where there is none
	// (enroll=login), but never replace one.
	first := newSecret(t)
	if out, err := enrollCmd(t, "--user", u.name, "--secret", first, "--no-confirm", "--qr", "none", "--directory", f.confA); err != nil {
		t.Fatalf("enrolling an unenrolled user with the host's identity: %v\n%s", err, out)
	}
	if out, err := enrollCmd(t, "--user", u.name, "--secret", newSecret(t), "--no-confirm", "--qr", "none", "--force", "--directory", f.confA); err == nil ||
		!strings.Contains(out, "insufficient access, LDAP 50") || !strings.Contains(out, "--bind-dn") {
		t.Fatalf("replacing a secret with the host's identity: %v\n%s", err, out)
	}
	if err := loginWith(t, f.svcB, u, code(t, first, 0)); err != nil {
		t.Fatalf("the first enrollment after the refused replacement: %v", err)
	}
}

// TestDirectoryImport: hardware tokens imported into the directory work
// on every host.
func TestDirectoryImport(t *testing.T) {
	f := newFleet(t)
	u := newUser(t)
	f.d.addUser(t, u)
	key := hexKey(t)
	file := filepath.Join(t.TempDir(), "tokens.csv")
	os.WriteFile(file, []byte(key+";;Feitian c200 #1\n"), 0o600)
	out, err := enrollCmd(t, "import", "csv", file, "--user", u.name, "--directory", f.confA, "--bind-dn", ldapAdmin, "--bind-password-file", f.d.adminPass)
	if err != nil || !strings.Contains(out, "-> directory "+f.confA) {
		t.Fatalf("import csv --directory: %v\n%s", err, out)
	}
	c, err := exec.Command("oathtool", "--totp", key).Output()
	if err != nil {
		t.Fatal(err)
	}
	if err := loginWith(t, f.svcB, u, strings.TrimSpace(string(c))); err != nil {
		t.Fatalf("the imported token on B: %v", err)
	}
}

// TestDirectoryRestoredFromBackup: after a restore from a back-up taken
// before some logins, the HOTP code and the scratch code used since work
// again. totp-enroll restored takes that back: both are refused, the
// HOTP counter is --hotp-skip on, and every scratch code is revoked.
func TestDirectoryRestoredFromBackup(t *testing.T) {
	needRoot(t, "oathtool", "openssl")
	f := newFleet(t, "deny=0") // the refused codes below are not to lock the user
	u := newUser(t)
	f.d.addUser(t, u)
	u.secret = newSecret(t)
	out, err := enrollCmd(t, "--user", u.name, "--type", "hotp", "--secret", u.secret, "--no-confirm", "--qr", "none", "--scratch-codes", "2",
		"--directory", f.confA, "--bind-dn", ldapAdmin, "--bind-password-file", f.d.adminPass)
	if err != nil {
		t.Fatalf("enroll: %v\n%s", err, out)
	}
	scratch := regexp.MustCompile(`(?m)^  (\d{8})$`).FindAllStringSubmatch(out, -1)
	if len(scratch) != 2 {
		t.Fatalf("scratch codes:\n%s", out)
	}
	phone := newSecret(t)
	mustEnroll(t, "--user", u.name, "add", "--name", "phone", "--secret", phone, "--no-confirm", "--qr", "none",
		"--directory", f.confA, "--bind-dn", ldapAdmin, "--bind-password-file", f.d.adminPass)
	backup := f.d.backup(t)
	waitForFreshStep(30, 10)
	used := []string{hotpCode(t, u.secret, 0, 6), scratch[0][1], code(t, phone, 0)}
	for _, c := range used {
		if err := loginWith(t, f.svcA, u, c); err != nil {
			t.Fatalf("login before the restore: %v", err)
		}
	}
	// The hazard: restored, the back-up's state accepts the codes again.
	f.d.restore(t, backup)
	if err := loginWith(t, f.svcB, u, used[0]); err != nil {
		t.Fatalf("the hazard this test is about did not show: the HOTP code used after the back-up was refused after the restore: %v", err)
	}
	f.d.restore(t, backup)
	admin := []string{"--directory", f.confA, "--bind-dn", ldapAdmin, "--bind-password-file", f.d.adminPass}
	out = mustEnroll(t, append([]string{"restored", "--all", "--hotp-skip", "50"}, admin...)...)
	if !strings.Contains(out, u.name+": 1 HOTP tokens moved on by 50 counters, 1 TOTP tokens used up to now, 2 scratch codes and passcodes revoked") {
		t.Fatalf("restored:\n%s", out)
	}
	// The back-up's state had counter 0 next: the 50 counters 0..49 are
	// behind the token now, 50 is next.
	refused := append(used, scratch[1][1], hotpCode(t, u.secret, 49, 6))
	for i, c := range refused {
		if err := loginWith(t, f.svcB, u, c); err == nil {
			t.Fatalf("code %d of %q after restored: accepted", i, refused)
		}
	}
	if err := loginWith(t, f.svcA, u, hotpCode(t, u.secret, 50, 6)); err != nil {
		t.Fatalf("the first counter past the skip: %v", err)
	}
	if err := loginWith(t, f.svcA, u, code(t, phone, 1)); err != nil {
		t.Fatalf("the phone's next code: %v", err)
	}
	if st := mustEnroll(t, append([]string{"--user", u.name, "status"}, admin...)...); !strings.Contains(st, "scratch codes left 0") {
		t.Fatalf("status after restored:\n%s", st)
	}
}

// TestDirectoryNamesDifferingInCase: the directory matches uid without
// regard to case, so SYA1 found sya1's entry. Now an entry is the
// account's only if its uid is the account's name byte for byte: through
// sshd, migrate and enroll=login, neither account reaches the other's
// enrollment, and the refusal names the entry.
func TestDirectoryNamesDifferingInCase(t *testing.T) {
	f := newFleet(t)
	lower, upper := newUserNamed(t, "sya1"), newUserNamed(t, "SYA1")
	f.enrollDir(t, lower) // upper has no entry of its own
	sd := startSSHD(t, false, "auth required pam_unix.so nodelay", module("required", "directory="+f.confA))
	m := syslogs.mark()
	if out, err := sd.login(upper.name, upper.password, code(t, lower.secret, 0), kbdFirst); err == nil {
		t.Fatalf("SYA1 logged in with sya1's code: %q", out)
	}
	expectLog(t, m, `user=SYA1 .*entry uid=sya1,ou=people,dc=test: its uid is not \\"SYA1\\" byte for byte`)
	m = syslogs.mark()
	if out, err := sd.login(lower.name, lower.password, code(t, lower.secret, 0), kbdFirst); err != nil || out != "pamtotp-logged-in-as-sya1" {
		t.Fatalf("sya1 with its own code: %q %v", out, err)
	}
	expectLog(t, m, `user=sya1 .*store="ldaps://127\.0\.0\.1:\d+ uid=sya1,ou=people,dc=test".*outcome=ok`)

	// migrate: SYB1's own secret must not land in syb1's entry.
	lowerB, upperB := newUserNamed(t, "syb1"), newUserNamed(t, "SYB1")
	f.d.addUser(t, lowerB)
	enroll(t, upperB)
	out, err := enrollCmd(t, "migrate", "--to-directory", f.confA, "--user", upperB.name,
		"--bind-dn", ldapAdmin, "--bind-password-file", f.d.adminPass)
	if err == nil || !strings.Contains(out, "byte for byte") {
		t.Fatalf("migrate --user SYB1 into syb1's entry: %v\n%s", err, out)
	}
	if v := f.d.attr(t, lowerB, "pamTOTPSecret"); len(v) != 0 {
		t.Fatalf("migrate wrote SYB1's secret into syb1's entry: %q", v)
	}

	// enroll=login: SYH1's first login must not enroll syh1's entry.
	lowerH, upperH := newUserNamed(t, "syh1"), newUserNamed(t, "SYH1")
	f.d.addUser(t, lowerH)
	svc := service(t, "auth required pam_unix.so nodelay", module("required", "directory="+f.confA, "enroll=login"))
	e := &enrollConv{t: t, password: upperH.password}
	if authErr, credErr := loginAndSetcred(t, svc, upperH.name, e, true); authErr == nil && credErr == nil {
		t.Fatal("SYH1's first login enrolled")
	}
	if v := f.d.attr(t, lowerH, "pamTOTPSecret"); len(v) != 0 {
		t.Fatalf("SYH1's first login enrolled syh1's entry: %d secrets", len(v))
	}
}

// TestDirectoryUnlockAsHost: unlock with the host's own identity (its
// certificate, as the host configuration names it) writes the state only,
// which the example ACL lets hosts do: the user is unlocked, and says so
// once, after the write. A command that rewrites the secret, which hosts
// may not, fails with the identity to use, and says nothing is done.
func TestDirectoryUnlockAsHost(t *testing.T) {
	f := newFleet(t, "deny=2", "unlock_time=3600")
	u := newUser(t)
	f.enrollDir(t, u)
	for range 2 {
		loginWith(t, f.svcA, u, wrongCode(t, u))
	}
	if err := loginWith(t, f.svcB, u, code(t, u.secret, 0)); err == nil {
		t.Fatal("not locked after deny wrong codes")
	}
	secretBefore := f.d.attr(t, u, "pamTOTPSecret")
	out, err := enrollCmd(t, "unlock", "--user", u.name, "--directory", f.confA)
	if err != nil || strings.Count(out, u.name+": unlocked") != 1 {
		t.Fatalf("unlock as the host: %v\n%s", err, out)
	}
	if after := f.d.attr(t, u, "pamTOTPSecret"); len(after) != 1 || after[0] != secretBefore[0] {
		t.Fatal("unlock rewrote the secret")
	}
	if err := loginWith(t, f.svcB, u, code(t, u.secret, 1)); err != nil {
		t.Fatalf("after unlock as the host: %v", err)
	}
	out, err = enrollCmd(t, "passcodes", "--generate", "2", "--user", u.name, "--directory", f.confA)
	if err == nil || !strings.Contains(out, "LDAP 50") || !strings.Contains(out, "--bind-dn") || strings.Contains(out, "admin passcodes (") {
		t.Fatalf("a secret change as the host: %v\n%s", err, out)
	}
}

// TestDirectoryAdminPasswordFile: the admin's --bind-password-file, which
// can replace every user's secret, is read only if it is the caller's, a
// regular file, no link, and closed to others, with one clear line if not.
func TestDirectoryAdminPasswordFile(t *testing.T) {
	f := newFleet(t)
	u := newUser(t)
	f.d.addUser(t, u)
	sticky := filepath.Join(workDir, "sticky-"+u.name)
	if err := os.Mkdir(sticky, 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	os.Chmod(sticky, 0o777|os.ModeSticky)
	nobodys := filepath.Join(sticky, "pw")
	writeEtc(t, nobodys, "enrollerpw\n", 0o666)
	os.Chown(nobodys, 65534, 65534)
	link := filepath.Join(sticky, "link")
	if err := os.Symlink(f.d.adminPass, link); err != nil {
		t.Fatal(err)
	}
	open := filepath.Join(workDir, "open-pw-"+u.name)
	writeEtc(t, open, "enrollerpw\n", 0o644)
	for file, want := range map[string]string{
		link:    "is a symbolic link",
		nobodys: "belongs to uid 65534, not to you",
		open:    "is open to others (mode 0644)",
	} {
		out, err := enrollCmd(t, "--user", u.name, "--secret", newSecret(t), "--no-confirm", "--qr", "none",
			"--directory", f.confA, "--bind-dn", ldapAdmin, "--bind-password-file", file)
		if err == nil || !strings.Contains(out, want) || strings.Count(strings.TrimSpace(out), "\n") > 0 {
			t.Fatalf("--bind-password-file %s: %v, want one line with %q:\n%s", file, err, want, out)
		}
	}
	if v := f.d.attr(t, u, "pamTOTPSecret"); len(v) != 0 {
		t.Fatal("a refused password file still enrolled the user")
	}
}

// TestDirectoryDoctorSays: what doctor --directory tells an admin is the
// cause, not a guess. It names the identity the host is bound as and its
// group, and warns of a host that no group lists; a user who is merely not
// enrolled is a note, not an ACL error; a TLS failure is not "could not be
// reached" and does not point at fallback=local; and a server's diagnostic
// message full of terminal escapes (an attacker on the path of StartTLS,
// which needs no certificate) reaches the screen and the JSON escaped.
func TestDirectoryDoctorSays(t *testing.T) {
	f := newFleet(t)
	v := newUser(t)
	f.d.addUser(t, v) // not enrolled
	out, err := enrollCmd(t, "doctor", "--directory", f.confA, "--user", v.name)
	if err != nil || strings.Contains(out, "ERROR") || !strings.Contains(out, v.name+" is not enrolled in the directory") ||
		!strings.Contains(out, "bound as cn=host-a,ou=hosts,dc=test, member of cn=pam-totp-hosts,ou=groups,dc=test") {
		t.Fatalf("doctor --directory --user of an unenrolled user: %v\n%s", err, out)
	}
	out, _ = enrollCmd(t, "doctor", "--directory", f.d.hostConf(t, "host-c"))
	if !strings.Contains(out, "bound as cn=host-c,ou=hosts,dc=test, which no group lists") {
		t.Fatalf("doctor with a host in no group:\n%s", out)
	}
	other := filepath.Join(f.d.dir, "doctor-other-ca")
	os.Mkdir(other, 0o700)
	openssl(t, other, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
		"-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=another CA")
	cert := []string{"cert_file " + filepath.Join(f.d.certs, "host-a.pem"), "key_file " + filepath.Join(f.d.certs, "host-a.key")}
	wrongCA := f.d.hostConfLines(t, "wrong-ca", append([]string{"uri " + f.d.ldaps, "base ou=people," + ldapSuffix, "ca_file " + other + "/ca.pem"}, cert...))
	out, err = enrollCmd(t, "doctor", "--directory", wrongCA)
	if exitCode(err) != 1 || !strings.Contains(out, "no server in uri accepted this host") || strings.Contains(out, "could be reached") {
		t.Fatalf("doctor with a CA that is not the server's: exit %d\n%s", exitCode(err), out)
	}

	forged := "\r\x1b[2K\x1b[1A\x1b[32mNOTE    reachable, TLS and bind as this host work\x1b[0m"
	addr := acceptEach(t, loopback(t), func(c net.Conn) {
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		req, err := ber.ReadPacket(c)
		if err != nil || len(req.Children) < 1 {
			return
		}
		id, _ := req.Children[0].Value.(int64)
		msg := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "")
		msg.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, id, ""))
		res := ber.Encode(ber.ClassApplication, ber.TypeConstructed, 24, nil, "")
		res.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagEnumerated, int64(2), ""))
		res.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "", ""))
		res.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, forged, ""))
		msg.AppendChild(res)
		c.Write(msg.Bytes())
	})
	hostile := f.d.hostConfLines(t, "hostile", append([]string{"uri ldap://" + addr, "base ou=people," + ldapSuffix, "ca_file " + f.d.ca}, cert...))
	for _, args := range [][]string{{"doctor", "--directory", hostile}, {"doctor", "--directory", hostile, "--json"}} {
		out, _ = enrollCmd(t, args...)
		if strings.ContainsAny(out, "\x1b\r") || !strings.Contains(out, "NOTE    reachable") {
			t.Fatalf("%v printed the server's text unescaped, or not at all:\n%q", args, out)
		}
	}
}

// TestDirectoryOfItsOwn: users who live in another directory (Active
// Directory, FreeIPA) keep their enrollments in a small OpenLDAP of
// pam_totp's own. totp-enroll, bound as the admin, creates the entry
// (uid=NAME under create_in, objectClass pamTOTPAccount) of a user who has
// none; logins on every host find it by the account's name; a host's
// identity may not create entries.
func TestDirectoryOfItsOwn(t *testing.T) {
	d := startSlapd(t)
	d.add(t, "dn: ou=totp,"+ldapSuffix+"\nobjectClass: organizationalUnit\nou: totp\n")
	conf := func(host string) string {
		return d.hostConfLines(t, host, []string{"uri " + d.ldaps, "base " + ldapSuffix, "create_in ou=totp," + ldapSuffix, "ca_file " + d.ca,
			"cert_file " + filepath.Join(d.certs, host+".pem"), "key_file " + filepath.Join(d.certs, host+".key"), "timeout 2"})
	}
	confA, confB := conf("host-a"), conf("host-b")
	u := newUser(t) // an account NSS gives; the directory has no entry of it
	u.secret = newSecret(t)
	out, err := enrollCmd(t, "--user", u.name, "--secret", u.secret, "--no-confirm", "--qr", "none",
		"--directory", confA, "--bind-dn", ldapAdmin, "--bind-password-file", d.adminPass)
	if err != nil {
		t.Fatalf("enrolling a user without an entry, with create_in: %v\n%s", err, out)
	}
	entry := d.tool(t, "", "ldapsearch", "-LLL", "-b", "uid="+u.name+",ou=totp,"+ldapSuffix, "-s", "base", "objectClass", "uid")
	if !strings.Contains(entry, "objectClass: pamTOTPAccount") || !strings.Contains(entry, "uid: "+u.name) {
		t.Fatalf("the entry totp-enroll made:\n%s", entry)
	}
	svcA, svcB := service(t, module("required", "directory="+confA)), service(t, module("required", "directory="+confB))
	c := code(t, u.secret, 0)
	if err := loginWith(t, svcA, u, c); err != nil {
		t.Fatalf("login on A with the entry of pam_totp's own: %v", err)
	}
	if err := loginWith(t, svcB, u, c); err == nil {
		t.Fatal("the code used on A worked on B")
	}
	v := newUser(t)
	out, err = enrollCmd(t, "--user", v.name, "--secret", newSecret(t), "--no-confirm", "--qr", "none", "--directory", confA)
	if err == nil || !strings.Contains(out, "LDAP 50") {
		t.Fatalf("a host's identity created an entry: %v\n%s", err, out)
	}
}

// TestDirectoryLocalErrorIsNoFallback: a local user without root can make
// this host's connect fail (every ephemeral port bound: EADDRNOTAVAIL).
// That is not the directory's silence: the login fails closed, writes no
// down mark, and fallback=local does not open the local enrollment (a token
// removed from the directory, still in the local file). The server's own
// silence (slapd stopped) still gives break-glass. The test runs on a
// thread of its own in a network namespace of its own, whose ephemeral
// range is two ports: slapd and the checker start from that thread, so the
// machine's network is not touched.
func TestDirectoryLocalErrorIsNoFallback(t *testing.T) {
	needRoot(t, "oathtool", "openssl")
	runtime.LockOSThread() // never unlocked: the thread ends with the test, and its namespace with it
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		t.Fatalf("a network namespace for the test: %v", err)
	}
	lo, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	ifr, err := unix.NewIfreq("lo")
	if err == nil {
		ifr.SetUint16(unix.IFF_UP | unix.IFF_LOOPBACK | unix.IFF_RUNNING)
		err = unix.IoctlIfreq(lo, unix.SIOCSIFFLAGS, ifr)
	}
	unix.Close(lo)
	if err != nil {
		t.Fatalf("bringing lo up in the test's namespace: %v", err)
	}
	f := newFleet(t)
	u := newUser(t)
	store := storeFor(t)
	enroll(t, u, "--secret-file", store+"/%u") // the local file that migrate left
	localSecret := u.secret                    // its token, no longer the directory's
	f.enrollDir(t, u)
	conf := f.d.hostConfLines(t, "local-error", []string{"uri " + f.d.ldaps, "base ou=people," + ldapSuffix, "ca_file " + f.d.ca,
		"cert_file " + filepath.Join(f.d.certs, "host-a.pem"), "key_file " + filepath.Join(f.d.certs, "host-a.key"), "timeout 2",
		"cache_dir " + filepath.Join(f.d.dir, "cache-local-error")})
	// The checker's own errors, in the caller's network namespace: an
	// agent runs in its own and never sees them (agent=off here; the
	// other directory tests run through the agent too).
	fallback := service(t, module("required", "directory="+conf, "fallback=local", "secret="+store+"/%u", "agent=off"))

	// The attacker: the namespace's two ephemeral ports, bound.
	if err := os.WriteFile("/proc/sys/net/ipv4/ip_local_port_range", []byte("40000 40001"), 0o644); err != nil {
		t.Fatalf("narrowing the ephemeral range in the test's namespace: %v", err)
	}
	var taken []net.Listener
	for _, port := range []int{40000, 40001} {
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		taken = append(taken, l)
	}
	// libpam is called on this thread, so that the checker it starts is in
	// the namespace (authenticate would run it on another thread).
	here := func(code string) error {
		tx, err := pam.StartConfDir("pamtotp-test", u.name, &conv{answers: []string{code}}, fallback)
		if err != nil {
			return err
		}
		defer tx.End()
		return tx.Authenticate(0)
	}
	m := syslogs.mark()
	if err := here(code(t, localSecret, 0)); err == nil {
		t.Fatal("with every ephemeral port taken, fallback=local let the local enrollment in")
	}
	expectLog(t, m, `user=`+u.name+` .*outcome=fail reason=".*this host cannot connect \(not the server's doing\).*cannot assign requested address`, "fallback=local store")
	if marks, _ := filepath.Glob(filepath.Join(f.d.dir, "cache-local-error", "down-*")); len(marks) != 0 {
		t.Fatalf("a local error marked the server down: %v", marks)
	}
	// The server's own silence is what break-glass is for.
	for _, l := range taken {
		l.Close()
	}
	f.d.stop(t)
	m = syslogs.mark()
	if err := here(code(t, localSecret, 1)); err != nil {
		t.Fatalf("with slapd stopped, the local enrollment under fallback=local: %v", err)
	}
	expectLog(t, m, `user=`+u.name+` .*fallback=local .*outcome=ok`)
}

// TestDirectoryTagsAndEnumeration: a value of pam_totp's attributes with
// options (pamTOTPSecret;lang-x, next to the real secret, which gets
// around SINGLE-VALUE) makes the login fail closed, naming it; and neither
// an anonymous client nor a user can list who is enrolled, while a host can.
func TestDirectoryTagsAndEnumeration(t *testing.T) {
	f := newFleet(t)
	u, v := newUser(t), newUser(t)
	f.enrollDir(t, u)
	f.enrollDir(t, v)
	list := func(args ...string) string {
		cmd := exec.Command("ldapsearch", append(append([]string{"-LLL", "-H", f.d.ldaps}, args...), "-b", ldapSuffix, "(objectClass=pamTOTPUser)", "1.1")...)
		cmd.Env = append(os.Environ(), "LDAPTLS_CACERT="+f.d.ca, "LDAPTLS_REQCERT=demand", "LDAPCONF=/dev/null", "LDAPRC=/dev/null",
			"LDAPTLS_CERT="+filepath.Join(f.d.certs, "host-a.pem"), "LDAPTLS_KEY="+filepath.Join(f.d.certs, "host-a.key"))
		out, _ := cmd.CombinedOutput()
		return string(out)
	}
	if out := list("-x"); strings.Contains(out, "dn: ") {
		t.Fatalf("an anonymous client lists who is enrolled:\n%s", out)
	}
	if out := list("-x", "-D", userDN(v), "-w", v.password); strings.Contains(out, "dn: ") {
		t.Fatalf("a user lists who is enrolled:\n%s", out)
	}
	if out := list("-Y", "EXTERNAL"); !strings.Contains(out, "dn: "+userDN(u)) {
		t.Fatalf("a host does not find the enrolled users:\n%s", out)
	}

	tagged := fmt.Sprintf("dn: %s\nchangetype: modify\nadd: pamTOTPSecret;lang-x\npamTOTPSecret;lang-x: # pam_totp secret file\n", userDN(u))
	cmd := exec.Command("ldapmodify", "-Y", "EXTERNAL", "-H", f.d.ldaps)
	cmd.Env = append(os.Environ(), "LDAPTLS_CACERT="+f.d.ca, "LDAPTLS_REQCERT=demand", "LDAPCONF=/dev/null", "LDAPRC=/dev/null",
		"LDAPTLS_CERT="+filepath.Join(f.d.certs, "host-a.pem"), "LDAPTLS_KEY="+filepath.Join(f.d.certs, "host-a.key"))
	cmd.Stdin = strings.NewReader(tagged)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Logf("the host's identity may not add a tagged secret (%v: %s); added as the directory's root", err, out)
		f.d.modify(t, tagged)
	} else {
		t.Logf("the host's identity added pamTOTPSecret;lang-x: the ACL cannot refuse it, the checker does")
	}
	m := syslogs.mark()
	if err := loginWith(t, f.svcB, u, code(t, u.secret, 0)); err == nil {
		t.Fatal("a login succeeded with a tagged secret in the entry")
	}
	expectLog(t, m, `user=`+u.name+` .*outcome=fail reason=".*it has pamTOTPSecret;lang-x, one of pam_totp's attributes with options: refused`)
	if err := loginWith(t, f.svcB, v, code(t, v.secret, 0)); err != nil {
		t.Fatalf("another user, whose entry has no tagged value: %v", err)
	}
}

// TestDirectorySilentServersBreakGlass: four servers that accept and then
// never answer (two providers and two replicas, all hung). Connecting has
// one deadline, the module's timeout= less room for fallback=local, so
// the break-glass token still gets in instead of the module killing the
// checker; a per-server timeout that cannot fit is refused, with its line.
func TestDirectorySilentServersBreakGlass(t *testing.T) {
	needRoot(t, "oathtool", "openssl")
	d := startSlapd(t) // for its CA and a host certificate
	var uris []string
	for range 4 {
		uris = append(uris, "ldaps://"+silentServer(t))
	}
	conf := func(name, timeout string) string {
		return d.hostConfLines(t, name, []string{"uri " + strings.Join(uris, " "), "base ou=people," + ldapSuffix, "ca_file " + d.ca,
			"cert_file " + filepath.Join(d.certs, "host-a.pem"), "key_file " + filepath.Join(d.certs, "host-a.key"), "timeout " + timeout})
	}
	store := storeFor(t)
	root := newUser(t) // stands in for root: the break-glass enrollment
	enroll(t, root, "--secret-file", store+"/%u")
	svc := service(t, module("required", "directory="+conf("silent", "3"), "fallback=local", "secret="+store+"/%u"))
	m := syslogs.mark()
	if err := loginWith(t, svc, root, code(t, root.secret, 0)); err != nil {
		t.Fatalf("break-glass with four silent servers: %v\n%s", err, strings.Join(syslogs.since(m), "\n"))
	}
	expectLog(t, m, `user=`+root.name+` .*fallback=local .*not tried: no time left.*outcome=ok`)

	tooLong := service(t, module("required", "directory="+conf("too-long", "9"), "fallback=local", "secret="+store+"/%u"))
	m = syslogs.mark()
	if err := loginWith(t, tooLong, root, code(t, root.secret, 1)); err == nil {
		t.Fatal("a directory timeout that cannot fit in the module's was accepted")
	}
	expectLog(t, m, `outcome=fail reason=".*timeout 9s does not fit in the module's timeout=`)
	// doctor says so from the configuration (a live server here, so that
	// doctor's own probe of each server is quick).
	live := d.hostConfLines(t, "too-long-doctor", []string{"uri " + d.ldaps, "base ou=people," + ldapSuffix, "ca_file " + d.ca,
		"cert_file " + filepath.Join(d.certs, "host-a.pem"), "key_file " + filepath.Join(d.certs, "host-a.key"), "timeout 9"})
	out, _ := doctorRun(t, map[string][]string{"sshd": {"auth requisite pam_unix.so", module("required", "directory="+live, "fallback=local", "secret="+store+"/%u")}}, "")
	if !strings.Contains(out, "the directory's timeout (9s) does not fit in the module's timeout=10") {
		t.Fatalf("doctor does not say that the timeout cannot fit:\n%s", out)
	}
}

// TestDirectoryEndlessEntries: a server that passes the TLS check (a
// compromised server, a rogue replica: it has a certificate of the fleet's
// CA) answers the search with entries without end. The checker keeps no
// more than it asked for: it abandons the search, and the login fails
// closed at once ("more than one entry"), not at the operation's time-out
// and not with the entries piled up in memory.
func TestDirectoryEndlessEntries(t *testing.T) {
	needRoot(t, "oathtool", "openssl")
	d := startSlapd(t)
	u := newUser(t)
	cert, err := tls.LoadX509KeyPair(filepath.Join(d.dir, "server.pem"), filepath.Join(d.dir, "server.key"))
	if err != nil {
		t.Fatal(err)
	}
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequestClientCert})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	sent, stopped := 0, false
	addr := acceptEach(t, l, func(c net.Conn) {
		hostileServer(c, u.name, func(n int) {
			mu.Lock()
			sent, stopped = sent+n, true
			mu.Unlock()
		})
	})
	conf := d.hostConfLines(t, "endless", []string{"uri ldaps://" + addr, "base ou=people," + ldapSuffix, "ca_file " + d.ca,
		"tls_server_name 127.0.0.1", "cert_file " + filepath.Join(d.certs, "host-a.pem"), "key_file " + filepath.Join(d.certs, "host-a.key"), "timeout 5"})
	svc := service(t, module("required", "directory="+conf))
	m := syslogs.mark()
	if err := loginWith(t, svc, u, "123456"); err == nil {
		t.Fatal("a login succeeded against a server that sends entries without end")
	}
	expectLog(t, m, `user=`+u.name+` .*outcome=fail reason=".*more than one entry`)
	// The server stops when told to (an abandon) or when the checker has
	// gone; it sends no more than the socket buffers hold meanwhile. A
	// checker that kept reading would have taken entries until the
	// operation's time-out (5 s), at loopback speed millions of them.
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n, done := sent, stopped
		mu.Unlock()
		if done {
			if n > 20000 { // 80 MB: more than any socket buffers hold
				t.Fatalf("the server sent %d entries before the checker stopped it", n)
			}
			t.Logf("the server sent %d entries before the checker stopped it", n)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the server was never stopped (%d entries sent)", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// hostileServer answers a bind with success and a search with entries
// without end, until the client abandons the search or goes; then it
// reports how many it sent.
func hostileServer(c net.Conn, name string, report func(sent int)) {
	defer c.Close()
	stop := make(chan bool, 1)
	reply := func(id int64, app ber.Tag, kids ...*ber.Packet) []byte {
		msg := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "")
		msg.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, id, ""))
		op := ber.Encode(ber.ClassApplication, ber.TypeConstructed, app, nil, "")
		for _, k := range kids {
			op.AppendChild(k)
		}
		msg.AppendChild(op)
		return msg.Bytes()
	}
	result := func() []*ber.Packet {
		return []*ber.Packet{ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagEnumerated, int64(0), ""),
			ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "", ""),
			ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "", "")}
	}
	var wmu sync.Mutex
	write := func(b []byte) error { wmu.Lock(); defer wmu.Unlock(); _, err := c.Write(b); return err }
	for {
		p, err := ber.ReadPacket(c)
		if err != nil || len(p.Children) < 2 {
			return
		}
		id, _ := p.Children[0].Value.(int64)
		switch p.Children[1].Tag {
		case 0: // bind
			write(reply(id, 1, result()...))
		case 16: // abandon
			stop <- true
		case 3: // search: entries until told to stop
			go func() {
				n := 0
				defer func() { report(n) }()
				for {
					select {
					case <-stop:
						return
					default:
					}
					attrs := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "")
					for _, a := range [][2]string{{"objectClass", "inetOrgPerson"}, {"uid", name}, {"description", strings.Repeat("x", 4000)}} {
						at := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "")
						at.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, a[0], ""))
						vals := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSet, nil, "")
						vals.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, a[1], ""))
						at.AppendChild(vals)
						attrs.AppendChild(at)
					}
					dn := ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, fmt.Sprintf("uid=%s,ou=people,dc=test", name), "")
					if write(reply(id, 4, dn, attrs)) != nil {
						return
					}
					n++
				}
			}()
		case 2: // unbind
			return
		}
	}
}

// silentServer is an address on 127.0.0.1 that accepts connections and
// reads them, and never answers: a hung server. Closed with the test.
func silentServer(t testing.TB) string {
	t.Helper()
	return acceptEach(t, loopback(t), func(c net.Conn) { io.Copy(io.Discard, c) })
}

// firstLoginsAtOnce runs u's first login through each service at the same
// moment, with enroll=login: exactly one may enroll (its login and its
// pam_setcred succeed). It returns that one's secret, as the QR code's
// URI showed it.
func firstLoginsAtOnce(t *testing.T, dirs []string, u *user) string {
	t.Helper()
	m := syslogs.mark()
	var wg sync.WaitGroup
	results := make([]error, len(dirs))
	secrets := make([]string, len(dirs))
	for i, dir := range dirs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e := &enrollConv{t: t, password: u.password}
			authErr, credErr := loginAndSetcred(t, dir, u.name, e, true)
			results[i] = errors.Join(authErr, credErr)
			if m := regexp.MustCompile(`otpauth://\S+[?&]secret=([A-Z2-7]+)`).FindStringSubmatch(strings.Join(e.infos, "\n")); m != nil {
				secrets[i] = m[1]
			}
		}()
	}
	wg.Wait()
	var winner string
	for i := range dirs {
		if results[i] == nil {
			if winner != "" {
				t.Fatalf("two first logins enrolled: %v", results)
			}
			winner = secrets[i]
		}
	}
	if winner == "" {
		t.Fatalf("no first login enrolled: %v\n%s", results, strings.Join(syslogs.since(m), "\n"))
	}
	return winner
}

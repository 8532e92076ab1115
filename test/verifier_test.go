// SPDX-License-Identifier: Apache-2.0

package test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/msteinert/pam/v2"
)

// TestVerifierTwoHosts: enrolled once, a user logs in through host A and
// host B, whose configurations name the verifiers and no directory: a
// code used on A is refused on B, through libpam, sshd and sudo. The
// verifier logs each decision with the host's name; the host logs which
// verifier decided.
func TestVerifierTwoHosts(t *testing.T) {
	f := newVerifierFleet(t, nil)
	u := newUser(t)
	f.enroll(t, u)
	waitForFreshStep(30, 10)
	m := syslogs.mark()
	if err := loginWith(t, f.svcA, u, code(t, u.secret, -1)); err != nil {
		t.Fatalf("host A: %v", err)
	}
	expectLog(t, m, `user=`+u.name+` service=pamtotp-test host=host-a .*store=.*outcome=ok`)
	expectLog(t, m, `user=`+u.name+` service=pamtotp-test outcome=ok reason="decided by the verifier 127.0.0.1:\d+"`)
	if err := loginWith(t, f.svcB, u, code(t, u.secret, -1)); err == nil {
		t.Fatal("the code used through host A was accepted through host B")
	}
	sshB := startSSHD(t, false, "auth required pam_unix.so nodelay", module("required", "directory="+f.confB))
	if out, err := sshB.login(u.name, u.password, code(t, u.secret, 0), kbdFirst); err != nil {
		t.Fatalf("ssh through host B with the next code: %v\n%s", err, out)
	}
	svc := "sudo-" + u.name
	writeEtc(t, "/etc/pam.d/"+svc, hostStack("directory="+f.confA), 0o644)
	writeEtc(t, "/etc/sudoers.d/"+u.name, fmt.Sprintf("Defaults:%s pam_service=%s, passwd_tries=1, !lecture\n%s ALL=(root) ALL\n", u.name, svc, u.name), 0o440)
	sudo := &host{name: "sudo", runner: u, victim: u, service: svc, success: "uid=0(root)", argv: []string{"sudo", "-k", "id"}}
	if sudo.attempt(t, nil, code(t, u.secret, 0), nil, 20*time.Second) {
		t.Fatal("sudo on A accepted the code used through sshd on B")
	}
	if !sudo.attempt(t, nil, code(t, u.secret, 1), nil, 20*time.Second) {
		t.Fatalf("sudo on A refused a fresh code; it showed %q", sudo.shown)
	}
	if got := f.v1.scrape(t); !regexp.MustCompile(`(?m)^pam_totp_verifier_decisions_total\{outcome="ok"\} [1-9]`).MatchString(got) ||
		!strings.Contains(got, "pam_totp_verifier_decision_seconds_count") {
		t.Fatalf("verifier 1's metrics count no success:\n%s", got)
	}
	if n := metric(t, f.v1, "pam_totp_verifier_locked_users"); n != 0 {
		t.Errorf("verifier 1 counts %d locked users, want 0", n)
	}
}

// TestVerifierOneCodeFiftyLogins: one code, 50 logins at once through two
// hosts and two verifiers in front of a mirror pair: exactly one gets in.
func TestVerifierOneCodeFiftyLogins(t *testing.T) {
	f := newVerifierFleet(t, nil)
	u := newUser(t)
	f.enroll(t, u)
	waitForFreshStep(30, 10)
	m := syslogs.mark()
	if n := atOnce(t, []string{f.svcA, f.svcB}, u, code(t, u.secret, 0), 50); n != 1 {
		t.Fatalf("%d of 50 logins with one code got in, want exactly 1", n)
	}
	throughRunAgent(t, m)
}

// TestVerifierPolicyIsTheVerifiers: what decides how hard a code is to
// guess (deny, window) is the verifier's, whatever a host's module line
// says: root on a host cannot widen it for the fleet.
func TestVerifierPolicyIsTheVerifiers(t *testing.T) {
	f := newVerifierFleet(t, []string{"options deny=3 unlock_time=600"}, "deny=0", "window=10")
	u := newUser(t)
	f.enroll(t, u)
	waitForFreshStep(30, 10)
	// A token used once has the window of window= (the first use has a
	// wider one, initial_window, to learn the drift).
	if err := loginWith(t, f.svcA, u, code(t, u.secret, 0)); err != nil {
		t.Fatalf("the first login: %v", err)
	}
	if err := loginWith(t, f.svcA, u, code(t, u.secret, 4)); err == nil {
		t.Fatal("a code 4 steps ahead was accepted: the host's window=10 was taken")
	}
	for range 2 { // three wrong codes in all
		loginWith(t, f.svcB, u, wrongCode(t, u))
	}
	m := syslogs.mark()
	if err := loginWith(t, f.svcA, u, code(t, u.secret, 1)); err == nil {
		t.Fatal("a right code got in after 3 wrong ones with the verifier's deny=3: the host's deny=0 was taken")
	}
	expectLog(t, m, `user=`+u.name+` service=pamtotp-test host=host-a .*outcome=fail reason="?locked`)

	// The locked-users gauge counts the user, from the state...
	if n := metric(t, f.v1, "pam_totp_verifier_locked_users"); n != 1 {
		t.Errorf("verifier 1 counts %d locked users, want 1", n)
	}
	// ...and from the lock record alone, as after a healing that kept
	// the other side's state: verifier 2 has not counted yet.
	p := f.pair
	p.sameState(t, u)
	state := stateOn(p.s1, u)
	unlocked := regexp.MustCompile(`(?m)^locked-until \d+\n`).ReplaceAllString(state, "")
	if unlocked == state {
		t.Fatalf("the state holds no lock:\n%s", state)
	}
	p.s1.modify(t, fmt.Sprintf("dn: %s\nchangetype: modify\nreplace: pamTOTPState\npamTOTPState:: %s\n", userDN(u),
		base64.StdEncoding.EncodeToString([]byte(unlocked))))
	p.waitFor(t, "the state without its lock on server 2", func() bool { return !strings.Contains(stateOn(p.s2, u), "locked-until") })
	if n := metric(t, f.v2, "pam_totp_verifier_locked_users"); n != 1 {
		t.Errorf("verifier 2 counts %d locked users from the lock record, want 1", n)
	}
}

// TestVerifierHostSeesNothing: with the verifiers' ACL, a host's own
// certificate reads, compares and changes nothing of pam_totp's, and
// cannot tell who is enrolled; the verifier's identity can do its work.
func TestVerifierHostSeesNothing(t *testing.T) {
	p := startMirrorPairACL(t, "pam-totp-acl-verifier.conf")
	u := newUser(t)
	p.enroll(t, u)
	v := startVerifier(t, p.s1, p.s1, "verifier-1")
	conf := verifierHostConf(t, p.s1, "host-a", v)
	svc := service(t, module("required", "directory="+conf))
	if err := loginWith(t, svc, u, code(t, u.secret, 0)); err != nil {
		t.Fatalf("a login through the verifier: %v", err)
	}
	dn := userDN(u)
	if n := len(p.s1.attr(t, u, "pamTOTPState")); n != 1 {
		t.Fatalf("the login left %d states, want 1", n)
	}
	leaks := []string{"pamTOTPSecret", "pamTOTPState", "pamTOTPPending", "pamTOTPUser", "pamTOTPRecord", "cn=ok-"}
	for _, search := range []struct {
		args  []string
		leaks []string
	}{
		// The user's entry is there for sssd; nothing of pam_totp's in it.
		{[]string{"-b", dn, "-s", "base", "(objectClass=*)", "pamTOTPSecret", "pamTOTPState", "pamTOTPPending", "objectClass"}, leaks},
		{[]string{"-b", dn, "-s", "base", "(objectClass=*)", "+", "*"}, leaks},
		// Whether a filter on them finds the user tells who is enrolled.
		{[]string{"-b", "ou=people," + ldapSuffix, "(objectClass=pamTOTPUser)", "dn"}, append(leaks, "dn: "+dn)},
		{[]string{"-b", "ou=people," + ldapSuffix, "(pamTOTPSecret=*)", "dn"}, append(leaks, "dn: "+dn)},
		{[]string{"-b", "ou=people," + ldapSuffix, "(pamTOTPState=*)", "dn"}, append(leaks, "dn: "+dn)},
		{[]string{"-b", dn, "-s", "one", "(objectClass=*)", "*"}, append(leaks, "dn: cn=")},
	} {
		out, _ := p.s1.asHost("host-a", "", "ldapsearch", append([]string{"-LLL"}, search.args...)...)
		for _, leak := range search.leaks {
			if strings.Contains(out, leak) {
				t.Errorf("host A's ldapsearch %v shows %q:\n%s", search.args, leak, out)
			}
		}
	}
	if out, err := p.s1.asHost("host-a", "", "ldapcompare", dn, "objectClass:pamTOTPUser"); err == nil || strings.Contains(out, "TRUE") {
		t.Errorf("host A can compare the enrollment class: %v\n%s", err, out)
	}
	change := fmt.Sprintf("dn: %s\nchangetype: modify\nreplace: pamTOTPState\npamTOTPState: x\n", dn)
	if out, err := p.s1.asHost("host-a", change, "ldapmodify"); err == nil {
		t.Errorf("host A replaced the state:\n%s", out)
	}
	record := fmt.Sprintf("dn: cn=fail-1-1,%s\nobjectClass: pamTOTPRecord\ncn: fail-1-1\npamTOTPRecordData: x\n", dn)
	if out, err := p.s1.asHost("host-a", record, "ldapadd"); err == nil {
		t.Errorf("host A added a record:\n%s", out)
	}
	// The verifier's identity reads the secret: the ACL gives it the
	// hosts' old rights.
	if out, err := p.s1.asHost("verifier-1", "", "ldapsearch", "-LLL", "-b", dn, "-s", "base", "(objectClass=*)", "pamTOTPSecret"); err != nil || !strings.Contains(out, "pamTOTPSecret") {
		t.Errorf("the verifier's identity cannot read the secret: %v\n%s", err, out)
	}
}

// TestVerifierRefusesHosts: a certificate from another CA, an expired
// one, and a host outside the hosts group are refused, and the verifier
// logs why; the login fails closed and fast.
func TestVerifierRefusesHosts(t *testing.T) {
	p := startMirrorPairACL(t, "pam-totp-acl-verifier.conf")
	u := newUser(t)
	p.enroll(t, u)
	v := startVerifier(t, p.s1, p.s1, "verifier-1")
	other := startSlapd(t) // only for its CA, of which host-a's certificate here is
	expiredCert(t, p.s1, "expired-a", "host-a")
	p.s1.issue(t, "spaced", "/O=pam-totp test/CN=host a", "")
	cases := []struct{ name, cert, key, why string }{
		{"other CA", filepath.Join(other.certs, "host-a.pem"), filepath.Join(other.certs, "host-a.key"), `refused: TLS`},
		{"expired", filepath.Join(p.s1.certs, "expired-a.pem"), filepath.Join(p.s1.certs, "expired-a.key"), `refused: TLS`},
		{"not in the group", filepath.Join(p.s1.certs, "host-c.pem"), filepath.Join(p.s1.certs, "host-c.key"), `refused: host host-c .* is not a member of cn=pam-totp-hosts`},
		{"not a host name", filepath.Join(p.s1.certs, "spaced.pem"), filepath.Join(p.s1.certs, "spaced.key"), `refused: the host's certificate names it "host a": want a host name`},
	}
	before := metric(t, v, "pam_totp_verifier_refused_connections_total")
	for _, c := range cases {
		t.Run(strings.ReplaceAll(c.name, " ", "-"), func(t *testing.T) {
			conf := verifierHostConfWith(t, p.s1, "h", c.cert, c.key, v)
			svc := service(t, module("required", "directory="+conf))
			m := syslogs.mark()
			failsWithinTimeout(t, svc, u)
			expectLog(t, m, `pam-totp-verifier: 127\.0\.0\.1:\d+: `+c.why)
			expectLog(t, m, `user=`+u.name+` service=pamtotp-test outcome=fail reason=".*verifier 127\.0\.0\.1:\d+`)
		})
	}
	if n := metric(t, v, "pam_totp_verifier_refused_connections_total"); n != before+len(cases) {
		t.Errorf("the metrics count %d refusals, want %d", n, before+len(cases))
	}
}

// expiredCert writes name.pem and name.key into s's certificates: a
// certificate of s's CA for the host cn that expired in 2020.
func expiredCert(t *testing.T, s *slapd, name, cn string) {
	t.Helper()
	issuedCert(t, s, name, cn, time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2020, 1, 2, 0, 0, 0, 0, time.UTC))
}

// issuedCert writes name.pem and name.key into s's certificates: a
// certificate of s's CA for the host cn, valid from notBefore until
// notAfter.
func issuedCert(t *testing.T, s *slapd, name, cn string, notBefore, notAfter time.Time) {
	t.Helper()
	caCert, err := tls.LoadX509KeyPair(s.ca, filepath.Join(s.dir, "ca.key"))
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caCert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:   pkix.Name{Organization: []string{"pam-totp test"}, CommonName: cn},
		NotBefore: notBefore, NotAfter: notAfter,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caCert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(s.certs, name+".pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(filepath.Join(s.certs, name+".key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600)
}

// metric is the value of the metric named so in v's endpoint.
func metric(t *testing.T, v *verifierProc, name string) int {
	t.Helper()
	out := v.scrape(t)
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\d+)$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no %s in:\n%s", name, out)
	}
	return atoi(m[1])
}

// TestVerifierKilledDuringLogin: the verifier is killed while the user
// sits at the prompt. That login fails closed (the host never decides on
// its own); the next one goes to the other verifier, and the code typed
// into the dead one, never compared, still works once.
func TestVerifierKilledDuringLogin(t *testing.T) {
	f := newVerifierFleet(t, nil)
	u := newUser(t)
	f.enroll(t, u)
	waitForFreshStep(30, 10)
	m := syslogs.mark()
	a := &atPrompt{answer: code(t, u.secret, 0), before: func() { f.v1.kill() }}
	if err := authenticateFrom(t, f.svcA, u.name, a, nil); err == nil {
		t.Fatal("a login whose verifier was killed at the prompt got in")
	}
	expectLog(t, m, `user=`+u.name+` service=pamtotp-test outcome=fail reason="verifier `+regexp.QuoteMeta(f.v1.addr)+`: .*fails closed`)
	m = syslogs.mark()
	if err := loginWith(t, f.svcB, u, code(t, u.secret, 0)); err != nil {
		t.Fatalf("the next login, with verifier 1 dead: %v", err)
	}
	expectLog(t, m, `user=`+u.name+` service=pamtotp-test outcome=ok reason="decided by the verifier `+regexp.QuoteMeta(f.v2.addr)+`"`)
	if err := loginWith(t, f.svcA, u, code(t, u.secret, 0)); err == nil {
		t.Fatal("the code was accepted twice")
	}
}

// TestVerifierBothDown: with both verifiers down, a login fails closed
// within the module's timeout, and root's local break-glass token works
// with fallback=local.
func TestVerifierBothDown(t *testing.T) {
	f := newVerifierFleet(t, nil)
	u := newUser(t)
	f.enroll(t, u)
	store := storeFor(t)
	root := newUser(t) // stands in for root: the break-glass enrollment
	enroll(t, root, "--secret-file", store+"/%u")
	f.v1.kill()
	f.v2.kill()
	svc := service(t, module("required", "directory="+f.confA, "fallback=local", "secret="+store+"/%u"))
	m := syslogs.mark()
	failsWithinTimeout(t, svc, u)
	expectLog(t, m, `user=`+u.name+` service=pamtotp-test outcome=fail reason="the directory cannot be reached: no verifier answered`)
	m = syslogs.mark()
	if err := loginWith(t, svc, root, code(t, root.secret, 0)); err != nil {
		t.Fatalf("break-glass with both verifiers down: %v", err)
	}
	expectLog(t, m, `user=`+root.name+` .*fallback=local .*no verifier answered.*outcome=ok`)
}

// TestVerifierEnrollAtLogin: with enroll=login in the verifier's policy,
// two first logins at once through two hosts make one enrollment; the
// secret reaches the user's host at that login only, and no host's
// identity can read it afterwards.
func TestVerifierEnrollAtLogin(t *testing.T) {
	f := newVerifierFleet(t, []string{"options enroll=login"})
	u := newUser(t)
	waitForFreshStep(30, 8)
	f.pair.s1.addUser(t, u)
	f.pair.waitFor(t, "the user on server 2", func() bool { _, err := f.pair.s2.values(u, "uid"); return err == nil })
	stack := func(conf string) string {
		// The host's enroll=login has its module hand over the password's
		// presence; the verifier's decides whether anyone enrolls.
		return service(t, strings.Join([]string{"auth required pam_unix.so nodelay", module("required", "directory="+conf, "enroll=login")}, "\n"))
	}
	dirs := []string{stack(f.confA), stack(f.confB)}
	winner := firstLoginsAtOnce(t, dirs, u)
	if vals := f.pair.s1.attr(t, u, "pamTOTPSecret"); len(vals) != 1 {
		t.Fatalf("%d secrets in the entry, want 1", len(vals))
	}
	if err := loginWith(t, f.svcB, u, code(t, winner, 1)); err != nil {
		t.Fatalf("the enrollment's next code through host B: %v", err)
	}
	for _, host := range []string{"host-a", "host-b"} {
		out, _ := f.pair.s1.asHost(host, "", "ldapsearch", "-LLL", "-b", userDN(u), "-s", "base", "(objectClass=*)", "pamTOTPSecret", "pamTOTPPending")
		if strings.Contains(out, "pamTOTP") {
			t.Errorf("%s reads the enrollment:\n%s", host, out)
		}
	}
}

// TestVerifierMigration: a fleet on directory= moves to verifiers with a
// user locked and another mid-replay window: the ACL and the hosts'
// configuration change, the data do not. The lock holds, the used code
// stays used, and the old way in is closed to hosts.
func TestVerifierMigration(t *testing.T) {
	p := startMirrorPair(t)
	locked, used := newUser(t), newUser(t)
	p.enroll(t, locked)
	p.enroll(t, used)
	direct := service(t, module("required", "directory="+p.hostConf(t, "a", p.s1.ldaps, p.s2.ldaps), "deny=3", "unlock_time=600"))
	waitForFreshStep(30, 10)
	if err := loginWith(t, direct, used, code(t, used.secret, 0)); err != nil {
		t.Fatalf("before the move: %v", err)
	}
	for range 3 {
		loginWith(t, direct, locked, wrongCode(t, locked))
	}
	p.sameState(t, locked)
	p.sameState(t, used)

	// The move, as fleet.md gives it: the ACL, then the hosts.
	p.s1.reconfigure(t, "pam-totp-acl-verifier.conf")
	p.s2.reconfigure(t, "pam-totp-acl-verifier.conf")
	v1 := startVerifier(t, p.s1, p.s1, "verifier-1", "options deny=3 unlock_time=600")
	v2 := startVerifier(t, p.s2, p.s1, "verifier-2", "options deny=3 unlock_time=600")
	svc := service(t, module("required", "directory="+verifierHostConf(t, p.s1, "host-a", v1, v2)))

	m := syslogs.mark()
	if err := loginWith(t, svc, locked, code(t, locked.secret, 0)); err == nil {
		t.Fatal("the lock did not survive the move")
	}
	expectLog(t, m, `user=`+locked.name+` service=pamtotp-test host=host-a .*outcome=fail reason="?locked`)
	if err := loginWith(t, svc, used, code(t, used.secret, 0)); err == nil {
		t.Fatal("a code used before the move worked after it")
	}
	if err := loginWith(t, svc, used, code(t, used.secret, 1)); err != nil {
		t.Fatalf("the next code after the move: %v", err)
	}
	if err := loginWith(t, direct, used, code(t, used.secret, 2)); err == nil {
		t.Fatal("a host still decides on its own with directory= after the move")
	}
}

// TestVerifierHostRate: a host past host_rate is refused before any code
// is asked, and logged; another host is not.
func TestVerifierHostRate(t *testing.T) {
	f := newVerifierFleet(t, []string{"host_rate 3 3600"})
	u := newUser(t)
	f.enroll(t, u)
	for range 3 {
		loginWith(t, f.svcA, u, wrongCode(t, u))
	}
	m := syslogs.mark()
	c := &conv{answers: []string{code(t, u.secret, 0)}}
	if err := authenticate(t, f.svcA, u.name, c); err == nil {
		t.Fatal("host A's fourth login within its rate of 3 got in")
	}
	if len(c.prompts) != 0 {
		t.Fatalf("a login over the host's rate was asked for a code: %q", c.prompts)
	}
	expectLog(t, m, `user=`+u.name+` service=pamtotp-test host=host-a outcome=fail reason="host host-a is over its rate of 3 logins in 3600 s`)
	if err := loginWith(t, f.svcB, u, code(t, u.secret, 0)); err != nil {
		t.Fatalf("host B, within its own rate: %v", err)
	}
}

// TestVerifierForwardPass: with forward_pass on a host, the password and
// the code come in one answer. The verifier decides on the code alone and
// the host sets the password for pam_unix: a right password with a right
// code gets in, a wrong one does not, and a scratch code (8 digits) works
// the same way. A verifier of the test's own, which records what it
// receives, gets the codes and never a byte of the password.
func TestVerifierForwardPass(t *testing.T) {
	f := newVerifierFleet(t, nil)
	u := newUser(t)
	f.pair.enrollScratch(t, u, 1)
	scratch := u.scratch[0]
	svc := service(t, module("requisite", "directory="+f.confA, "forward_pass"), "auth required pam_unix.so use_first_pass nodelay")
	waitForFreshStep(30, 10)
	c := &conv{answers: []string{u.password + code(t, u.secret, 0)}}
	if err := authenticate(t, svc, u.name, c); err != nil {
		t.Fatalf("password+code: %v", err)
	}
	if len(c.prompts) != 1 || c.prompts[0] != "Password & verification code: " {
		t.Fatalf("forward_pass prompts %q", c.prompts)
	}
	if err := authenticate(t, svc, u.name, &conv{answers: []string{"wrong password" + code(t, u.secret, 1)}}); !errors.Is(err, pam.ErrAuth) {
		t.Fatalf("wrong password with a right code: %v, want ErrAuth", err)
	}
	if err := authenticate(t, svc, u.name, &conv{answers: []string{u.password + scratch}}); err != nil {
		t.Fatalf("password+scratch code: %v", err)
	}

	// What a verifier receives: the test's own, with verifier-1's
	// certificate, answering as a verifier would.
	fake := newRecordingVerifier(t, f.pair.s1)
	conf := verifierHostConfWith(t, f.pair.s1, "rec", filepath.Join(f.pair.s1.certs, "host-a.pem"), filepath.Join(f.pair.s1.certs, "host-a.key"), &verifierProc{addr: fake.addr})
	for _, opt := range []string{"forward_pass", "use_first_pass"} {
		stack := []string{module("requisite", "directory="+conf, opt), "auth required pam_unix.so use_first_pass nodelay"}
		if opt == "use_first_pass" {
			// pam_unix asks first, and keeps what was typed as PAM_AUTHTOK.
			stack = append([]string{"auth optional pam_unix.so nodelay"}, stack...)
		}
		secret := "s3cret-" + opt + "-4711"
		if err := authenticate(t, service(t, stack...), u.name, &conv{answers: []string{secret + "123456"}}); err == nil {
			t.Fatalf("%s: a login the verifier refused got in", opt)
		}
		got := fake.received()
		if strings.Contains(got, secret) || strings.Contains(got, "s3cret") {
			t.Fatalf("%s: the verifier received the password: %q", opt, got)
		}
		if !strings.Contains(got, "123456") {
			t.Fatalf("%s: the verifier did not receive the code: %q", opt, got)
		}
	}
}

// TestVerifierDoctor: on a host, doctor --directory asks each verifier
// over TLS with the host's certificate whether it takes the host and
// reads the user's entry, and says which does not; on the server,
// pam-totp-verifier --check checks the verifier's own way to the
// directory, as its user.
func TestVerifierDoctor(t *testing.T) {
	f := newVerifierFleet(t, nil)
	u := newUser(t)
	f.enroll(t, u)
	before := f.pair.s1.attr(t, u, "pamTOTPState")
	out, err := enrollCmd(t, "doctor", "--directory", f.confA, "--user", u.name)
	if err != nil || strings.Contains(out, "ERROR") || strings.Count(out, "it takes this host, and read "+u.name+"'s entry") != 2 {
		t.Fatalf("doctor on a sound host: %v\n%s", err, out)
	}
	if after := f.pair.s1.attr(t, u, "pamTOTPState"); !slices.Equal(before, after) {
		t.Fatalf("doctor's probe changed the state: %q -> %q", before, after)
	}
	outside := verifierHostConf(t, f.pair.s1, "host-c", f.v1)
	out, err = enrollCmd(t, "doctor", "--directory", outside, "--user", u.name)
	if exitCode(err) != 1 || !strings.Contains(out, "refuses this host: host host-c") || !strings.Contains(out, "no verifier took this host") {
		t.Fatalf("doctor with a host outside the group: exit %d\n%s", exitCode(err), out)
	}
	f.v2.kill()
	out, _ = enrollCmd(t, "doctor", "--directory", f.confA, "--user", u.name)
	if !strings.Contains(out, "verifier "+f.v2.addr) || !strings.Contains(out, "connection refused") {
		t.Fatalf("doctor does not say that verifier 2 is down:\n%s", out)
	}

	// On the server: doctor --verifier runs the verifier's own check, as
	// root, which becomes the verifier's user before it reads a file.
	check := func(v *verifierProc, args ...string) (string, error) {
		cmd := exec.Command(filepath.Join(libDir, "totp-enroll"), append([]string{"doctor", "--verifier", v.conf}, args...)...)
		cmd.Env = append(os.Environ(), "PATH="+libDir+":"+os.Getenv("PATH"))
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := check(f.v1, "--user", u.name); err != nil || !strings.Contains(out, "ok: "+u.name+"'s enrollment is read") || strings.Contains(out, "error:") {
		t.Fatalf("pam-totp-verifier --check: %v\n%s", err, out)
	}
	bare := startSlapdWith(t, "", false)
	v := verifierFiles(t, bare, bare, "verifier-1")
	if out, err := check(v); exitCode(err) != 1 || !strings.Contains(out, "error: ") || !strings.Contains(out, "schema") {
		t.Fatalf("pam-totp-verifier --check against a directory without pam_totp's schema: %v\n%s", err, out)
	}
}

// TestVerifierKeptConnection: a login on a connection the host's agent
// kept from an earlier login has the whole of the module's timeout= for
// connecting to the directory, counted from its own request, not from
// when the connection began to wait. (With timeout=4 the verifier has 2 s
// to connect; the connection waits 3 s between the logins.)
func TestVerifierKeptConnection(t *testing.T) {
	f := newVerifierFleet(t, []string{"options timeout=4"})
	a := startAgent(t)
	svc := service(t, module("required", "directory="+f.confA, "agent="+a.socket))
	u := newUser(t)
	f.enroll(t, u)
	waitForFreshStep(30, 10)
	if err := loginWith(t, svc, u, code(t, u.secret, 0)); err != nil {
		t.Fatalf("the first login: %v", err)
	}
	time.Sleep(3 * time.Second)
	m := syslogs.mark()
	if err := loginWith(t, svc, u, code(t, u.secret, 1)); err != nil {
		t.Fatalf("the login on the kept connection: %v\n%s", err, strings.Join(syslogs.since(m), "\n"))
	}
	expectLog(t, m, `user=`+u.name+` service=pamtotp-test host=host-a .*outcome=ok`)
}

// TestVerifierKilledAfterCharge: the verifier is killed once its charge
// of the attempt is in the directory, before it saves the decision. The
// login fails closed on the host, and the attempt stays counted.
func TestVerifierKilledAfterCharge(t *testing.T) {
	p := startMirrorPairACL(t, "pam-totp-acl-verifier.conf")
	u := newUser(t)
	p.enroll(t, u)
	charged := func() bool {
		st := p.s1.attr(t, u, "pamTOTPState")
		return len(st) == 1 && strings.Contains(st[0], "failures 1")
	}
	if charged() {
		t.Fatal("the state counts a failure before the test")
	}
	v := verifierFiles(t, p.s1, p.s1, "verifier-1")
	// Every chunk the verifier sends slapd waits until the test has looked
	// at the state; once the charge is there, the verifier is killed.
	var once sync.Once
	v.throughGate(t, p.s1, proxyAll(t, strings.TrimPrefix(p.s1.ldaps, "ldaps://"), func() bool {
		if charged() {
			once.Do(v.kill)
			return false
		}
		return true
	}))
	v.start(t)
	t.Cleanup(v.stop)
	svc := service(t, module("required", "directory="+verifierHostConf(t, p.s1, "host-a", v)))
	m := syslogs.mark()
	if err := loginWith(t, svc, u, code(t, u.secret, 0)); err == nil {
		t.Fatal("the login got in though its verifier was killed before it saved")
	}
	expectLog(t, m, `user=`+u.name+` service=pamtotp-test outcome=fail reason="verifier .*fails closed`)
	if !charged() {
		t.Fatalf("after the kill the state is %q: the attempt was not counted", p.s1.attr(t, u, "pamTOTPState"))
	}
}

// proxyAll proxies every connection to target, asking fromClient before
// it passes on each chunk from a client; a false closes that connection.
func proxyAll(t *testing.T, target string, fromClient func() bool) string {
	t.Helper()
	return acceptEach(t, loopback(t), func(c net.Conn) {
		defer c.Close()
		s, err := net.Dial("tcp", target)
		if err != nil {
			return
		}
		defer s.Close()
		go func() { io.Copy(c, s); c.Close() }()
		buf := make([]byte, 64<<10)
		for {
			n, err := c.Read(buf)
			if n > 0 && (!fromClient() || !writeAll(s, buf[:n])) {
				return
			}
			if err != nil {
				return
			}
		}
	})
}

func writeAll(w io.Writer, p []byte) bool {
	_, err := w.Write(p)
	return err == nil
}

// failsWithinTimeout: u's login with a right code fails, and within the
// module's timeout= (10 s): closed, not hung.
func failsWithinTimeout(t *testing.T, svc string, u *user) {
	t.Helper()
	start := time.Now()
	if err := loginWith(t, svc, u, code(t, u.secret, 0)); err == nil {
		t.Fatal("the login got in")
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("the login took %s, past the module's timeout", d)
	}
}

// TestVerifierTryFirstPassAsLocal: try_first_pass decides through a
// verifier exactly as with a local enrollment. A code in the password
// that opens sets the password part for the modules after; one that does
// not leaves PAM_AUTHTOK as typed, also when the code then typed at the
// prompt opens (pam_unix after it then refuses, as it does locally).
func TestVerifierTryFirstPassAsLocal(t *testing.T) {
	f := newVerifierFleet(t, nil)
	u := newUser(t)
	f.enroll(t, u)
	store := storeFor(t)
	w := newUser(t)
	enroll(t, w, "--secret-file", store+"/%u")
	stack := func(where string) string {
		return service(t, "auth optional pam_unix.so nodelay", module("requisite", where, "try_first_pass"), "auth required pam_unix.so use_first_pass nodelay")
	}
	for _, c := range []struct {
		who   *user
		svc   string
		where string
	}{{u, stack("directory=" + f.confA), "verifier"}, {w, stack("secret=" + store + "/%u"), "local"}} {
		waitForFreshStep(30, 10)
		if err := authenticate(t, c.svc, c.who.name, &conv{answers: []string{c.who.password + code(t, c.who.secret, 0)}}); err != nil {
			t.Fatalf("%s: password and a right code in one answer: %v", c.where, err)
		}
		err := authenticate(t, c.svc, c.who.name, &conv{answers: []string{c.who.password + wrongCode(t, c.who), code(t, c.who.secret, 1)}})
		if !errors.Is(err, pam.ErrAuth) {
			t.Fatalf("%s: a wrong code in the password, then a right one at the prompt: %v; want pam_unix to refuse the password as typed", c.where, err)
		}
	}
}

// TestVerifierSlowUser: a user who takes longer to answer than the
// module's timeout= (the wait for the verifier's frames, which does not
// count the user's time) gets in, with forward_pass too.
func TestVerifierSlowUser(t *testing.T) {
	f := newVerifierFleet(t, nil)
	u := newUser(t)
	f.enroll(t, u)
	waitForFreshStep(30, 12)
	for i, opts := range [][]string{{"timeout=3"}, {"timeout=3", "forward_pass"}} {
		svc := service(t, module("requisite", append([]string{"directory=" + f.confA}, opts...)...), "auth optional pam_unix.so use_first_pass nodelay")
		answer := code(t, u.secret, i) // the first login used this step's
		if len(opts) > 1 {
			answer = u.password + answer
		}
		slow := &atPrompt{answer: answer, before: func() { time.Sleep(4 * time.Second) }}
		m := syslogs.mark()
		if err := authenticateFrom(t, svc, u.name, slow, nil); err != nil {
			t.Fatalf("%v: an answer after 4 s, past timeout=3: %v\n%s", opts, err, strings.Join(syslogs.since(m), "\n"))
		}
	}
}

// TestVerifierOverLDAPI: the verifier beside slapd as fleet.md sets it
// up, over the local socket with the identity slapd gives its user (no
// certificate of its own for the directory), in the verifiers' group: it
// decides, a code works once, and its --check is clean.
func TestVerifierOverLDAPI(t *testing.T) {
	d := startSlapdOpts(t, slapdOpts{ldapi: true, acl: "pam-totp-acl-verifier.conf"})
	v := verifierFiles(t, d, d, "verifier-1")
	v.overLDAPI(t, d)
	d.modify(t, fmt.Sprintf("dn: cn=pam-totp-verifiers,ou=groups,%s\nchangetype: modify\nreplace: member\nmember: %s\n", ldapSuffix, peercredDN()))
	v.start(t)
	t.Cleanup(v.stop)
	u := newUser(t)
	d.addUser(t, u)
	enrollInto(t, d, u)
	svc := service(t, module("required", "directory="+verifierHostConf(t, d, "host-a", v)))
	waitForFreshStep(30, 10)
	m := syslogs.mark()
	if err := loginWith(t, svc, u, code(t, u.secret, 0)); err != nil {
		t.Fatalf("a login through the verifier over ldapi: %v\n%s", err, strings.Join(syslogs.since(m), "\n"))
	}
	expectLog(t, m, `user=`+u.name+` service=pamtotp-test host=host-a store="ldapi://.*outcome=ok`)
	if err := loginWith(t, svc, u, code(t, u.secret, 0)); err == nil {
		t.Fatal("the code worked twice")
	}
	out, err := exec.Command(filepath.Join(libDir, "pam-totp-verifier"), "--check", "--config", v.conf, "--user", u.name).CombinedOutput()
	if err != nil || strings.Contains(string(out), "error:") || !strings.Contains(string(out), "bound as "+peercredDN()+", member of cn=pam-totp-verifiers") {
		t.Fatalf("pam-totp-verifier --check over ldapi: %v\n%s", err, out)
	}
}

// TestVerifierRenewedCertificate: a verifier's certificate renewed in
// place (the new key and certificate renamed over the old) is the one the
// next host connection meets, with no restart; logins go on.
func TestVerifierRenewedCertificate(t *testing.T) {
	d := startSlapdOpts(t, slapdOpts{acl: "pam-totp-acl-verifier.conf"})
	v := startVerifier(t, d, d, "verifier-1")
	u := newUser(t)
	d.addUser(t, u)
	enrollInto(t, d, u)
	served := func() string {
		t.Helper()
		cert, err := tls.LoadX509KeyPair(filepath.Join(d.certs, "host-a.pem"), filepath.Join(d.certs, "host-a.key"))
		if err != nil {
			t.Fatal(err)
		}
		c, err := tls.Dial("tcp", v.addr, &tls.Config{Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	before := served()
	d.issue(t, "verifier-1-renewed", "/O=pam-totp test/CN=verifier-1", "subjectAltName=IP:127.0.0.1")
	dir := filepath.Dir(v.conf)
	for _, f := range []struct{ from, to string }{{"verifier-1-renewed.key", "verifier.key"}, {"verifier-1-renewed.pem", "verifier.pem"}} {
		data, err := os.ReadFile(filepath.Join(d.certs, f.from))
		if err != nil {
			t.Fatal(err)
		}
		tmp := filepath.Join(dir, "."+f.to)
		if err := os.WriteFile(tmp, data, 0o640); err != nil {
			t.Fatal(err)
		}
		os.Chown(tmp, 0, verifierGID)
		if err := os.Rename(tmp, filepath.Join(dir, f.to)); err != nil {
			t.Fatal(err)
		}
	}
	if after := served(); after == before {
		t.Fatalf("after the renewal the verifier still shows the certificate %s", before)
	}
	svc := service(t, module("required", "directory="+verifierHostConf(t, d, "host-a", v)))
	if err := loginWith(t, svc, u, code(t, u.secret, 0)); err != nil {
		t.Fatalf("a login after the renewal: %v", err)
	}
}

// enrollInto enrolls u in the directory of d, as the admin.
func enrollInto(t *testing.T, d *slapd, u *user) {
	t.Helper()
	u.secret = newSecret(t)
	if out, err := enrollCmd(t, "--user", u.name, "--secret", u.secret, "--no-confirm", "--qr", "none", "--scratch-codes", "0",
		"--directory", d.hostConf(t, "host-b"), "--bind-dn", ldapAdmin, "--bind-password-file", d.adminPass); err != nil {
		t.Fatalf("totp-enroll --directory: %v\n%s", err, out)
	}
}

// TestVerifierHandshakeFlood: someone on the network opens connections
// and never sends a certificate. They hold no slot of max (4 here), and
// at most 128 from one address are let into the handshake; a host still
// logs in meanwhile.
func TestVerifierHandshakeFlood(t *testing.T) {
	d := startSlapdOpts(t, slapdOpts{acl: "pam-totp-acl-verifier.conf"})
	v := startVerifier(t, d, d, "verifier-1", "max 4")
	u := newUser(t)
	d.addUser(t, u)
	enrollInto(t, d, u)
	from := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
	flood := func(n int) {
		for i := range n {
			c, err := from.Dial("tcp", v.addr)
			if err != nil {
				t.Fatalf("connection %d: %v", i, err)
			}
			t.Cleanup(func() { c.Close() })
		}
	}
	flood(8) // twice max
	m := syslogs.mark()
	svc := service(t, module("required", "directory="+verifierHostConf(t, d, "host-a", v)))
	if err := loginWith(t, svc, u, code(t, u.secret, 0)); err != nil {
		t.Fatalf("a host's login while 8 connections from elsewhere sit in their handshake: %v\n%s", err, strings.Join(syslogs.since(m), "\n"))
	}
	flood(121)
	expectLog(t, m, `pam-totp-verifier: 127\.0\.0\.2:\d+: refused: too many connections from it still in their TLS handshake`)
}

// TestVerifierReload: SIGHUP (systemctl reload) puts a changed
// verifier.conf in force from the next login, also on the connections
// hosts already hold (in the agent run, the agent's kept connection waits
// for its next login across the reload); one that does not check is
// refused with a line saying why, and the one in force goes on deciding.
func TestVerifierReload(t *testing.T) {
	f := newVerifierFleet(t, []string{"options deny=3 unlock_time=600"})
	u := newUser(t)
	f.enroll(t, u)
	conf, err := os.ReadFile(f.v1.conf)
	if err != nil {
		t.Fatal(err)
	}
	reload := func(text string) {
		t.Helper()
		if err := os.WriteFile(f.v1.conf, []byte(text), 0o640); err != nil {
			t.Fatal(err)
		}
		if err := f.v1.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	waitForFreshStep(30, 10)
	m := syslogs.mark()
	reload(strings.Replace(string(conf), "options deny=3 unlock_time=600", "options deny=1 bogus_option", 1))
	expectLog(t, m, `pam-totp-verifier: keeping the configuration in force: .*bogus_option`)
	if err := loginWith(t, f.svcA, u, wrongCode(t, u)); err == nil {
		t.Fatal("a wrong code got in")
	}
	if err := loginWith(t, f.svcA, u, code(t, u.secret, 0)); err != nil {
		t.Fatalf("with deny=3 in force, a right code after one wrong one: %v", err)
	}

	m = syslogs.mark()
	reload(strings.Replace(string(conf), "options deny=3 unlock_time=600", "options deny=1 unlock_time=600", 1) + "max 8\n")
	expectLog(t, m, `pam-totp-verifier: read `+regexp.QuoteMeta(f.v1.conf)+` again; max take a restart`)
	m = syslogs.mark()
	if err := loginWith(t, f.svcA, u, wrongCode(t, u)); err == nil {
		t.Fatal("a wrong code got in")
	}
	if err := loginWith(t, f.svcA, u, code(t, u.secret, 1)); err == nil {
		t.Fatal("a right code got in after one wrong one: the reloaded deny=1 is not in force")
	}
	expectLog(t, m, `user=`+u.name+` service=pamtotp-test host=host-a .*outcome=fail reason="?locked`)

	// A host taken out of the group is asked again at the reload, not a
	// minute later: its kept connection's next login is refused.
	f.pair.s1.modify(t, fmt.Sprintf("dn: cn=pam-totp-hosts,ou=groups,%s\nchangetype: modify\ndelete: member\nmember: cn=host-a,ou=hosts,%[1]s\n", ldapSuffix))
	m = syslogs.mark()
	reload(strings.Replace(string(conf), "options deny=3 unlock_time=600", "options deny=1 unlock_time=600", 1))
	expectLog(t, m, `pam-totp-verifier: read `+regexp.QuoteMeta(f.v1.conf)+` again$`)
	if err := loginWith(t, f.svcA, u, code(t, u.secret, 2)); err == nil {
		t.Fatal("host-a, out of the group, got a login in")
	}
	// On a kept connection (the agent run) the login's line says so; a
	// new connection (the exec'd checker) is refused at once.
	expectLog(t, m, `(host=host-a outcome=fail reason="|refused: )host host-a \(cn=host-a,ou=hosts,`+ldapSuffix+`\) is not a member of cn=pam-totp-hosts`)
}

// TestVerifierKeptConnectionTrust: an agent keeps its connection to a
// verifier for as long as it has logins to send, so the handshake is not
// the last check of the host's certificate. One that expires meanwhile,
// or a hosts' CA replaced on the verifier, ends the connection at its
// next login, which fails closed.
func TestVerifierKeptConnectionTrust(t *testing.T) {
	p := startMirrorPairACL(t, "pam-totp-acl-verifier.conf")
	u := newUser(t)
	p.enroll(t, u)
	v := startVerifier(t, p.s1, p.s1, "verifier-1")
	a := startAgent(t)
	svc := service(t, module("required", "directory="+verifierHostConf(t, p.s1, "host-a", v), "agent="+a.socket))
	waitForFreshStep(30, 10)
	start := time.Now()
	if err := loginWith(t, svc, u, code(t, u.secret, -1)); err != nil {
		t.Fatalf("a login through the agent and the verifier: %v", err)
	}
	took := time.Since(start)

	// A certificate that outlives a first login by a few of them.
	notAfter := time.Now().Add(max(2*time.Second, 5*took)).Truncate(time.Second).Add(time.Second)
	issuedCert(t, p.s1, "brief-a", "host-a", time.Now().Add(-time.Hour), notAfter)
	brief := service(t, module("required", "directory="+verifierHostConfWith(t, p.s1, "brief",
		filepath.Join(p.s1.certs, "brief-a.pem"), filepath.Join(p.s1.certs, "brief-a.key"), v), "agent="+a.socket))
	if err := loginWith(t, brief, u, code(t, u.secret, 0)); err != nil {
		t.Fatalf("a login with a certificate valid until %s: %v", notAfter.Format(time.TimeOnly), err)
	}
	if time.Now().After(notAfter) {
		t.Fatalf("the first login took until after %s: the machine is slower than the test measured", notAfter.Format(time.TimeOnly))
	}
	time.Sleep(time.Until(notAfter) + time.Second)
	m := syslogs.mark()
	if err := loginWith(t, brief, u, code(t, u.secret, 1)); err == nil {
		t.Fatal("a login over a connection whose host certificate has expired got in")
	}
	expectLog(t, m, `user=`+u.name+` service=pamtotp-test host=host-a outcome=fail reason="the host's certificate chain is no longer valid: \\"host-a\\" is valid from`)
	if err := loginWith(t, svc, u, code(t, u.secret, 1)); err != nil {
		t.Fatalf("host-a's own certificate, with the code the expired one could not use: %v", err)
	}

	// The hosts' CA replaced on the verifier (renamed into place): the
	// connection kept from the login above is no longer trusted.
	other := startSlapd(t) // only for its CA
	caFile := filepath.Join(filepath.Dir(v.conf), "ca.pem")
	data, err := os.ReadFile(other.ca)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(caFile+".new", data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(caFile+".new", caFile); err != nil {
		t.Fatal(err)
	}
	m = syslogs.mark()
	if err := loginWith(t, svc, u, wrongCode(t, u)); err == nil {
		t.Fatal("a wrong code got in")
	}
	expectLog(t, m, `user=`+u.name+` service=pamtotp-test host=host-a outcome=fail reason="the host's certificate is no longer trusted by ca_file`)
	for _, line := range syslogs.since(m) {
		if strings.Contains(line, "bad code") {
			t.Errorf("the verifier compared a code over a connection its CA no longer trusts: %s", line)
		}
	}
}

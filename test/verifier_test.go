// SPDX-License-Identifier: Apache-2.0

package test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
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
	cases := []struct{ name, cert, key, why string }{
		{"other CA", filepath.Join(other.certs, "host-a.pem"), filepath.Join(other.certs, "host-a.key"), `refused: TLS`},
		{"expired", filepath.Join(p.s1.certs, "expired-a.pem"), filepath.Join(p.s1.certs, "expired-a.key"), `refused: TLS`},
		{"not in the group", filepath.Join(p.s1.certs, "host-c.pem"), filepath.Join(p.s1.certs, "host-c.key"), `refused: host host-c .* is not a member of cn=pam-totp-hosts`},
	}
	before := metric(t, v, "pam_totp_verifier_refused_connections_total")
	for _, c := range cases {
		t.Run(strings.ReplaceAll(c.name, " ", "-"), func(t *testing.T) {
			conf := verifierHostConfWith(t, p.s1, "h", c.cert, c.key, v)
			svc := service(t, module("required", "directory="+conf))
			m := syslogs.mark()
			start := time.Now()
			if err := loginWith(t, svc, u, code(t, u.secret, 0)); err == nil {
				t.Fatal("the login got in")
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Fatalf("the refused login took %s, more than the module's timeout", d)
			}
			expectLog(t, m, `pam-totp-verifier: 127\.0\.0\.1:\d+: `+c.why)
			expectLog(t, m, `user=`+u.name+` service=pamtotp-test outcome=fail reason=".*verifier 127\.0\.0\.1:\d+`)
		})
	}
	if n := metric(t, v, "pam_totp_verifier_refused_connections_total"); n != before+3 {
		t.Errorf("the metrics count %d refusals, want %d", n, before+3)
	}
}

// expiredCert writes name.pem and name.key into s's certificates: a
// certificate of s's CA for the host cn that expired in 2020.
func expiredCert(t *testing.T, s *slapd, name, cn string) {
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
		NotBefore: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC), NotAfter: time.Date(2020, 1, 2, 0, 0, 0, 0, time.UTC),
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

// SPDX-License-Identifier: Apache-2.0

package test

import (
	"encoding/base64"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// docBlocks are the shell blocks of docs/fleet.md that carry a
// "<!-- test: NAME -->" line: what an admin runs, as they read it.
func docBlocks(t *testing.T) map[string]string {
	t.Helper()
	data, err := os.ReadFile("../docs/fleet.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := map[string]string{}
	for _, m := range regexp.MustCompile("(?s)<!-- test: (\\w+) -->\n```sh\n(.*?)\n```").FindAllStringSubmatch(string(data), -1) {
		blocks[m[1]] = m[2]
	}
	for _, name := range []string{"certificates", "server", "entries", "mirror", "host"} {
		if blocks[name] == "" {
			t.Fatalf("docs/fleet.md has no block marked test: %s", name)
		}
	}
	return blocks
}

// debianSlapd is a slapd as Debian's package sets one up: the cn=config
// of /usr/share/slapd/slapd.init.ldif with the suffix dc=example,dc=org,
// and the base entry its postinst adds; listening on ldap:// at its own
// loopback address, port 389, and on an ldapi socket of its own.
type debianSlapd struct {
	dir, ldapi, addr string
	cmd              *exec.Cmd
	log              *syncBuffer
}

func startDebianSlapd(t *testing.T, addr string) *debianSlapd {
	t.Helper()
	tmpl, err := os.ReadFile("/usr/share/slapd/slapd.init.ldif")
	if err != nil {
		t.Skipf("needs Debian's slapd (its slapd.init.ldif): %v", err)
	}
	dir, err := os.MkdirTemp(workDir, "debian-slapd-")
	if err != nil {
		t.Fatal(err)
	}
	s := &debianSlapd{dir: dir, addr: addr, log: &syncBuffer{}}
	for _, d := range []string{"slapd.d", "db"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	init := strings.NewReplacer("@SUFFIX@", "dc=example,dc=org", "@PASSWORD@", "adminpw",
		"/var/run/slapd/", dir+"/", "olcDbDirectory: /var/lib/ldap", "olcDbDirectory: "+dir+"/db").Replace(string(tmpl))
	base := "dn: dc=example,dc=org\nobjectClass: top\nobjectClass: dcObject\nobjectClass: organization\no: example\ndc: example\n"
	for _, step := range []struct{ db, ldif string }{{"0", init}, {"1", base}} {
		cmd := exec.Command("/usr/sbin/slapadd", "-n", step.db, "-F", filepath.Join(dir, "slapd.d"))
		cmd.Stdin = strings.NewReader(step.ldif)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("slapadd -n%s: %v\n%s", step.db, err, out)
		}
	}
	socket := filepath.Join(dir, "ldapi")
	s.ldapi = "ldapi://" + url.PathEscape(socket) + "/"
	s.cmd = exec.Command("/usr/sbin/slapd", "-d", "0", "-F", filepath.Join(dir, "slapd.d"), "-h", "ldap://"+addr+":389/ "+s.ldapi)
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stopByPid(s.cmd)
		if t.Failed() {
			t.Logf("slapd at %s:\n%s", addr, s.log.String())
		}
	})
	waitListening(t, addr+":389", "slapd", s.log)
	return s
}

// runBlock runs a block of the doc with bash in dir, as root. On a
// server, its ldapi:/// is that server's socket and its /etc/ldap/tls a
// directory of its own, and -W (a password prompt) is given the admin's
// password; /usr/share/pam-totp is this tree's packaging. Nothing else of
// the block is changed.
// configure runs an ldap-utils tool with file on s's cn=config, as root
// over ldapi.
func (s *debianSlapd) configure(t *testing.T, tool, file string) {
	t.Helper()
	cmd := exec.Command(tool, "-Y", "EXTERNAL", "-H", s.ldapi, "-Q", "-f", file)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LDAPCONF=/dev/null", "LDAPRC=/dev/null"}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s -f %s: %v\n%s", tool, file, err, out)
	}
}

func runBlock(t *testing.T, block, dir string, s *debianSlapd, env ...string) {
	t.Helper()
	ldap, err := filepath.Abs("../packaging/ldap")
	if err != nil {
		t.Fatal(err)
	}
	text := strings.NewReplacer("/usr/share/pam-totp/ldap", ldap, "/usr/share/pam-totp-verifier", ldap).Replace(block)
	if s != nil {
		// -W asks for the admin's password on the terminal; a test has none.
		text = strings.NewReplacer("ldapi:///", s.ldapi, "/etc/ldap/tls", s.dir+"/tls", " -W ", " -w adminpw ").Replace(text)
	}
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", text)
	cmd.Dir = dir
	cmd.Env = append([]string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LDAPCONF=/dev/null", "LDAPRC=/dev/null"}, env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the block failed: %v\n%s\n--- block:\n%s", err, out, text)
	}
}

// TestFleetDocFromScratch runs docs/fleet.md's set-up as written, from
// Debian's own slapd to two servers in mirror mode and a host: the
// certificates, TLS, the schema, the index and the ACL on each server, the
// groups and accounts on the first, mirror mode on both, and the host's
// configuration. Then an enrolled user logs in through the host, a code
// is refused through either server once used, and the second server has
// the user's password and enrollment, which the replicator must read.
func TestFleetDocFromScratch(t *testing.T) {
	needRoot(t, "ldapmodify", "ldapadd", "slappasswd", "openssl", "oathtool")
	needSyncprov(t)
	blocks := docBlocks(t)
	// The names of the doc, on loopback addresses of their own, in the
	// tests' private /etc.
	appendLine(t, "/etc/hosts", "127.0.0.2 ldap1.example.org\n127.0.0.3 ldap2.example.org")
	servers := []*debianSlapd{startDebianSlapd(t, "127.0.0.2"), startDebianSlapd(t, "127.0.0.3")}
	names := []string{"ldap1.example.org", "ldap2.example.org"}
	admin := t.TempDir()
	const enrollerPW, replicatorPW = "enroller secret 1", "replicator-secret-2"

	runBlock(t, blocks["certificates"], admin, nil)
	for i, s := range servers {
		runBlock(t, blocks["server"], admin, s, "NAME="+names[i])
	}
	runBlock(t, blocks["entries"], admin, servers[0], "ENROLLER_PASSWORD="+enrollerPW, "REPLICATOR_PASSWORD="+replicatorPW)
	for i, s := range servers {
		runBlock(t, blocks["mirror"], admin, s, fmt.Sprintf("SERVER_ID=%d", i+1), "PEER="+names[1-i], "REPLICATOR_PASSWORD="+replicatorPW)
	}
	runBlock(t, blocks["host"], admin, nil)
	// The failover marks go to the test's directory, not the machine's /run.
	appendLine(t, "/etc/pam-totp/directory.conf", "cache_dir "+filepath.Join(admin, "cache"))

	// The site's own user, with a password, on server 1.
	u := newUser(t)
	ldapadd := exec.Command("ldapadd", "-x", "-H", servers[0].ldapi, "-D", "cn=admin,dc=example,dc=org", "-w", "adminpw")
	ldapadd.Env = []string{"LDAPCONF=/dev/null", "LDAPRC=/dev/null"}
	ldapadd.Stdin = strings.NewReader(fmt.Sprintf("dn: ou=people,dc=example,dc=org\nobjectClass: organizationalUnit\nou: people\n\n"+
		"dn: uid=%s,ou=people,dc=example,dc=org\nobjectClass: inetOrgPerson\nobjectClass: posixAccount\nuid: %[1]s\ncn: %[1]s\nsn: %[1]s\n"+
		"uidNumber: %d\ngidNumber: %d\nhomeDirectory: %s\nuserPassword: %s\n", u.name, u.uid, u.gid, u.home, u.password))
	if out, err := ldapadd.CombinedOutput(); err != nil {
		t.Fatalf("adding the user: %v\n%s", err, out)
	}
	pwFile := filepath.Join(admin, "enroller.pw")
	writeEtc(t, pwFile, enrollerPW+"\n", 0o600)
	u.secret = newSecret(t)
	out, err := enrollCmd(t, "--user", u.name, "--secret", u.secret, "--no-confirm", "--qr", "none", "--directory", "/etc/pam-totp/directory.conf",
		"--bind-dn", "cn=enroller,ou=admins,dc=example,dc=org", "--bind-password-file", pwFile)
	if err != nil {
		t.Fatalf("enrolling as the doc's admin: %v\n%s", err, out)
	}
	waitForFreshStep(30, 10)
	svc := service(t, module("required", "directory=/etc/pam-totp/directory.conf"))
	c := code(t, u.secret, 0)
	if err := loginWith(t, svc, u, c); err != nil {
		t.Fatalf("login through the doc's host and servers: %v", err)
	}

	// Server 2 gets the enrollment, its state and the user's password by
	// replication (as its rootdn, which reads everything, and as the user,
	// whose bind needs the password).
	only2 := filepath.Join(admin, "only2.conf")
	conf, _ := os.ReadFile("/etc/pam-totp/directory.conf")
	writeEtc(t, only2, strings.Replace(string(conf), "uri ldap://ldap1.example.org ldap://ldap2.example.org", "uri ldap://ldap2.example.org", 1), 0o600)
	svc2 := service(t, module("required", "directory="+only2))
	ldap2 := func(dn, password, base, attr string) (string, error) {
		search := exec.Command("ldapsearch", "-x", "-ZZ", "-LLL", "-o", "ldif-wrap=no", "-H", "ldap://ldap2.example.org", "-D", dn,
			"-w", password, "-b", base, "-s", "base", attr)
		search.Env = []string{"LDAPTLS_CACERT=" + admin + "/ca.pem", "LDAPCONF=/dev/null", "LDAPRC=/dev/null"}
		out, err := search.CombinedOutput()
		return string(out), err
	}
	entry := "uid=" + u.name + ",ou=people,dc=example,dc=org"
	for deadline := time.Now().Add(20 * time.Second); ; {
		out, serr := ldap2("cn=admin,dc=example,dc=org", "adminpw", entry, "pamTOTPState")
		_, berr := ldap2(entry, u.password, entry, "uid")
		state := "" // the value is multi-line, so ldapsearch gives it in base64
		for _, l := range strings.Split(out, "\n") {
			if v, ok := strings.CutPrefix(l, "pamTOTPState:: "); ok {
				data, _ := base64.StdEncoding.DecodeString(strings.TrimSpace(v))
				state = string(data)
			}
		}
		// The state after the login (the used step) is there and the user
		// binds: only then is the used code tried, and it must be refused.
		if serr == nil && strings.Contains(state, "last=") && berr == nil {
			if loginWith(t, svc2, u, c) == nil {
				t.Fatal("the code used through server 1 worked through server 2 after replication")
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("server 2 did not get the user's password and state within 20 s (search: %v %s; bind: %v)\nserver 1:\n%s\nserver 2:\n%s",
				serr, state, berr, servers[0].log, servers[1].log)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err := loginWith(t, svc2, u, code(t, u.secret, 1)); err != nil {
		t.Fatalf("the next code through server 2: %v", err)
	}
}

// The ACL's two forms, slapd.conf's and cn=config's, are the same rules in
// the same order.
func TestACLFormsAgree(t *testing.T) {
	rules := func(path, start, cont string) []string {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, l := range strings.Split(string(data), "\n") {
			switch {
			case strings.HasPrefix(l, start):
				r := regexp.MustCompile(`^\{\d+\}`).ReplaceAllString(strings.TrimPrefix(l, start), "")
				out = append(out, strings.Fields(r)...)
				out = append(out, "|")
			case strings.HasPrefix(l, cont) && len(out) > 0 && !strings.HasPrefix(strings.TrimSpace(l), "#"):
				out = append(out[:len(out)-1], append(strings.Fields(l), "|")...)
			}
		}
		return out
	}
	for _, name := range []string{"pam-totp-acl", "pam-totp-acl-verifier"} {
		conf := rules("../packaging/ldap/"+name+".conf", "access ", "\t")
		ldif := rules("../packaging/ldap/"+name+".ldif", "olcAccess: ", "  ")
		if len(conf) < 20 || strings.Join(conf, " ") != strings.Join(ldif, " ") {
			t.Fatalf("%s.conf and %[1]s.ldif differ:\n%q\n%q", name, conf, ldif)
		}
	}
	// The verifiers' ACL is the hosts' with the verifiers in their place,
	// and the hosts nowhere but as the group the verifiers read.
	hosts, _ := os.ReadFile("../packaging/ldap/pam-totp-acl.conf")
	verifiers, _ := os.ReadFile("../packaging/ldap/pam-totp-acl-verifier.conf")
	if n := strings.Count(string(verifiers), "cn=pam-totp-hosts,"); n != 2 { // the comment, the member rule
		t.Errorf("pam-totp-acl-verifier.conf names the hosts group %d times", n)
	}
	if a, b := strings.Count(string(hosts), "by group.exact=\"cn=pam-totp-hosts,"), strings.Count(string(verifiers), "by group.exact=\"cn=pam-totp-verifiers,"); a != b-1 {
		t.Errorf("the hosts had %d grants, the verifiers have %d (want one more: reading the hosts group)", a, b)
	}
}

// TestFleetDocVerifierACL runs docs/fleet.md's move of the ACL from
// directory= to the verifiers on Debian's slapd set up with
// pam-totp-acl.ldif, and compares what it leaves with a fresh install of
// pam-totp-acl-verifier.ldif: the same rules in the same order.
func TestFleetDocVerifierACL(t *testing.T) {
	needRoot(t, "ldapmodify", "ldapadd", "ldapsearch")
	blocks := docBlocks(t)
	if blocks["verifier_acl"] == "" {
		t.Fatal("docs/fleet.md has no block marked test: verifier_acl")
	}
	old, fresh := startDebianSlapd(t, "127.0.0.6"), startDebianSlapd(t, "127.0.0.7")
	ldap := func(s *debianSlapd, tool, file string) { t.Helper(); s.configure(t, tool, file) }
	for _, s := range []*debianSlapd{old, fresh} {
		ldap(s, "ldapadd", "../packaging/ldap/pam-totp.ldif")
	}
	ldap(old, "ldapmodify", "../packaging/ldap/pam-totp-acl.ldif")
	runBlock(t, blocks["verifier_acl"], t.TempDir(), old)
	ldap(fresh, "ldapmodify", "../packaging/ldap/pam-totp-acl-verifier.ldif")
	acl := func(s *debianSlapd) string {
		t.Helper()
		cmd := exec.Command("ldapsearch", "-Y", "EXTERNAL", "-H", s.ldapi, "-Q", "-LLL", "-o", "ldif-wrap=no", "-b", "olcDatabase={1}mdb,cn=config", "-s", "base", "olcAccess")
		cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LDAPCONF=/dev/null", "LDAPRC=/dev/null"}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("ldapsearch: %v\n%s", err, out)
		}
		return string(out)
	}
	a, b := acl(old), acl(fresh)
	if a != b {
		t.Fatalf("the moved ACL differs from a fresh one:\n%s\n--- fresh:\n%s", a, b)
	}
	if !strings.Contains(a, "pam-totp-verifiers") || strings.Contains(a, `group.exact="cn=pam-totp-hosts`) {
		t.Fatalf("the moved ACL does not give the verifiers the hosts' rights:\n%s", a)
	}
}

// TestFleetDocUpgrade runs docs/fleet.md's upgrade to state records on
// Debian's slapd set up with the schema and ACL of the pam_totp before
// them (testdata/ldap-before-records), and compares the schema and the
// ACL it leaves with those of a server installed fresh from this tree's
// packaging/ldap: the same definitions, the same rules in the same order.
func TestFleetDocUpgrade(t *testing.T) {
	needRoot(t, "ldapmodify", "ldapadd", "ldapsearch")
	blocks := docBlocks(t)
	if blocks["upgrade"] == "" {
		t.Fatal("docs/fleet.md has no block marked test: upgrade")
	}
	old, fresh := startDebianSlapd(t, "127.0.0.4"), startDebianSlapd(t, "127.0.0.5")
	ldap := func(s *debianSlapd, tool, file string) { t.Helper(); s.configure(t, tool, file) }
	ldap(old, "ldapadd", "testdata/ldap-before-records/pam-totp.ldif")
	ldap(old, "ldapmodify", "testdata/ldap-before-records/pam-totp-acl.ldif")
	runBlock(t, blocks["upgrade"], t.TempDir(), old)
	ldap(fresh, "ldapadd", "../packaging/ldap/pam-totp.ldif")
	ldap(fresh, "ldapmodify", "../packaging/ldap/pam-totp-acl.ldif")

	// values reads attrs of the entries under base, as slapd holds them,
	// one value a line, without slapd's {n} ordering prefix for the schema.
	values := func(s *debianSlapd, base, filter string, attrs ...string) string {
		t.Helper()
		cmd := exec.Command("ldapsearch", append([]string{"-Y", "EXTERNAL", "-H", s.ldapi, "-Q", "-LLL", "-o", "ldif-wrap=no", "-b", base, filter}, attrs...)...)
		cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LDAPCONF=/dev/null", "LDAPRC=/dev/null"}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("ldapsearch %s: %v\n%s", base, err, out)
		}
		var keep []string
		for _, l := range strings.Split(string(out), "\n") {
			if !strings.HasPrefix(l, "dn: ") && l != "" {
				keep = append(keep, l)
			}
		}
		return strings.Join(keep, "\n")
	}
	schema := func(s *debianSlapd) string {
		return values(s, "cn=schema,cn=config", "(cn=*pam-totp)", "olcAttributeTypes", "olcObjectClasses", "olcDitContentRules")
	}
	acl := func(s *debianSlapd) string {
		return values(s, "olcDatabase={1}mdb,cn=config", "(objectClass=*)", "olcAccess")
	}
	if a, b := schema(old), schema(fresh); a != b {
		t.Fatalf("the upgraded schema differs from a fresh one:\n%s\n--- fresh:\n%s", a, b)
	}
	if a, b := acl(old), acl(fresh); a != b {
		t.Fatalf("the upgraded ACL differs from a fresh one:\n%s\n--- fresh:\n%s", a, b)
	}
	if !strings.Contains(schema(old), "pamTOTPRecordContent") || !strings.Contains(acl(old), "pamTOTPRecord") {
		t.Fatalf("the upgrade left no record class or rule:\n%s\n%s", schema(old), acl(old))
	}
}

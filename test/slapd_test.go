// SPDX-License-Identifier: Apache-2.0

package test

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// slapd is a directory server of the test's own: Debian's slapd binary
// with a slapd.conf written here, a temporary mdb database, the shipped
// schema and example ACL, and a CA made for it. It listens on 127.0.0.1
// only and is stopped by its pid. The system's slapd is never started or
// configured.
type slapd struct {
	dir       string
	ldaps     string // ldaps://127.0.0.1:PORT
	ldap      string // ldap://127.0.0.1:PORT, for StartTLS
	cmd       *exec.Cmd
	log       *syncBuffer
	ca        string // the CA's certificate
	certs     string // root-only directory of the hosts' certificates and keys
	args      []string
	adminPass string // the password file of the admin identity (cn=enroller)
	upgraded  string // with slapdOpts.before: the configuration upgrade writes
	opts      slapdOpts
	ldapi     string // with slapdOpts.ldapi: ldapi://PATH, escaped
}

const (
	ldapSuffix = "dc=test"
	ldapRoot   = "cn=admin,dc=test"
	ldapRootPW = "rootsecret"
	ldapAdmin  = "cn=enroller,ou=admins,dc=test" // in the pam-totp-admins group
)

// startSlapd makes the CA and the certificates, writes the configuration
// and starts slapd in the foreground.
func startSlapd(t testing.TB) *slapd { return startSlapdWith(t, "", true) }

// startSlapdWith is startSlapd with more lines for the database section,
// before the ACL, and without pam_totp's schema (and so its ACL) if
// schema is false.
func startSlapdWith(t testing.TB, dbExtra string, schema bool) *slapd {
	return startSlapdOpts(t, slapdOpts{dbExtra: dbExtra, noSchema: !schema})
}

// slapdOpts shape a server: the lines startSlapdWith takes, and for a
// replica the CA and certificates of another server, the global and
// database lines replication needs, and no entries of its own (it gets
// them from its provider).
type slapdOpts struct {
	dbExtra  string
	noSchema bool
	global   string // before the database section
	dbTail   string // after the ACL: overlays, syncrepl
	sameCA   *slapd // use its CA, server and host certificates
	empty    bool   // do not add the base entries
	ports    [2]int // the ldaps and ldap ports, if not free ones
	// before: the schema and ACL of a pam_totp before state records
	// (testdata/ldap-before-records), for s.upgrade.
	before bool
	// ldapi: also listen on a local socket (s.ldapi), in a directory
	// everyone may reach, as Debian's /run/slapd/ldapi.
	ldapi bool
	// acl is the example ACL's file in packaging/ldap, if not
	// pam-totp-acl.conf (pam-totp-acl-verifier.conf for a fleet of
	// verifiers).
	acl string
}

func startSlapdOpts(t testing.TB, o slapdOpts) *slapd {
	t.Helper()
	needRoot(t, "openssl", "ldapadd", "ldapmodify", "ldapsearch")
	if _, err := os.Stat("/usr/sbin/slapd"); err != nil {
		t.Skip("needs Debian's slapd (scripts/deps --tests installs it without starting it)")
	}
	dir, err := os.MkdirTemp(workDir, "slapd-")
	if err != nil {
		t.Fatal(err)
	}
	s := &slapd{dir: dir, log: &syncBuffer{}, certs: filepath.Join(dir, "hosts"), opts: o}
	for _, d := range []string{"db", "hosts"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	s.ca = filepath.Join(dir, "ca.pem")
	if o.sameCA != nil {
		// One CA for the pair: a host's certificate works with either.
		s.ca, s.certs = o.sameCA.ca, o.sameCA.certs
		for _, f := range []string{"server.pem", "server.key"} {
			data, err := os.ReadFile(filepath.Join(o.sameCA.dir, f))
			if err != nil {
				t.Fatal(err)
			}
			os.WriteFile(filepath.Join(dir, f), data, 0o600)
		}
	} else {
		openssl(t, dir, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
			"-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/O=pam-totp test/CN=test CA")
		s.issue(t, "server", "/O=pam-totp test/CN=127.0.0.1", "subjectAltName=IP:127.0.0.1,DNS:localhost")
		os.Rename(filepath.Join(s.certs, "server.pem"), filepath.Join(dir, "server.pem"))
		os.Rename(filepath.Join(s.certs, "server.key"), filepath.Join(dir, "server.key"))
		for _, h := range []string{"host-a", "host-b", "host-c"} {
			s.issue(t, h, "/O=pam-totp test/CN="+h, "")
		}
	}
	conf := s.config(t, o, "../packaging/ldap")
	if o.before {
		s.upgraded = conf
		conf = s.config(t, o, "testdata/ldap-before-records")
	}
	if err := os.WriteFile(filepath.Join(dir, "slapd.conf"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	p1, p2 := o.ports[0], o.ports[1]
	if p1 == 0 {
		p1, p2 = freePort(t), freePort(t)
	}
	s.ldaps, s.ldap = fmt.Sprintf("ldaps://127.0.0.1:%d", p1), fmt.Sprintf("ldap://127.0.0.1:%d", p2)
	listen := s.ldaps + "/ " + s.ldap + "/"
	if o.ldapi {
		sockDir, err := os.MkdirTemp(workDir, "ldapi-")
		if err != nil {
			t.Fatal(err)
		}
		os.Chmod(sockDir, 0o755)
		s.ldapi = "ldapi://" + url.PathEscape(filepath.Join(sockDir, "ldapi"))
		listen += " " + s.ldapi + "/"
	}
	s.args = []string{"-d", "0", "-f", filepath.Join(dir, "slapd.conf"), "-h", listen}
	s.start(t)
	t.Cleanup(func() {
		s.stop(t)
		if t.Failed() {
			t.Logf("slapd output:\n%s", s.log.String())
		}
	})
	s.adminPass = filepath.Join(dir, "enroller.pw")
	if err := os.WriteFile(s.adminPass, []byte("enrollerpw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if o.empty {
		return s
	}
	s.add(t, fmt.Sprintf(`dn: %s
objectClass: dcObject
objectClass: organization
dc: test
o: pam-totp test

dn: ou=people,%[1]s
objectClass: organizationalUnit
ou: people

dn: ou=hosts,%[1]s
objectClass: organizationalUnit
ou: hosts

dn: ou=groups,%[1]s
objectClass: organizationalUnit
ou: groups

dn: ou=admins,%[1]s
objectClass: organizationalUnit
ou: admins

dn: %[2]s
objectClass: person
cn: enroller
sn: enroller
userPassword: enrollerpw

dn: cn=pam-totp-hosts,ou=groups,%[1]s
objectClass: groupOfNames
cn: pam-totp-hosts
member: cn=host-a,ou=hosts,%[1]s
member: cn=host-b,ou=hosts,%[1]s

dn: cn=pam-totp-admins,ou=groups,%[1]s
objectClass: groupOfNames
cn: pam-totp-admins
member: %[2]s

dn: cn=pam-totp-verifiers,ou=groups,%[1]s
objectClass: groupOfNames
cn: pam-totp-verifiers
member: cn=verifier-1,ou=hosts,%[1]s
member: cn=verifier-2,ou=hosts,%[1]s
`, ldapSuffix, ldapAdmin))
	return s
}

// config is the slapd.conf of s, with pam_totp's schema and ACL from the
// directory from (relative to test/).
func (s *slapd) config(t testing.TB, o slapdOpts, from string) string {
	t.Helper()
	dir, dbExtra := s.dir, o.dbExtra
	aclFile := "pam-totp-acl.conf"
	if o.acl != "" && from == "../packaging/ldap" {
		aclFile = o.acl
	}
	acl, err := os.ReadFile(filepath.Join(from, aclFile))
	if err != nil {
		t.Fatal(err)
	}
	schemaFile, err := filepath.Abs(filepath.Join(from, "pam-totp.schema"))
	if err != nil {
		t.Fatal(err)
	}
	include := "include " + schemaFile
	if o.noSchema {
		include, acl = "", nil
	}
	return fmt.Sprintf(`include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/nis.schema
include /etc/ldap/schema/inetorgperson.schema
%s
pidfile %s/slapd.pid
argsfile %s/slapd.args
modulepath /usr/lib/ldap
moduleload back_mdb
%s
TLSCACertificateFile %s
TLSCertificateFile %s/server.pem
TLSCertificateKeyFile %s/server.key
TLSVerifyClient try
# A host's certificate names it; its entry is under ou=hosts.
authz-regexp "^cn=([^,]+),o=pam-totp test$" "cn=$1,ou=hosts,dc=test"
database mdb
maxsize 104857600
suffix "%s"
rootdn "%s"
rootpw %s
directory %s/db
index uid eq
index objectClass eq
%s
%s
access to attrs=userPassword
	by self write
	by anonymous auth
	by * none
access to *
	by * read
%s
`, include, dir, dir, o.global, s.ca, dir, dir, ldapSuffix, ldapRoot, ldapRootPW, dir, dbExtra,
		strings.ReplaceAll(string(acl), "dc=example,dc=org", ldapSuffix), strings.ReplaceAll(o.dbTail, "%CA%", s.ca))
}

// upgrade restarts a server started with before on the same database,
// with today's schema and ACL, as an admin upgrading it would.
func (s *slapd) upgrade(t testing.TB) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(s.dir, "slapd.conf"), []byte(s.upgraded), 0o600); err != nil {
		t.Fatal(err)
	}
	s.stop(t)
	s.start(t)
}

// reconfigure restarts s on the same database with the example ACL of
// packaging/ldap named acl, as an admin changing it would.
func (s *slapd) reconfigure(t testing.TB, acl string) {
	t.Helper()
	s.opts.acl = acl
	if err := os.WriteFile(filepath.Join(s.dir, "slapd.conf"), []byte(s.config(t, s.opts, "../packaging/ldap")), 0o600); err != nil {
		t.Fatal(err)
	}
	s.stop(t)
	s.start(t)
}

// issue makes a key and a certificate signed by the test CA in s.certs.
func (s *slapd) issue(t testing.TB, name, subject, ext string) {
	t.Helper()
	key, csr, pem := filepath.Join(s.certs, name+".key"), filepath.Join(s.dir, name+".csr"), filepath.Join(s.certs, name+".pem")
	openssl(t, s.dir, "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
		"-keyout", key, "-out", csr, "-subj", subject)
	args := []string{"x509", "-req", "-in", csr, "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
		"-out", pem, "-days", "2"}
	if ext != "" {
		extFile := filepath.Join(s.dir, name+".ext")
		if err := os.WriteFile(extFile, []byte(ext+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, "-extfile", extFile)
	}
	openssl(t, s.dir, args...)
}

func openssl(t testing.TB, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command("openssl", args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("openssl %v: %v\n%s", args, err, out)
	}
}

// start runs slapd in the foreground (-d 0) and waits for both ports.
func (s *slapd) start(t testing.TB) {
	t.Helper()
	s.cmd = exec.Command("/usr/sbin/slapd", s.args...)
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{s.ldaps, s.ldap} {
		waitListening(t, strings.TrimPrefix(strings.TrimPrefix(u, "ldaps://"), "ldap://"), "slapd", s.log)
	}
}

// stop ends our slapd by its pid and waits for it: back-mdb's data are
// on disk when it has exited.
func (s *slapd) stop(t testing.TB) {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	stopByPid(s.cmd)
	s.cmd = nil
}

// kill ends our slapd with SIGKILL, as a crash would, and waits for it.
func (s *slapd) kill(t testing.TB) {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	s.cmd.Process.Kill() // our own child, by its pid
	s.cmd.Wait()
	s.cmd = nil
}

// tool runs an ldap-utils command as the directory's root identity, with
// the test CA.
func (s *slapd) tool(t testing.TB, stdin string, name string, args ...string) string {
	t.Helper()
	out, err := s.toolAs(stdin, name, ldapRoot, ldapRootPW, args...)
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return out
}

// toolAs runs an ldap-utils command with a simple bind as dn.
func (s *slapd) toolAs(stdin, name, dn, password string, args ...string) (string, error) {
	all := append([]string{"-x", "-H", s.ldaps, "-D", dn, "-w", password}, args...)
	cmd := exec.Command(name, all...)
	cmd.Env = append(os.Environ(), "LDAPTLS_CACERT="+s.ca, "LDAPTLS_REQCERT=demand", "LDAPCONF=/dev/null", "LDAPRC=/dev/null")
	cmd.Stdin = strings.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// asHost runs an ldap-utils command bound as host, by its certificate
// (SASL EXTERNAL), as a host's checker binds.
func (s *slapd) asHost(host, stdin, name string, args ...string) (string, error) {
	cmd := exec.Command(name, append([]string{"-Y", "EXTERNAL", "-H", s.ldaps}, args...)...)
	cmd.Env = append(os.Environ(), "LDAPTLS_CACERT="+s.ca, "LDAPTLS_REQCERT=demand", "LDAPCONF=/dev/null", "LDAPRC=/dev/null",
		"LDAPTLS_CERT="+filepath.Join(s.certs, host+".pem"), "LDAPTLS_KEY="+filepath.Join(s.certs, host+".key"))
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (s *slapd) add(t testing.TB, ldif string) { s.tool(t, ldif, "ldapadd") }

func (s *slapd) modify(t testing.TB, ldif string) { s.tool(t, ldif, "ldapmodify") }

// userDN is where a test user's entry is.
func userDN(u *user) string { return "uid=" + u.name + ",ou=people," + ldapSuffix }

// addUser gives u an entry in the directory, with the same password as
// the local account.
func (s *slapd) addUser(t testing.TB, u *user) {
	t.Helper()
	s.add(t, fmt.Sprintf(`dn: %s
objectClass: inetOrgPerson
objectClass: posixAccount
uid: %s
cn: %[2]s
sn: %[2]s
uidNumber: %d
gidNumber: %d
homeDirectory: %s
loginShell: /bin/sh
userPassword: %s
`, userDN(u), u.name, u.uid, u.gid, u.home, u.password))
}

// attr returns the values of attr in u's entry, read as the directory's root.
func (s *slapd) attr(t testing.TB, u *user, attr string) []string {
	t.Helper()
	vals, err := s.values(u, attr)
	if err != nil {
		t.Fatal(err)
	}
	return vals
}

// values is attr without failing the test: an error where the entry is
// not there (yet, on a replica) or the server is down.
func (s *slapd) values(u *user, attr string) ([]string, error) {
	out, err := s.toolAs("", "ldapsearch", ldapRoot, ldapRootPW, "-LLL", "-o", "ldif-wrap=no", "-b", userDN(u), "-s", "base", "(objectClass=*)", attr)
	if err != nil {
		return nil, fmt.Errorf("ldapsearch of %s on %s: %v\n%s", attr, userDN(u), err, out)
	}
	var vals []string
	for _, l := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(l, attr+": "); ok {
			vals = append(vals, v)
		} else if v, ok := strings.CutPrefix(l, attr+":: "); ok {
			data, err := base64.StdEncoding.DecodeString(v)
			if err != nil {
				return nil, fmt.Errorf("ldapsearch gave bad base64 for %s: %v", attr, err)
			}
			vals = append(vals, string(data))
		}
	}
	return vals, nil
}

// hostConf writes a host's directory configuration, root's and 0600, into
// the namespace's /etc, and returns its path.
func (s *slapd) hostConf(t testing.TB, host string, extra ...string) string {
	t.Helper()
	lines := []string{
		"uri " + s.ldaps,
		"base ou=people," + ldapSuffix,
		"ca_file " + s.ca,
		"cert_file " + filepath.Join(s.certs, host+".pem"),
		"key_file " + filepath.Join(s.certs, host+".key"),
		"timeout 2",
	}
	return s.hostConfLines(t, host, append(lines, extra...))
}

// hostConfLines writes a configuration of these lines, and a cache_dir
// of the test's own where they name none: the failover marks never go
// into the machine's /run.
func (s *slapd) hostConfLines(t testing.TB, name string, lines []string) string {
	t.Helper()
	if !slices.ContainsFunc(lines, func(l string) bool { return strings.HasPrefix(l, "cache_dir ") }) {
		lines = append(lines, "cache_dir "+filepath.Join(s.dir, "cache-"+name))
	}
	if err := os.MkdirAll("/etc/pam-totp", 0o755); err != nil {
		t.Fatal(err)
	}
	path := fmt.Sprintf("/etc/pam-totp/directory-%s-%s.conf", name, strings.ReplaceAll(t.Name(), "/", "-"))
	writeEtc(t, path, strings.Join(lines, "\n")+"\n", 0o600)
	return path
}

// setSecret enrolls u in the directory with a secret file's content, as
// the directory's root (for set-ups that need no totp-enroll run).
func (s *slapd) setSecret(t testing.TB, u *user, secretFile string) {
	t.Helper()
	s.modify(t, secretLDIF(u, secretFile))
}

// secretLDIF is the ldapmodify change that enrolls u with secretFile;
// several go into one ldapmodify run.
func secretLDIF(u *user, secretFile string) string {
	return fmt.Sprintf("dn: %s\nchangetype: modify\nadd: objectClass\nobjectClass: pamTOTPUser\n-\nadd: pamTOTPSecret\npamTOTPSecret:: %s\n-\n\n",
		userDN(u), base64.StdEncoding.EncodeToString([]byte(secretFile)))
}

// backup is slapcat's copy of the database, as an admin's back-up job
// takes it (back-mdb allows it while slapd runs).
func (s *slapd) backup(t testing.TB) string {
	t.Helper()
	out, err := exec.Command("/usr/sbin/slapcat", "-f", filepath.Join(s.dir, "slapd.conf")).Output()
	if err != nil {
		t.Fatalf("slapcat: %v", err)
	}
	return string(out)
}

// restore replaces the database with a back-up: slapd stopped, the
// database emptied, slapadd, slapd started, as fleet.md says.
func (s *slapd) restore(t testing.TB, ldif string) {
	t.Helper()
	s.stop(t)
	files, _ := filepath.Glob(filepath.Join(s.dir, "db", "*"))
	for _, f := range files {
		os.Remove(f)
	}
	cmd := exec.Command("/usr/sbin/slapadd", "-q", "-f", filepath.Join(s.dir, "slapd.conf"))
	cmd.Stdin = strings.NewReader(ldif)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("slapadd: %v\n%s", err, out)
	}
	s.start(t)
}

// bulkAdd adds the entries scale(from)..scale(to-1) under ou=people with
// slapadd while slapd is stopped: 100,000 entries take seconds that way.
func (s *slapd) bulkAdd(t testing.TB, from, to int) {
	t.Helper()
	var ldif strings.Builder
	for i := from; i < to; i++ {
		fmt.Fprintf(&ldif, "dn: uid=scale%06d,ou=people,%s\nobjectClass: inetOrgPerson\nuid: scale%06d\ncn: s\nsn: s\n\n", i, ldapSuffix, i)
	}
	s.stop(t)
	cmd := exec.Command("/usr/sbin/slapadd", "-q", "-f", filepath.Join(s.dir, "slapd.conf"))
	cmd.Stdin = strings.NewReader(ldif.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("slapadd: %v\n%s", err, out)
	}
	s.start(t)
}

// The cn=config form of the schema (pam-totp.ldif, for ldapadd -Y EXTERNAL)
// loads into a cn=config database of slapd's, with slapadd as Debian's
// postinst builds one, and defines what pam-totp.schema defines, which
// the other tests load.
func TestSchemaLDIFLoads(t *testing.T) {
	needRoot(t, "slapadd")
	ldif, err := os.ReadFile("../packaging/ldap/pam-totp.ldif")
	if err != nil {
		t.Fatal(err)
	}
	schema, err := os.ReadFile("../packaging/ldap/pam-totp.schema")
	if err != nil {
		t.Fatal(err)
	}
	// The same definitions, whitespace and comments aside: each "( OID
	// ... )" in order, up to its closing parenthesis.
	defs := func(text string) []string {
		flat := strings.Join(strings.Fields(regexp.MustCompile(`(?m)^#.*$`).ReplaceAllString(text, "")), " ")
		var out []string
		for i := strings.Index(flat, "( 2.25."); i >= 0; {
			depth, j := 0, i
			for ; j < len(flat); j++ {
				if flat[j] == '(' {
					depth++
				} else if flat[j] == ')' {
					if depth--; depth == 0 {
						break
					}
				}
			}
			out = append(out, flat[i:j+1])
			next := strings.Index(flat[j:], "( 2.25.")
			if next < 0 {
				break
			}
			i = j + next
		}
		return out
	}
	if a, b := defs(string(schema)), defs(string(ldif)); len(a) != 8 || strings.Join(a, "|") != strings.Join(b, "|") {
		t.Fatalf("pam-totp.schema and pam-totp.ldif differ:\n%q\n%q", a, b)
	}
	var all strings.Builder
	all.WriteString("dn: cn=config\nobjectClass: olcGlobal\ncn: config\n\ndn: cn=schema,cn=config\nobjectClass: olcSchemaConfig\ncn: schema\n\n")
	for _, f := range []string{"core", "cosine", "nis", "inetorgperson"} {
		data, err := os.ReadFile("/etc/ldap/schema/" + f + ".ldif")
		if err != nil {
			t.Skipf("needs Debian's slapd schema files: %v", err)
		}
		all.Write(data)
		all.WriteString("\n")
	}
	all.Write(ldif)
	dir := t.TempDir()
	cmd := exec.Command("slapadd", "-n0", "-F", dir, "-l", "/dev/stdin")
	cmd.Stdin = strings.NewReader(all.String())
	out, err := cmd.CombinedOutput()
	if err != nil || strings.Contains(string(out), "could not add") {
		t.Fatalf("slapadd of pam-totp.ldif into cn=config: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "cn=config", "cn=schema", "cn={4}pam-totp.ldif")); err != nil {
		t.Fatalf("the schema is not in cn=config after slapadd: %v", err)
	}
}

// SPDX-License-Identifier: Apache-2.0

package test

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	osuser "os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"pamtotp/internal/protocol"
)

// verifierUser is the account pam-totp-verifier runs as, as its package
// makes it: a system user and group of its own, in the tests' namespace.
const verifierUser = "pam-totp-verifier"

var (
	verifierOnce sync.Once
	verifierUID  = 60990
	verifierGID  = 60990
)

// needVerifierUser adds the verifier's user and group to the namespace's
// /etc once, or takes the ones there (TestDebianPackage's postinst makes
// them, and a purge leaves them).
func needVerifierUser(t testing.TB) {
	verifierOnce.Do(func() {
		if u, err := osuser.Lookup(verifierUser); err == nil {
			verifierUID, _ = strconv.Atoi(u.Uid)
			verifierGID, _ = strconv.Atoi(u.Gid)
			return
		}
		appendLine(t, "/etc/passwd", fmt.Sprintf("%s:x:%d:%d::/nonexistent:/usr/sbin/nologin", verifierUser, verifierUID, verifierGID))
		appendLine(t, "/etc/group", fmt.Sprintf("%s:x:%d:", verifierUser, verifierGID))
	})
}

// verifierProc is a pam-totp-verifier of the test's own.
type verifierProc struct {
	name    string
	addr    string // where hosts reach it
	metrics string // its metrics endpoint
	conf    string
	dirConf string // its directory configuration
	args    []string
	cmd     *exec.Cmd
	log     *syncBuffer
}

// verifierFiles writes the files of the verifier name beside server s
// (whose CA also signed the hosts' certificates): its certificate and key,
// the CA, its directory configuration and verifier.conf, root's and
// readable by the verifier's group only, as pam-totp-verifier(8) says.
func verifierFiles(t testing.TB, s, ca *slapd, name string, lines ...string) *verifierProc {
	t.Helper()
	needVerifierUser(t)
	if _, err := os.Stat(filepath.Join(ca.certs, name+".pem")); err != nil {
		// Its certificate is both its identity to slapd (cn=NAME,ou=hosts)
		// and the one hosts check (IP 127.0.0.1).
		ca.issue(t, name, "/O=pam-totp test/CN="+name, "subjectAltName=IP:127.0.0.1")
	}
	dir := fmt.Sprintf("/etc/pam-totp/%s-%s", name, strings.ReplaceAll(t.Name(), "/", "-"))
	os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(filepath.Dir(dir), 0o755)
	os.Chmod(dir, 0o750)
	os.Chown(dir, 0, verifierGID)
	put := func(file, content string, mode os.FileMode) string {
		path := filepath.Join(dir, file)
		if err := os.WriteFile(path, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(path, mode)
		os.Chown(path, 0, verifierGID)
		return path
	}
	copyIn := func(file, from string, mode os.FileMode) string {
		data, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		return put(file, string(data), mode)
	}
	caFile := copyIn("ca.pem", ca.ca, 0o644)
	cert := copyIn("verifier.pem", filepath.Join(ca.certs, name+".pem"), 0o644)
	key := copyIn("verifier.key", filepath.Join(ca.certs, name+".key"), 0o640)
	dirConf := put("directory.conf", strings.Join([]string{
		"uri " + s.ldaps,
		"base ou=people," + ldapSuffix,
		"ca_file " + caFile,
		"cert_file " + cert,
		"key_file " + key,
		"timeout 2",
		"connect_timeout 1",
	}, "\n")+"\n", 0o640)
	v := &verifierProc{name: name, log: &syncBuffer{}, dirConf: dirConf}
	v.addr = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	v.metrics = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	v.conf = put("verifier.conf", strings.Join(append([]string{
		"listen " + v.addr,
		"cert_file " + cert,
		"key_file " + key,
		"ca_file " + caFile,
		"directory " + dirConf,
		"hosts_group cn=pam-totp-hosts,ou=groups," + ldapSuffix,
		"host_dn cn=%s,ou=hosts," + ldapSuffix,
		"metrics " + v.metrics,
	}, lines...), "\n")+"\n", 0o640)
	return v
}

// throughGate points the verifier's directory configuration at addr
// instead of its server's ldaps port (before it starts).
func (v *verifierProc) throughGate(t testing.TB, s *slapd, addr string) {
	t.Helper()
	data, err := os.ReadFile(v.dirConf)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(v.dirConf, []byte(strings.Replace(string(data), "uri "+s.ldaps, "uri ldaps://"+addr, 1)), 0o640); err != nil {
		t.Fatal(err)
	}
}

// startVerifier writes a verifier's files and starts it, stopped by its
// pid when the test ends.
func startVerifier(t testing.TB, s, ca *slapd, name string, lines ...string) *verifierProc {
	t.Helper()
	v := verifierFiles(t, s, ca, name, lines...)
	v.start(t)
	t.Cleanup(func() {
		v.stop()
		if t.Failed() {
			t.Logf("verifier %s output:\n%s", v.name, v.log.String())
		}
	})
	return v
}

// start runs the verifier as its own user, as its systemd unit does, and
// waits for its port.
func (v *verifierProc) start(t testing.TB) {
	t.Helper()
	v.cmd = exec.Command(filepath.Join(libDir, "pam-totp-verifier"), append([]string{"--config", v.conf}, v.args...)...)
	v.cmd.Stdout, v.cmd.Stderr = v.log, v.log
	v.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL,
		Credential: &syscall.Credential{Uid: uint32(verifierUID), Gid: uint32(verifierGID), Groups: []uint32{}}}
	if err := v.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitListening(t, v.addr, "pam-totp-verifier "+v.name, v.log)
}

// stop ends the verifier by its pid and waits for it.
func (v *verifierProc) stop() {
	if v.cmd != nil && v.cmd.Process != nil {
		stopByPid(v.cmd)
	}
	v.cmd = nil
}

// kill ends it with SIGKILL, as a crash would.
func (v *verifierProc) kill() {
	if v.cmd != nil && v.cmd.Process != nil {
		v.cmd.Process.Kill()
		v.cmd.Wait()
	}
	v.cmd = nil
}

// scrape reads its metrics endpoint.
func (v *verifierProc) scrape(t testing.TB) string {
	t.Helper()
	resp, err := http.Get("http://" + v.metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return string(data)
}

// verifierHostConf is a login host's directory configuration naming the
// verifiers in order, with host's certificate (host-a, host-b or
// host-c from the test CA, or the paths given in cert and key).
func verifierHostConf(t testing.TB, ca *slapd, host string, vs ...*verifierProc) string {
	t.Helper()
	return verifierHostConfWith(t, ca, host, filepath.Join(ca.certs, host+".pem"), filepath.Join(ca.certs, host+".key"), vs...)
}

func verifierHostConfWith(t testing.TB, ca *slapd, host, cert, key string, vs ...*verifierProc) string {
	t.Helper()
	var addrs []string
	for _, v := range vs {
		addrs = append(addrs, v.addr)
	}
	return ca.hostConfLines(t, "v"+host, []string{
		"verifier " + strings.Join(addrs, " "),
		"ca_file " + ca.ca,
		"cert_file " + cert,
		"key_file " + key,
		"timeout 2",
		"connect_timeout 1",
		"down_for 2",
	})
}

// verifierFleet is a mirror pair with the verifiers' ACL, a verifier
// beside each server, and hosts A and B whose configurations name both.
type verifierFleet struct {
	pair       *mirrorPair
	v1, v2     *verifierProc
	confA      string
	confB      string
	svcA, svcB string
}

func newVerifierFleet(t *testing.T, verifierLines []string, hostOpts ...string) *verifierFleet {
	t.Helper()
	f := &verifierFleet{pair: startMirrorPairACL(t, "pam-totp-acl-verifier.conf")}
	f.v1 = startVerifier(t, f.pair.s1, f.pair.s1, "verifier-1", verifierLines...)
	f.v2 = startVerifier(t, f.pair.s2, f.pair.s1, "verifier-2", verifierLines...)
	f.confA = verifierHostConf(t, f.pair.s1, "host-a", f.v1, f.v2)
	f.confB = verifierHostConf(t, f.pair.s1, "host-b", f.v1, f.v2)
	f.svcA = service(t, module("required", append([]string{"directory=" + f.confA}, hostOpts...)...))
	f.svcB = service(t, module("required", append([]string{"directory=" + f.confB}, hostOpts...)...))
	return f
}

// enroll enrolls u through server 1 as the admin, and waits for server 2.
func (f *verifierFleet) enroll(t *testing.T, u *user) { f.pair.enroll(t, u) }

// waitGone waits until nothing listens at addr.
func waitGone(t testing.TB, addr string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatalf("%s still answers", addr)
		}
	}
}

// recordingVerifier stands in for a verifier: it has a verifier's
// certificate, asks every login for its codes (a Split frame) as a
// verifier does, refuses it, and keeps every byte it received.
type recordingVerifier struct {
	addr string
	mu   sync.Mutex
	got  []byte
}

func newRecordingVerifier(t *testing.T, ca *slapd) *recordingVerifier {
	t.Helper()
	if _, err := os.Stat(filepath.Join(ca.certs, "verifier-1.pem")); err != nil {
		ca.issue(t, "verifier-1", "/O=pam-totp test/CN=verifier-1", "subjectAltName=IP:127.0.0.1")
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(ca.certs, "verifier-1.pem"), filepath.Join(ca.certs, "verifier-1.key"))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequireAnyClientCert})
	if err != nil {
		t.Fatal(err)
	}
	r := &recordingVerifier{}
	r.addr = acceptEach(t, ln, r.serve)
	return r
}

func (r *recordingVerifier) serve(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	typ, req, err := protocol.ReadFrame(c)
	if err != nil || typ != protocol.Request {
		return
	}
	r.keep(req)
	prompt := ""
	if strings.Contains(string(req), "opt=forward_pass\x00") {
		prompt = "Password & verification code: "
	}
	if protocol.WriteFrame(c, protocol.Split, protocol.SplitPayload([]int{6, 8}, prompt)) != nil {
		return
	}
	if _, answer, err := protocol.ReadFrame(c); err == nil {
		r.keep(answer)
	}
	protocol.WriteFrame(c, protocol.Verdict, []byte{protocol.Fail})
}

func (r *recordingVerifier) keep(p []byte) {
	r.mu.Lock()
	r.got = append(r.got, p...)
	r.mu.Unlock()
}

// received is everything it received since the last call.
func (r *recordingVerifier) received() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := string(r.got)
	r.got = nil
	return s
}

// overLDAPI points the verifier's directory configuration at s's local
// socket, with no certificate: slapd knows it by its uid and gid
// (SASL EXTERNAL over ldapi), as on a server where it runs beside slapd.
func (v *verifierProc) overLDAPI(t testing.TB, s *slapd) {
	t.Helper()
	if err := os.WriteFile(v.dirConf, []byte("uri "+s.ldapi+"\nbase ou=people,"+ldapSuffix+"\ntimeout 2\n"), 0o640); err != nil {
		t.Fatal(err)
	}
}

// peercredDN is the identity slapd gives the verifier's user over ldapi.
func peercredDN() string {
	return fmt.Sprintf("gidNumber=%d+uidNumber=%d,cn=peercred,cn=external,cn=auth", verifierGID, verifierUID)
}

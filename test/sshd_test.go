// SPDX-License-Identifier: Apache-2.0

package test

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// sshd is a throwaway sshd on 127.0.0.1 whose PAM service uses the module.
type sshd struct {
	name string // also the PAM service
	addr string
	cmd  *exec.Cmd
	log  *syncBuffer
}

var sshdSeq = 0

// startSSHD starts sshd with PasswordAuthentication set as given. OpenSSH
// takes the PAM service name from its program name, so it runs through a
// symlink whose name is the service.
func startSSHD(t testing.TB, passwordAuth bool, authLines ...string) *sshd {
	t.Helper()
	if len(authLines) == 0 {
		authLines = []string{"auth required pam_unix.so nodelay", module("required")}
	}
	pamLines := append(authLines,
		"account required pam_unix.so",
		"session required pam_permit.so",
		"password required pam_deny.so")
	return startSSHDOn(t, nil, passwordAuth, strings.Join(pamLines, "\n")+"\n")
}

// startSSHDOn starts sshd on a host (nil: the tests' own namespace) with
// stack as its whole PAM service file.
func startSSHDOn(t testing.TB, h *nsHost, passwordAuth bool, stack string) *sshd {
	t.Helper()
	needRoot(t, "oathtool", "openssl", "/usr/sbin/sshd", "ssh-keygen")
	sshdSeq++
	name := fmt.Sprintf("sshd-pamtotp-test%d", sshdSeq)
	dir := filepath.Join(workDir, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", dir+"/hostkey").CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v %s", err, out)
	}
	if err := os.Symlink("/usr/sbin/sshd", filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
	pamFile := filepath.Join(h.etcDir(), "pam.d", name)
	if err := os.WriteFile(pamFile, []byte(stack), 0o644); err != nil {
		t.Fatal(err)
	}
	// Gone with the test: a later test reads the namespace's /etc/pam.d
	// (TestDoctorLive) and must not meet this one's service.
	t.Cleanup(func() { os.Remove(pamFile) })
	// /run/sshd is sshd's privilege separation directory; the package's
	// service creates it at boot, which has not happened here.
	os.MkdirAll("/run/sshd", 0o755)
	port := freePort(t)
	yesno := map[bool]string{true: "yes", false: "no"}
	config := fmt.Sprintf(`ListenAddress 127.0.0.1
Port %d
HostKey %s/hostkey
PidFile %s/sshd.pid
UsePAM yes
KbdInteractiveAuthentication yes
PasswordAuthentication %s
PubkeyAuthentication no
AuthorizedKeysFile none
PermitRootLogin no
StrictModes no
UseDNS no
PrintMotd no
MaxAuthTries 6
MaxStartups 100:30:200
LoginGraceTime 30
`, port, dir, dir, yesno[passwordAuth])
	if err := os.WriteFile(dir+"/sshd_config", []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	s := &sshd{name: name, addr: fmt.Sprintf("127.0.0.1:%d", port), log: &syncBuffer{}}
	s.cmd = h.command(filepath.Join(dir, name), "-D", "-e", "-f", dir+"/sshd_config")
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.cmd.Process.Kill() // our own child, by its pid
		s.cmd.Wait()
		if t.Failed() {
			t.Logf("sshd output:\n%s", s.log.String())
		}
	})
	for i := 0; ; i++ {
		c, err := net.Dial("tcp", s.addr)
		if err == nil {
			c.Close()
			break
		}
		if i == 100 {
			t.Fatalf("sshd did not listen on %s:\n%s", s.addr, s.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return s
}

// Client authentication orders.
const (
	kbdFirst      = iota // OpenSSH's default: keyboard-interactive, then password
	passwordFirst        // password, then keyboard-interactive
	passwordOnly         // password only, as some clients do
)

// login authenticates in the given order, answering keyboard-interactive
// prompts with the password and the code (both at once for forward_pass),
// runs a command and returns its output. A login that takes over 30 s is a
// hang: it fails.
func (s *sshd) login(userName, password, code string, order int) (string, error) {
	answer := func(name, instruction string, questions []string, echos []bool) ([]string, error) {
		out := make([]string, len(questions))
		for i, q := range questions {
			switch {
			case strings.Contains(q, "Password & verification code"):
				out[i] = password + code
			case strings.Contains(q, "assword"):
				out[i] = password
			case strings.Contains(q, "erification code"):
				out[i] = code
			default:
				return nil, fmt.Errorf("unexpected question %q", q)
			}
		}
		return out, nil
	}
	var methods []ssh.AuthMethod
	switch order {
	case kbdFirst:
		methods = []ssh.AuthMethod{ssh.KeyboardInteractive(answer), ssh.Password(password)}
	case passwordFirst:
		methods = []ssh.AuthMethod{ssh.Password(password), ssh.KeyboardInteractive(answer)}
	case passwordOnly:
		methods = []ssh.AuthMethod{ssh.Password(password + code)}
	}
	return s.dial(userName, methods)
}

// dial logs in with the given methods and runs a command that names the user.
func (s *sshd) dial(userName string, methods []ssh.AuthMethod) (string, error) {
	cfg := &ssh.ClientConfig{User: userName, Auth: methods, HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 10 * time.Second}

	conn, err := net.DialTimeout("tcp", s.addr, 10*time.Second)
	if err != nil {
		return "", err
	}
	type result struct {
		out string
		err error
	}
	done := make(chan result, 1)
	go func() {
		c, chans, reqs, err := ssh.NewClientConn(conn, s.addr, cfg)
		if err != nil {
			done <- result{err: err}
			return
		}
		client := ssh.NewClient(c, chans, reqs)
		defer client.Close()
		sess, err := client.NewSession()
		if err != nil {
			done <- result{err: err}
			return
		}
		defer sess.Close()
		out, err := sess.Output("echo pamtotp-logged-in-as-$(id -un)")
		done <- result{strings.TrimSpace(string(out)), err}
	}()
	select {
	case r := <-done:
		return r.out, r.err
	case <-time.After(30 * time.Second):
		conn.Close()
		return "", errors.New("login hung for 30 s")
	}
}

func TestSSHDPasswordAuthenticationYes(t *testing.T) {
	s := startSSHD(t, true)
	u := newUser(t)
	enroll(t, u)
	good := code(t, u.secret, 0)
	out, err := s.login(u.name, u.password, good, kbdFirst)
	if err != nil || out != "pamtotp-logged-in-as-"+u.name {
		t.Fatalf("login with password and code: %q, %v", out, err)
	}
	if _, err := s.login(u.name, u.password, good, kbdFirst); err == nil {
		t.Fatal("replayed code got in")
	}
	if _, err := s.login(u.name, u.password, "000000", kbdFirst); err == nil {
		t.Fatal("wrong code got in")
	}
	if out, err := s.login(u.name, u.password, code(t, u.secret, 1), kbdFirst); err != nil {
		t.Fatalf("next code after failures: %q, %v", out, err)
	}
	// A fresh user: with pam_unix "required", a wrong password still lets
	// pam_totp check (and use up) the code, as PAM stacks do.
	v := newUser(t)
	enroll(t, v)
	if _, err := s.login(v.name, "wrong password", code(t, v.secret, 0), kbdFirst); err == nil {
		t.Fatal("wrong password got in")
	}
}

// A client that tries password authentication before keyboard-interactive.
// sshd runs the PAM stack for the password attempt in its monitor process
// (the password alone must fail there), then keyboard-interactive in a
// forked child: that must complete without a hang, and it does. sshd then
// refuses the session: libpam's pam_setcred replays the monitor's cached
// result of the failed password attempt (docs/sshd.md). The same happens
// with pam_google_authenticator, checked below when it is installed.
func TestSSHDPasswordFirstClient(t *testing.T) {
	stacks := map[string][]string{"pam_totp": nil}
	if _, err := os.Stat("/lib/x86_64-linux-gnu/security/pam_google_authenticator.so"); err == nil {
		stacks["pam_google_authenticator"] = []string{"auth required pam_unix.so nodelay", "auth required pam_google_authenticator.so"}
	} else {
		t.Log("pam_google_authenticator is not installed: comparing with pam_totp only")
	}
	for name, stack := range stacks {
		t.Run(name, func(t *testing.T) {
			s := startSSHD(t, true, stack...)
			u := newUser(t)
			enroll(t, u)
			if name == "pam_google_authenticator" {
				writeGoogleAuthenticator(t, u)
			}
			m := syslogs.mark()
			if _, err := s.login(u.name, u.password, "", passwordOnly); err == nil {
				t.Fatal("the password alone got in")
			}
			_, err := s.login(u.name, u.password, code(t, u.secret, 0), passwordFirst)
			if err == nil {
				t.Fatal("expected the session to be refused after pam_setcred; did OpenSSH or libpam change? Update docs/sshd.md")
			}
			if err.Error() == "login hung for 30 s" {
				t.Fatal(err)
			}
			waitFor(t, s.log, "Accepted keyboard-interactive/pam for "+u.name)
			waitFor(t, s.log, "pam_setcred(): Permission denied")
			if name == "pam_totp" {
				expectLog(t, m, `user=`+u.name+`.*outcome=ok`)
			}
		})
	}
}

// With forward_pass, a client that only does password authentication gets
// in by typing the password and the code together.
func TestSSHDForwardPassPasswordClient(t *testing.T) {
	s := startSSHD(t, true, module("requisite", "forward_pass"), "auth required pam_unix.so use_first_pass nodelay")
	u := newUser(t)
	enroll(t, u)
	good := code(t, u.secret, 0)
	if out, err := s.login(u.name, u.password, good, passwordOnly); err != nil || !strings.HasSuffix(out, u.name) {
		t.Fatalf("password+code as the password: %q, %v", out, err)
	}
	if _, err := s.login(u.name, u.password, good, passwordOnly); err == nil {
		t.Fatal("replayed code got in")
	}
	if _, err := s.login(u.name, u.password, "", passwordOnly); err == nil {
		t.Fatal("the password alone got in")
	}
	if out, err := s.login(u.name, u.password, code(t, u.secret, 1), kbdFirst); err != nil {
		t.Fatalf("keyboard-interactive with forward_pass: %q, %v", out, err)
	}
}

func writeGoogleAuthenticator(t testing.TB, u *user) {
	t.Helper()
	p := filepath.Join(u.home, ".google_authenticator")
	if err := os.WriteFile(p, []byte(strings.TrimRight(u.secret, "=")+"\n\" TOTP_AUTH\n\" DISALLOW_REUSE\n"), 0o400); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(p, u.uid, u.gid); err != nil {
		t.Fatal(err)
	}
}

// waitFor waits until sshd has logged want.
func waitFor(t testing.TB, log *syncBuffer, want string) {
	t.Helper()
	for i := 0; i < 100; i++ {
		if strings.Contains(log.String(), want) {
			return
		}
		time.Sleep(30 * time.Millisecond)
	}
	t.Fatalf("sshd never logged %q:\n%s", want, log.String())
}

// syncBuffer is sshd's output, written by exec's copier and read by tests.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func TestSSHDKeyboardInteractiveOnly(t *testing.T) {
	s := startSSHD(t, false)
	u := newUser(t)
	enroll(t, u)
	m := syslogs.mark()
	good := code(t, u.secret, 0)
	if out, err := s.login(u.name, u.password, good, kbdFirst); err != nil {
		t.Fatalf("login: %q, %v", out, err)
	}
	expectLog(t, m, `user=`+u.name+` service=sshd-pamtotp-test\d+ rhost=127.0.0.1 .*outcome=ok`, good, u.secret)
	if _, err := s.login(u.name, u.password, good, kbdFirst); err == nil {
		t.Fatal("replayed code got in")
	}
}

// 100 sequential and 20 concurrent logins of distinct users all succeed.
func TestSSHDManyLogins(t *testing.T) {
	s := startSSHD(t, true)
	users := make([]*user, 120)
	for i := range users {
		users[i] = newUser(t)
		enroll(t, users[i])
	}
	for i, u := range users[:100] {
		if out, err := s.login(u.name, u.password, code(t, u.secret, 0), kbdFirst); err != nil || !strings.HasSuffix(out, u.name) {
			t.Fatalf("sequential login %d: %q, %v", i, out, err)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for _, u := range users[100:] {
		wg.Add(1)
		go func(u *user) {
			defer wg.Done()
			if out, err := s.login(u.name, u.password, code(t, u.secret, 0), kbdFirst); err != nil || !strings.HasSuffix(out, u.name) {
				errs <- fmt.Errorf("%s: %q, %v", u.name, out, err)
			}
		}(u)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error("concurrent login:", err)
	}
}

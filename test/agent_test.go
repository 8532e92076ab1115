// SPDX-License-Identifier: Apache-2.0

package test

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/msteinert/pam/v2"
)

// decider says who logged the decisions about u since m: "agent" when
// every one carries the agent's pid, "checker" when none does, else
// "mixed" (or "none").
func (a *agentProc) decider(t *testing.T, m int, u *user) string {
	t.Helper()
	re := regexp.MustCompile(`pam_totp\[(\d+)\]: user=` + regexp.QuoteMeta(u.name) + ` .*outcome=`)
	agent, other := 0, 0
	deadline := time.Now().Add(5 * time.Second)
	for {
		agent, other = 0, 0
		for _, l := range syslogs.since(m) {
			if s := re.FindStringSubmatch(l); s != nil {
				if s[1] == strconv.Itoa(a.cmd.Process.Pid) {
					agent++
				} else {
					other++
				}
			}
		}
		if agent+other > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	switch {
	case agent > 0 && other == 0:
		return "agent"
	case agent == 0 && other > 0:
		return "checker"
	case agent > 0:
		return "mixed"
	}
	return "none"
}

// agentHost is an agent of the test's own, a user enrolled in a
// root-owned store, and a PAM service with opts that asks the agent.
func agentHost(t *testing.T, opts ...string) (a *agentProc, store string, u *user, svc string) {
	t.Helper()
	a = startAgent(t)
	store = storeFor(t)
	u = systemUser(t, store)
	svc = service(t, module("required", append(opts, "secret="+store+"/%u", "agent="+a.socket)...))
	return a, store, u, svc
}

// systemUser enrolls a new user in a root-owned store of the test's.
func systemUser(t *testing.T, store string) *user {
	t.Helper()
	u := newUser(t)
	enroll(t, u, "--secret-file", store+"/%u")
	return u
}

// TestAgentSystemStore: the system store through the agent, as libpam,
// sshd, sudo and su call the module: the right code once, no replay, a
// wrong code refused, each decided by the agent (its pid on the decision
// line, the same line the checker writes). A user's own file, with the
// agent there, stays with the checker running as the user.
func TestAgentSystemStore(t *testing.T) {
	needRoot(t, "oathtool", "openssl", "/usr/sbin/sshd", "sudo", "su")
	a := startAgent(t)
	store := storeFor(t)
	opts := []string{"secret=" + store + "/%u", "agent=" + a.socket}
	waitForFreshStep(30, 10)

	u := systemUser(t, store)
	svc := service(t, module("required", opts...))
	m := syslogs.mark()
	c := code(t, u.secret, 0)
	if err := authenticate(t, svc, u.name, &conv{answers: []string{c}}); err != nil {
		t.Fatalf("libpam through the agent: %v", err)
	}
	if err := authenticate(t, svc, u.name, &conv{answers: []string{c}}); err == nil {
		t.Fatal("libpam through the agent: a replay got in")
	}
	if err := authenticate(t, svc, u.name, &conv{answers: []string{wrongCode(t, u)}}); err == nil {
		t.Fatal("libpam through the agent: a wrong code got in")
	}
	expectLog(t, m, `pam_totp\[`+strconv.Itoa(a.cmd.Process.Pid)+`\]: user=`+u.name+` service=pamtotp-test token=default outcome=ok reason="code accepted"`)
	expectLog(t, m, `user=`+u.name+` .*outcome=fail reason=replay`)
	if d := a.decider(t, m, u); d != "agent" {
		t.Fatalf("libpam: the decisions were made by the %s", d)
	}

	v := systemUser(t, store)
	s := startSSHD(t, false, "auth required pam_unix.so nodelay", module("required", opts...))
	m = syslogs.mark()
	cv := code(t, v.secret, 0)
	if got, err := s.login(v.name, v.password, cv, kbdFirst); err != nil || !strings.HasSuffix(got, v.name) {
		t.Fatalf("sshd through the agent: %q, %v", got, err)
	}
	if _, err := s.login(v.name, v.password, cv, kbdFirst); err == nil {
		t.Fatal("sshd through the agent: a replay got in")
	}
	if d := a.decider(t, m, v); d != "agent" {
		t.Fatalf("sshd: the decisions were made by the %s", d)
	}

	for _, h := range []*host{sudoHost(t, store, "agent="+a.socket), suHost(t, store, "agent="+a.socket)} {
		m = syslogs.mark()
		ch := code(t, h.victim.secret, 0)
		if !h.attempt(t, nil, ch, nil, 20*time.Second) {
			t.Fatalf("%s through the agent: the right code did not get in:\n%s", h.name, h.shown)
		}
		if h.attempt(t, nil, ch, nil, 20*time.Second) {
			t.Fatalf("%s through the agent: a replay got in", h.name)
		}
		if d := a.decider(t, m, h.victim); d != "agent" {
			t.Fatalf("%s: the decisions were made by the %s", h.name, d)
		}
	}

	// A file in the home is the user's: the agent declines it, and the
	// checker, running as the user, decides.
	w := newUser(t)
	enroll(t, w)
	home := service(t, module("required", "agent="+a.socket))
	m = syslogs.mark()
	if err := authenticate(t, home, w.name, &conv{answers: []string{code(t, w.secret, 0)}}); err != nil {
		t.Fatalf("a home enrollment with the agent there: %v", err)
	}
	if d := a.decider(t, m, w); d != "checker" {
		t.Fatalf("a home enrollment was decided by the %s, want the checker", d)
	}
}

// TestAgentOneCodeFiftyLogins: 50 logins at once with one code through
// the agent: exactly one gets in; with deny=3, three wrong codes from
// anywhere lock, and the next right code is not compared.
func TestAgentOneCodeFiftyLogins(t *testing.T) {
	needRoot(t, "oathtool", "openssl")
	a, store, u, svc := agentHost(t, "deny=3")
	waitForFreshStep(30, 8)
	c := code(t, u.secret, 0)
	m := syslogs.mark()
	if ok := atOnce(t, []string{svc}, u, c, 50); ok != 1 {
		t.Fatalf("50 logins at once with one code through the agent: %d got in, want exactly 1", ok)
	}
	if d := a.decider(t, m, u); d != "agent" {
		t.Fatalf("the decisions were made by the %s", d)
	}

	v := systemUser(t, store)
	wrong := wrongCode(t, v)
	m = syslogs.mark()
	for range 3 {
		authenticate(t, svc, v.name, &conv{answers: []string{wrong}})
	}
	if err := authenticate(t, svc, v.name, &conv{answers: []string{code(t, v.secret, 0)}}); err == nil {
		t.Fatal("after deny=3 wrong codes through the agent, the right code got in")
	}
	expectLog(t, m, `user=`+v.name+` .*outcome=fail reason=locked`)
}

// TestAgentFallsBack: where the agent cannot take a login, the module
// starts the checker and the login works: the agent full (--max 1, one
// login held at its prompt), the agent's socket gone, a socket that is
// not root's, and a listener that is not root.
func TestAgentFallsBack(t *testing.T) {
	needRoot(t, "oathtool", "openssl")
	a := startAgent(t, "--max", "1")
	store := storeFor(t)
	u, v := systemUser(t, store), systemUser(t, store)
	svc := service(t, module("required", "secret="+store+"/%u", "agent="+a.socket))
	waitForFreshStep(30, 10)

	// One login sits at the prompt and holds the agent's only place.
	release, done := holdAtPrompt(t, svc, u, code(t, u.secret, 0))
	m := syslogs.mark()
	if err := authenticate(t, svc, v.name, &conv{answers: []string{code(t, v.secret, 0)}}); err != nil {
		t.Fatalf("with the agent full, the next login: %v", err)
	}
	if d := a.decider(t, m, v); d != "checker" {
		t.Fatalf("with the agent full, the login was decided by the %s, want the checker", d)
	}
	release()
	if err := <-done; err != nil {
		t.Fatalf("the login held at the prompt: %v", err)
	}

	// Nobody listening: the socket file of a dead agent, then none.
	stopByPid(a.cmd)
	for i, path := range []string{a.socket, filepath.Join(workDir, "no-agent.sock")} {
		w := systemUser(t, store)
		s := service(t, module("required", "secret="+store+"/%u", "agent="+path))
		if err := authenticate(t, s, w.name, &conv{answers: []string{code(t, w.secret, 0)}}); err != nil {
			t.Fatalf("no agent (%d): %v", i, err)
		}
	}

	// A socket a user made, and a listener that is not root: the module
	// does not talk to them (a fake agent would answer "success").
	faker := newUser(t)
	dir := filepath.Join(workDir, "fake-agent")
	os.MkdirAll(dir, 0o777)
	os.Chmod(dir, 0o777)
	sock := filepath.Join(dir, "agent.sock")
	fake := fakeAgent(t, faker, sock)
	w := systemUser(t, store)
	s := service(t, module("required", "secret="+store+"/%u", "agent="+sock))
	m = syslogs.mark()
	if err := authenticate(t, s, w.name, &conv{answers: []string{wrongCode(t, w)}}); err == nil {
		t.Fatal("a listener run by a user answered for the module")
	}
	expectLog(t, m, `agent `+regexp.QuoteMeta(sock)+`: not a socket that only root can use: not used`)
	if n := fake.accepted(); n != 0 {
		t.Fatalf("the module connected to a user's socket %d times", n)
	}
	// The same listener's socket made root's: the peer is still not root,
	// and the checker refuses the wrong code the listener would pass.
	os.Chown(sock, 0, 0)
	os.Chmod(sock, 0o755)
	m = syslogs.mark()
	if err := authenticate(t, s, w.name, &conv{answers: []string{wrongCode(t, w)}}); err == nil {
		t.Fatal("a listener that is not root, at a root-owned socket, answered for the module")
	}
	expectLog(t, m, `agent `+regexp.QuoteMeta(sock)+`: the process listening is not root's: not used`)
	expectLog(t, m, `user=`+w.name+` .*outcome=fail reason="bad code"`)
}

// holdAtPrompt starts u's login through svc and returns once it is asked
// for the code; release lets it answer, done gives its result.
func holdAtPrompt(t *testing.T, svc string, u *user, answer string) (release func(), done <-chan error) {
	t.Helper()
	held, free := make(chan struct{}), make(chan struct{})
	result := make(chan error, 1)
	go func() {
		result <- authenticateFrom(t, svc, u.name, &heldConv{asked: held, release: free, answer: answer}, nil)
	}()
	select {
	case <-held:
	case <-time.After(10 * time.Second):
		t.Fatal("the login was never asked for a code")
	}
	return func() { close(free) }, result
}

// heldConv answers the code prompt only once release is closed, and says
// on asked when it was asked.
type heldConv struct {
	asked, release chan struct{}
	answer         string
	once           sync.Once
}

func (h *heldConv) RespondPAM(s pam.Style, msg string) (string, error) {
	if s == pam.PromptEchoOff || s == pam.PromptEchoOn {
		h.once.Do(func() { close(h.asked) })
		<-h.release
		return h.answer, nil
	}
	return "", nil
}

// fakeListener is a unix socket that a user listens on, and that answers
// every connection with a success verdict.
type fakeListener struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	path string
}

// fakeAgent listens on path as u, answering "success" to whoever connects.
func fakeAgent(t *testing.T, u *user, path string) *fakeListener {
	t.Helper()
	f := &fakeListener{out: &syncBuffer{}, path: path}
	// Debian's python3 (scripts/deps --tests): the listener must run as
	// the user, and this test binary is not theirs to run.
	script := `import socket,os,sys
s=socket.socket(socket.AF_UNIX,socket.SOCK_STREAM)
s.bind(sys.argv[1]); os.chmod(sys.argv[1],0o777); s.listen(16)
print("listening",flush=True)
while True:
    c,_=s.accept(); print("accepted",flush=True)
    try: c.recv(9000); c.sendall(b"V\x00\x01S")
    except Exception: pass
    c.close()
`
	f.cmd = exec.Command("/usr/bin/python3", "-c", script, path)
	f.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(u.uid), Gid: uint32(u.gid)}, Pdeathsig: syscall.SIGKILL}
	f.cmd.Stdout, f.cmd.Stderr = f.out, f.out
	if err := f.cmd.Start(); err != nil {
		t.Skipf("needs python3 for a listener run as a user: %v", err)
	}
	t.Cleanup(func() { f.cmd.Process.Kill(); f.cmd.Wait() })
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(f.out.String(), "listening"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the user's listener did not start: %s", f.out.String())
		}
	}
	return f
}

func (f *fakeListener) accepted() int { return strings.Count(f.out.String(), "accepted") }

// TestAgentHostileClients: a root client that sends garbage, an oversized
// frame, or nothing at all loses its own connection, and the agent goes
// on serving the others; a client that is not root is declined without
// being read.
func TestAgentHostileClients(t *testing.T) {
	needRoot(t, "oathtool", "openssl")
	a := startAgent(t, "--first-frame", "1s")
	store := storeFor(t)
	u := systemUser(t, store)
	svc := service(t, module("required", "secret="+store+"/%u", "agent="+a.socket))
	dial := func() net.Conn {
		t.Helper()
		c, err := net.Dial("unix", a.socket)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	// answer is what the agent sends before it hangs up (at most 10 s).
	answer := func(c net.Conn) string {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		var all []byte
		buf := make([]byte, 512)
		for {
			n, err := c.Read(buf)
			all = append(all, buf[:n]...)
			if err != nil {
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					return "still open after 10 s"
				}
				return fmt.Sprintf("%q", all)
			}
		}
	}
	silent := dial() // sends nothing: dropped after --first-frame
	defer silent.Close()
	start := time.Now()
	garbage := dial()
	garbage.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
	if got := answer(garbage); strings.Contains(got, "still open") {
		t.Fatalf("garbage: %s", got)
	}
	huge := dial()
	huge.Write([]byte{'Q', 0xff, 0xff})
	if got := answer(huge); strings.Contains(got, "still open") {
		t.Fatalf("an oversized frame: %s", got)
	}
	// Meanwhile a real login is served.
	waitForFreshStep(30, 5)
	if err := authenticate(t, svc, u.name, &conv{answers: []string{code(t, u.secret, 0)}}); err != nil {
		t.Fatalf("a login beside hostile clients: %v", err)
	}
	if got := answer(silent); strings.Contains(got, "still open") {
		t.Fatalf("a client that sends nothing: %s", got)
	}
	if time.Since(start) > 9*time.Second {
		t.Fatalf("the silent client was held %s, with --first-frame 1s", time.Since(start))
	}

	// A client that is not root: declined, nothing read.
	os.Chmod(a.socket, 0o777)
	defer os.Chmod(a.socket, 0o600)
	nobody := newUser(t)
	out, err := exec.Command("setpriv", "--reuid", strconv.Itoa(nobody.uid), "--regid", strconv.Itoa(nobody.gid), "--clear-groups",
		"/usr/bin/python3", "-c", `import socket,sys
s=socket.socket(socket.AF_UNIX,socket.SOCK_STREAM); s.connect(sys.argv[1])
s.settimeout(10); print(repr(s.recv(100)))`, a.socket).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != `b'D\x00\x00'` {
		t.Fatalf("a client that is not root: %v %s, want a decline", err, out)
	}
}

// TestAgentKilledDuringLogin: the agent killed while a login waits at its
// prompt: that login fails closed; the next one works (the module falls
// back to the checker while nothing listens).
func TestAgentKilledDuringLogin(t *testing.T) {
	needRoot(t, "oathtool", "openssl")
	a, _, u, svc := agentHost(t)
	waitForFreshStep(30, 10)
	release, done := holdAtPrompt(t, svc, u, code(t, u.secret, 0))
	m := syslogs.mark()
	a.cmd.Process.Kill()
	a.cmd.Wait()
	release()
	if err := <-done; err == nil {
		t.Fatal("a login whose agent was killed got in")
	}
	expectLog(t, m, `pam_totp\(pamtotp-test:auth\): checker went away during the conversation|checker gave no answer in time or closed the connection`)
	if err := authenticate(t, svc, u.name, &conv{answers: []string{code(t, u.secret, 1)}}); err != nil {
		t.Fatalf("the next login, with the agent gone: %v", err)
	}
}

// TestAgentDoctor: doctor says which way each service's logins take, and
// warns about an agent socket that is not root's.
func TestAgentDoctor(t *testing.T) {
	needRoot(t, "ssh-keygen")
	a := startAgent(t)
	store := storeFor(t)
	password := "auth requisite pam_unix.so nodelay"
	for _, c := range []struct {
		name, opts, want string
	}{
		{"agent", "secret=" + store + "/%u agent=" + a.socket, "authentications go to pam-totp-agent at " + a.socket + " (root's, answering)"},
		{"home", "agent=" + a.socket, "each authentication starts the checker, running as the user"},
		{"off", "secret=" + store + "/%u agent=off", "agent=off: each authentication starts the checker"},
		{"none", "secret=" + store + "/%u agent=" + filepath.Join(workDir, "none.sock"), "no agent at " + filepath.Join(workDir, "none.sock")},
	} {
		out, _ := doctorRun(t, map[string][]string{"sudo": {password, module("required", "nullok", c.opts)}}, "")
		if !strings.Contains(out, c.want) {
			t.Errorf("%s: doctor does not say %q:\n%s", c.name, c.want, out)
		}
	}
	os.Chmod(a.socket, 0o666)
	defer os.Chmod(a.socket, 0o600)
	out, _ := doctorRun(t, map[string][]string{"sudo": {password, module("required", "nullok", "secret="+store+"/%u", "agent="+a.socket)}}, "")
	if !strings.Contains(out, "WARNING") || !strings.Contains(out, "is not a socket that only root can use (owner uid 0, mode 0666)") {
		t.Errorf("doctor on a socket others can write:\n%s", out)
	}
}

// TestAgentSyslogRestart: the agent outlives a syslog daemon's restart,
// and its next decision is still logged (a connected socket to the old
// daemon would drop every line from then on).
func TestAgentSyslogRestart(t *testing.T) {
	needRoot(t, "oathtool", "openssl")
	a, _, u, svc := agentHost(t)
	m := syslogs.mark()
	authenticate(t, svc, u.name, &conv{answers: []string{wrongCode(t, u)}})
	expectLog(t, m, `pam_totp\[`+strconv.Itoa(a.cmd.Process.Pid)+`\]: user=`+u.name+` .*outcome=fail`)
	if err := syslogs.restart("/dev/log"); err != nil {
		t.Fatal(err)
	}
	m = syslogs.mark()
	authenticate(t, svc, u.name, &conv{answers: []string{wrongCode(t, u)}})
	expectLog(t, m, `pam_totp\[`+strconv.Itoa(a.cmd.Process.Pid)+`\]: user=`+u.name+` .*outcome=fail`)
}

// TestAgentKilledAfterCharge: the agent killed between the charge it wrote
// to the directory and the success it would have written. The attempt is
// counted, the login gets no success, and the same code then works once
// through the checker (nothing was used), with the attempt counted.
func TestAgentKilledAfterCharge(t *testing.T) {
	f := newFleet(t)
	u := newUser(t)
	f.enrollDir(t, u)
	a := startAgent(t)
	g := newGate(t, strings.TrimPrefix(f.d.ldaps, "ldaps://"))
	conf := f.d.hostConfLines(t, "gated-agent", []string{"uri ldaps://" + g.addr, "base ou=people," + ldapSuffix, "ca_file " + f.d.ca,
		"cert_file " + filepath.Join(f.d.certs, "host-a.pem"), "key_file " + filepath.Join(f.d.certs, "host-a.key"), "timeout 30"})
	waitForFreshStep(30, 10)
	c := code(t, u.secret, 0)
	result := make(chan error, 1)
	go func() { result <- rawLogin(a.socket, u, []string{"directory=" + conf, "timeout=60"}, c) }()
	charged := func() bool {
		st := f.d.attr(t, u, "pamTOTPState")
		return len(st) == 1 && strings.Contains(st[0], "failures 1")
	}
	killed := false
	for chunk := range g.chunks {
		if charged() {
			a.cmd.Process.Kill() // our own child, by its pid
			a.cmd.Wait()
			killed = true
			break
		}
		chunk.pass <- true
	}
	if !killed {
		t.Fatalf("the agent's login ended without its charge reaching the directory (state %q)", f.d.attr(t, u, "pamTOTPState"))
	}
	if err := <-result; err == nil {
		t.Fatal("the login got a verdict from an agent killed before its success was written")
	}
	if !charged() {
		t.Fatalf("after the kill the state is %q: the attempt was not counted", f.d.attr(t, u, "pamTOTPState"))
	}
	// The agent is gone: the checker takes the next login, with the same
	// code, which was never used.
	svc := service(t, module("required", "directory="+f.confA, "agent="+a.socket))
	m := syslogs.mark()
	if err := loginWith(t, svc, u, c); err != nil {
		t.Fatalf("the code after the agent died before using it: %v", err)
	}
	expectLog(t, m, `user=`+u.name+` .*outcome=ok reason="code accepted after 1 wrong codes"`)
}

// TestAgentDirectoryConfigChanges: the agent keeps a directory's
// configuration and connections, but never past an edit of the file. Here
// the admin moves the host to another certificate (host-c, in no group,
// which may read nothing): the login after the edit binds with it, and a
// connection that a login held across the edit, bound with the old one,
// is closed when that login ends, not kept for the next.
func TestAgentDirectoryConfigChanges(t *testing.T) {
	f := newFleet(t)
	u, v := newUser(t), newUser(t)
	f.enrollDir(t, u)
	f.enrollDir(t, v)
	a := startAgent(t)
	lines := func(host string) []string {
		return []string{"uri " + f.d.ldaps, "base ou=people," + ldapSuffix, "ca_file " + f.d.ca,
			"cert_file " + filepath.Join(f.d.certs, host+".pem"), "key_file " + filepath.Join(f.d.certs, host+".key"), "timeout 5"}
	}
	conf := f.d.hostConfLines(t, "edited", lines("host-a"))
	svc := service(t, module("required", "directory="+conf, "agent="+a.socket))
	waitForFreshStep(30, 10)
	if err := loginWith(t, svc, v, code(t, v.secret, 0)); err != nil {
		t.Fatalf("the first login through the agent: %v", err)
	}
	release, done := holdAtPrompt(t, svc, u, code(t, u.secret, 0))

	f.d.hostConfLines(t, "edited", lines("host-c"))
	m := syslogs.mark()
	if err := loginWith(t, svc, v, code(t, v.secret, 1)); err == nil {
		t.Fatal("after the edit, a login was made with the old certificate")
	}
	expectLog(t, m, `user=`+v.name+` .*outcome=fail reason=".*no entry for .*`+v.name+`.* that this host may read`)
	release()
	if err := <-done; err != nil {
		t.Fatalf("the login held across the edit, on its own connection: %v", err)
	}
	m = syslogs.mark()
	if err := loginWith(t, svc, u, code(t, u.secret, 1)); err == nil {
		t.Fatal("a connection held across the edit was kept, and the next login was made with the old certificate")
	}
	if d := a.decider(t, m, u); d != "agent" {
		t.Fatalf("the last login was decided by the %s", d)
	}
}

// TestAgentCertificateRenewed: a certificate and key renewed in place (the
// configuration file untouched) are read at the next login: here the new
// pair is host-c's, which may read nothing, so that login fails where one
// with the kept connection, bound as host-a, would have got in.
func TestAgentCertificateRenewed(t *testing.T) {
	f := newFleet(t)
	u := newUser(t)
	f.enrollDir(t, u)
	a := startAgent(t)
	dir := t.TempDir()
	install := func(host string) {
		t.Helper()
		for _, ext := range []string{".pem", ".key"} {
			data, err := os.ReadFile(filepath.Join(f.d.certs, host+ext))
			if err != nil {
				t.Fatal(err)
			}
			// As certbot and the like do: a new file renamed into place.
			tmp := filepath.Join(dir, "new"+ext)
			if err := os.WriteFile(tmp, data, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(tmp, filepath.Join(dir, "host"+ext)); err != nil {
				t.Fatal(err)
			}
		}
	}
	install("host-a")
	conf := f.d.hostConfLines(t, "renewed", []string{"uri " + f.d.ldaps, "base ou=people," + ldapSuffix, "ca_file " + f.d.ca,
		"cert_file " + filepath.Join(dir, "host.pem"), "key_file " + filepath.Join(dir, "host.key"), "timeout 5"})
	svc := service(t, module("required", "directory="+conf, "agent="+a.socket))
	waitForFreshStep(30, 10)
	if err := loginWith(t, svc, u, code(t, u.secret, 0)); err != nil {
		t.Fatalf("the first login through the agent: %v", err)
	}
	install("host-c")
	m := syslogs.mark()
	if err := loginWith(t, svc, u, code(t, u.secret, 1)); err == nil {
		t.Fatal("after the certificate was renewed, a login used the connection bound with the old one")
	}
	expectLog(t, m, `user=`+u.name+` .*outcome=fail reason=".*no entry for .*`+u.name+`.* that this host may read`)
}

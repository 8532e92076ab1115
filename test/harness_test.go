// SPDX-License-Identifier: Apache-2.0

// Package test drives the built module through real hosts: libpam with
// pam_start_confdir, sshd on 127.0.0.1 and sudo. Codes come from oathtool,
// an implementation that is not ours.
//
// The tests need root. They run inside a private mount namespace whose /etc
// is a copy (so users and PAM services can be added freely) and whose /dev
// has a syslog socket of the tests' own; the machine's /etc is never
// changed. As a normal user every test skips with a message.
package test

import (
	"crypto/rand"
	"encoding/base32"
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

const nsEnv = "PAMTOTP_TEST_DIR"

var (
	workDir  string // private to this run: module copy, homes, PAM services
	libDir   string // root-owned copy of the built module and checker
	buildDir string
	syslogs  = &logSink{}
)

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		os.Exit(m.Run()) // every test skips with a message
	}
	dir := os.Getenv(nsEnv)
	if dir == "" {
		os.Exit(reexecInNamespace())
	}
	if err := setupNamespace(dir); err != nil {
		fmt.Fprintln(os.Stderr, "setting up the test namespace:", err)
		os.Exit(1)
	}
	// With PAMTOTP_TEST_AGENT=1 (make test's second run) every test's
	// module line names an agent of the run's own, so that the logins it
	// serves (the system store, directory=) go through it.
	if os.Getenv("PAMTOTP_TEST_AGENT") == "1" {
		a, err := launchAgent(filepath.Join(dir, "agent.sock"))
		if err != nil {
			fmt.Fprintln(os.Stderr, "starting the tests' agent:", err)
			os.Exit(1)
		}
		agentSocket, agentPid = a.socket, a.cmd.Process.Pid
		rc := m.Run()
		stopByPid(a.cmd)
		os.Exit(rc)
	}
	os.Exit(m.Run())
}

// reexecInNamespace runs this test binary again in a new mount namespace and
// removes the run's directory afterwards.
func reexecInNamespace() int {
	dir, err := os.MkdirTemp("", "pamtotp-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755) // test users must reach their homes below it
	args := append([]string{"--mount", "--propagation", "private", os.Args[0]}, os.Args[1:]...)
	cmd := exec.Command("unshare", args...)
	cmd.Env = append(os.Environ(), nsEnv+"="+dir)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		fmt.Fprintln(os.Stderr, "unshare:", err)
		return 1
	}
	return 0
}

func setupNamespace(dir string) error {
	workDir = dir
	wd, err := os.Getwd()
	if err != nil {
		return err
	}
	buildDir = filepath.Join(wd, "..", "build")
	steps := [][]string{
		{"mkdir", "-p", dir + "/etc", dir + "/olddev", dir + "/lib", dir + "/home"},
		{"cp", "-a", "/etc/.", dir + "/etc/"},
		{"mount", "--bind", dir + "/etc", "/etc"},
		{"cp", filepath.Join(buildDir, "pam_totp.so"), filepath.Join(buildDir, "pam-totp-check"), filepath.Join(buildDir, "pam-totp-check-directory"), filepath.Join(buildDir, "pam-totp-agent"), filepath.Join(buildDir, "pam-totp-verifier"), filepath.Join(buildDir, "totp-enroll"), dir + "/lib/"},
		{"mount", "--rbind", "/dev", dir + "/olddev"},
	}
	for _, s := range steps {
		if out, err := exec.Command(s[0], s[1:]...).CombinedOutput(); err != nil {
			return fmt.Errorf("%v: %v: %s", s, err, out)
		}
	}
	// A private /dev: the machine's devices, plus a /dev/log of our own.
	// Done with system calls: a command needs /dev/null to start.
	if err := syscall.Mount("tmpfs", "/dev", "tmpfs", 0, "mode=755"); err != nil {
		return fmt.Errorf("mounting /dev: %w", err)
	}
	for _, n := range []string{"null", "zero", "full", "random", "urandom", "tty", "pts", "shm"} {
		src, dst := dir+"/olddev/"+n, "/dev/"+n
		var err error
		if n == "pts" || n == "shm" {
			err = os.Mkdir(dst, 0o755)
		} else {
			err = os.WriteFile(dst, nil, 0o644)
		}
		if err == nil {
			err = syscall.Mount(src, dst, "", syscall.MS_BIND|syscall.MS_REC, "")
		}
		if err != nil {
			return fmt.Errorf("/dev/%s: %w", n, err)
		}
	}
	for link, target := range map[string]string{"ptmx": "pts/ptmx", "fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2"} {
		if err := os.Symlink(target, "/dev/"+link); err != nil {
			return err
		}
	}
	libDir = dir + "/lib"
	for _, d := range []string{dir + "/lib", dir + "/home"} {
		if err := os.Chmod(d, 0o755); err != nil {
			return err
		}
	}
	return syslogs.listen("/dev/log")
}

// needRoot skips a test that needs the namespace (root) or a Debian package.
func needRoot(t testing.TB, commands ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: it adds users and PAM services in a private mount namespace (CI runs it as root)")
	}
	for _, c := range commands {
		if _, err := exec.LookPath(c); err != nil {
			t.Skipf("needs %s (scripts/test-deps installs it)", c)
		}
	}
}

// logSink collects the syslog lines the module and the checker send.
type logSink struct {
	mu    sync.Mutex
	lines []string
	conn  *net.UnixConn
}

// restart is a syslog daemon restarting: its socket closed, and a new one
// at the same path.
func (l *logSink) restart(path string) error {
	l.mu.Lock()
	old := l.conn
	l.mu.Unlock()
	old.Close()
	os.Remove(path)
	return l.listen(path)
}

func (l *logSink) listen(path string) error {
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return err
	}
	l.mu.Lock()
	l.conn = conn
	l.mu.Unlock()
	os.Chmod(path, 0o666)
	go func() {
		buf := make([]byte, 8192)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			l.mu.Lock()
			l.lines = append(l.lines, string(buf[:n]))
			l.mu.Unlock()
		}
	}()
	return nil
}

// mark returns a position; since returns the lines logged after it.
func (l *logSink) mark() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.lines)
}

func (l *logSink) since(m int) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.lines[m:]...)
}

// expectLog waits for a line after m that matches re, and fails the test
// if any line after m contains one of the forbidden strings (codes, secrets).
func expectLog(t testing.TB, m int, re string, forbidden ...string) {
	t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(3 * time.Second)
	for {
		lines := syslogs.since(m)
		for _, line := range lines {
			for _, f := range forbidden {
				if f != "" && strings.Contains(line, f) {
					t.Fatalf("a log line contains %q: %s", f, line)
				}
			}
		}
		for _, line := range lines {
			if rx.MatchString(line) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log line matches %q; got:\n%s", re, strings.Join(lines, "\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// user is a test account in the namespace's /etc.
type user struct {
	name, home, password string
	uid, gid             int
	secret               string // base32, once enrolled
	scratch              []string
}

var (
	userMu   sync.Mutex
	userNext = 0
	pwHash   string
)

const testPassword = "correct horse 42"

func newUser(t testing.TB) *user { return newUserNamed(t, "") }

// newUserNamed is newUser with a name of the test's choosing ("" for pttN).
func newUserNamed(t testing.TB, name string) *user {
	t.Helper()
	userMu.Lock()
	defer userMu.Unlock()
	if pwHash == "" {
		out, err := exec.Command("openssl", "passwd", "-6", "-salt", "pamtotptest", testPassword).Output()
		if err != nil {
			t.Fatalf("openssl passwd: %v", err)
		}
		pwHash = strings.TrimSpace(string(out))
	}
	userNext++
	if name == "" {
		name = fmt.Sprintf("ptt%d", userNext)
	}
	u := &user{name: name, uid: 61000 + userNext, gid: 61000 + userNext, password: testPassword}
	u.home = filepath.Join(workDir, "home", u.name)
	appendLine(t, "/etc/passwd", fmt.Sprintf("%s:x:%d:%d::%s:/bin/sh", u.name, u.uid, u.gid, u.home))
	appendLine(t, "/etc/shadow", fmt.Sprintf("%s:%s:19000:0:99999:7:::", u.name, pwHash))
	appendLine(t, "/etc/group", fmt.Sprintf("%s:x:%d:", u.name, u.gid))
	if err := os.Mkdir(u.home, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(u.home, u.uid, u.gid); err != nil {
		t.Fatal(err)
	}
	return u
}

func appendLine(t testing.TB, path, line string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(line + "\n"); err != nil {
		t.Fatal(err)
	}
}

func newSecret(t testing.TB) string {
	t.Helper()
	k := make([]byte, 20)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return base32.StdEncoding.EncodeToString(k)
}

// enroll runs the real totp-enroll for u with a known secret.
func enroll(t testing.TB, u *user, extra ...string) {
	t.Helper()
	u.secret = newSecret(t)
	args := append([]string{"--user", u.name, "--secret", u.secret, "--no-confirm", "--qr", "none", "--scratch-codes", "2"}, extra...)
	out, err := exec.Command(filepath.Join(libDir, "totp-enroll"), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("totp-enroll %v: %v\n%s", args, err, out)
	}
	u.scratch = regexp.MustCompile(`(?m)^  (\d{8})$`).FindAllString(string(out), -1)
	for i := range u.scratch {
		u.scratch[i] = strings.TrimSpace(u.scratch[i])
	}
	if len(u.scratch) != 2 {
		t.Fatalf("totp-enroll printed %d scratch codes, want 2:\n%s", len(u.scratch), out)
	}
}

// code asks oathtool for u's code at offset steps of 30 s from now.
func code(t testing.TB, secret string, offset int, oathArgs ...string) string {
	t.Helper()
	at := time.Now().Unix() + int64(offset)*30
	if len(oathArgs) == 0 || !strings.HasPrefix(oathArgs[0], "--totp") {
		oathArgs = append([]string{"--totp"}, oathArgs...)
	}
	args := append(oathArgs, "-b", secret, "-N", "@"+strconv.FormatInt(at, 10))
	out, err := exec.Command("oathtool", args...).Output()
	if err != nil {
		t.Fatalf("oathtool: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// service writes a PAM service file into a fresh directory for pam_start_confdir.
func service(t testing.TB, lines ...string) string {
	t.Helper()
	dir := t.TempDir()
	text := strings.Join(lines, "\n") + "\n"
	if err := os.WriteFile(filepath.Join(dir, "pamtotp-test"), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// module is the pam_totp line for a service, with the test checker and no delay.
func module(control string, opts ...string) string {
	return fmt.Sprintf("auth %s %s/pam_totp.so checker=%s/pam-totp-check nodelay %s %s",
		control, libDir, libDir, agentOption(), strings.Join(opts, " "))
}

// agentSocket is the run's agent (PAMTOTP_TEST_AGENT=1), or "", and
// agentPid its pid.
var (
	agentSocket string
	agentPid    int
)

// throughRunAgent fails the test, in the run with an agent, unless every
// decision logged since m is the run agent's: the test's logins went
// through it, as the second run of make test says they do.
func throughRunAgent(t *testing.T, m int) {
	t.Helper()
	if agentSocket == "" {
		return
	}
	re := regexp.MustCompile(`pam_totp\[(\d+)\]: user=.* outcome=`)
	n := 0
	verifier := regexp.MustCompile(` service=\S+ host=`) // a verifier's line, for the host named
	for _, l := range syslogs.since(m) {
		if s := re.FindStringSubmatch(l); s != nil && !verifier.MatchString(l) {
			if s[1] != strconv.Itoa(agentPid) {
				t.Fatalf("with the run's agent (pid %d), a decision was made by pid %s: %s", agentPid, s[1], l)
			}
			n++
		}
	}
	if n == 0 {
		t.Fatal("with the run's agent, no decision was logged")
	}
}

// agentOption names the run's agent, or turns the agent off: a test never
// reaches an agent of the machine's.
func agentOption() string {
	if agentSocket == "" {
		return "agent=off"
	}
	return "agent=" + agentSocket
}

// conv answers prompts and records them.
type conv struct {
	mu      sync.Mutex
	answers []string // one per echo-off/echo-on prompt, in order
	prompts []string
	styles  []pam.Style // of the prompts
	infos   []string
}

func (c *conv) RespondPAM(s pam.Style, msg string) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch s {
	case pam.PromptEchoOff, pam.PromptEchoOn:
		c.prompts = append(c.prompts, msg)
		c.styles = append(c.styles, s)
		if len(c.answers) == 0 {
			return "", fmt.Errorf("unexpected prompt %q", msg)
		}
		a := c.answers[0]
		c.answers = c.answers[1:]
		return a, nil
	default:
		c.infos = append(c.infos, msg)
		return "", nil
	}
}

// authenticate runs one pam_authenticate through real libpam and fails the
// test if it takes longer than a login may.
func authenticate(t testing.TB, confDir, userName string, c *conv) error {
	t.Helper()
	return authenticateFrom(t, confDir, userName, c, nil)
}

// authenticateFrom is authenticate with PAM items such as PAM_RHOST set.
func authenticateFrom(t testing.TB, confDir, userName string, c pam.ConversationHandler, items map[pam.Item]string) error {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		tx, err := pam.StartConfDir("pamtotp-test", userName, c, confDir)
		if err != nil {
			done <- fmt.Errorf("pam_start: %w", err)
			return
		}
		for k, v := range items {
			if err := tx.SetItem(k, v); err != nil {
				done <- fmt.Errorf("pam_set_item: %w", err)
				return
			}
		}
		err = tx.Authenticate(0)
		tx.End()
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("pam_authenticate hung for 30 s")
		return nil
	}
}

// stopByPid ends a process the test started, by its pid: SIGTERM, then
// SIGKILL if it has not exited within 20 s; it waits for it either way.
func stopByPid(cmd *exec.Cmd) {
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		<-done
	}
}

// waitListening waits, at most 5 s, until something accepts connections
// at addr; what and log name the server in the failure.
func waitListening(t testing.TB, addr, what string, log *syncBuffer) {
	t.Helper()
	for i := 0; ; i++ {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return
		}
		if i == 200 {
			t.Fatalf("%s did not listen on %s:\n%s", what, addr, log.String())
		}
		time.Sleep(25 * time.Millisecond)
	}
}

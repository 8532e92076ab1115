// SPDX-License-Identifier: Apache-2.0

package test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/msteinert/pam/v2"
)

const gaModulePath = "/lib/x86_64-linux-gnu/security/pam_google_authenticator.so"

func needGoogle(t *testing.T) {
	t.Helper()
	needRoot(t, "oathtool", "openssl", "google-authenticator")
	if _, err := os.Stat(gaModulePath); err != nil {
		t.Skip("needs libpam-google-authenticator (scripts/deps --with-reference installs it)")
	}
}

// gaEnroll runs the real google-authenticator command as u, non-interactively,
// and returns the secret it wrote to ~/.google_authenticator.
func gaEnroll(t *testing.T, u *user, flags ...string) string {
	t.Helper()
	path := filepath.Join(u.home, ".google_authenticator")
	args := append([]string{"-f", "-q", "-C", "-Q", "NONE", "-s", path}, flags...)
	cmd := exec.Command("google-authenticator", args...)
	cmd.Env = []string{"HOME=" + u.home, "USER=" + u.name, "PATH=/usr/bin:/bin"}
	cmd.Dir = u.home
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(u.uid), Gid: uint32(u.gid)}}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("google-authenticator %v: %v\n%s", args, err, out)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	u.secret, _, _ = strings.Cut(string(data), "\n")
	u.scratch = regexp.MustCompile(`(?m)^\d{8}$`).FindAllString(string(data), -1)
	return path
}

// copyGoogleFile gives to the same ~/.google_authenticator as from, with the same mode.
func copyGoogleFile(t *testing.T, from, to *user) {
	t.Helper()
	src := filepath.Join(from.home, ".google_authenticator")
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := writeAs(to, filepath.Join(to.home, ".google_authenticator"), string(data), st.Mode().Perm()); err != nil {
		t.Fatal(err)
	}
	to.secret, to.scratch = from.secret, from.scratch
}

// sideBySide runs each login against pam_google_authenticator on one user's
// file and against pam_totp on another user's identical copy.
type sideBySide struct {
	t          *testing.T
	ga, totp   *user
	gaDir, dir string
}

func newSideBySide(t *testing.T, gaFlags []string, opts ...string) *sideBySide {
	t.Helper()
	s := &sideBySide{t: t, ga: newUser(t), totp: newUser(t)}
	gaEnroll(t, s.ga, gaFlags...)
	copyGoogleFile(t, s.ga, s.totp)
	line := strings.TrimSpace("auth required pam_google_authenticator.so " + strings.Join(opts, " "))
	s.gaDir = service(t, line)
	s.dir = service(t, module("required", opts...))
	return s
}

// login answers code to both modules and checks each one's outcome. For a
// documented difference, want differs between the two.
func (s *sideBySide) login(what, code string, wantGA, wantTOTP bool) {
	s.t.Helper()
	cg := &conv{answers: []string{code}}
	errGA := authenticate(s.t, s.gaDir, s.ga.name, cg)
	ct := &conv{answers: []string{code}}
	errTOTP := authenticate(s.t, s.dir, s.totp.name, ct)
	for _, e := range []error{errGA, errTOTP} {
		if e != nil && !errors.Is(e, pam.ErrAuth) {
			s.t.Fatalf("%s: unexpected error %v", what, e)
		}
	}
	if (errGA == nil) != wantGA || (errTOTP == nil) != wantTOTP {
		s.t.Fatalf("%s: pam_google_authenticator ok=%v (want %v), pam_totp ok=%v (want %v)",
			what, errGA == nil, wantGA, errTOTP == nil, wantTOTP)
	}
	// The same prompts, except that the old module does not prompt when its
	// rate limit is hit, and pam_totp always does (documented difference).
	if len(cg.prompts) > 0 && strings.Join(cg.prompts, "|") != strings.Join(ct.prompts, "|") || len(ct.prompts) != 1 {
		s.t.Fatalf("%s: prompts differ: %q and %q", what, cg.prompts, ct.prompts)
	}
}

// waitForFreshStep returns once at least margin seconds are left in the
// current time step, so that a scenario's codes all belong to one step.
func waitForFreshStep(step, margin int64) {
	for time.Now().Unix()%step > step-margin {
		time.Sleep(200 * time.Millisecond)
	}
}

func TestGoogleSideBySideTOTP(t *testing.T) {
	needGoogle(t)
	s := newSideBySide(t, []string{"-t", "-d", "-u", "-w", "3", "-e", "2"})
	waitForFreshStep(30, 15)
	sec := s.ga.secret
	s.login("right code", code(t, sec, 0), true, true)
	s.login("the same code again", code(t, sec, 0), false, false)
	s.login("wrong code", fmt.Sprintf("%06d", (atoi(code(t, sec, 0))+7)%1000000), false, false)
	s.login("next step, window edge", code(t, sec, 1), true, true)
	// Documented difference: an older code after a newer one is a replay
	// for pam_totp (RFC 6238 section 5.2); the old module only refuses the
	// exact steps it listed.
	s.login("older step inside the window", code(t, sec, -1), true, false)
	s.login("two steps ahead, outside the window", code(t, sec, 2), false, false)
	// Documented difference: the next consecutive far-off code completes
	// pam_totp's resync; the old module needs three, at separate times.
	s.login("the consecutive far-off code", code(t, sec, 3), false, true)
	s.login("scratch code", s.ga.scratch[0], true, true)
	s.login("scratch code again", s.ga.scratch[0], false, false)
	s.login("malformed", "12ab56", false, false)

	// Going back: pam_google_authenticator still reads the file pam_totp
	// wrote, and refuses what pam_totp accepted.
	back := service(t, "auth required pam_google_authenticator.so")
	for _, c := range []string{code(t, sec, 3), s.totp.scratch[0]} {
		if err := authenticate(t, back, s.totp.name, &conv{answers: []string{c}}); !errors.Is(err, pam.ErrAuth) {
			t.Fatalf("old module after pam_totp: a used code gives %v, want ErrAuth", err)
		}
	}
	if err := authenticate(t, back, s.totp.name, &conv{answers: []string{s.totp.scratch[1]}}); err != nil {
		t.Fatalf("old module after pam_totp: the unused scratch code: %v", err)
	}
	data, _ := os.ReadFile(filepath.Join(s.totp.home, ".google_authenticator"))
	for _, want := range []string{`" TIME_SKEW 3`, `" DISALLOW_REUSE`, `" TOTP_AUTH`} {
		if !strings.Contains(string(data), want) {
			t.Errorf("file after pam_totp lacks %q:\n%s", want, data)
		}
	}
}

func TestGoogleSideBySideStep60(t *testing.T) {
	needGoogle(t)
	s := newSideBySide(t, []string{"-t", "-d", "-u", "-S", "60", "-w", "3", "-e", "1"})
	waitForFreshStep(60, 12)
	sec := s.ga.secret
	c60 := func(offset int) string { return code(t, sec, offset*2, "--totp", "--time-step-size=60s") }
	s.login("right 60 s code", c60(0), true, true)
	s.login("the same code again", c60(0), false, false)
	s.login("a 30 s code", code(t, sec, 0), false, false)
	s.login("next 60 s step", c60(1), true, true)
}

func TestGoogleSideBySideRateLimit(t *testing.T) {
	needGoogle(t)
	s := newSideBySide(t, []string{"-t", "-d", "-r", "3", "-R", "30", "-w", "3", "-e", "2"})
	waitForFreshStep(30, 12)
	sec := s.ga.secret
	s.login("first code", code(t, sec, -1), true, true)
	s.login("second code", code(t, sec, 0), true, true)
	s.login("third code", code(t, sec, 1), true, true)
	// Documented difference: the old module counts every attempt, so a
	// user's own successes lock them out; pam_totp counts failures only.
	s.login("fourth login, scratch code", s.ga.scratch[0], false, true)
	wrong := fmt.Sprintf("%06d", (atoi(code(t, sec, 0))+7)%1000000)
	s.login("wrong 1", wrong, false, false)
	s.login("wrong 2", wrong, false, false)
	s.login("wrong 3", wrong, false, false)
	// Three failures within 30 s: both refuse even a right answer now.
	s.login("scratch code during the limit", s.ga.scratch[1], false, false)
	data, _ := os.ReadFile(filepath.Join(s.totp.home, ".google_authenticator"))
	if !regexp.MustCompile(`(?m)^" RATE_LIMIT 3 30 \d+ \d+ \d+$`).Match(data) {
		t.Errorf("pam_totp did not record the three failures in RATE_LIMIT:\n%s", data)
	}
}

func TestGoogleSideBySideHOTP(t *testing.T) {
	needGoogle(t)
	s := newSideBySide(t, []string{"-c", "-u", "-w", "3", "-e", "1"})
	h := func(counter int) string {
		out, err := exec.Command("oathtool", "--hotp", "-b", s.ga.secret, "-c", strconv.Itoa(counter)).Output()
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(out))
	}
	s.login("counter 1", h(1), true, true)
	s.login("counter 1 again", h(1), false, false)
	s.login("counter 4, the window's far edge", h(4), true, true)
	s.login("counter 3, behind", h(3), false, false)
	s.login("wrong code moves the counter on", "000000", false, false)
	s.login("counter 6 skipped by that", h(6), false, false)
	s.login("counter 8", h(8), true, true)
	data, _ := os.ReadFile(filepath.Join(s.totp.home, ".google_authenticator"))
	if !strings.Contains(string(data), `" HOTP_COUNTER 9`) {
		t.Errorf("HOTP_COUNTER not 9 after counter 8:\n%s", data)
	}
}

func TestGoogleSideBySideNoIncrementAndNoSkew(t *testing.T) {
	needGoogle(t)
	s := newSideBySide(t, []string{"-c", "-u", "-w", "3", "-e", "1"}, "no_increment_hotp")
	h := func(counter int) string {
		out, _ := exec.Command("oathtool", "--hotp", "-b", s.ga.secret, "-c", strconv.Itoa(counter)).Output()
		return strings.TrimSpace(string(out))
	}
	s.login("wrong code", "000000", false, false)
	s.login("counter 1 still expected", h(1), true, true)

	n := newSideBySide(t, []string{"-t", "-d", "-u", "-w", "3", "-e", "1"}, "noskewadj")
	waitForFreshStep(30, 10)
	n.login("far-off code", code(t, n.ga.secret, 5), false, false)
	n.login("consecutive far-off code", code(t, n.ga.secret, 6), false, false)
	n.login("right code", code(t, n.ga.secret, 0), true, true)
}

// The old module's options keep their meaning in pam_totp.
func TestGoogleOptions(t *testing.T) {
	needGoogle(t)
	u := newUser(t)
	gaEnroll(t, u, "-t", "-d", "-u", "-w", "3", "-e", "2")
	// secret= with ${HOME}, prompt and echo options.
	os.Rename(filepath.Join(u.home, ".google_authenticator"), filepath.Join(u.home, ".ga"))
	dir := service(t, module("required", "secret=${HOME}/.ga", "authtok_prompt=Token:", "echo_verification_code", "debug"))
	waitForFreshStep(30, 10)
	c := &conv{answers: []string{code(t, u.secret, 0)}}
	if err := authenticate(t, dir, u.name, c); err != nil {
		t.Fatalf("secret=${HOME}/.ga: %v", err)
	}
	if len(c.styles) != 1 || c.styles[0] != pam.PromptEchoOn || c.prompts[0] != "Token:" {
		t.Fatalf("prompt %q style %v", c.prompts, c.styles)
	}

	// user=root with a root-owned store, the way the old module's README
	// sets it up; and allowed_perm / no_strict_owner.
	store := filepath.Join(workDir, "ga-store")
	os.MkdirAll(store, 0o700)
	data, _ := os.ReadFile(filepath.Join(u.home, ".ga"))
	if err := os.WriteFile(filepath.Join(store, u.name), data, 0o400); err != nil {
		t.Fatal(err)
	}
	dir = service(t, module("required", "secret="+store+"/${USER}", "user=root"))
	if err := authenticate(t, dir, u.name, &conv{answers: []string{code(t, u.secret, 1)}}); err != nil {
		t.Fatalf("user=root store: %v", err)
	}
	// Without user=, a ${USER} template is the user's own file, as in the
	// old module: the root-owned file is refused...
	dir = service(t, module("required", "secret="+store+"/${USER}"))
	m := syslogs.mark()
	if err := authenticate(t, dir, u.name, &conv{answers: []string{u.scratch[0]}}); !errors.Is(err, pam.ErrAuth) {
		t.Fatalf("root-owned file read as the user: %v", err)
	}
	expectLog(t, m, `user=`+u.name+`.*outcome=fail`)

	// ...and a group-readable file needs allowed_perm.
	os.Chmod(filepath.Join(u.home, ".ga"), 0o440)
	dir = service(t, module("required", "secret=~/.ga"))
	m = syslogs.mark()
	if err := authenticate(t, dir, u.name, &conv{answers: []string{u.scratch[0]}}); !errors.Is(err, pam.ErrAuth) {
		t.Fatalf("mode 0440 without allowed_perm: %v", err)
	}
	expectLog(t, m, `has mode 0440`)
	dir = service(t, module("required", "secret=~/.ga", "allowed_perm=0440"))
	if err := authenticate(t, dir, u.name, &conv{answers: []string{u.scratch[0]}}); err != nil {
		t.Fatalf("mode 0440 with allowed_perm=0440: %v", err)
	}
	// pam_totp keeps the file's mode when it rewrites it.
	if st, err := os.Stat(filepath.Join(u.home, ".ga")); err != nil || st.Mode().Perm() != 0o440 {
		t.Fatalf("mode after rewrite: %v %v", st.Mode(), err)
	}
	// Group or other write access is never allowed: the option is refused.
	dir = service(t, module("required", "secret=~/.ga", "allowed_perm=0660"))
	m = syslogs.mark()
	if err := authenticate(t, dir, u.name, &conv{answers: []string{u.scratch[1]}}); !errors.Is(err, pam.ErrAuth) {
		t.Fatalf("allowed_perm=0660: %v", err)
	}
	expectLog(t, m, `allowed_perm=0660.*group or other write access`)

	// allow_readonly is accepted, and a login still works.
	os.Chmod(filepath.Join(u.home, ".ga"), 0o400)
	dir = service(t, module("required", "secret=~/.ga", "allow_readonly", "no_strict_owner", "noskewadj", "no_increment_hotp"))
	if err := authenticate(t, dir, u.name, &conv{answers: []string{u.scratch[1]}}); err != nil {
		t.Fatalf("old options accepted: %v", err)
	}
}

// grace_period: the same place within S seconds is not asked again; another
// place, or a terminal, is.
func TestGoogleGracePeriod(t *testing.T) {
	needGoogle(t)
	u := newUser(t)
	gaEnroll(t, u, "-t", "-d", "-u", "-w", "3", "-e", "1")
	dir := service(t, module("required", "grace_period=300"))
	from := func(host string) map[pam.Item]string { return map[pam.Item]string{pam.Rhost: host} }
	waitForFreshStep(30, 10)
	if err := authenticateFrom(t, dir, u.name, &conv{answers: []string{code(t, u.secret, 0)}}, from("192.0.2.1")); err != nil {
		t.Fatal(err)
	}
	c := &conv{}
	m := syslogs.mark()
	if err := authenticateFrom(t, dir, u.name, c, from("192.0.2.1")); err != nil || len(c.prompts) != 0 {
		t.Fatalf("same host within the grace period: %v, prompts %q", err, c.prompts)
	}
	expectLog(t, m, `user=`+u.name+`.*outcome=ok reason="grace period`)
	if err := authenticateFrom(t, dir, u.name, &conv{}, from("192.0.2.2")); err == nil {
		t.Fatal("another host got in without a code")
	}
	tty := map[pam.Item]string{pam.Tty: "/dev/pts/9"}
	if err := authenticateFrom(t, dir, u.name, &conv{}, tty); err == nil {
		t.Fatal("a local login got in on the grace of a remote one")
	}
	// Never across users: another user from the same host is asked.
	v := newUser(t)
	gaEnroll(t, v, "-t", "-d", "-u", "-w", "3", "-e", "1")
	if err := authenticateFrom(t, dir, v.name, &conv{}, from("192.0.2.1")); err == nil {
		t.Fatal("another user got in on the first user's grace")
	}
	// The old module reads the LASTn line pam_totp wrote.
	data, _ := os.ReadFile(filepath.Join(u.home, ".google_authenticator"))
	if !regexp.MustCompile(`(?m)^" LAST0 192\.0\.2\.1 \d+$`).Match(data) {
		t.Fatalf("no LAST0 line:\n%s", data)
	}
	ga := service(t, "auth required pam_google_authenticator.so grace_period=300")
	c = &conv{}
	if err := authenticateFrom(t, ga, u.name, c, from("192.0.2.1")); err != nil || len(c.prompts) != 0 {
		t.Fatalf("old module on pam_totp's LAST0: %v, prompts %q", err, c.prompts)
	}
	// A grace period that has run out asks again.
	short := service(t, module("required", "grace_period=1"))
	time.Sleep(1100 * time.Millisecond)
	if err := authenticateFrom(t, short, u.name, &conv{}, from("192.0.2.1")); err == nil {
		t.Fatal("expired grace period let the user in")
	}
}

// Two logins at once on one file: the old module can lose an update; pam_totp
// takes a lock, so each of two scratch codes works exactly once.
func TestGoogleFileConcurrentLogins(t *testing.T) {
	needGoogle(t)
	u := newUser(t)
	gaEnroll(t, u, "-t", "-d", "-u", "-w", "3", "-e", "2")
	dir := service(t, module("required", "deny=0"))
	results := make(chan error, 8)
	for i := 0; i < 8; i++ {
		c := u.scratch[i%2]
		go func() { results <- authenticate(t, dir, u.name, &conv{answers: []string{c}}) }()
	}
	ok := 0
	for i := 0; i < 8; i++ {
		if <-results == nil {
			ok++
		}
	}
	if ok != 2 {
		t.Fatalf("%d of 8 logins with two scratch codes got in, want 2", ok)
	}
	data, _ := os.ReadFile(filepath.Join(u.home, ".google_authenticator"))
	if regexp.MustCompile(`(?m)^\d{8}$`).Match(data) {
		t.Fatalf("used scratch codes left in the file:\n%s", data)
	}
}

// A file made with -D (reuse allowed): the old module takes the same code
// twice; pam_totp refuses the second and records reuse protection.
func TestGoogleSideBySideReuseAllowed(t *testing.T) {
	needGoogle(t)
	s := newSideBySide(t, []string{"-t", "-D", "-u", "-w", "3", "-e", "1"})
	waitForFreshStep(30, 10)
	c := code(t, s.ga.secret, 0)
	s.login("right code", c, true, true)
	s.login("the same code again", c, true, false)
	data, _ := os.ReadFile(filepath.Join(s.totp.home, ".google_authenticator"))
	if !strings.Contains(string(data), `" DISALLOW_REUSE `) {
		t.Fatalf("no DISALLOW_REUSE written:\n%s", data)
	}
}

// grace_period for a local login needs a login session: a terminal alone
// gets none.
func TestGoogleGracePeriodTerminal(t *testing.T) {
	needGoogle(t)
	u := newUser(t)
	gaEnroll(t, u, "-t", "-d", "-u", "-w", "3", "-e", "2")
	dir := service(t, module("required", "grace_period=300"))
	tty := func(n string) map[pam.Item]string { return map[pam.Item]string{pam.Tty: n} }
	if err := authenticateFrom(t, dir, u.name, &conv{answers: []string{u.scratch[0]}}, tty("/dev/pts/3")); err != nil {
		t.Fatal(err)
	}
	// This test process has no login session (no pam_loginuid): a
	// terminal's name alone is no place to trust, as a later login can get
	// the same one. TestGraceIsPerLoginSession has the sessions.
	c := &conv{answers: []string{u.scratch[1]}}
	if err := authenticateFrom(t, dir, u.name, c, tty("/dev/pts/3")); err != nil || len(c.prompts) != 1 {
		t.Fatalf("same terminal, no login session: %v, prompts %q; want a prompt", err, c.prompts)
	}
	if err := authenticateFrom(t, dir, u.name, &conv{}, tty("/dev/pts/4")); err == nil {
		t.Fatal("another terminal got in without a code")
	}
}

// The user can write ~/.google_authenticator: its WINDOW_SIZE may narrow
// the module line's window=, never widen it, unless the admin says
// trust_file_settings. A file in a root-owned store is the admin's own.
func TestGoogleFileCannotWidenTheWindow(t *testing.T) {
	needGoogle(t)
	u := newUser(t)
	gaEnroll(t, u, "-t", "-d", "-u", "-w", "17", "-e", "1")
	strict := service(t, module("required", "window=0"))
	trusting := service(t, module("required", "window=0", "trust_file_settings"))
	waitForFreshStep(30, 5)
	m := syslogs.mark()
	if err := login(t, strict, u, code(t, u.secret, -2)); err == nil {
		t.Fatal("a code two steps old got in with window=0 and WINDOW_SIZE 17 in the user's file")
	}
	expectLog(t, m, `user=`+u.name+`.*outcome=fail reason="bad code"`)
	if err := login(t, strict, u, code(t, u.secret, 0)); err != nil {
		t.Fatalf("the current code with window=0: %v", err)
	}
	if err := login(t, trusting, u, code(t, u.secret, 2)); err != nil {
		t.Fatalf("a code two steps ahead with trust_file_settings and WINDOW_SIZE 17: %v", err)
	}
}

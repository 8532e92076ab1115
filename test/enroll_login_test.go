// SPDX-License-Identifier: Apache-2.0

package test

import (
	"bytes"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/msteinert/pam/v2"
	"golang.org/x/crypto/ssh"
)

// qrFromText finds the QR code in text that arrived through sshd (lines of
// half blocks, light modules drawn), and decodes it with zbarimg.
func qrFromText(t *testing.T, text string) string {
	t.Helper()
	var rows [][]bool // true = light
	for _, line := range strings.Split(text, "\n") {
		if strings.Trim(line, "█▀▄ ") != "" || !strings.ContainsAny(line, "█▀▄") {
			continue
		}
		var top, bottom []bool
		for _, r := range line {
			top = append(top, r == '█' || r == '▀')
			bottom = append(bottom, r == '█' || r == '▄')
		}
		rows = append(rows, top, bottom)
	}
	if len(rows) < 20 {
		t.Fatalf("no QR code in the text the client received:\n%s", text)
	}
	const scale = 4
	w := len(rows[0])
	var img bytes.Buffer
	fmt.Fprintf(&img, "P5\n%d %d\n255\n", w*scale, len(rows)*scale)
	for _, r := range rows {
		for y := 0; y < scale; y++ {
			for x := 0; x < w; x++ {
				v := byte(0)
				if x < len(r) && r[x] {
					v = 255
				}
				img.Write(bytes.Repeat([]byte{v}, scale))
			}
		}
	}
	path := filepath.Join(t.TempDir(), "qr.pgm")
	if err := os.WriteFile(path, img.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("zbarimg", "-q", "--raw", path).Output()
	if err != nil {
		t.Fatalf("zbarimg could not decode the QR code from the login text: %v\n%s", err, text)
	}
	return strings.TrimSpace(string(out))
}

// enrollingLogin answers a login that enrolls: the password, then a code
// computed from the QR code the client was shown.
type enrollingLogin struct {
	t         *testing.T
	password  string
	texts     []string // everything the client was shown
	uri       string
	wrongOnce bool
	scratch   []string
}

func (e *enrollingLogin) answer(name, instruction string, questions []string, echos []bool) ([]string, error) {
	out := make([]string, len(questions))
	for i, q := range questions {
		e.texts = append(e.texts, instruction+"\n"+q)
		switch {
		case strings.HasSuffix(q, "Password: "):
			out[i] = e.password
		case strings.Contains(q, "Verification code from the app"):
			if e.uri == "" {
				e.uri = qrFromText(e.t, q)
				if !strings.Contains(q, e.uri) {
					e.t.Errorf("the URI in the text differs from the QR code's %q", e.uri)
				}
			}
			if e.wrongOnce {
				e.wrongOnce = false
				out[i] = "000000"
				continue
			}
			u, err := url.Parse(e.uri)
			if err != nil {
				return nil, err
			}
			out[i] = code(e.t, u.Query().Get("secret"), 0)
		case strings.Contains(q, "Press Enter"):
			for _, m := range regexp.MustCompile(`(?m)^  (\d{8})$`).FindAllStringSubmatch(q, -1) {
				e.scratch = append(e.scratch, m[1])
			}
		default:
			return nil, fmt.Errorf("unexpected question %q", q)
		}
	}
	return out, nil
}

func TestEnrollAtLoginThroughSSHD(t *testing.T) {
	needRoot(t, "zbarimg", "oathtool")
	store := filepath.Join(workDir, "enroll-store")
	os.MkdirAll(store, 0o700)
	s := startSSHD(t, false, "auth requisite pam_unix.so nodelay",
		module("required", "enroll=login", "secret="+store+"/%u"))
	u := newUser(t)
	waitForFreshStep(30, 15)

	// A wrong password never gets to the enrollment.
	bad := &enrollingLogin{t: t, password: "wrong"}
	if _, err := s.dial(u.name, []ssh.AuthMethod{ssh.KeyboardInteractive(bad.answer)}); err == nil {
		t.Fatal("wrong password got in")
	}
	if _, err := os.Lstat(filepath.Join(store, u.name)); err == nil || bad.uri != "" {
		t.Fatal("a wrong password enrolled the user")
	}

	e := &enrollingLogin{t: t, password: u.password, wrongOnce: true}
	m := syslogs.mark()
	out, err := s.dial(u.name, []ssh.AuthMethod{ssh.KeyboardInteractive(e.answer)})
	if err != nil || out != "pamtotp-logged-in-as-"+u.name {
		t.Fatalf("enrolling login: %q, %v\n%s", out, err, strings.Join(e.texts, "\n---\n"))
	}
	expectLog(t, m, `user=`+u.name+`.*token=default outcome=ok reason="enrolled at login, pending until the login succeeds"`)
	// sshd calls pam_setcred once the login has succeeded as a whole.
	expectLog(t, m, `user=`+u.name+`.*token=default outcome=ok reason="enrolled at login: active now that the login succeeded"`)
	if !strings.HasPrefix(e.uri, "otpauth://totp/") || len(e.scratch) != 5 {
		t.Fatalf("uri %q, scratch codes %v", e.uri, e.scratch)
	}
	// The root-owned store has the file, which the user could not write.
	ownedBy(t, filepath.Join(store, u.name), 0)
	for _, text := range e.texts {
		for _, m := range strings.Split(text, "\n") {
			if len(m) > 512 {
				t.Fatalf("a line longer than a PAM message: %d bytes", len(m))
			}
		}
	}

	// The next login uses the new token like any other.
	sec, _ := url.Parse(e.uri)
	secret := sec.Query().Get("secret")
	if out, err := s.login(u.name, u.password, code(t, secret, 0), kbdFirst); err == nil {
		t.Fatalf("the code used to enroll was accepted again: %q", out)
	}
	if out, err := s.login(u.name, u.password, code(t, secret, 1), kbdFirst); err != nil || out != "pamtotp-logged-in-as-"+u.name {
		t.Fatalf("login with the enrolled token: %q, %v", out, err)
	}
	if out, err := s.login(u.name, u.password, e.scratch[0], kbdFirst); err != nil {
		t.Fatalf("login with a scratch code shown at enrollment: %q, %v", out, err)
	}
}

func TestEnrollAtLoginClosed(t *testing.T) {
	needRoot(t, "oathtool", "openssl")
	u := newUser(t)
	// enroll_until in the past: not enrolled, and refused.
	dir := service(t, "auth required pam_unix.so nodelay", module("required", "enroll=login", "enroll_until=2020-01-01"))
	c := &conv{answers: []string{u.password, "123456"}}
	if err := authenticate(t, dir, u.name, c); err == nil {
		t.Fatal("a user without a secret got in after enroll_until")
	}
	if _, err := os.Lstat(filepath.Join(u.home, ".pam_totp")); err == nil {
		t.Fatal("enrolled after enroll_until")
	}
	// No password module before: never enrolls.
	m := syslogs.mark()
	if err := authenticate(t, service(t, module("required", "enroll=login")), u.name, &conv{answers: []string{"123456"}}); err == nil {
		t.Fatal("got in without a password module")
	}
	expectLog(t, m, `no password from an earlier module; not enrolling`)
	// Excluded with the options that take the code from the password.
	m = syslogs.mark()
	if err := authenticate(t, service(t, module("required", "enroll=login", "forward_pass")), u.name, &conv{answers: []string{"x"}}); err == nil {
		t.Fatal("enroll=login with forward_pass accepted")
	}
	expectLog(t, m, `enroll=login needs a prompt of its own`)
}

// enrollConv answers a login that enrolls through libpam: the password,
// then codes from the secret shown in the messages.
type enrollConv struct {
	t        *testing.T
	password string
	infos    []string
	prompts  []string
}

func (c *enrollConv) RespondPAM(s pam.Style, msg string) (string, error) {
	switch {
	case s != pam.PromptEchoOff && s != pam.PromptEchoOn:
		c.infos = append(c.infos, msg)
		return "", nil
	case strings.HasSuffix(msg, "assword: "):
		c.prompts = append(c.prompts, msg)
		return c.password, nil
	case strings.Contains(msg, "Verification code from the app"):
		c.prompts = append(c.prompts, msg)
		m := regexp.MustCompile(`otpauth://\S+`).FindString(strings.Join(c.infos, "\n"))
		u, err := url.Parse(m)
		if err != nil || m == "" {
			return "", fmt.Errorf("no URI in %q", c.infos)
		}
		return code(c.t, u.Query().Get("secret"), 0), nil
	case strings.Contains(msg, "Press Enter"):
		return "", nil
	case msg == "Verification code: ":
		// An enrolled user's prompt, or the one the module shows after a
		// refused password: the same to whoever sees it.
		c.prompts = append(c.prompts, msg)
		return "000000", nil
	}
	return "", fmt.Errorf("unexpected prompt %q", msg)
}

// pendingOf lists u's pending enrollments made at login (their secret files).
func pendingOf(u *user) []string {
	all, _ := filepath.Glob(filepath.Join(u.home, ".pam_totp.pending-*"))
	var out []string
	for _, p := range all {
		if !strings.HasSuffix(p, ".state") {
			out = append(out, p)
		}
	}
	return out
}

// loginAndSetcred runs pam_authenticate and, only if it succeeded and
// setcred is true, pam_setcred, as hosts do, on one handle.
func loginAndSetcred(t *testing.T, dir, userName string, c pam.ConversationHandler, setcred bool) (authErr, credErr error) {
	t.Helper()
	tx, err := pam.StartConfDir("pamtotp-test", userName, c, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.End()
	if authErr = tx.Authenticate(0); authErr == nil && setcred {
		credErr = tx.SetCred(pam.EstablishCred)
	}
	return authErr, credErr
}

// enroll=login never enrolls after a wrong password, whatever the stack:
// the enrollment waits until pam_setcred, which a host calls only when the
// whole stack succeeded.
func TestEnrollAtLoginNeedsTheWholeStack(t *testing.T) {
	needRoot(t, "oathtool", "openssl")
	enrolled := func(u *user) bool {
		_, err := os.Lstat(filepath.Join(u.home, ".pam_totp"))
		return err == nil
	}
	for _, control := range []string{"required", "optional", "[success=ok default=bad]"} {
		t.Run(control, func(t *testing.T) {
			u := newUser(t)
			dir := service(t, "auth "+control+" pam_unix.so nodelay", module("required", "enroll=login"))
			waitForFreshStep(30, 5)

			// A wrong password that the stack lets reach us: the attacker
			// sees a QR code and confirms it, and is still not enrolled.
			bad := &enrollConv{t: t, password: "wrong"}
			m := syslogs.mark()
			if authErr, _ := loginAndSetcred(t, dir, u.name, bad, true); authErr == nil {
				t.Fatal("a wrong password got in")
			}
			if enrolled(u) {
				t.Fatal("a wrong password enrolled the user")
			}
			// pam_unix left its verdict for us: the module asks for a code
			// itself, starts no checker, and shows no QR code at all.
			expectLog(t, m, `pam_totp.*user=`+u.name+` outcome=fail reason="the password was refused earlier in the stack; no checker started"`)
			if len(bad.infos) != 0 || !slices.Contains(bad.prompts, "Verification code: ") {
				t.Fatalf("a wrong password was shown %q and asked %q; want the code prompt alone", bad.infos, bad.prompts)
			}

			// The right password: authenticated, but not enrolled until setcred.
			good := &enrollConv{t: t, password: u.password}
			if authErr, _ := loginAndSetcred(t, dir, u.name, good, false); authErr != nil {
				t.Fatalf("right password: %v", authErr)
			}
			if enrolled(u) {
				t.Fatal("enrolled before pam_setcred")
			}
			good = &enrollConv{t: t, password: u.password}
			m = syslogs.mark()
			if authErr, credErr := loginAndSetcred(t, dir, u.name, good, true); authErr != nil || credErr != nil {
				t.Fatalf("right password and setcred: %v, %v", authErr, credErr)
			}
			expectLog(t, m, `user=`+u.name+`.*outcome=ok reason="enrolled at login: active now that the login succeeded"`)
			if !enrolled(u) {
				t.Fatal("not enrolled after a successful login and pam_setcred")
			}
			if left, _ := filepath.Glob(filepath.Join(u.home, ".pam_totp.pending-*")); len(left) != 0 {
				t.Fatalf("pending enrollments left behind: %v", left)
			}
		})
	}
}

// A module after ours that refuses the login: the user saw a QR code and
// confirmed it, and is still not enrolled, because pam_setcred never came.
func TestEnrollAtLoginLaterModuleRefuses(t *testing.T) {
	needRoot(t, "oathtool", "openssl")
	u := newUser(t)
	dir := service(t, "auth required pam_unix.so nodelay", module("required", "enroll=login"), "auth required pam_deny.so")
	waitForFreshStep(30, 5)
	c := &enrollConv{t: t, password: u.password}
	m := syslogs.mark()
	if authErr, _ := loginAndSetcred(t, dir, u.name, c, true); authErr == nil {
		t.Fatal("pam_deny let the login through")
	}
	expectLog(t, m, `user=`+u.name+`.*reason="enrolled at login, pending until the login succeeds"`)
	if _, err := os.Lstat(filepath.Join(u.home, ".pam_totp")); err == nil {
		t.Fatal("enrolled although the stack refused the login")
	}
	if pending := pendingOf(u); len(pending) != 1 {
		t.Fatalf("pending enrollments: %v, want one", pending)
	}
}

// Through sshd, with a stack that goes on after a wrong password, and with
// one whose last module refuses: nobody is enrolled by a login that fails.
func TestEnrollAtLoginThroughSSHDFailedLogins(t *testing.T) {
	needRoot(t, "zbarimg", "oathtool")
	store := filepath.Join(workDir, "enroll-store-2")
	os.MkdirAll(store, 0o700)
	for name, stack := range map[string][]string{
		"required pam_unix": {"auth required pam_unix.so nodelay", module("required", "enroll=login", "secret="+store+"/%u")},
		"pam_deny after us": {"auth required pam_unix.so nodelay", module("required", "enroll=login", "secret="+store+"/%u"), "auth required pam_deny.so"},
	} {
		t.Run(name, func(t *testing.T) {
			s := startSSHD(t, false, stack...)
			u := newUser(t)
			waitForFreshStep(30, 15)
			password := "wrong"
			if name == "pam_deny after us" {
				password = u.password
			}
			e := &enrollingLogin{t: t, password: password}
			if _, err := s.dial(u.name, []ssh.AuthMethod{ssh.KeyboardInteractive(e.answer)}); err == nil {
				t.Fatal("the login got in")
			}
			if _, err := os.Lstat(filepath.Join(store, u.name)); err == nil {
				t.Fatalf("a failed login enrolled the user (QR shown: %v)", e.uri != "")
			}
			if name == "pam_deny after us" && e.uri == "" {
				t.Fatal("the enrollment was never offered: the test did not reach it")
			}
		})
	}
}

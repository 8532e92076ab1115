package test

import (
	"bytes"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

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
	expectLog(t, m, `user=`+u.name+`.*token=default outcome=ok reason="enrolled at login"`)
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

// SPDX-License-Identifier: Apache-2.0

package test

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base32"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"net/url"
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

// enrollAs runs totp-enroll as u (not root).
func enrollAs(t *testing.T, u *user, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(filepath.Join(libDir, "totp-enroll"), args...)
	cmd.Env = []string{"HOME=" + u.home, "PATH=/usr/bin:/bin"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(u.uid), Gid: uint32(u.gid)}}
	out, err := cmd.CombinedOutput()
	return string(out), exitCode(err)
}

func mustEnroll(t testing.TB, args ...string) string {
	t.Helper()
	out, err := enrollCmd(t, args...)
	if err != nil {
		t.Fatalf("totp-enroll %q: %v\n%s", args, err, out)
	}
	return out
}

func login(t *testing.T, dir string, u *user, code string) error {
	t.Helper()
	err := authenticate(t, dir, u.name, &conv{answers: []string{code}})
	if err != nil && !errors.Is(err, pam.ErrAuth) {
		t.Fatalf("unexpected PAM error: %v", err)
	}
	return err
}

func hotpCode(t *testing.T, secret string, counter int, digits int) string {
	t.Helper()
	out, err := exec.Command("oathtool", "--hotp", "-b", secret, "-c", strconv.Itoa(counter), "-d", strconv.Itoa(digits)).Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}

func TestTokensSeveralPerUser(t *testing.T) {
	needRoot(t, "oathtool", "openssl")
	u := newUser(t)
	enroll(t, u) // token "default"
	tablet := newSecret(t)
	mustEnroll(t, "--user", u.name, "add", "--name", "tablet", "--secret", tablet, "--no-confirm", "--qr", "none",
		"--digits", "8", "--algorithm", "SHA256", "--period", "60", "--comment", "iPad in the safe")
	dir := service(t, module("required"))
	tab := func(offset int) string {
		return code(t, tablet, offset*2, "--totp=sha256", "--digits=8", "--time-step-size=60s")
	}

	waitForFreshStep(60, 10)
	m := syslogs.mark()
	if err := login(t, dir, u, tab(0)); err != nil {
		t.Fatalf("tablet: %v", err)
	}
	expectLog(t, m, `token=tablet outcome=ok`)
	if err := login(t, dir, u, code(t, u.secret, 0)); err != nil {
		t.Fatalf("phone after tablet (each token has its own replay state): %v", err)
	}
	if err := login(t, dir, u, tab(0)); err == nil {
		t.Fatal("tablet code replayed")
	}

	// Users manage their own tokens.
	out, rc := enrollAs(t, u, "list")
	if rc != 0 || !regexp.MustCompile(`tablet +enabled +time-based, SHA256, 8 digits, 60 s +last used 20\d\d-.*# iPad in the safe`).MatchString(out) ||
		!strings.Contains(out, "scratch codes left: 2") {
		t.Fatalf("list as the user: %d\n%s", rc, out)
	}
	if out, rc := enrollAs(t, u, "disable", "tablet"); rc != 0 {
		t.Fatalf("disable: %d %s", rc, out)
	}
	m = syslogs.mark()
	if err := login(t, dir, u, tab(1)); err == nil {
		t.Fatal("a disabled token's code was accepted")
	}
	expectLog(t, m, `user=`+u.name+`.*outcome=fail reason="bad code"`)
	if err := login(t, dir, u, code(t, u.secret, 1)); err != nil {
		t.Fatalf("the other token while one is disabled: %v", err)
	}
	mustEnroll(t, "--user", u.name, "enable", "tablet")
	if err := login(t, dir, u, tab(1)); err != nil {
		t.Fatalf("enabled again: %v", err)
	}
	mustEnroll(t, "--user", u.name, "remove", "tablet")
	if err := login(t, dir, u, tab(2)); err == nil {
		t.Fatal("a removed token's code was accepted")
	}
	if out, rc := enrollAs(t, u, "remove", "default"); rc != 1 || !strings.Contains(out, "last token") {
		t.Fatalf("removing the last token: %d %s", rc, out)
	}
	// Admin commands are root's; show is root's.
	for _, cmd := range [][]string{{"show", "default"}, {"status"}, {"unlock"}, {"reset"}, {"passcodes", "--generate", "1"}} {
		if out, rc := enrollAs(t, u, cmd...); rc != 2 || !strings.Contains(out, "run it as root") {
			t.Fatalf("%v as the user: %d %s", cmd, rc, out)
		}
	}
	out = mustEnroll(t, "--user", u.name, "show", "default", "--qr", "none", "--issuer", "ex")
	if !strings.Contains(out, "otpauth://totp/ex:"+u.name) || !strings.Contains(out, "secret="+strings.TrimRight(u.secret, "=")) {
		t.Fatalf("show:\n%s", out)
	}
	if out, err := enrollCmd(t, "--user", u.name, "show", "nosuch"); exitCode(err) != 1 || !strings.Contains(out, `no token "nosuch"`) {
		t.Fatalf("show an unknown token: %v %s", err, out)
	}
}

// Every kind, algorithm, digit count and period through real libpam.
func TestTokensEveryKind(t *testing.T) {
	needRoot(t, "oathtool", "openssl")
	u := newUser(t)
	enroll(t, u)
	type tok struct {
		name string
		args []string
		code func(key string) string
	}
	toks := []tok{
		{"sha1-6-10", []string{"--period", "10"}, func(k string) string { return code(t, k, 0, "--totp", "--time-step-size=10s") }},
		{"sha256-8-30", []string{"--algorithm", "SHA256", "--digits", "8"}, func(k string) string { return code(t, k, 0, "--totp=sha256", "--digits=8") }},
		{"sha512-6-120", []string{"--algorithm", "SHA512", "--period", "120"}, func(k string) string {
			return code(t, k, 0, "--totp=sha512", "--time-step-size=120s")
		}},
		{"sha512-8-45", []string{"--algorithm", "SHA512", "--digits", "8", "--period", "45"}, func(k string) string {
			return code(t, k, 0, "--totp=sha512", "--digits=8", "--time-step-size=45s")
		}},
		{"hotp-6", []string{"--type", "hotp", "--counter", "3"}, func(k string) string { return hotpCode(t, k, 3, 6) }},
		{"hotp-8", []string{"--type", "hotp", "--digits", "8"}, func(k string) string { return hotpCode(t, k, 0, 8) }},
	}
	dir := service(t, module("required"))
	for _, tk := range toks {
		key := newSecret(t)
		args := append([]string{"--user", u.name, "add", "--name", tk.name, "--secret", key, "--no-confirm", "--qr", "none"}, tk.args...)
		mustEnroll(t, args...)
		waitForFreshStep(10, 3)
		m := syslogs.mark()
		c := tk.code(key)
		if err := login(t, dir, u, c); err != nil {
			t.Fatalf("%s: %v", tk.name, err)
		}
		expectLog(t, m, `token=`+tk.name+` outcome=ok`)
		if err := login(t, dir, u, c); err == nil {
			t.Fatalf("%s: replay accepted", tk.name)
		}
	}
}

func TestTokensHOTPWindowAndResync(t *testing.T) {
	needRoot(t, "oathtool", "openssl")
	u := newUser(t)
	u.secret = newSecret(t)
	mustEnroll(t, "--user", u.name, "--secret", u.secret, "--no-confirm", "--qr", "none", "--type", "hotp", "--counter", "5")
	dir := service(t, module("required", "hotp_window=3"))
	h := func(c int) string { return hotpCode(t, u.secret, c, 6) }
	steps := []struct {
		counter int
		ok      bool
		log     string
	}{
		{5, true, "code accepted"}, {5, false, "replay"}, {4, false, "replay"},
		{8, true, "code accepted"}, // 6..8 is the window after 5
		{12, false, "resync pending"}, {13, true, "drift adjusted"}, {14, true, "code accepted"},
	}
	for _, s := range steps {
		m := syslogs.mark()
		if err := login(t, dir, u, h(s.counter)); (err == nil) != s.ok {
			t.Fatalf("counter %d: %v, want ok=%v", s.counter, err, s.ok)
		}
		expectLog(t, m, `user=`+u.name+`.*reason="?`+s.log)
	}
}

func TestAdminCommands(t *testing.T) {
	needRoot(t, "oathtool", "openssl")
	u := newUser(t)
	enroll(t, u)
	dir := service(t, module("required", "deny=3"))
	waitForFreshStep(30, 12)
	wrong := fmt.Sprintf("%06d", (atoi(code(t, u.secret, 0))+5)%1000000)
	for i := 0; i < 3; i++ {
		login(t, dir, u, wrong)
	}
	out := mustEnroll(t, "--user", u.name, "status")
	if !strings.Contains(out, "token default: time-based, SHA1, 6 digits, 30 s, enabled") || !regexp.MustCompile(`failures 0, locked until 20.*, locks since the last success 1, wrong codes since the last success 3`).MatchString(out) {
		t.Fatalf("status of a locked user:\n%s", out)
	}
	if err := login(t, dir, u, code(t, u.secret, 0)); err == nil {
		t.Fatal("a locked user got in")
	}
	mustEnroll(t, "--user", u.name, "unlock")
	if err := login(t, dir, u, code(t, u.secret, 0)); err != nil {
		t.Fatalf("after unlock: %v", err)
	}
	dir = service(t, module("required", "deny=0")) // the failures below must not lock
	out = mustEnroll(t, "--user", u.name, "status")
	if !strings.Contains(out, "failures 0, not locked, locks since the last success 0, wrong codes since the last success 0") ||
		!strings.Contains(out, "drift +0 steps (+0 s)") || strings.Contains(out, "last used never") {
		t.Fatalf("status after a login:\n%s", out)
	}

	// sync: the phone's clock runs 50 steps (25 minutes) ahead.
	if err := login(t, dir, u, code(t, u.secret, 50)); err == nil {
		t.Fatal("a code 50 steps ahead was accepted")
	}
	if out, err := enrollCmd(t, "--user", u.name, "sync", "default", code(t, u.secret, 50), code(t, u.secret, 51), "--range", "10"); exitCode(err) != 1 ||
		!strings.Contains(out, "no two consecutive codes") {
		t.Fatalf("sync outside --range: %v\n%s", err, out)
	}
	out = mustEnroll(t, "--user", u.name, "sync", "default", code(t, u.secret, 50), code(t, u.secret, 51))
	if !strings.Contains(out, "drift set to +51 steps") {
		t.Fatalf("sync:\n%s", out)
	}
	if err := login(t, dir, u, code(t, u.secret, 51)); err == nil {
		t.Fatal("a code used for sync was accepted")
	}
	if err := login(t, dir, u, code(t, u.secret, 52)); err != nil {
		t.Fatalf("after sync: %v", err)
	}

	// Admin passcodes: single use, shown once, cleared.
	out = mustEnroll(t, "--user", u.name, "passcodes", "--generate", "2")
	pcs := regexp.MustCompile(`(?m)^  (\d{8})$`).FindAllStringSubmatch(out, -1)
	if len(pcs) != 2 {
		t.Fatalf("passcodes:\n%s", out)
	}
	m := syslogs.mark()
	if err := login(t, dir, u, pcs[0][1]); err != nil {
		t.Fatalf("passcode: %v", err)
	}
	expectLog(t, m, `token=passcode outcome=ok`, pcs[0][1])
	if err := login(t, dir, u, pcs[0][1]); err == nil {
		t.Fatal("passcode used twice")
	}
	mustEnroll(t, "--user", u.name, "passcodes", "--clear")
	if err := login(t, dir, u, pcs[1][1]); err == nil {
		t.Fatal("a cleared passcode was accepted")
	}

	// New scratch codes: the old ones stop working.
	out = mustEnroll(t, "--user", u.name, "scratch", "--regenerate", "--count", "3")
	fresh := regexp.MustCompile(`(?m)^  (\d{8})$`).FindAllStringSubmatch(out, -1)
	if len(fresh) != 3 {
		t.Fatalf("scratch --regenerate:\n%s", out)
	}
	if err := login(t, dir, u, u.scratch[0]); err == nil {
		t.Fatal("an old scratch code still works")
	}
	if err := login(t, dir, u, fresh[0][1]); err != nil {
		t.Fatalf("a new scratch code: %v", err)
	}

	// reset: the enrollment is gone; with nullok the user is not asked.
	mustEnroll(t, "--user", u.name, "reset")
	for _, f := range []string{".pam_totp", ".pam_totp.state"} {
		if _, err := os.Lstat(filepath.Join(u.home, f)); err == nil {
			t.Fatalf("%s left after reset", f)
		}
	}
	if err := login(t, dir, u, fresh[1][1]); err == nil {
		t.Fatal("a login after reset got in")
	}
	c := &conv{}
	if err := authenticate(t, service(t, module("required", "nullok"), "auth required pam_permit.so"), u.name, c); err != nil || len(c.prompts) > 0 {
		t.Fatalf("nullok after reset: %v, prompts %q; want the module ignored", err, c.prompts)
	}
}

func TestImportCSV(t *testing.T) {
	needRoot(t, "oathtool", "openssl")
	a, b := newUser(t), newUser(t)
	k1, k2, k3 := hexKey(t), hexKey(t), hexKey(t)
	file := filepath.Join(t.TempDir(), "tokens.csv")
	os.WriteFile(file, []byte(k1+";;Feitian c200 #1\n"+k2+";60;Feitian c100 ünïcode\n"), 0o600)
	out, err := enrollCmd(t, "--user", a.name, "import", "csv", file)
	if err != nil || !strings.Contains(out, "line 1: token hw (time-based, SHA1, 6 digits, 30 s)") || !strings.Contains(out, "line 2: token hw-2 (time-based, SHA1, 6 digits, 60 s)") {
		t.Fatalf("import csv: %v\n%s", err, out)
	}
	dir := service(t, module("required"))
	oath := func(args ...string) string {
		out, _ := exec.Command("oathtool", args...).Output()
		return strings.TrimSpace(string(out))
	}
	waitForFreshStep(60, 8)
	if err := login(t, dir, a, oath("--totp", k1)); err != nil {
		t.Fatalf("csv token, 30 s: %v", err)
	}
	if err := login(t, dir, a, oath("--totp", "--time-step-size=60s", k2)); err != nil {
		t.Fatalf("csv token, 60 s: %v", err)
	}
	data, _ := os.ReadFile(filepath.Join(a.home, ".pam_totp"))
	if !strings.Contains(string(data), "comment=Feitian+c100+%C3%BCn%C3%AFcode") {
		t.Fatalf("comment not kept:\n%s", data)
	}

	// --users: a bad line refuses the file (naming it); --skip-bad imports the rest.
	users := filepath.Join(t.TempDir(), "users.csv")
	os.WriteFile(users, []byte(b.name+";"+k3+";30;x\n"+b.name+";00112233;30;short key\n"), 0o600)
	out, err = enrollCmd(t, "import", "csv", "--users", users)
	if exitCode(err) != 1 || !strings.Contains(out, "line 2: the key must be 16") {
		t.Fatalf("bad line: %v\n%s", err, out)
	}
	if _, err := os.Lstat(filepath.Join(b.home, ".pam_totp")); err == nil {
		t.Fatal("written although refused")
	}
	if out, err := enrollCmd(t, "import", "csv", "--users", users, "--skip-bad"); err != nil || !strings.Contains(out, "tokens 1, bad lines 1") {
		t.Fatalf("--skip-bad: %v\n%s", err, out)
	}
	if err := login(t, dir, b, oath("--totp", k3)); err != nil {
		t.Fatalf("--users token: %v", err)
	}
}

func TestImportPSKC(t *testing.T) {
	needRoot(t, "oathtool", "openssl")
	// The RFC's figures 6 and 7, from internal/pskc/testdata.
	fig6, _ := filepath.Abs("../internal/pskc/testdata/rfc6030-figure6.xml")
	fig7, _ := filepath.Abs("../internal/pskc/testdata/rfc6030-figure7.xml")
	u := newUser(t)
	dir := service(t, module("required"))

	pw := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pw, []byte("qwertz\n"), 0o600)
	out, err := enrollCmd(t, "--user", u.name, "import", "pskc", fig7, "--password-file", pw)
	if exitCode(err) != 1 || !strings.Contains(out, "ValueMAC does not match") || !strings.Contains(out, "nothing was imported") {
		t.Fatalf("wrong password: %v\n%s", err, out)
	}
	if out, err := enrollCmd(t, "--user", u.name, "import", "pskc", fig6, "--key", "12345678901234567890123456789013"); exitCode(err) != 1 ||
		!strings.Contains(out, "ValueMAC does not match") {
		t.Fatalf("wrong key: %v\n%s", err, out)
	}
	if _, err := os.Lstat(filepath.Join(u.home, ".pam_totp")); err == nil {
		t.Fatal("written although refused")
	}
	out = mustEnroll(t, "--user", u.name, "import", "pskc", fig6, "--key", "12345678901234567890123456789012")
	if !strings.Contains(out, "token token-987654321 (counter-based, SHA1, 8 digits, next counter 0)") {
		t.Fatalf("import pskc:\n%s", out)
	}
	// The codes for counters 0 and 1 that the fixtures' README gives.
	for _, c := range []string{"84755224", "94287082"} {
		if err := login(t, dir, u, c); err != nil {
			t.Fatalf("PSKC token code %s: %v", c, err)
		}
	}
	// Figure 7 holds the same key: refused for this user, who has it.
	os.WriteFile(pw, []byte("qwerty\n"), 0o600)
	if out, err := enrollCmd(t, "--user", u.name, "import", "pskc", fig7, "--password-file", pw); exitCode(err) != 1 ||
		!strings.Contains(out, `token "token-987654321" already has this key`) {
		t.Fatalf("the same key imported twice: %v\n%s", err, out)
	}
	other := newUser(t)
	out = mustEnroll(t, "--user", other.name, "import", "pskc", fig7, "--password-file", pw)
	if !strings.Contains(out, "token token-987654321 (counter-based, SHA1, 8 digits, next counter 0)") {
		t.Fatalf("import pskc with a password:\n%s", out)
	}
}

func TestGroupPolicies(t *testing.T) {
	needRoot(t, "oathtool", "openssl")
	member, other := newUser(t), newUser(t)
	enroll(t, member)
	enroll(t, other)
	grp := fmt.Sprintf("pttg%d", member.uid)
	appendLine(t, "/etc/group", fmt.Sprintf("%s:x:%d:%s", grp, member.uid+1000, member.name))

	// pam_permit after the module: a user the module ignores gets in.
	req := service(t, module("required", "require_group="+grp), "auth required pam_permit.so")
	c := &conv{}
	if err := authenticate(t, req, other.name, c); err != nil || len(c.prompts) != 0 {
		t.Fatalf("require_group, not a member: %v, prompts %q; want the module ignored without a prompt", err, c.prompts)
	}
	if err := login(t, req, member, code(t, member.secret, 0)); err != nil {
		t.Fatalf("require_group, member: %v", err)
	}
	if err := authenticate(t, req, member.name, &conv{}); err == nil {
		t.Fatal("require_group: a member got in without a code")
	}

	ex := service(t, module("required", "exempt_group="+grp), "auth required pam_permit.so")
	c = &conv{}
	if err := authenticate(t, ex, member.name, c); err != nil || len(c.prompts) != 0 {
		t.Fatalf("exempt_group, member: %v, prompts %q", err, c.prompts)
	}
	if err := login(t, ex, other, code(t, other.secret, 0)); err != nil {
		t.Fatalf("exempt_group, not a member: %v", err)
	}
	// A group that does not exist is a configuration error: fail closed.
	m := syslogs.mark()
	bad := service(t, module("required", "require_group=nosuchgroup42"))
	if err := login(t, bad, member, code(t, member.secret, 1)); err == nil {
		t.Fatal("require_group with an unknown group let a user in")
	}
	expectLog(t, m, `require_group=nosuchgroup42: no such group`)
}

// grace_period on a native file: kept in the state file.
func TestGracePeriodNative(t *testing.T) {
	needRoot(t, "oathtool", "openssl")
	u := newUser(t)
	enroll(t, u)
	dir := service(t, module("required", "grace_period=60"))
	host := map[pam.Item]string{pam.Rhost: "198.51.100.4"}
	if err := authenticateFrom(t, dir, u.name, &conv{answers: []string{u.scratch[0]}}, host); err != nil {
		t.Fatal(err)
	}
	c := &conv{}
	if err := authenticateFrom(t, dir, u.name, c, host); err != nil || len(c.prompts) != 0 {
		t.Fatalf("same host within the grace period: %v, prompts %q", err, c.prompts)
	}
	data, _ := os.ReadFile(filepath.Join(u.home, ".pam_totp.state"))
	if !regexp.MustCompile(`(?m)^grace 198\.51\.100\.4 \d+$`).Match(data) {
		t.Fatalf("no grace line in the state:\n%s", data)
	}
	if err := authenticateFrom(t, dir, u.name, &conv{}, map[pam.Item]string{pam.Rhost: "198.51.100.5"}); err == nil {
		t.Fatal("another host got in without a code")
	}
	if err := authenticateFrom(t, service(t, module("required")), u.name, &conv{}, host); err == nil {
		t.Fatal("without grace_period the same host got in without a code")
	}
}

func TestSyncHOTP(t *testing.T) {
	needRoot(t, "oathtool", "openssl")
	u := newUser(t)
	u.secret = newSecret(t)
	mustEnroll(t, "--user", u.name, "--secret", u.secret, "--no-confirm", "--qr", "none", "--type", "hotp", "--digits", "8")
	dir := service(t, module("required"))
	h := func(c int) string { return hotpCode(t, u.secret, c, 8) }
	out := mustEnroll(t, "--user", u.name, "sync", "default", h(500), h(501))
	if !strings.Contains(out, "is at counter 501") {
		t.Fatalf("sync:\n%s", out)
	}
	if err := login(t, dir, u, h(501)); err == nil {
		t.Fatal("a counter used for sync was accepted")
	}
	if err := login(t, dir, u, h(502)); err != nil {
		t.Fatalf("after sync: %v", err)
	}
}

// holdLock takes the lock logins take on path until the test ends.
func holdLock(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
}

// A user holding the lock on their own file (flock(1) on it, or a stopped
// login) must not hang root's commands: each gives up with a message
// naming the file, and with --all the others are still done.
func TestAdminCommandsDoNotHangOnALock(t *testing.T) {
	needGoogle(t)
	held, free := newUser(t), newUser(t)
	enroll(t, held)
	holdLock(t, filepath.Join(held.home, ".pam_totp"))
	for _, args := range [][]string{{"status"}, {"unlock"}, {"passcodes", "--generate", "1"}} {
		out, err := enrollCmd(t, append([]string{"--user", held.name}, args...)...)
		if exitCode(err) != 1 || !strings.Contains(out, filepath.Join(held.home, ".pam_totp")) || !strings.Contains(out, "held by another process") {
			t.Fatalf("%v on a held lock: %v\n%s", args, err, out)
		}
	}
	// Two old-format files, one of them held: --all converts the other.
	for _, u := range []*user{held, free} {
		gaEnroll(t, u, "-t", "-d", "-u", "-w", "3", "-e", "1")
	}
	holdLock(t, filepath.Join(held.home, ".google_authenticator"))
	store := filepath.Join(workDir, "busy-store")
	out, err := enrollCmd(t, "migrate", "--all", "--secret-file", store+"/%u")
	if exitCode(err) != 1 || !strings.Contains(out, held.name+": ") || !strings.Contains(out, "held by another process") {
		t.Fatalf("migrate --all with one file held: %v\n%s", err, out)
	}
	ownedBy(t, filepath.Join(store, free.name), 0)
}

// One key as a 6-digit and an 8-digit token: the 6-digit code is the tail
// of the 8-digit one. totp-enroll refuses the second enrollment, and a file
// written by hand with both shares one replay state.
func TestSameKeyTwice(t *testing.T) {
	needRoot(t, "oathtool", "openssl")
	u := newUser(t)
	enroll(t, u) // token "default"
	out, err := enrollCmd(t, "--user", u.name, "add", "--name", "eight", "--secret", u.secret, "--no-confirm", "--qr", "none", "--digits", "8")
	if exitCode(err) == 0 || !strings.Contains(out, `token "default" already has this key`) {
		t.Fatalf("adding the same key with 8 digits: %v\n%s", err, out)
	}
	csv := filepath.Join(t.TempDir(), "tokens.csv")
	key, err := base32.StdEncoding.DecodeString(u.secret)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(csv, []byte(hex.EncodeToString(key)+";30;same key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := enrollCmd(t, "--user", u.name, "import", "csv", csv); exitCode(err) == 0 || !strings.Contains(out, `token "default" already has this key`) {
		t.Fatalf("importing the same key: %v\n%s", err, out)
	}

	hand := "pam_totp 1\n" +
		"token six type=totp digits=6 secret=" + u.secret + "\n" +
		"token eight type=totp digits=8 secret=" + u.secret + "\n"
	if err := writeAs(u, filepath.Join(u.home, ".pam_totp"), hand, 0o600); err != nil {
		t.Fatal(err)
	}
	dir := service(t, module("required"))
	waitForFreshStep(30, 5)
	long := code(t, u.secret, 0, "--digits=8")
	if err := login(t, dir, u, long); err != nil {
		t.Fatalf("8-digit code: %v", err)
	}
	m := syslogs.mark()
	if err := login(t, dir, u, long[2:]); err == nil {
		t.Fatal("the tail of an accepted 8-digit code logged in through the 6-digit token")
	}
	expectLog(t, m, `user=`+u.name+`.*token=six outcome=fail reason=replay`)
}

// status --all: one row per enrolled user, with a row that says why for a
// file that cannot be read; --json for monitoring, per user too.
func TestStatusAll(t *testing.T) {
	needRoot(t, "oathtool", "openssl")
	good, locked, broken, bare := newUser(t), newUser(t), newUser(t), newUser(t)
	for _, u := range []*user{good, locked, broken} {
		enroll(t, u)
	}
	dir := service(t, module("required", "deny=2"))
	if err := login(t, dir, good, code(t, good.secret, 0)); err != nil {
		t.Fatal(err)
	}
	login(t, dir, locked, "000000")
	login(t, dir, locked, "000000")
	os.Chmod(filepath.Join(broken.home, ".pam_totp"), 0o644)

	var rows []struct {
		User     string `json:"user"`
		Error    string `json:"error"`
		Failures int    `json:"failures"`
		Locked   bool   `json:"locked"`
		Missed   int    `json:"wrong_codes_since_last_success"`
		Tokens   []struct {
			Name     string `json:"name"`
			Kind     string `json:"kind"`
			LastUsed int64  `json:"last_used"`
		} `json:"tokens"`
	}
	out := mustEnroll(t, "status", "--all", "--json")
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("status --all --json is not JSON: %v\n%s", err, out)
	}
	seen := map[string]bool{}
	for _, r := range rows {
		seen[r.User] = true
		switch r.User {
		case good.name:
			if r.Error != "" || r.Locked || len(r.Tokens) != 1 || r.Tokens[0].Name != "default" || r.Tokens[0].Kind != "totp" || r.Tokens[0].LastUsed == 0 {
				t.Errorf("enrolled user: %+v", r)
			}
		case locked.name:
			if !r.Locked || r.Missed != 2 {
				t.Errorf("locked user: %+v", r)
			}
		case broken.name:
			if !strings.Contains(r.Error, "mode 0644") {
				t.Errorf("unreadable file: %+v", r)
			}
		}
	}
	if !seen[good.name] || !seen[locked.name] || !seen[broken.name] || seen[bare.name] {
		t.Fatalf("rows for %v; want the three enrolled users and not %s\n%s", seen, bare.name, out)
	}
	text := mustEnroll(t, "status", "--all")
	if !regexp.MustCompile(`(?m)^`+locked.name+` +default\(totp\) .* until 20`).MatchString(text) ||
		!regexp.MustCompile(`(?m)^`+broken.name+` +cannot read: .*mode 0644`).MatchString(text) {
		t.Fatalf("status --all:\n%s", text)
	}
	out = mustEnroll(t, "--user", good.name, "status", "--json")
	if !strings.Contains(out, `"user": "`+good.name+`"`) || !strings.Contains(out, `"locked": false`) {
		t.Fatalf("status --json:\n%s", out)
	}
}

// Two tokens of one user are two entries in the phone, and show gives
// back the entry as it was enrolled (issuer and account name), so that a
// rescan replaces it instead of adding a third.
func TestTokenLabelsInTheApp(t *testing.T) {
	needRoot(t, "oathtool", "openssl")
	u := newUser(t)
	uriIn := func(out string) *url.URL {
		t.Helper()
		m := regexp.MustCompile(`otpauth://\S+`).FindString(out)
		v, err := url.Parse(m)
		if m == "" || err != nil {
			t.Fatalf("no otpauth URI in:\n%s", out)
		}
		return v
	}
	first := uriIn(mustEnroll(t, "--user", u.name, "--issuer", "ACME Corp", "--no-confirm", "--qr", "none"))
	second := uriIn(mustEnroll(t, "--user", u.name, "add", "--name", "phone2", "--no-confirm", "--qr", "none"))
	host, _ := os.Hostname()
	if first.Path != "/ACME Corp:"+u.name+"@"+host || second.Path != "/"+host+":"+u.name+"@"+host+" (phone2)" {
		t.Fatalf("the app's entries: %q and %q; want the second to name its token", first.Path, second.Path)
	}
	again := uriIn(mustEnroll(t, "--user", u.name, "show", "default", "--qr", "none"))
	if again.Path != first.Path || again.Query().Get("issuer") != "ACME Corp" {
		t.Fatalf("show gives %q (issuer %q), enrolled as %q", again.Path, again.Query().Get("issuer"), first.Path)
	}
}

// After a scratch code the user learns how many are left, and is warned
// when two or fewer remain.
func TestScratchCodesLeftAreTold(t *testing.T) {
	needRoot(t, "oathtool", "openssl")
	u := newUser(t)
	enroll(t, u)
	out := mustEnroll(t, "--user", u.name, "scratch", "--regenerate", "--count", "4")
	codes := regexp.MustCompile(`(?m)^  (\d{8})$`).FindAllStringSubmatch(out, -1)
	if len(codes) != 4 {
		t.Fatalf("scratch --regenerate:\n%s", out)
	}
	dir := service(t, module("required"))
	for i, want := range []string{"3 left.", "2 left. Make new ones soon", "1 left. Make new ones soon"} {
		c := &conv{answers: []string{codes[i][1]}}
		if err := authenticate(t, dir, u.name, c); err != nil {
			t.Fatalf("scratch code %d: %v", i, err)
		}
		told := strings.Join(c.infos, "\n")
		if !strings.Contains(told, "pam_totp: scratch code accepted; "+want) || (i == 0 && strings.Contains(told, "Make new ones")) {
			t.Fatalf("after scratch code %d the user was told %q, want %q", i, told, want)
		}
	}
	c := &conv{answers: []string{code(t, u.secret, 0)}}
	if err := authenticate(t, dir, u.name, c); err != nil || strings.Contains(strings.Join(c.infos, "\n"), "scratch") {
		t.Fatalf("a TOTP code: %v, told %q", err, c.infos)
	}
}

// A vendor's file with HMAC-SHA256 and SHA512 keys (by <Suite>), a PIN
// key and an OCRA key: without --skip-bad it is refused and names the PIN
// key by its serial; with it the usable keys import with their hash, and
// each logs in with a code oathtool makes for that hash.
func TestImportPSKCSuites(t *testing.T) {
	needRoot(t, "oathtool", "openssl")
	file, _ := filepath.Abs("../internal/pskc/testdata/suites-and-pin.xml")
	u := newUser(t)
	out, err := enrollCmd(t, "--user", u.name, "import", "pskc", file)
	if exitCode(err) != 1 || !strings.Contains(out, `serial "PIN-1"`) || !strings.Contains(out, "nothing was imported") {
		t.Fatalf("without --skip-bad: %v\n%s", err, out)
	}
	// Several tokens and only --user: refused, naming the ways to say whose.
	out, err = enrollCmd(t, "--user", u.name, "import", "pskc", file, "--skip-bad")
	if exitCode(err) != 1 || !strings.Contains(out, "--serial") || !strings.Contains(out, "--users") || !strings.Contains(out, "nothing was imported") {
		t.Fatalf("several tokens for one --user: %v\n%s", err, out)
	}
	// --serial picks one token; --users gives each its user.
	v := newUser(t)
	out = mustEnroll(t, "--user", v.name, "import", "pskc", file, "--skip-bad", "--serial", "HOTP-1")
	if !strings.Contains(out, "token token-HOTP-1") || strings.Contains(out, "SHA256-1 (") {
		t.Fatalf("--serial HOTP-1:\n%s", out)
	}
	w := newUser(t)
	owners := filepath.Join(t.TempDir(), "owners")
	os.WriteFile(owners, []byte("# serial;user\nSHA256-1;"+u.name+"\nSHA512-1;"+u.name+"\nHOTP-1;"+w.name+"\n"), 0o600)
	out = mustEnroll(t, "import", "pskc", file, "--skip-bad", "--users", owners, "--dry-run")
	if !strings.Contains(out, w.name+": line 5: token token-HOTP-1") || !strings.Contains(out, u.name+": line 1: token token-SHA256-1") {
		t.Fatalf("--users --dry-run:\n%s", out)
	}
	out = mustEnroll(t, "import", "pskc", file, "--skip-bad", "--users", owners)
	for _, want := range []string{"token token-SHA256-1 (time-based, SHA256, 6 digits, 30 s)", "token token-SHA512-1 (time-based, SHA512, 8 digits, 30 s)",
		w.name + ": line 5: token token-HOTP-1", `skipped key package 2 (Id "2", serial "PIN-1")`, `serial "OCRA-1"`} {
		if !strings.Contains(out, want) {
			t.Fatalf("import pskc --skip-bad lacks %q:\n%s", want, out)
		}
	}
	dir := service(t, module("required"))
	waitForFreshStep(30, 5)
	for _, c := range []struct{ hexKey, mode string }{
		{"3132333435363738393031323334353637383930313233343536373839303132", "sha256"},
		{"31323334353637383930313233343536373839303132333435363738393031323334353637383930313233343536373839303132333435363738393031323334", "sha512"},
	} {
		args := []string{"--totp=" + c.mode, c.hexKey}
		if c.mode == "sha512" {
			args = append(args, "--digits=8")
		}
		code, err := exec.Command("oathtool", args...).Output()
		if err != nil {
			t.Fatal(err)
		}
		if err := login(t, dir, u, strings.TrimSpace(string(code))); err != nil {
			t.Fatalf("the %s token's code: %v", c.mode, err)
		}
	}
}

// A vendor's file that names its users, with policies and dates: as root
// without --user or --users each token goes to the user the file names;
// an expired key and the policies pam_totp cannot honour are refused by
// serial; the dates become the token's validity, which status shows and a
// login enforces, with a log line.
func TestImportPSKCPolicyAndOwners(t *testing.T) {
	needRoot(t, "oathtool", "openssl")
	alice, bob := newUser(t), newUser(t)
	src, err := os.ReadFile("../internal/pskc/testdata/policy-and-time.xml")
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Replace(string(src), "<UserId>alice</UserId>", "<UserId>"+alice.name+"</UserId>", 1)
	text = strings.Replace(text, "UID=bob,", "UID="+bob.name+",", 1)
	file := filepath.Join(t.TempDir(), "vendor.xml")
	os.WriteFile(file, []byte(text), 0o600)
	// A file does not get to give root a token.
	toRoot := filepath.Join(t.TempDir(), "to-root.xml")
	os.WriteFile(toRoot, []byte(strings.Replace(text, "<UserId>"+alice.name+"</UserId>", "<UserId>root</UserId>", 1)), 0o600)
	if out, err := enrollCmd(t, "import", "pskc", toRoot, "--skip-bad", "--dry-run"); err != nil || !strings.Contains(out, `serial "DRIFT-1"): the file names root: give --user root --serial DRIFT-1`) || strings.Contains(out, "root: line") {
		t.Fatalf("a file naming root: %v\n%s", err, out)
	}

	out, err := enrollCmd(t, "import", "pskc", file)
	if exitCode(err) != 1 || !strings.Contains(out, `serial "T0-1"`) || !strings.Contains(out, "nothing was imported") {
		t.Fatalf("without --skip-bad: %v\n%s", err, out)
	}
	out = mustEnroll(t, "import", "pskc", file, "--skip-bad")
	for _, want := range []string{
		"signature was NOT checked",
		alice.name + ": line 1: token token-DRIFT-1 (time-based, SHA1, 6 digits, 30 s)",
		bob.name + ": line 6: token token-LOCAL-1 (counter-based",
		`serial "EXPIRED-1"): expired on 2022-09-01T00:00:00Z`,
		`serial "COUNT-1"): the policy limits the key to 4321 uses`,
		`serial "PREPEND-1"): the PIN is to be checked by the server`,
		`serial "T0-1"): Time (T0) is 100`,
		"users 2, tokens 2, bad key packages 7",
	} {
		if !strings.Contains(out, want) {
			t.Fatalf("import lacks %q:\n%s", want, out)
		}
	}
	status := mustEnroll(t, "--user", alice.name, "status")
	if !strings.Contains(status, "valid 2020-01-01T00:00:00Z to 2099-12-31T00:00:00Z") || !strings.Contains(status, "drift -2 steps") {
		t.Fatalf("status does not show the file's dates and drift:\n%s", status)
	}
	dir := service(t, module("required"))
	// The file's drift: the token's clock is two steps behind, so a code
	// twelve steps behind is just within a first use's window of ten.
	waitForFreshStep(30, 5)
	if err := login(t, dir, alice, code(t, base32Of("policy-test-secret-01"), -12)); err != nil {
		t.Fatalf("a code twelve steps behind, with the file's drift of -2: %v", err)
	}
	if err := login(t, dir, bob, hotpCode(t, base32Of("policy-test-secret-06"), 0, 6)); err != nil {
		t.Fatalf("bob's HOTP token, owned through the DN in its UserId: %v", err)
	}

	// Dates an admin gives: a token whose validity ended refuses its right
	// code, and the log says why.
	carol := newUser(t)
	key := hexKey(t)
	csv := filepath.Join(t.TempDir(), "t.csv")
	os.WriteFile(csv, []byte(key+";30;contractor\n"), 0o600)
	mustEnroll(t, "--user", carol.name, "import", "csv", csv, "--valid-until", "2020-06-30")
	if list := mustEnroll(t, "--user", carol.name, "list"); !strings.Contains(list, "expired") || !strings.Contains(list, "valid until 2020-06-30T00:00:00Z") {
		t.Fatalf("list:\n%s", list)
	}
	right, _ := exec.Command("oathtool", "--totp", key).Output()
	m := syslogs.mark()
	if err := login(t, dir, carol, strings.TrimSpace(string(right))); err == nil {
		t.Fatal("an expired token's right code got in")
	}
	expectLog(t, m, `token=hw outcome=fail.*token outside its validity dates`)
	// The same file with dates that hold now: the code gets in.
	dave := newUser(t)
	mustEnroll(t, "--user", dave.name, "import", "csv", csv, "--valid-from", "2020-01-01", "--valid-until", "2999-01-01")
	right, _ = exec.Command("oathtool", "--totp", key).Output()
	if err := login(t, dir, dave, strings.TrimSpace(string(right))); err != nil {
		t.Fatalf("within its dates: %v", err)
	}
}

// base32Of is the base32 form of an ASCII secret, as oathtool -b takes it.
func base32Of(s string) string {
	return strings.TrimRight(base32.StdEncoding.EncodeToString([]byte(s)), "=")
}

// A box of 1,000 tokens for 1,000 users: --dry-run says exactly what the
// real run then does, each user gets their own token and no other, and
// the first and the last log in with their codes. The same box with one
// key twice is refused and nothing is written.
func TestImportPSKCThousand(t *testing.T) {
	needRoot(t, "oathtool", "openssl")
	const n = 1000
	var pkgs, owners strings.Builder
	users := make([]*user, n)
	keys := make([]string, n)
	for i := range users {
		users[i] = newUser(t)
		sum := sha1.Sum([]byte(fmt.Sprintf("%s box token %d", t.Name(), i)))
		keys[i] = hex.EncodeToString(sum[:])
		fmt.Fprintf(&pkgs, `<KeyPackage><DeviceInfo><SerialNo>SN%04d</SerialNo></DeviceInfo><Key Id="%d" Algorithm="urn:ietf:params:xml:ns:keyprov:pskc:totp">
<AlgorithmParameters><ResponseFormat Length="6" Encoding="DECIMAL"/></AlgorithmParameters>
<Data><Secret><PlainValue>%s</PlainValue></Secret><TimeInterval><PlainValue>30</PlainValue></TimeInterval></Data></Key></KeyPackage>
`, i, i, base64.StdEncoding.EncodeToString(sum[:]))
		fmt.Fprintf(&owners, "SN%04d;%s\n", i, users[i].name)
	}
	dir := t.TempDir()
	box, dup, ownersFile := filepath.Join(dir, "box.xml"), filepath.Join(dir, "dup.xml"), filepath.Join(dir, "owners")
	head := `<?xml version="1.0"?><KeyContainer Version="1.0" xmlns="urn:ietf:params:xml:ns:keyprov:pskc">` + "\n"
	os.WriteFile(box, []byte(head+pkgs.String()+"</KeyContainer>\n"), 0o600)
	os.WriteFile(ownersFile, []byte(owners.String()), 0o600)
	// The last token given the first one's key.
	first := base64.StdEncoding.EncodeToString(mustHex(t, keys[0]))
	last := base64.StdEncoding.EncodeToString(mustHex(t, keys[n-1]))
	os.WriteFile(dup, []byte(strings.Replace(head+pkgs.String()+"</KeyContainer>\n", last, first, 1)), 0o600)

	noFiles := func(when string) {
		t.Helper()
		for _, u := range users {
			if _, err := os.Lstat(filepath.Join(u.home, ".pam_totp")); err == nil {
				t.Fatalf("%s: %s has a file", when, u.name)
			}
		}
	}
	out, err := enrollCmd(t, "import", "pskc", dup, "--users", ownersFile)
	if exitCode(err) != 1 || !strings.Contains(out, `tokens "SN0000" and "SN0999" have the same key`) {
		t.Fatalf("the same key for two users: %v\n%s", err, out)
	}
	noFiles("the same key twice")
	dry := mustEnroll(t, "import", "pskc", box, "--users", ownersFile, "--dry-run")
	noFiles("--dry-run")
	real := mustEnroll(t, "import", "pskc", box, "--users", ownersFile)
	if dry != real || !strings.Contains(real, fmt.Sprintf("users %d, tokens %d, bad key packages 0, failed users 0", n, n)) {
		t.Fatalf("--dry-run and the real run differ, or not all imported:\n--- dry\n%s\n--- real\n%s", tail([]byte(dry)), tail([]byte(real)))
	}
	for i, u := range users {
		data, err := os.ReadFile(filepath.Join(u.home, ".pam_totp"))
		if err != nil || strings.Count(string(data), "\ntoken ") != 1 || !strings.Contains(string(data), fmt.Sprintf("token token-SN%04d ", i)) {
			t.Fatalf("%s: %v\n%s", u.name, err, data)
		}
	}
	svc := service(t, module("required"))
	waitForFreshStep(30, 5)
	for _, i := range []int{0, n - 1} {
		c, _ := exec.Command("oathtool", "--totp", keys[i]).Output()
		if err := login(t, svc, users[i], strings.TrimSpace(string(c))); err != nil {
			t.Fatalf("user %d: %v", i, err)
		}
	}
	// Each token opens its own account only.
	c, _ := exec.Command("oathtool", "--totp", keys[1]).Output()
	if err := login(t, svc, users[2], strings.TrimSpace(string(c))); err == nil {
		t.Fatal("user 1's token opened user 2's account")
	}
}

func mustHex(t *testing.T, s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// One import and login per kind and per hash, each through another of the
// protections vendors use, the ciphertext made by openssl: the AES key wrap
// with and without padding, AES-256-CBC with an encrypted MAC key and a
// SHA-256 MAC, 3DES-CBC MACed with the encryption key, the 3DES key wrap,
// and plaintext. The codes come from oathtool.
func TestImportPSKCKindsAndHashes(t *testing.T) {
	needRoot(t, "oathtool", "openssl")
	const xenc = "http://www.w3.org/2001/04/xmlenc#"
	enc := func(cipher, key, iv string, data []byte) []byte {
		args := []string{"enc", "-" + cipher, "-K", key}
		if iv != "" {
			args = append(args, "-iv", iv) // a key wrap's is its integrity value
		}
		cmd := exec.Command("openssl", args...)
		cmd.Stdin = strings.NewReader(string(data))
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("openssl %v: %v", args, err)
		}
		if iv != "" && !strings.Contains(cipher, "wrap") {
			out = append(mustHex(t, iv), out...) // the IV goes first, as RFC 6030 has it
		}
		return out
	}
	macOf := func(h func() hash.Hash, key, data []byte) string {
		m := hmac.New(h, key)
		m.Write(data)
		return base64.StdEncoding.EncodeToString(m.Sum(nil))
	}
	encValue := func(alg string, ct []byte, mac string) string {
		v := `<EncryptedValue><xenc:EncryptionMethod Algorithm="` + alg + `"/><xenc:CipherData><xenc:CipherValue>` +
			base64.StdEncoding.EncodeToString(ct) + `</xenc:CipherValue></xenc:CipherData></EncryptedValue>`
		if mac != "" {
			v += "<ValueMAC>" + mac + "</ValueMAC>"
		}
		return v
	}
	type row struct {
		name, kind, hash, suite string
		digits, period          int
		key                     string // the pre-shared key, hex
		// protect returns the MACMethod element and the Secret's content.
		protect func(secret []byte) (macMethod, value string)
	}
	aes256 := strings.Repeat("a5", 32)
	des3 := "0123456789abcdeffedcba987654321089abcdef01234567"
	rows := []row{
		{"HOTP SHA1, AES-256 key wrap", "hotp", "sha1", "HMAC-SHA1", 6, 0, aes256, func(s []byte) (string, string) {
			return "", encValue(xenc+"kw-aes256", enc("id-aes256-wrap", aes256, "A6A6A6A6A6A6A6A6", s), "")
		}},
		{"HOTP SHA256, AES-256-CBC, SHA-256 MAC", "hotp", "sha256", "HMAC-SHA256", 8, 0, aes256, func(s []byte) (string, string) {
			macKey := []byte("a MAC key of 32 bytes, for test!")
			mm := `<MACMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#hmac-sha256"><MACKey>` +
				encValue(xenc+"aes256-cbc", enc("aes-256-cbc", aes256, "0f0e0d0c0b0a09080706050403020100", macKey), "")[len("<EncryptedValue>"):]
			mm = strings.TrimSuffix(mm, "</EncryptedValue>") + "</MACKey></MACMethod>"
			ct := enc("aes-256-cbc", aes256, "000102030405060708090a0b0c0d0e0f", s)
			return mm, encValue(xenc+"aes256-cbc", ct, macOf(sha256.New, macKey, ct))
		}},
		{"HOTP SHA512 7 digits, 3DES-CBC, the encryption key as MAC key", "hotp", "sha512", "HMAC-SHA512", 7, 0, des3, func(s []byte) (string, string) {
			ct := enc("des-ede3-cbc", des3, "0102030405060708", s)
			return `<MACMethod Algorithm="http://www.w3.org/2000/09/xmldsig#hmac-sha1"/>`, encValue(xenc+"tripledes-cbc", ct, macOf(sha1.New, mustHex(t, des3), ct))
		}},
		{"TOTP SHA1 8 digits 60 s, AES-128 key wrap with padding", "totp", "sha1", "", 8, 60, strings.Repeat("3c", 16), func(s []byte) (string, string) {
			return "", encValue("http://www.w3.org/2009/xmlenc11#kw-aes-128-pad", enc("id-aes128-wrap-pad", strings.Repeat("3c", 16), "A65959A6", s), "")
		}},
		{"TOTP SHA256, 3DES key wrap", "totp", "sha256", "HMAC-SHA256", 6, 30, des3, func(s []byte) (string, string) {
			return "", encValue(xenc+"kw-tripledes", enc("des3-wrap", des3, "0102030405060708", s), "")
		}},
		{"TOTP SHA512 8 digits, plaintext", "totp", "sha512", "HMAC-SHA512", 8, 30, "", func(s []byte) (string, string) {
			return "", "<PlainValue>" + base64.StdEncoding.EncodeToString(s) + "</PlainValue>"
		}},
	}
	svc := service(t, module("required"))
	for i, r := range rows {
		secret := sha512.Sum512([]byte(t.Name() + r.name))
		key := secret[:24] // 24 bytes: whole blocks for the plain key wraps
		mm, val := r.protect(key)
		data := `<Counter><PlainValue>5</PlainValue></Counter>`
		if r.kind == "totp" {
			data = fmt.Sprintf(`<TimeInterval><PlainValue>%d</PlainValue></TimeInterval>`, r.period)
		}
		file := filepath.Join(t.TempDir(), "token.xml")
		os.WriteFile(file, []byte(`<?xml version="1.0"?>
<KeyContainer Version="1.0" xmlns="urn:ietf:params:xml:ns:keyprov:pskc" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" xmlns:xenc="http://www.w3.org/2001/04/xmlenc#">
<EncryptionKey><ds:KeyName>Pre-shared-key</ds:KeyName></EncryptionKey>`+mm+`
<KeyPackage><DeviceInfo><SerialNo>K`+strconv.Itoa(i)+`</SerialNo></DeviceInfo>
<Key Id="1" Algorithm="urn:ietf:params:xml:ns:keyprov:pskc:`+r.kind+`">
<AlgorithmParameters><Suite>`+r.suite+`</Suite><ResponseFormat Length="`+strconv.Itoa(r.digits)+`" Encoding="DECIMAL"/></AlgorithmParameters>
<Data><Secret>`+val+`</Secret>`+data+`</Data></Key></KeyPackage></KeyContainer>`), 0o600)
		u := newUser(t)
		args := []string{"--user", u.name, "import", "pskc", file}
		if r.key != "" {
			args = append(args, "--key", r.key)
		}
		out := mustEnroll(t, args...)
		want := fmt.Sprintf("%s, %d digits", strings.ToUpper(r.hash), r.digits)
		if !strings.Contains(out, want) {
			t.Fatalf("%s: the import does not say %q:\n%s", r.name, want, out)
		}
		// HOTP counter c is the TOTP step c with a step of 1 s: oathtool
		// computes both hashes that way.
		at, step := int64(5), "1s"
		if r.kind == "totp" {
			waitForFreshStep(int64(r.period), 5)
			at, step = time.Now().Unix(), fmt.Sprintf("%ds", r.period)
		}
		c, err := exec.Command("oathtool", "--totp="+r.hash, "--digits="+strconv.Itoa(r.digits), "--time-step-size="+step,
			"-N", "@"+strconv.FormatInt(at, 10), hex.EncodeToString(key)).Output()
		if err != nil {
			t.Fatal(err)
		}
		if err := login(t, svc, u, strings.TrimSpace(string(c))); err != nil {
			t.Fatalf("%s: %v", r.name, err)
		}
	}
}

// Names that come from a file never give root a token: a vendor's PSKC
// UserId "Root" (or UID=ROOT in a DN), which the directory matches to
// uid=root without regard to case; a CSV --users line or a pam_oath line
// naming root. Each is refused with the way to mean it; root's entry and
// store stay without a token; and the admin who names root gets it.
func TestImportNeverGivesRootFromAFile(t *testing.T) {
	f := newFleet(t)
	f.d.addUser(t, &user{name: "root", uid: 0, gid: 0, home: "/root", password: "not used"})
	dir := []string{"--directory", f.confA, "--bind-dn", ldapAdmin, "--bind-password-file", f.d.adminPass}
	pkg := func(serial, owner, secret string) string {
		return `<KeyPackage><DeviceInfo><SerialNo>` + serial + `</SerialNo><UserId>` + owner + `</UserId></DeviceInfo>` +
			`<Key Id="` + serial + `" Algorithm="urn:ietf:params:xml:ns:keyprov:pskc:totp"><AlgorithmParameters><ResponseFormat Length="6" Encoding="DECIMAL"/></AlgorithmParameters>` +
			`<Data><Secret><PlainValue>` + secret + `</PlainValue></Secret><TimeInterval><PlainValue>30</PlainValue></TimeInterval></Data></Key></KeyPackage>`
	}
	vendor := filepath.Join(t.TempDir(), "vendor.xml")
	os.WriteFile(vendor, []byte(`<?xml version="1.0"?><KeyContainer Version="1.0" xmlns="urn:ietf:params:xml:ns:keyprov:pskc">`+
		pkg("V-1", "Root", "dmVuZG9yLXNlY3JldC1udW1iZXItMDE=")+pkg("V-2", "UID=ROOT,DC=example,DC=net", "dmVuZG9yLXNlY3JldC1udW1iZXItMDI=")+
		`</KeyContainer>`), 0o600)
	out, err := enrollCmd(t, append([]string{"import", "pskc", vendor, "--skip-bad"}, dir...)...)
	if exitCode(err) != 1 || strings.Contains(out, "-> directory") || !strings.Contains(out, "failed users 2") ||
		!strings.Contains(out, `entry uid=root,ou=people,dc=test: its uid is not "Root" byte for byte`) {
		t.Fatalf("import pskc --skip-bad of UserIds Root and UID=ROOT into the directory: %v\n%s", err, out)
	}
	if v := f.d.attr(t, &user{name: "root"}, "pamTOTPSecret"); len(v) != 0 {
		t.Fatalf("a vendor's file gave uid=root a token:\n%s", out)
	}

	csv := filepath.Join(t.TempDir(), "tokens.csv")
	os.WriteFile(csv, []byte("root;3132333435363738393031323334353637383930;30;phone\n"), 0o600)
	out, err = enrollCmd(t, "import", "csv", csv, "--users", "--secret-file", filepath.Join(t.TempDir(), "%u"), "--dry-run")
	if err == nil || !strings.Contains(out, "the file names root, whose account is root's (uid 0): give --user root") {
		t.Fatalf("import csv --users naming root: %v\n%s", err, out)
	}
	// With --skip-bad, a run that imports nothing says so and fails.
	out, err = enrollCmd(t, "import", "csv", csv, "--users", "--skip-bad", "--secret-file", filepath.Join(t.TempDir(), "%u"))
	if exitCode(err) != 1 || !strings.Contains(out, "nothing was imported (every one of its lines was bad)") {
		t.Fatalf("import csv --skip-bad with nothing importable: %v\n%s", err, out)
	}
	oath := filepath.Join(t.TempDir(), "users.oath")
	os.WriteFile(oath, []byte("HOTP/T30 root - 3132333435363738393031323334353637383930\n"), 0o600)
	store := filepath.Join(t.TempDir(), "%u")
	if out, err := enrollCmd(t, "import", "oath", oath, "--secret-file", store, "--dry-run"); err == nil || !strings.Contains(out, "whose account is root's") {
		t.Fatalf("import oath naming root: %v\n%s", err, out)
	}
	if out, err := enrollCmd(t, "import", "oath", oath, "--secret-file", store, "--user", "root", "--dry-run"); err != nil || !strings.Contains(out, "root: line 1: token") {
		t.Fatalf("import oath --user root, as the admin means it: %v\n%s", err, out)
	}
}

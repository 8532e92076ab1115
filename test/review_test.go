// SPDX-License-Identifier: Apache-2.0

package test

// The second attacker's review: each finding, reproduced through the real
// host where it was seen (sshd, su, sudo), and the defence that holds.

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
	"time"

	"golang.org/x/sys/unix"

	"pamtotp/internal/secret"
)

// caseInsensitiveNSS puts a test NSS module that finds passwd and shadow
// entries without regard to case behind "files", as sssd with
// case_sensitive = false does, in the namespace's /etc until the test ends.
func caseInsensitiveNSS(t *testing.T) {
	t.Helper()
	needRoot(t, "gcc", "ldconfig", "getent")
	dir := filepath.Join(workDir, "nss")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	so := filepath.Join(dir, "libnss_pamtotpci.so.2")
	if out, err := exec.Command("gcc", "-shared", "-fPIC", "-Wall", "-Wextra", "-Werror", "-o", so, "testdata/nss_pamtotpci.c").CombinedOutput(); err != nil {
		t.Fatalf("building the test NSS module: %v\n%s", err, out)
	}
	// Runs after writeEtc's own clean-ups (they run last in, first out).
	t.Cleanup(func() { exec.Command("ldconfig").Run() })
	writeEtc(t, "/etc/ld.so.conf.d/pamtotp-test-nss.conf", dir+"\n", 0o644)
	if out, err := exec.Command("ldconfig").CombinedOutput(); err != nil {
		t.Fatalf("ldconfig: %v\n%s", err, out)
	}
	old, err := os.ReadFile("/etc/nsswitch.conf")
	if err != nil {
		t.Fatal(err)
	}
	conf := regexp.MustCompile(`(?m)^(passwd|shadow):.*$`).ReplaceAllString(string(old), "$1: files pamtotpci")
	writeEtc(t, "/etc/nsswitch.conf", conf, 0o644)
}

// checkersOf counts the live checker processes that run as u.
func checkersOf(t *testing.T, u *user) int {
	t.Helper()
	procs, _ := filepath.Glob("/proc/[0-9]*/status")
	n := 0
	for _, p := range procs {
		data, err := os.ReadFile(p)
		if err != nil {
			continue // exited meanwhile
		}
		s := string(data)
		// An exited checker stays a zombie, holding no thread, until the
		// host reaps it after its prompt returns.
		if strings.Contains(s, "Name:\tpam-totp-check\n") && strings.Contains(s, fmt.Sprintf("\nUid:\t%d\t", u.uid)) &&
			!strings.Contains(s, "\nState:\tZ") {
			n++
		}
	}
	return n
}

// waitUntil polls cond every 20 ms until it holds or limit has passed.
func waitUntil(limit time.Duration, cond func() bool) bool {
	for end := time.Now().Add(limit); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

// The name typed is not the account. Where NSS matches names without
// regard to case, "PTT7" is ptt7's account: it must find ptt7's
// enrollment, never a file of its own. Through sshd, with nullok (where the
// typed name used to log in with the password alone) and with enroll=login
// (where it used to enroll a token of its own).
func TestTypedNameFindsTheAccountsEnrollment(t *testing.T) {
	caseInsensitiveNSS(t)
	store := storeFor(t)
	u := newUser(t)
	enroll(t, u, "--secret-file", store+"/%u")
	typed := strings.ToUpper(u.name)
	if out, err := exec.Command("getent", "passwd", typed).Output(); err != nil || !strings.HasPrefix(string(out), u.name+":") {
		t.Fatalf("the test NSS module does not resolve %s to %s: %q, %v", typed, u.name, out, err)
	}

	s := startSSHD(t, false, "auth required pam_unix.so nodelay", module("required", "secret="+store+"/%u", "nullok"))
	if _, err := s.login(typed, u.password, "", kbdFirst); err == nil {
		t.Fatalf("%s logged in as %s with the password alone", typed, u.name)
	}
	m := syslogs.mark()
	good := code(t, u.secret, 0)
	if out, err := s.login(typed, u.password, good, kbdFirst); err != nil || out != "pamtotp-logged-in-as-"+u.name {
		t.Fatalf("%s with %s's password and code: %q, %v", typed, u.name, out, err)
	}
	expectLog(t, m, `user=`+u.name+` typed=`+typed+` service=\S+ rhost=127.0.0.1 .*outcome=ok`, good, u.secret)

	e := startSSHD(t, false, "auth requisite pam_unix.so nodelay", module("required", "secret="+store+"/%u", "enroll=login"))
	if out, err := e.login(typed, u.password, code(t, u.secret, 1), kbdFirst); err != nil || out != "pamtotp-logged-in-as-"+u.name {
		t.Fatalf("%s with enroll=login: %q, %v (asked to enroll again?)", typed, out, err)
	}
	if typedFiles, _ := filepath.Glob(filepath.Join(store, typed+"*")); len(typedFiles) != 0 {
		t.Fatalf("files under the typed name: %v", typedFiles)
	}
}

// suVictim is a user enrolled in their home whose su stack is the usual
// one with opts, and another user (the attacker's shell) to run su.
func suVictim(t *testing.T, stack string) (victim, runner *user) {
	t.Helper()
	needRoot(t, "oathtool", "openssl", "su")
	victim, runner = newUser(t), newUser(t)
	writeEtc(t, "/etc/pam.d/su", stack, 0o644)
	return victim, runner
}

// A wrong password runs no code as the account named: with pam_unix
// required (not requisite) in front, the code prompt still comes, from the
// module itself, and no checker waits there counted against the victim's
// process limit. With the right password the checker waits at most
// prompt_timeout.
func TestRefusedPasswordStartsNoChecker(t *testing.T) {
	victim, runner := suVictim(t, hostStack("prompt_timeout=3"))
	enroll(t, victim)
	su := []string{"su", "-c", "id", victim.name}

	p := startTerminal(t, runner, su...)
	at := p.expect(0, "assword: ")
	p.typeText("wrong password\r")
	p.expect(at, "Verification code: ")
	if n := checkersOf(t, victim); n != 0 {
		t.Fatalf("a refused password started %d checker(s) as %s", n, victim.name)
	}
	p.typeText("000000\r")
	if p.wait(20 * time.Second) {
		t.Fatal("a wrong password got in")
	}

	// The right password: the checker runs as the victim (so the count
	// above can see one), until prompt_timeout ends its wait.
	p = startTerminal(t, runner, su...)
	at = p.expect(0, "assword: ")
	p.typeText(victim.password + "\r")
	p.expect(at, "Verification code: ")
	m := syslogs.mark()
	if !waitUntil(10*time.Second, func() bool { return checkersOf(t, victim) == 1 }) {
		t.Fatalf("no checker runs as %s at the prompt: the count above proves nothing", victim.name)
	}
	if !waitUntil(60*time.Second, func() bool { return checkersOf(t, victim) == 0 }) {
		t.Fatal("the checker still waits at the prompt after prompt_timeout=3")
	}
	expectLog(t, m, `user=`+victim.name+`.*outcome=fail reason="conversation failed: no answer within prompt_timeout=3 s"`)
	p.typeText(code(t, victim.secret, 0) + "\r")
	if p.wait(20 * time.Second) {
		t.Fatal("an answer after prompt_timeout got in")
	}
}

// A login parked at enroll=login's code prompt while the victim enrolls
// and uses their token: when it goes on, it writes nothing of the
// victim's, and does not log in. Through su, which has no time limit at
// the prompt.
func TestParkedEnrollmentChangesNothing(t *testing.T) {
	store := storeFor(t)
	opts := []string{"secret=" + store + "/%u", "deny=2"}
	victim, runner := suVictim(t, strings.Join([]string{
		"auth requisite pam_unix.so nodelay",
		module("required", append(opts, "enroll=login")...),
		"account required pam_unix.so",
		"session required pam_permit.so",
	}, "\n")+"\n")
	waitForFreshStep(30, 5)

	p := startTerminal(t, runner, "su", "-c", "id", victim.name)
	at := p.expect(0, "assword: ")
	p.typeText(victim.password + "\r")
	at = p.expect(at, "Verification code from the app: ")
	uri, err := url.Parse(regexp.MustCompile(`otpauth://\S+`).FindString(p.output()))
	if err != nil || uri.Query().Get("secret") == "" {
		t.Fatalf("no URI on the parked login's screen: %v\n%s", err, p.output())
	}

	// Meanwhile the victim enrolls, logs in, and is locked by wrong codes.
	enroll(t, victim, "--secret-file", store+"/%u")
	dir := service(t, module("required", opts...))
	used := code(t, victim.secret, 0)
	if err := authenticate(t, dir, victim.name, &conv{answers: []string{used}}); err != nil {
		t.Fatalf("the victim's own login: %v", err)
	}
	for i := 0; i < 2; i++ {
		authenticate(t, dir, victim.name, &conv{answers: []string{"000000"}})
	}
	statePath := secret.StatePath(filepath.Join(store, victim.name))
	before, err := os.ReadFile(statePath)
	if err != nil {
		t.Fatal(err)
	}

	m := syslogs.mark()
	p.typeText(code(t, uri.Query().Get("secret"), 0) + "\r")
	if p.wait(20 * time.Second) {
		t.Fatalf("the parked enrollment logged in as %s:\n%s", victim.name, p.output())
	}
	expectLog(t, m, `user=`+victim.name+`.*enroll=login: the user was enrolled meanwhile`)
	if after, _ := os.ReadFile(statePath); !bytes.Equal(before, after) {
		t.Fatalf("the parked login changed the victim's state:\nbefore %q\nafter  %q", before, after)
	}
	if pending, _ := filepath.Glob(filepath.Join(store, victim.name+".pending-*")); len(pending) != 0 {
		t.Fatalf("the parked login left pending files: %v", pending)
	}
}

// A PAM_TOTP_ENROLL that a user's ~/.pam_environment puts into the PAM
// environment (Debian's sshd stack runs pam_env user_readenv=1 in its
// session, and sshd calls pam_setcred again after the session opens) is
// not this module's: it is ignored, and the login goes on.
func TestForeignPendingEnrollmentIsIgnored(t *testing.T) {
	store := storeFor(t)
	u := newUser(t)
	enroll(t, u, "--secret-file", store+"/%u")
	env := filepath.Join(u.home, ".pam_environment")
	if err := os.WriteFile(env, []byte("PAM_TOTP_ENROLL DEFAULT=0123456789abcdef0123456789abcdef\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chown(env, u.uid, u.gid)
	s := startSSHD(t, false, "auth required pam_unix.so nodelay", module("required", "secret="+store+"/%u", "enroll=login"),
		"session required pam_env.so user_readenv=1")
	m := syslogs.mark()
	if out, err := s.login(u.name, u.password, code(t, u.secret, 0), kbdFirst); err != nil || out != "pamtotp-logged-in-as-"+u.name {
		t.Fatalf("login with a PAM_TOTP_ENROLL in ~/.pam_environment: %q, %v", out, err)
	}
	expectLog(t, m, `pam_totp.*PAM_TOTP_ENROLL in the PAM environment was not set by this login's authentication: ignored`)
}

// sudo's second try is judged by its own password. With pam_totp first
// and pam_unix after it, the first try's refused password must not count
// against the second.
func TestSudoSecondTryIsJudgedByItself(t *testing.T) {
	needRoot(t, "oathtool", "openssl", "sudo")
	u := newUser(t)
	enroll(t, u)
	service := "sudo-" + u.name
	writeEtc(t, "/etc/pam.d/"+service, strings.Join([]string{
		module("required"),
		"auth required pam_unix.so nodelay",
		"account required pam_unix.so",
		"session required pam_permit.so",
	}, "\n")+"\n", 0o644)
	writeEtc(t, "/etc/sudoers.d/"+u.name, fmt.Sprintf("Defaults:%s pam_service=%s, passwd_tries=2, !lecture\n%s ALL=(root) ALL\n",
		u.name, service, u.name), 0o440)
	// Try 1: a right code, a wrong password. Try 2: the next code and the password.
	in := code(t, u.secret, 0) + "\nwrong password\n" + code(t, u.secret, 1) + "\n" + u.password + "\n"
	if out, err := sudoAs(t, u, in); err != nil || out != "root" {
		t.Fatalf("the second try with the right password and code: %q, %v", out, err)
	}
}

// A pam_google_authenticator file is replaced by a rename at the charge
// and again at the end. Each new copy is synced before its rename, so at
// a crash the file is the old one or the whole new one (without the sync,
// ext4 with noauto_da_alloc left it empty, and the secret was lost).
// strace shows the order of the checker's system calls.
func TestGoogleFileSyncedBeforeRename(t *testing.T) {
	needRoot(t, "oathtool", "openssl", "strace")
	pamlogin := filepath.Join(buildDir, "pamlogin")
	if _, err := os.Stat(pamlogin); err != nil {
		t.Fatalf("%v: make test builds it (make build/pamlogin)", err)
	}
	u := newUser(t)
	u.secret = newSecret(t)
	writeGoogleAuthenticator(t, u)
	dir := service(t, module("required"))
	trace := filepath.Join(t.TempDir(), "trace")
	m := syslogs.mark()
	defer func() {
		if t.Failed() {
			t.Logf("log:\n%s", strings.Join(syslogs.since(m), "\n"))
		}
	}()
	out, err := exec.Command("strace", "-f", "-qq", "-y", "-o", trace, "-e", "trace=fsync,fdatasync,rename,renameat,renameat2",
		pamlogin, dir, "pamtotp-test", u.name, "000000").CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("strace pamlogin with a wrong code: %v (want exit 1, a refused login)\n%s", err, out)
	}
	data, err := os.ReadFile(trace)
	if err != nil {
		t.Fatal(err)
	}
	tmp := ".google_authenticator.tmp"
	renames, synced := 0, false
	// With two threads in a system call at once, strace splits one:
	// "PID fsync(FD<path> <unfinished ...>", later "PID <... fsync resumed>) = 0".
	unfinished := regexp.MustCompile(`^(\d+)\s+(?:fsync|fdatasync)\(\d+<[^>]*` + regexp.QuoteMeta(tmp) + `> <unfinished \.\.\.>`)
	resumed := regexp.MustCompile(`^(\d+)\s+<\.\.\. (?:fsync|fdatasync) resumed>\)\s+= 0`)
	pending := map[string]bool{}
	for _, line := range strings.Split(string(data), "\n") {
		if m := unfinished.FindStringSubmatch(line); m != nil {
			pending[m[1]] = true
			continue
		}
		if m := resumed.FindStringSubmatch(line); m != nil && pending[m[1]] {
			delete(pending, m[1])
			synced = true
			continue
		}
		switch {
		case regexp.MustCompile(`(fsync|fdatasync)\(\d+<[^>]*` + regexp.QuoteMeta(tmp) + `>\) = 0`).MatchString(line):
			synced = true
		case strings.Contains(line, "rename") && strings.Contains(line, tmp+`"`) && strings.HasSuffix(line, "= 0"):
			renames++
			if !synced {
				t.Fatalf("rename %d of the file was not preceded by a sync of the new copy:\n%s", renames, data)
			}
			synced = false
		}
	}
	if renames < 2 {
		t.Fatalf("saw %d renames of the file, want the charge and the final state:\n%s", renames, data)
	}
}

// status --all waits once in all for users who hold their own lock, and
// shows no control character from a user's file.
func TestStatusAllBounded(t *testing.T) {
	needRoot(t, "oathtool", "openssl")
	store := storeFor(t)
	const held = 4
	var users []*user
	for i := 0; i < held+1; i++ {
		u := newUser(t)
		enroll(t, u, "--secret-file", store+"/%u")
		users = append(users, u)
	}
	for _, u := range users[:held] {
		f, err := os.Open(filepath.Join(store, u.name))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
			t.Fatal(err)
		}
	}
	// The last user's state file holds a terminal's escape sequences.
	bad := secret.StatePath(filepath.Join(store, users[held].name))
	if err := os.WriteFile(bad, []byte("pam_totp-state 1\n\x9b2J\u009b31m\x1b]0;owned\x07\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	out, err := enrollCmd(t, "status", "--all", "--secret-file", store+"/%u")
	took := time.Since(start)
	if err != nil {
		t.Fatalf("status --all: %v\n%s", err, out)
	}
	// One wait is secret.LockTimeout (5 s); one per held lock would be held times that.
	if took > 2*5*time.Second {
		t.Fatalf("status --all took %v with %d locks held: it waited for each", took, held)
	}
	for _, u := range users[:held] {
		if !regexp.MustCompile(`(?m)^` + u.name + `\s+cannot read: .*held by another process`).MatchString(out) {
			t.Fatalf("no row saying %s's lock is held:\n%s", u.name, out)
		}
	}
	if strings.ContainsAny(out, "\x1b\x07\u009b") || strings.Contains(out, "\x9b") {
		t.Fatalf("status --all printed control characters from a user's file: %q", out)
	}
	if !strings.Contains(out, users[held].name) {
		t.Fatalf("no row for %s:\n%s", users[held].name, out)
	}
}

// doctor reads a user's files with the user's rights: with
// secret=${HOME}/.ssh/totp and ~/.ssh a link to a directory only root can
// read, the module cannot read the file, and doctor must say so instead
// of reading it as root.
func TestDoctorReadsHomesAsTheUser(t *testing.T) {
	needRoot(t, "oathtool", "openssl")
	u := newUser(t)
	ssh := filepath.Join(u.home, ".ssh")
	if err := os.Mkdir(ssh, 0o700); err != nil {
		t.Fatal(err)
	}
	os.Chown(ssh, u.uid, u.gid)
	enroll(t, u, "--secret-file", "${HOME}/.ssh/totp")
	rootOnly := filepath.Join(workDir, "root-only-"+u.name)
	if err := os.Rename(ssh, rootOnly); err != nil {
		t.Fatal(err)
	}
	os.Chown(rootOnly, 0, 0)
	if err := os.Symlink(rootOnly, ssh); err != nil {
		t.Fatal(err)
	}
	out, _ := doctorRun(t, map[string][]string{"sudo": {"auth requisite pam_unix.so", module("required", "nullok", "secret=${HOME}/.ssh/totp")}}, "")
	want := u.name + "'s enrollment " + filepath.Join(ssh, "totp") + " is refused by the module ("
	if !strings.Contains(out, want) || !strings.Contains(out, "permission denied") {
		t.Fatalf("doctor did not report the file the module cannot read (did it read it as root?):\n%s", out)
	}
}

// doctor applies the module's own rules: a root-owned ~/.pam_totp and one
// that does not parse lock their users out and are reported, and
// enroll=login in sudo's stack, where no QR code can be shown, is warned
// about.
func TestDoctorSeesWhatTheModuleRefuses(t *testing.T) {
	needRoot(t, "oathtool", "openssl")
	rootOwned, garbled := newUser(t), newUser(t)
	enroll(t, rootOwned)
	enroll(t, garbled)
	os.Chown(filepath.Join(rootOwned.home, ".pam_totp"), 0, 0)
	if err := os.WriteFile(filepath.Join(garbled.home, ".pam_totp"), []byte("pam_totp 1\ntoken broken\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, _ := doctorRun(t, map[string][]string{"sudo": {"auth requisite pam_unix.so", module("required", "nullok", "enroll=login")}}, "")
	for _, want := range []string{
		// As the user, as the checker reads it, a root-owned 0600 file does not even open.
		rootOwned.name + "'s enrollment " + filepath.Join(rootOwned.home, ".pam_totp") + " is refused by the module (opening " +
			filepath.Join(rootOwned.home, ".pam_totp") + ": permission denied",
		garbled.name + "'s enrollment " + filepath.Join(garbled.home, ".pam_totp") + " is refused by the module (",
		"enroll=login under sudo: sudo shows no PAM messages",
	} {
		if !strings.Contains(out, want) {
			t.Fatalf("doctor does not say %q:\n%s", want, out)
		}
	}
}

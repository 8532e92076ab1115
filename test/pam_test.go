// SPDX-License-Identifier: Apache-2.0

package test

import (
	"errors"
	"fmt"
	"os"
	"pamtotp/internal/options"
	"pamtotp/internal/secret"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/msteinert/pam/v2"
)

func TestPAMRightWrongReplay(t *testing.T) {
	needRoot(t, "oathtool", "openssl")
	u := newUser(t)
	enroll(t, u)
	dir := service(t, module("required"))

	m := syslogs.mark()
	good := code(t, u.secret, 0)
	c := &conv{answers: []string{good}}
	if err := authenticate(t, dir, u.name, c); err != nil {
		t.Fatalf("right code refused: %v", err)
	}
	if len(c.prompts) != 1 || c.prompts[0] != "Verification code: " {
		t.Fatalf("prompts %q", c.prompts)
	}
	expectLog(t, m, `pam_totp.*user=`+u.name+` service=pamtotp-test.*token=default outcome=ok`, good, u.secret)
	// The checker wrote the state as the user, never as root.
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Join(u.home, ".pam_totp.state"), &st); err != nil || int(st.Uid) != u.uid || st.Mode&0o077 != 0 {
		t.Fatalf("state file: uid %d mode %o, %v; want uid %d, no group or other bits", st.Uid, st.Mode&0o777, err, u.uid)
	}

	m = syslogs.mark()
	if err := authenticate(t, dir, u.name, &conv{answers: []string{good}}); !errors.Is(err, pam.ErrAuth) {
		t.Fatalf("replayed code: %v, want ErrAuth", err)
	}
	expectLog(t, m, `user=`+u.name+`.*outcome=fail reason=replay`, good)

	wrong := fmt.Sprintf("%06d", (atoi(good)+1)%1000000)
	m = syslogs.mark()
	if err := authenticate(t, dir, u.name, &conv{answers: []string{wrong}}); !errors.Is(err, pam.ErrAuth) {
		t.Fatalf("wrong code: %v, want ErrAuth", err)
	}
	expectLog(t, m, `user=`+u.name+`.*outcome=fail reason="bad code"`, wrong)

	// The next step's code is still inside the window, and new.
	if err := authenticate(t, dir, u.name, &conv{answers: []string{code(t, u.secret, 1)}}); err != nil {
		t.Fatalf("next code refused: %v", err)
	}
}

func atoi(s string) int {
	n := 0
	fmt.Sscan(s, &n)
	return n
}

func TestPAMScratchCodeWorksOnce(t *testing.T) {
	needRoot(t, "oathtool", "openssl")
	u := newUser(t)
	enroll(t, u)
	dir := service(t, module("required"))
	if err := authenticate(t, dir, u.name, &conv{answers: []string{u.scratch[0]}}); err != nil {
		t.Fatalf("scratch code refused: %v", err)
	}
	if err := authenticate(t, dir, u.name, &conv{answers: []string{u.scratch[0]}}); !errors.Is(err, pam.ErrAuth) {
		t.Fatalf("used scratch code: %v, want ErrAuth", err)
	}
	if err := authenticate(t, dir, u.name, &conv{answers: []string{u.scratch[1]}}); err != nil {
		t.Fatalf("second scratch code refused: %v", err)
	}
}

func TestPAMOtherParameters(t *testing.T) {
	needRoot(t, "oathtool", "openssl")
	u := newUser(t)
	enroll(t, u, "--digits", "8", "--period", "60", "--algorithm", "SHA256")
	dir := service(t, module("required"))
	c := code(t, u.secret, 0, "--totp=sha256", "-d", "8", "-s", "60")
	if err := authenticate(t, dir, u.name, &conv{answers: []string{c}}); err != nil {
		t.Fatalf("8-digit SHA256 60 s code refused: %v", err)
	}
}

// prompt= with spaces, in libpam's square brackets, and echo_code.
func TestPAMPromptAndEcho(t *testing.T) {
	needRoot(t, "oathtool", "openssl")
	u := newUser(t)
	enroll(t, u)
	dir := service(t, module("required", "[prompt=Code from your phone: ]", "echo_code"))
	c := &conv{answers: []string{code(t, u.secret, 0)}}
	if err := authenticate(t, dir, u.name, c); err != nil {
		t.Fatalf("%v (prompts %q)", err, c.prompts)
	}
	if len(c.prompts) != 1 || c.prompts[0] != "Code from your phone: " || c.styles[0] != pam.PromptEchoOn {
		t.Fatalf("prompts %q, styles %v: want one echo-on prompt %q", c.prompts, c.styles, "Code from your phone: ")
	}
	plain := service(t, module("required"))
	c = &conv{answers: []string{"000000"}}
	authenticate(t, plain, u.name, c)
	if len(c.styles) != 1 || c.styles[0] != pam.PromptEchoOff {
		t.Fatalf("without echo_code: styles %v, want echo off", c.styles)
	}
}

func TestPAMNullok(t *testing.T) {
	needRoot(t, "openssl")
	u := newUser(t) // not enrolled
	with := service(t, module("required", "nullok"), "auth required pam_permit.so")
	c := &conv{}
	if err := authenticate(t, with, u.name, c); err != nil {
		t.Fatalf("nullok, no secret: %v", err)
	}
	if len(c.prompts) != 0 {
		t.Fatalf("nullok prompted: %q", c.prompts)
	}
	without := service(t, module("required"), "auth required pam_permit.so")
	c = &conv{answers: []string{"123456"}}
	if err := authenticate(t, without, u.name, c); !errors.Is(err, pam.ErrAuth) {
		t.Fatalf("no secret, no nullok: %v, want ErrAuth", err)
	}
	if len(c.prompts) != 1 {
		t.Fatalf("no secret must still prompt; prompts %q", c.prompts)
	}
}

// An unknown user, a user without a secret and an enrolled user with a wrong
// code see the same prompts and the same failure.
func TestPAMSamePromptForEveryone(t *testing.T) {
	needRoot(t, "oathtool", "openssl")
	enrolled, bare := newUser(t), newUser(t)
	enroll(t, enrolled)
	dir := service(t, module("required"))
	var seen [][]string
	for _, name := range []string{enrolled.name, bare.name, "nosuchuser-pamtotp"} {
		c := &conv{answers: []string{"000000"}}
		if err := authenticate(t, dir, name, c); !errors.Is(err, pam.ErrAuth) {
			t.Fatalf("%s: %v, want ErrAuth", name, err)
		}
		seen = append(seen, append(c.prompts, c.infos...))
	}
	for i := range seen {
		if strings.Join(seen[i], "|") != strings.Join(seen[0], "|") {
			t.Fatalf("different prompts: %q", seen)
		}
	}
}

func TestPAMForwardPass(t *testing.T) {
	needRoot(t, "oathtool", "openssl")
	u := newUser(t)
	enroll(t, u)
	dir := service(t, module("requisite", "forward_pass"), "auth required pam_unix.so use_first_pass nodelay")
	c := &conv{answers: []string{u.password + code(t, u.secret, 0)}}
	if err := authenticate(t, dir, u.name, c); err != nil {
		t.Fatalf("password+code: %v", err)
	}
	if len(c.prompts) != 1 {
		t.Fatalf("forward_pass must prompt once, prompted %q", c.prompts)
	}
	c = &conv{answers: []string{"wrong password" + code(t, u.secret, 1)}}
	if err := authenticate(t, dir, u.name, c); !errors.Is(err, pam.ErrAuth) {
		t.Fatalf("wrong password with right code: %v, want ErrAuth", err)
	}
	// A scratch code (8 digits) works the same way.
	c = &conv{answers: []string{u.password + u.scratch[0]}}
	if err := authenticate(t, dir, u.name, c); err != nil {
		t.Fatalf("password+scratch: %v", err)
	}
}

func TestPAMUseFirstPass(t *testing.T) {
	needRoot(t, "oathtool", "openssl")
	u := newUser(t)
	enroll(t, u)
	// pam_unix asks for the password (the user types password and code),
	// fails on it but leaves it as PAM_AUTHTOK; pam_totp takes the code off
	// the end and hands the rest to the second pam_unix.
	dir := service(t,
		"auth optional pam_unix.so nodelay",
		module("requisite", "use_first_pass"),
		"auth required pam_unix.so use_first_pass nodelay")
	c := &conv{answers: []string{u.password + code(t, u.secret, 0)}}
	if err := authenticate(t, dir, u.name, c); err != nil {
		t.Fatalf("use_first_pass: %v (prompts %q)", err, c.prompts)
	}
	if len(c.prompts) != 1 {
		t.Fatalf("use_first_pass must not prompt again, prompts %q", c.prompts)
	}
	c = &conv{answers: []string{u.password}}
	if err := authenticate(t, dir, u.name, c); !errors.Is(err, pam.ErrAuth) {
		t.Fatalf("password without a code: %v, want ErrAuth", err)
	}
}

func TestPAMLockout(t *testing.T) {
	needRoot(t, "oathtool", "openssl")
	u := newUser(t)
	enroll(t, u)
	dir := service(t, module("required", "deny=2", "unlock_time=600"))
	for i := 0; i < 2; i++ {
		if err := authenticate(t, dir, u.name, &conv{answers: []string{"000000"}}); !errors.Is(err, pam.ErrAuth) {
			t.Fatalf("wrong code %d: %v", i, err)
		}
	}
	m := syslogs.mark()
	if err := authenticate(t, dir, u.name, &conv{answers: []string{code(t, u.secret, 0)}}); !errors.Is(err, pam.ErrAuth) {
		t.Fatalf("locked user got in: %v", err)
	}
	expectLog(t, m, `user=`+u.name+`.*outcome=fail reason=locked`)
}

func TestPAMSystemStore(t *testing.T) {
	needRoot(t, "oathtool", "openssl")
	store := filepath.Join(workDir, "store")
	u := newUser(t)
	enroll(t, u, "--secret-file", store+"/%u")
	st, err := os.Stat(filepath.Join(store, u.name))
	if err != nil || st.Sys() == nil {
		t.Fatal(err)
	}
	dir := service(t, module("required", "secret="+store+"/%u"))
	if err := authenticate(t, dir, u.name, &conv{answers: []string{code(t, u.secret, 0)}}); err != nil {
		t.Fatalf("system store: %v", err)
	}
	// A store directory that others can write is refused, whatever is in it.
	os.Chmod(store, 0o777)
	m := syslogs.mark()
	if err := authenticate(t, dir, u.name, &conv{answers: []string{code(t, u.secret, 1)}}); !errors.Is(err, pam.ErrAuth) {
		t.Fatalf("world-writable store: %v, want ErrAuth", err)
	}
	expectLog(t, m, `outcome=fail reason=".*writable by its owner only`)
	os.Chmod(store, 0o700)

	// A file in the store that the user owns is refused: the store is root's.
	os.Chown(filepath.Join(store, u.name), u.uid, u.gid)
	m = syslogs.mark()
	if err := authenticate(t, dir, u.name, &conv{answers: []string{code(t, u.secret, 1)}}); !errors.Is(err, pam.ErrAuth) {
		t.Fatalf("user-owned file in the store: %v, want ErrAuth", err)
	}
	expectLog(t, m, `outcome=fail reason=".*owned by uid`)
}

func TestPAMBadCodes(t *testing.T) {
	needRoot(t, "oathtool", "openssl")
	u := newUser(t)
	enroll(t, u)
	dir := service(t, module("required", "deny=0"))
	good := code(t, u.secret, 0)
	for name, answer := range map[string]string{
		"empty":          "",
		"5 digits":       good[:5],
		"7 digits":       good + "0",
		"letters":        "abcdef",
		"inner space":    good[:3] + " " + good[3:],
		"1 MB":           strings.Repeat("1", 1<<20),
		"1 MB then code": strings.Repeat("x", 1<<20) + good,
		"NUL inside":     good[:3] + "\x00" + good[3:],
		"invalid UTF-8":  "\xff\xfe\xfd\xfc\xfb\xfa",
		"code and space": good + " ",
	} {
		m := syslogs.mark()
		if err := authenticate(t, dir, u.name, &conv{answers: []string{answer}}); !errors.Is(err, pam.ErrAuth) {
			t.Errorf("%s: %v, want ErrAuth", name, err)
		}
		expectLog(t, m, `user=`+u.name+`.*outcome=fail`)
	}
	// None of that used up the good code.
	if err := authenticate(t, dir, u.name, &conv{answers: []string{good}}); err != nil {
		t.Fatalf("good code after bad input: %v", err)
	}
}

func TestPAMBadSecretFiles(t *testing.T) {
	needRoot(t, "oathtool", "openssl")
	dir := service(t, module("required", "nullok"))
	cases := []struct {
		name  string
		setup func(u *user, path string) error
		log   string
	}{
		{"empty", func(u *user, p string) error { return writeAs(u, p, "", 0o600) }, "empty file"},
		{"not base32", func(u *user, p string) error {
			return writeAs(u, p, "pam_totp 1\ntoken x type=totp secret=11111111111111111111\n", 0o600)
		}, "base32"},
		{"symlink", func(u *user, p string) error { return os.Symlink("/etc/shadow", p) }, "symbolic link"},
		{"group readable", func(u *user, p string) error { return enrollFile(u, p, 0o640) }, "mode 0640"},
		{"world readable", func(u *user, p string) error { return enrollFile(u, p, 0o604) }, "mode 0604"},
		{"owned by root", func(u *user, p string) error {
			if err := enrollFile(u, p, 0o600); err != nil {
				return err
			}
			return os.Chown(p, 0, 0)
		}, "owned by uid 0|permission denied"},
		{"directory", func(u *user, p string) error {
			if err := os.Mkdir(p, 0o700); err != nil {
				return err
			}
			return os.Chown(p, u.uid, u.gid)
		}, "not a regular file"},
		{"10 MB", func(u *user, p string) error {
			return writeAs(u, p, "pam_totp 1\n"+strings.Repeat("#", 10<<20), 0o600)
		}, "larger than"},
		{"FIFO", func(u *user, p string) error { return mknodAs(u, p, syscall.S_IFIFO|0o600, 0) }, "not a regular file"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			u := newUser(t)
			if err := tc.setup(u, filepath.Join(u.home, ".pam_totp")); err != nil {
				t.Fatal(err)
			}
			m := syslogs.mark()
			c := &conv{answers: []string{"123456"}}
			if err := authenticate(t, dir, u.name, c); !errors.Is(err, pam.ErrAuth) {
				t.Fatalf("%v, want ErrAuth (nullok must not let a broken file through)", err)
			}
			if len(c.prompts) != 1 {
				t.Fatalf("a broken file must still prompt, prompts %q", c.prompts)
			}
			expectLog(t, m, `user=`+u.name+`.*outcome=fail reason=.*(`+tc.log+`)`)
		})
	}
}

func writeAs(u *user, path, content string, mode os.FileMode) error {
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		return err
	}
	if err := os.Chmod(path, mode); err != nil {
		return err
	}
	return os.Chown(path, u.uid, u.gid)
}

func enrollFile(u *user, path string, mode os.FileMode) error {
	return writeAs(u, path, "pam_totp 1\ntoken x type=totp secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP\n", mode)
}

func TestPAMBadOptions(t *testing.T) {
	needRoot(t, "openssl")
	u := newUser(t)
	for _, opt := range []string{"nulok", "window=abc", "window=11", "deny=-1", "secret=relative", "timeout=abc", "timeout=0", "checker=relative/path"} {
		t.Run(opt, func(t *testing.T) {
			dir := service(t, module("required", opt), "auth required pam_permit.so")
			m := syslogs.mark()
			c := &conv{answers: []string{"123456"}}
			if err := authenticate(t, dir, u.name, c); !errors.Is(err, pam.ErrAuth) {
				t.Fatalf("%v, want ErrAuth", err)
			}
			if len(c.prompts) != 0 {
				t.Fatalf("a bad option must fail before any prompt, prompts %q", c.prompts)
			}
			name := strings.SplitN(opt, "=", 2)[0]
			expectLog(t, m, name)
		})
	}
}

// brokenCheckers are checkers that are missing, unsafe, crashing, garbled or
// silent, each with the module's log line it must cause.
var brokenCheckers = map[string]struct {
	body string
	mode os.FileMode
	log  string
}{
	"missing":           {"", 0, "checker"},
	"not executable":    {"#!/bin/sh\nexit 0\n", 0o644, "not an executable root-owned file"},
	"group writable":    {"#!/bin/sh\nexit 0\n", 0o775, "not an executable root-owned file"},
	"crashing":          {"#!/bin/sh\nkill -SEGV $$\n", 0o755, "closed the connection"},
	"exits at once":     {"#!/bin/sh\nexit 0\n", 0o755, "closed the connection"},
	"garbage":           {"#!/bin/sh\nprintf 'HTTP/1.1 200 OK\\r\\n\\r\\n'\n", 0o755, "oversized"},
	"oversized frame":   {"#!/bin/sh\nprintf 'P\\377\\377'; sleep 5\n", 0o755, "oversized"},
	"truncated frame":   {"#!/bin/sh\nprintf 'P\\000\\050abc'\n", 0o755, "truncated"},
	"unknown verdict":   {"#!/bin/sh\nprintf 'V\\000\\001Y'\n", 0o755, "unknown verdict"},
	"never answers":     {"#!/bin/sh\nexec sleep 60\n", 0o755, "no answer in time"},
	"NUL in prompt":     {"#!/bin/sh\nprintf 'P\\000\\003a\\000b'\n", 0o755, "NUL"},
	"success then junk": {"#!/bin/sh\nprintf 'V\\000\\001S'; exec sleep 60\n", 0o755, "did not exit"},
}

// installChecker writes a broken checker script into the root-owned test
// directory. Each first reads the request, as a checker does; the socket to
// the module is standard input, and standard output is /dev/null.
func installChecker(t *testing.T, name string) string {
	t.Helper()
	s := brokenCheckers[name]
	path := filepath.Join(libDir, "checker-"+strings.ReplaceAll(name, " ", "-"))
	if s.body != "" {
		body := strings.Replace(s.body, "\n", "\nexec 1>&0\ndd bs=8192 count=1 of=/dev/null 2>/dev/null\n", 1)
		if err := os.WriteFile(path, []byte(body), s.mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(path, s.mode)
		t.Cleanup(func() { os.Remove(path) })
	}
	return path
}

// Checkers that are missing, unsafe, crashing, garbled or silent: the module
// fails closed, in bounded time, with a log line.
func TestPAMBrokenCheckers(t *testing.T) {
	needRoot(t, "openssl")
	u := newUser(t)
	for name, s := range brokenCheckers {
		t.Run(name, func(t *testing.T) {
			path := installChecker(t, name)
			dir := service(t, fmt.Sprintf("auth required %s/pam_totp.so checker=%s nodelay timeout=2", libDir, path))
			m := syslogs.mark()
			start := time.Now()
			if err := authenticate(t, dir, u.name, &conv{answers: []string{"123456"}}); !errors.Is(err, pam.ErrAuth) {
				t.Fatalf("%v, want ErrAuth", err)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Fatalf("took %v: the module must give up on a checker within its timeout", d)
			}
			expectLog(t, m, `pam_totp.*`+s.log)
		})
	}
}

// mknodAs makes a FIFO or device node owned by u.
func mknodAs(u *user, path string, mode uint32, dev int) error {
	if err := syscall.Mknod(path, mode, dev); err != nil {
		return err
	}
	return os.Chown(path, u.uid, u.gid)
}

// With pam_unix before us and not requisite, a wrong password still
// reaches our prompt. Its code is then neither compared nor counted: an
// attacker without the password cannot lock the owner out, nor learn or
// use up a code.
func TestPAMWrongPasswordCostsNoLock(t *testing.T) {
	needRoot(t, "oathtool", "openssl")
	u := newUser(t)
	enroll(t, u)
	dir := service(t, "auth required pam_unix.so nodelay", module("required", "deny=2"))
	m := syslogs.mark()
	for i := 0; i < 4; i++ {
		c := &conv{answers: []string{"wrong password", "000000"}}
		if err := authenticate(t, dir, u.name, c); err == nil || len(c.prompts) != 2 {
			t.Fatalf("wrong password %d: %v, prompts %q (want the same two prompts as anyone)", i, err, c.prompts)
		}
	}
	expectLog(t, m, `pam_totp.*user=`+u.name+` outcome=fail reason="the password was refused earlier in the stack; no checker started"`)
	right := code(t, u.secret, 0)
	if err := authenticate(t, dir, u.name, &conv{answers: []string{"wrong password", right}}); err == nil {
		t.Fatal("a wrong password with the right code got in")
	}
	st := readState(t, filepath.Join(u.home, ".pam_totp"))
	if st.Missed != 0 || st.LockedUntil != 0 {
		t.Fatalf("wrong passwords counted against the owner: %+v", st)
	}
	// The owner's right code was not used up by the attempt above.
	if err := authenticate(t, dir, u.name, &conv{answers: []string{u.password, right}}); err != nil {
		t.Fatalf("the owner with the right password and code: %v", err)
	}
	// And a wrong code after the right password counts as always.
	authenticate(t, dir, u.name, &conv{answers: []string{u.password, "000000"}})
	if st := readState(t, filepath.Join(u.home, ".pam_totp")); st.Missed != 1 {
		t.Fatalf("a wrong code after the right password: missed %d, want 1", st.Missed)
	}
}

// pam_unix refuses an account whose password it does not hold (a locked
// "!" hash, an account of the directory) and the stack may go on to a module
// that checks it (pam_sss, pam_krb5; pam_permit stands in for one here, in
// the shape pam-auth-update writes). Its refusal then says nothing about
// the password: the checker decides, and the right code gets in.
func TestPAMUnixRefusalOfAnAccountItCannotCheck(t *testing.T) {
	needRoot(t, "oathtool", "openssl")
	u := newUser(t)
	enroll(t, u)
	lockLocalPassword(t, u)
	dir := service(t,
		"auth [success=2 default=ignore] pam_unix.so nodelay",
		"auth [success=1 default=ignore] pam_permit.so",
		"auth requisite pam_deny.so",
		"auth required pam_permit.so",
		module("required"))
	if err := authenticate(t, dir, u.name, &conv{answers: []string{"a password pam_unix cannot check", code(t, u.secret, 0)}}); err != nil {
		t.Fatalf("the right code after another module accepted the password: %v", err)
	}
	if err := authenticate(t, dir, u.name, &conv{answers: []string{"x", wrongCode(t, u)}}); err == nil {
		t.Fatal("a wrong code got in")
	}
}

// lockLocalPassword makes u's hash in /etc/shadow a locked one ("!..."), as
// usermod -L does, for accounts whose password lives elsewhere.
func lockLocalPassword(t *testing.T, u *user) {
	t.Helper()
	data, err := os.ReadFile("/etc/shadow")
	if err != nil {
		t.Fatal(err)
	}
	locked := strings.Replace(string(data), u.name+":$", u.name+":!$", 1)
	if locked == string(data) {
		t.Fatalf("no hash of %s in /etc/shadow", u.name)
	}
	if err := os.WriteFile("/etc/shadow", []byte(locked), 0o640); err != nil {
		t.Fatal(err)
	}
}

// PAM_SILENT: the application asked for no messages, so none is relayed;
// the prompt still comes.
func TestPAMSilent(t *testing.T) {
	needRoot(t, "oathtool", "openssl")
	u := newUser(t)
	enroll(t, u)
	dir := service(t, module("required"))
	run := func(flags pam.Flags, answer string) *conv {
		t.Helper()
		c := &conv{answers: []string{answer}}
		tx, err := pam.StartConfDir("pamtotp-test", u.name, c, dir)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.End()
		tx.Authenticate(flags)
		return c
	}
	run(0, "000000")
	if c := run(pam.Silent, code(t, u.secret, 0)); len(c.prompts) != 1 || len(c.infos) != 0 {
		t.Fatalf("PAM_SILENT: prompts %q, messages %q; want the prompt and no message", c.prompts, c.infos)
	}
	// The count the silent login could not show waits for one that can:
	// the wrong code before it and the one after.
	run(0, "000000")
	if c := run(0, code(t, u.secret, 1)); len(c.infos) != 1 || !strings.Contains(c.infos[0], "2 wrong verification code") {
		t.Fatalf("without PAM_SILENT: messages %q; want the report of both wrong codes", c.infos)
	}
}

// Who owns a user's files is decided twice: by pam_totp.c, which starts the
// checker as that owner, and by options.Access in Go, which the checker
// verifies against and totp-enroll acts as. A disagreement fails closed
// ("checker runs as uid X, not as the owner"); this table shows that they
// agree, through the real module, for every kind of secret= and user=.
func TestOwnerRuleAgrees(t *testing.T) {
	needRoot(t, "oathtool", "openssl")
	owner := newUser(t) // the account of user=NAME
	for _, tt := range []struct {
		name string
		opts func(store string) []string
	}{
		{"default, in the home", func(string) []string { return nil }},
		{"%h template", func(string) []string { return []string{"secret=%h/.otp-%u"} }},
		{"${HOME} template", func(string) []string { return []string{"secret=${HOME}/.otp"} }},
		{"root store", func(store string) []string { return []string{"secret=" + store + "/%u"} }},
		{"${USER} outside the home", func(store string) []string { return []string{"secret=" + store + "/${USER}"} }},
		{"user=root", func(store string) []string { return []string{"user=root", "secret=" + store + "/${USER}"} }},
		{"user=NAME", func(store string) []string { return []string{"user=" + owner.name, "secret=" + store + "/%u"} }},
		{"user=UID", func(store string) []string {
			return []string{fmt.Sprintf("user=%d", owner.uid), "secret=" + store + "/%u"}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			u := newUser(t)
			u.secret = newSecret(t)
			store := filepath.Join(workDir, "owner-"+u.name)
			opts := tt.opts(store)
			o, err := options.Parse(opts)
			if err != nil {
				t.Fatal(err)
			}
			acc, err := o.Access(u.uid)
			if err != nil {
				t.Fatal(err)
			}
			path, err := options.Expand(o.Secrets()[0], u.name, u.home)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(path, u.home) {
				// A store directory of the owner's, that only it may write.
				if err := os.Mkdir(store, 0o755); err != nil {
					t.Fatal(err)
				}
				os.Chown(store, acc.Owner, acc.Owner)
			}
			content := "pam_totp 1\ntoken default type=totp secret=" + u.secret + "\n"
			if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			os.Chown(path, acc.Owner, acc.Owner)
			m := syslogs.mark()
			if err := authenticate(t, service(t, module("required", opts...)), u.name, &conv{answers: []string{code(t, u.secret, 0)}}); err != nil {
				t.Fatalf("files owned by uid %d as options.Access says: %v\n%s", acc.Owner, err, strings.Join(syslogs.since(m), "\n"))
			}
			st, err := os.Stat(secret.StatePath(path))
			if err != nil || int(st.Sys().(*syscall.Stat_t).Uid) != acc.Owner {
				t.Fatalf("the state file: %v, want it owned by uid %d", err, acc.Owner)
			}
		})
	}
}

// SPDX-License-Identifier: Apache-2.0

package test

import (
	"testing"
	"time"
)

// A console login through the real /bin/login on a pseudo-terminal, with
// pam_totp in its own stack (the namespace's /etc/pam.d/login): the right
// code opens a shell, its replay and a wrong code do not.
func TestConsoleLogin(t *testing.T) {
	needRoot(t, "oathtool", "openssl", "login")
	u := newUser(t)
	enroll(t, u)
	writeEtc(t, "/etc/pam.d/login", hostStack(), 0o644)
	waitForFreshStep(30, 5)
	good := code(t, u.secret, 0)
	// login returns whether the shell ran and printed the user's name.
	login := func(c string) bool {
		t.Helper()
		p := newTerminal(t)
		p.run(nil, "/", "login", u.name)
		at := p.expect(0, "Password: ")
		p.typeText(u.password + "\r")
		at = p.expect(at, "Verification code: ")
		p.typeText(c + "\r")
		// Either a shell (we ask it who it is) or login's refusal.
		at, which := p.expectAny(at, "$ ", "Login incorrect")
		if which != 0 {
			p.wait(0)
			return false
		}
		p.typeText("echo shell-of-$(id -un); exit\r")
		_, which = p.expectAny(at, "shell-of-"+u.name+"\r", "shell-of-"+u.name+"\n")
		p.wait(10 * time.Second)
		return which >= 0
	}
	m := syslogs.mark()
	if !login(good) {
		t.Fatal("the right code did not open a shell")
	}
	expectLog(t, m, `user=`+u.name+` service=login tty=/dev/pts/\d+ .*outcome=ok`, good, u.secret)
	if login(good) {
		t.Fatal("a replayed code opened a shell")
	}
	if login("000000") {
		t.Fatal("a wrong code opened a shell")
	}
}

// su to an enrolled user from another user's shell: the right code, then
// its replay.
func TestSu(t *testing.T) {
	needRoot(t, "oathtool", "openssl", "su")
	h := suHost(t, storeFor(t))
	waitForFreshStep(30, 5)
	good := code(t, h.victim.secret, 0)
	if !h.attempt(t, nil, good, nil, 20*time.Second) {
		t.Fatal("su with the right code did not run the command")
	}
	if h.attempt(t, nil, good, nil, 20*time.Second) {
		t.Fatal("su accepted a replayed code")
	}
	if !h.attempt(t, nil, code(t, h.victim.secret, 1), nil, 20*time.Second) {
		t.Fatal("su with the next code did not run the command")
	}
}

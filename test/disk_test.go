// SPDX-License-Identifier: Apache-2.0

package test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/msteinert/pam/v2"
)

// A full disk and a read-only file system. The state file keeps room for
// its next records, so on a full disk a login is still recorded in place
// and its code cannot be used again. Where a new file is needed (a state
// in the old text format) or on a read-only file system, the login is
// refused with a message and a log line (a code that cannot be recorded
// could be used again), nothing is truncated, and logins work again once
// the disk does.
func TestPAMFullAndReadOnlyHome(t *testing.T) {
	needRoot(t, "oathtool", "openssl")
	u := newUser(t)
	// The home on a small tmpfs of its own.
	if err := syscall.Mount("tmpfs", u.home, "tmpfs", 0, fmt.Sprintf("size=256k,mode=755,uid=%d,gid=%d", u.uid, u.gid)); err != nil {
		t.Fatal(err)
	}
	defer syscall.Unmount(u.home, syscall.MNT_DETACH)
	enroll(t, u)
	secretPath := filepath.Join(u.home, ".pam_totp")
	before, err := os.ReadFile(secretPath)
	if err != nil {
		t.Fatal(err)
	}
	dir := service(t, module("required"))
	login := func(c string) (*conv, error) {
		cv := &conv{answers: []string{c}}
		return cv, authenticate(t, dir, u.name, cv)
	}
	if _, err := login(code(t, u.secret, 0)); err != nil {
		t.Fatalf("first login: %v", err)
	}

	// Fill the disk.
	filler := filepath.Join(u.home, "filler")
	exec.Command("dd", "if=/dev/zero", "of="+filler, "bs=4k").Run()
	if err := os.WriteFile(filepath.Join(u.home, "probe"), []byte("x"), 0o600); err == nil {
		t.Fatal("the disk is not full")
	}
	state, _ := os.ReadFile(secretPath + ".state")
	next := code(t, u.secret, 1)
	if _, err := login(next); err != nil {
		t.Fatalf("full disk, state in slots: %v, want success", err)
	}
	if now, _ := os.ReadFile(secretPath + ".state"); string(now) == string(state) {
		t.Fatal("a login on a full disk left the state as it was")
	}
	m := syslogs.mark()
	if _, err := login(next); !errors.Is(err, pam.ErrAuth) {
		t.Fatalf("the same code again on a full disk: %v, want ErrAuth", err)
	}
	expectLog(t, m, `user=`+u.name+`.*outcome=fail reason=replay`, next)

	// A state in the old text format must be replaced by a new file.
	if err := os.WriteFile(secretPath+".state", []byte("pam_totp-state 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	state, _ = os.ReadFile(secretPath + ".state")
	m = syslogs.mark()
	next = code(t, u.secret, 2)
	cv, err := login(next)
	if !errors.Is(err, pam.ErrAuth) {
		t.Fatalf("full disk, text state: %v, want ErrAuth", err)
	}
	if !strings.Contains(strings.Join(cv.infos, "\n"), "cannot record this login") {
		t.Fatalf("no message for the user: %q", cv.infos)
	}
	expectLog(t, m, `user=`+u.name+`.*outcome=fail reason="cannot record the attempt, so no code was compared`, next)
	if now, _ := os.ReadFile(secretPath); string(now) != string(before) {
		t.Fatal("the secret changed on a full disk")
	}
	if now, _ := os.ReadFile(secretPath + ".state"); string(now) != string(state) {
		t.Fatal("the state changed on a full disk")
	}
	if left, _ := filepath.Glob(filepath.Join(u.home, ".*.tmp*")); len(left) != 0 {
		t.Fatalf("temporary files left: %v", left)
	}
	os.Remove(filler)
	if _, err := login(next); err != nil {
		t.Fatalf("after space came back: %v", err)
	}

	// Read-only.
	if err := syscall.Mount("", u.home, "", syscall.MS_REMOUNT|syscall.MS_RDONLY, ""); err != nil {
		t.Fatal(err)
	}
	m = syslogs.mark()
	if _, err := login(code(t, u.secret, 3)); !errors.Is(err, pam.ErrAuth) {
		t.Fatalf("read-only home: %v, want ErrAuth", err)
	}
	expectLog(t, m, `user=`+u.name+`.*outcome=fail reason="cannot record the attempt, so no code was compared.*read-only`)
	if err := syscall.Mount("", u.home, "", syscall.MS_REMOUNT, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := login(code(t, u.secret, 3)); err != nil {
		t.Fatalf("after the home became writable: %v", err)
	}
	if now, _ := os.ReadFile(secretPath); string(now) != string(before) {
		t.Fatal("the secret changed")
	}
}

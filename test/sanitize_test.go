// SPDX-License-Identifier: Apache-2.0

package test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The C module built with AddressSanitizer, LeakSanitizer and
// UndefinedBehaviorSanitizer, driven through real libpam by a client built
// the same way (build/asan, from make sanitizers), with the real checker and
// with every broken one: each login ends as it must, and the sanitizers
// report nothing (no memory error, no leak, no undefined behaviour).
func TestCModuleUnderSanitizers(t *testing.T) {
	needRoot(t, "oathtool", "openssl")
	asan := filepath.Join(buildDir, "asan")
	if _, err := os.Stat(filepath.Join(asan, "pamlogin")); err != nil {
		t.Skip("needs build/asan (make sanitizers)")
	}
	dir := filepath.Join(libDir, "asan")
	if out, err := exec.Command("cp", "-r", asan, dir).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	u := newUser(t)
	enroll(t, u)
	conf := t.TempDir()
	login := func(t *testing.T, checker, code string, opts ...string) int {
		t.Helper()
		line := fmt.Sprintf("auth required %s/pam_totp.so checker=%s nodelay timeout=1 %s\n", dir, checker, strings.Join(opts, " "))
		if err := os.WriteFile(filepath.Join(conf, "asan"), []byte(line), 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(filepath.Join(dir, "pamlogin"), conf, "asan", u.name, code)
		cmd.Env = []string{"ASAN_OPTIONS=detect_leaks=1:halt_on_error=1:abort_on_error=0", "UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1"}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		for _, bad := range []string{"AddressSanitizer", "LeakSanitizer", "runtime error"} {
			if strings.Contains(stderr.String(), bad) {
				t.Fatalf("sanitizer report:\n%s", stderr.String())
			}
		}
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0
	}
	real := filepath.Join(libDir, "pam-totp-check")
	good := code(t, u.secret, 0)
	if rc := login(t, real, good); rc != 0 {
		t.Fatalf("right code: exit %d", rc)
	}
	if rc := login(t, real, good); rc != 1 {
		t.Fatalf("replay: exit %d, want 1", rc)
	}
	if rc := login(t, real, "000000"); rc != 1 {
		t.Fatalf("wrong code: exit %d, want 1", rc)
	}
	if rc := login(t, real, "123456", "no_such_option"); rc != 1 {
		t.Fatalf("bad option: exit %d, want 1", rc)
	}
	if rc := login(t, real, strings.Repeat("9", 4000)); rc != 1 {
		t.Fatalf("long answer: exit %d, want 1", rc)
	}
	for name := range brokenCheckers {
		t.Run(name, func(t *testing.T) {
			if rc := login(t, installChecker(t, name), "123456"); rc != 1 {
				t.Fatalf("exit %d, want 1", rc)
			}
		})
	}
}

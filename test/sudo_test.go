// SPDX-License-Identifier: Apache-2.0

package test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// sudoAs runs "sudo -S -k id -un" as u with stdin as the answers to its
// prompts (password, then code), under sudo's own PAM service.
func sudoAs(t *testing.T, u *user, stdin string) (string, error) {
	t.Helper()
	cmd := exec.Command("sudo", "-S", "-k", "-p", "sudo-password: ", "id", "-un")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(u.uid), Gid: uint32(u.gid)}}
	return runSudo(t, cmd, u, stdin)
}

// runSudo runs a sudo command made for u, in u's home with a bare
// environment, and returns what it printed, or its error output. A sudo
// that takes over 30 s is a hang: it fails the test.
func runSudo(t *testing.T, cmd *exec.Cmd, u *user, stdin string) (string, error) {
	t.Helper()
	cmd.Env = []string{"PATH=/usr/bin:/bin:/usr/sbin:/sbin", "HOME=" + u.home}
	cmd.Dir = u.home
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		return "", err
	}
	hung := time.AfterFunc(30*time.Second, func() { cmd.Process.Kill() })
	err := cmd.Wait()
	if !hung.Stop() {
		t.Fatalf("sudo hung for 30 s; stderr: %s", errb.String())
	}
	if err != nil {
		return errb.String(), err
	}
	return strings.TrimSpace(out.String()), nil
}

func TestSudo(t *testing.T) {
	needRoot(t, "oathtool", "openssl", "sudo")
	u := newUser(t)
	enroll(t, u)
	service := "sudo-pamtotp-test"
	stack := strings.Join([]string{
		"auth required pam_unix.so nodelay",
		module("required"),
		"account required pam_unix.so",
		"session required pam_permit.so",
	}, "\n") + "\n"
	if err := os.WriteFile("/etc/pam.d/"+service, []byte(stack), 0o644); err != nil {
		t.Fatal(err)
	}
	rule := fmt.Sprintf("Defaults:%s pam_service=%s, passwd_tries=1, !lecture\n%s ALL=(root) ALL\n", u.name, service, u.name)
	if err := os.WriteFile("/etc/sudoers.d/pamtotp-test", []byte(rule), 0o440); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("visudo", "-c").CombinedOutput(); err != nil {
		t.Fatalf("visudo -c: %v\n%s", err, out)
	}

	m := syslogs.mark()
	good := code(t, u.secret, 0)
	out, err := sudoAs(t, u, u.password+"\n"+good+"\n")
	if err != nil || out != "root" {
		t.Fatalf("sudo with password and code: %q, %v", out, err)
	}
	expectLog(t, m, `user=`+u.name+` service=`+service+`.*outcome=ok`, good, u.secret)

	m = syslogs.mark()
	if out, err := sudoAs(t, u, u.password+"\n"+good+"\n"); err == nil {
		t.Fatalf("replayed code accepted by sudo: %q", out)
	}
	expectLog(t, m, `user=`+u.name+`.*outcome=fail reason=replay`)

	if out, err := sudoAs(t, u, u.password+"\n000000\n"); err == nil {
		t.Fatalf("wrong code accepted by sudo: %q", out)
	}
	// The replay and the wrong code were guesses: the owner is told of
	// both at the next success (TestGuessesUnderTerminalSignals reads that
	// on the terminal: sudo, writing into a pipe, may drop the message).
	out, err = sudoAs(t, u, u.password+"\n"+code(t, u.secret, 1)+"\n")
	if lines := strings.Split(out, "\n"); err != nil || !slices.Contains(lines, "root") {
		t.Fatalf("sudo with the next code: %q, %v", out, err)
	}
	expectLog(t, m, `user=`+u.name+`.*outcome=ok reason="(code accepted|drift adjusted to 1 steps) after 2 wrong codes"`)
	if out, err := sudoAs(t, u, u.password+"\n"+code(t, u.secret, 2)+"\n"); err != nil || out != "root" {
		t.Fatalf("sudo with the code after it: %q, %v", out, err)
	}
}

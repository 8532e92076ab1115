// SPDX-License-Identifier: Apache-2.0

package test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// make demo, make demo-stop and make demo again: each time the ssh
// command the demo prints logs in, through OpenSSH's own client in a
// terminal, checking the host key (a new one each run). The demo runs in
// the tests' namespace with a directory, a port and a user of its own.
func TestDemoTwice(t *testing.T) {
	needRoot(t, "oathtool", "openssl", "/usr/sbin/sshd", "ssh", "ssh-keygen", "useradd", "userdel", "chpasswd")
	dir := filepath.Join(workDir, "demo")
	env := append(os.Environ(), "PAMTOTP_DEMO_DIR="+dir, "PAMTOTP_DEMO_USER=ptdemo",
		"PAMTOTP_DEMO_HOMES="+filepath.Join(workDir, "home"), fmt.Sprintf("PAMTOTP_DEMO_PORT=%d", freePort(t)))
	demo := func(verb string) string {
		t.Helper()
		cmd := exec.Command("scripts/demo", verb)
		cmd.Dir, cmd.Env = "..", env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("scripts/demo %s: %v\n%s", verb, err, out)
		}
		return string(out)
	}
	t.Cleanup(func() { demo("stop") })
	runner := newUser(t) // whoever types the printed command
	for run := 1; run <= 2; run++ {
		out := demo("start")
		sshLine := regexp.MustCompile(`(?m)^\s+(ssh -p .*)$`).FindStringSubmatch(out)
		password := regexp.MustCompile(`(?m)^Password: (\S+)$`).FindStringSubmatch(out)
		secret := regexp.MustCompile(`oathtool --totp -b ([A-Z2-7=]+)\)`).FindStringSubmatch(out)
		if sshLine == nil || password == nil || secret == nil {
			t.Fatalf("run %d: the demo did not print an ssh command, a password and a secret:\n%s", run, out)
		}
		agent := regexp.MustCompile(`checked by pam-totp-agent \(pid (\d+)\)`).FindStringSubmatch(out)
		if agent == nil {
			t.Fatalf("run %d: the demo did not say which agent checks the code:\n%s", run, out)
		}
		m := syslogs.mark()
		argv := append(strings.Fields(sshLine[1]), "id")
		p := startTerminal(t, runner, argv...)
		at := p.expect(0, "assword:")
		p.typeText(password[1] + "\r")
		at = p.expect(at, "erification code: ")
		p.typeText(code(t, strings.TrimRight(secret[1], "="), 0) + "\r")
		at = p.expect(at, "(ptdemo)")
		if !p.wait(20 * time.Second) {
			t.Fatalf("run %d: ssh did not end well:\n%s", run, p.output())
		}
		if strings.Contains(p.output(), "REMOTE HOST IDENTIFICATION HAS CHANGED") {
			t.Fatalf("run %d: the host key check failed:\n%s", run, p.output())
		}
		// The demo's agent made the decision.
		expectLog(t, m, `pam_totp\[`+agent[1]+`\]: user=ptdemo .*outcome=ok`)
		demo("stop")
	}
}

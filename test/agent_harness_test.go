// SPDX-License-Identifier: Apache-2.0

package test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// agentProc is a pam-totp-agent the tests started as the package does:
// socket-activated, through systemd-socket-activate, which listens on the
// socket as pam-totp-agent.socket does and, at the first connection,
// becomes the agent with the socket as fd 3 (LISTEN_FDS), keeping its pid.
type agentProc struct {
	socket string
	cmd    *exec.Cmd
	log    *syncBuffer
}

// launchAgent starts an agent on socket, with args for pam-totp-agent.
func launchAgent(socket string, args ...string) (*agentProc, error) {
	if _, err := exec.LookPath("systemd-socket-activate"); err != nil {
		return nil, fmt.Errorf("needs systemd-socket-activate (package systemd): %w", err)
	}
	a := &agentProc{socket: socket, log: &syncBuffer{}}
	all := append([]string{"-l", socket, filepath.Join(libDir, "pam-totp-agent")}, args...)
	a.cmd = exec.Command("systemd-socket-activate", all...)
	a.cmd.Stdout, a.cmd.Stderr = a.log, a.log
	a.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := a.cmd.Start(); err != nil {
		return nil, err
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if st, err := os.Stat(socket); err == nil && st.Mode()&os.ModeSocket != 0 {
			return a, nil
		}
		if time.Now().After(deadline) {
			a.cmd.Process.Kill()
			a.cmd.Wait()
			return nil, fmt.Errorf("no socket at %s after 5 s: %s", socket, a.log.String())
		}
	}
}

// startAgent is launchAgent for one test, with a socket of its own, stopped
// by its pid when the test ends.
func startAgent(t testing.TB, args ...string) *agentProc {
	t.Helper()
	needRoot(t, "systemd-socket-activate")
	dir, err := os.MkdirTemp(workDir, "agent-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	a, err := launchAgent(filepath.Join(dir, "agent.sock"), args...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stopByPid(a.cmd)
		if t.Failed() {
			t.Logf("agent output:\n%s", a.log.String())
		}
	})
	return a
}

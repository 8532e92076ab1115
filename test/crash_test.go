// SPDX-License-Identifier: Apache-2.0

package test

import (
	"math/rand"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"pamtotp/internal/otp"
	"pamtotp/internal/protocol"
	"pamtotp/internal/secret"
)

// stressed reports whether this is `make stress` (the long runs).
func stressed() bool { return os.Getenv("PAMTOTP_STRESS") != "" }

// The checker killed with SIGKILL at random points of logins, most of them
// while it writes the state: the secret is never lost, the state always
// parses, and the replay state never goes backwards: a code whose success
// was reported stays refused.
func TestCheckerKilledDuringUpdates(t *testing.T) {
	needRoot(t, "oathtool", "openssl")
	u := newUser(t)
	enroll(t, u)
	secretPath := filepath.Join(u.home, ".pam_totp")
	secretBefore, err := os.ReadFile(secretPath)
	if err != nil {
		t.Fatal(err)
	}
	kills := 200
	if stressed() {
		kills = 1000
	}
	req := (&protocol.Req{User: u.name, Known: true, UID: u.uid, GID: u.gid, Home: u.home, Service: "crash-test",
		Options: []string{"deny=0", "window=1"}}).Marshal()

	run := func(c string, delay time.Duration, kill bool) byte {
		return runChecker(t, req, &syscall.Credential{Uid: uint32(u.uid), Gid: uint32(u.gid), Groups: []uint32{uint32(u.gid)}}, c, delay, kill)
	}

	lastAccepted := int64(-1) // the highest step whose success was reported
	if run(code(t, u.secret, 0), 0, false) != protocol.Success {
		t.Fatal("the first, unkilled login failed")
	}
	lastAccepted = otp.Step(time.Now().Unix(), 30)
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	// The kills spread over one and a half of this machine's own run time,
	// measured now, so a busy machine does not push them all before the
	// verdict.
	replay := code(t, u.secret, 0)
	span := checkerRunTime(func() { run(replay, 0, false) }) * 3 / 2
	killedEarly, successes := 0, 0
	for i := 0; i < kills; i++ {
		// This step's code (a replay after the first login) or the next
		// step's (new, inside the window, accepted once): kills land in
		// failed and in successful updates.
		offset := rng.Intn(2)
		step := otp.Step(time.Now().Unix(), 30) + int64(offset)
		c := code(t, u.secret, offset)
		v := run(c, time.Duration(rng.Int63n(int64(span))), true)
		switch {
		case v == 0:
			killedEarly++
		case v == protocol.Success:
			successes++
			if step > lastAccepted {
				lastAccepted = step
			}
		}
		if got, _ := os.ReadFile(secretPath); string(got) != string(secretBefore) {
			t.Fatalf("kill %d: the secret file changed", i)
		}
		state := readState(t, secretPath)
		ts := tokenState(t, secretPath, state.Tokens)
		if ts == nil || !ts.Used || ts.LastStep < lastAccepted {
			t.Fatalf("kill %d: replay state went backwards: %+v, accepted step %d", i, ts, lastAccepted)
		}
		// Unkilled, a code whose success was reported must be refused.
		if step <= lastAccepted && run(c, 0, false) == protocol.Success {
			t.Fatalf("kill %d: a code accepted before the kill was accepted again", i)
		}
	}
	t.Logf("%d kills: %d before the verdict, %d after a success", kills, killedEarly, successes)
	if killedEarly < kills/10 || killedEarly == kills {
		t.Fatalf("%d of %d kills came before the verdict: the delays miss the update", killedEarly, kills)
	}
	if left, _ := filepath.Glob(filepath.Join(u.home, ".*.tmp*")); len(left) > 1 {
		t.Fatalf("killed checkers left %d temporary files, want at most one: %v", len(left), left)
	}
}

// runChecker starts the checker as the module would (with cred, the socket
// on standard input), sends req, answers its prompt with answer, and kills
// it after delay unless kill is false or it finished first. It returns the
// verdict, or 0 if none came.
func runChecker(t *testing.T, req []byte, cred *syscall.Credential, answer string, delay time.Duration, kill bool) byte {
	t.Helper()
	cmd, verdict := startChecker(t, req, cred, answer)
	if kill {
		time.Sleep(delay)
		cmd.Process.Kill() // our own child, by its pid
	}
	cmd.Wait()
	return <-verdict
}

// startChecker starts the checker and talks to it in the background; the
// channel gives its verdict (0 if none came) once the connection ends. The
// caller waits for the process.
func startChecker(t *testing.T, req []byte, cred *syscall.Credential, answer string) (*exec.Cmd, <-chan byte) {
	t.Helper()
	return startCheckerAt(t, filepath.Join(libDir, "pam-totp-check"), req, cred, answer)
}

// startCheckerAt is startChecker with the checker at path.
func startCheckerAt(t *testing.T, path string, req []byte, cred *syscall.Credential, answer string) (*exec.Cmd, <-chan byte) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	child := os.NewFile(uintptr(fds[1]), "checker-socket")
	cmd := exec.Command(path)
	cmd.Stdin = child
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	child.Close()
	f := os.NewFile(uintptr(fds[0]), "module-socket")
	conn, err := net.FileConn(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	verdict := make(chan byte, 1)
	go func() {
		defer conn.Close()
		protocol.WriteFrame(conn, protocol.Request, req)
		for {
			typ, p, err := protocol.ReadFrame(conn)
			if err != nil {
				verdict <- 0
				return
			}
			switch typ {
			case protocol.PromptEchoOff, protocol.PromptEchoOn:
				protocol.WriteFrame(conn, protocol.Answer, []byte(answer))
			case protocol.Verdict:
				verdict <- p[0]
				return
			}
		}
	}()
	return cmd, verdict
}

// checkerRunTime is the median wall time of five calls of run: how long a
// checker takes on this machine, now.
func checkerRunTime(run func()) time.Duration {
	var ds []time.Duration
	for i := 0; i < 5; i++ {
		start := time.Now()
		run()
		ds = append(ds, time.Since(start))
	}
	return medianDuration(ds)
}

func readState(t *testing.T, secretPath string) *secret.State {
	t.Helper()
	data, err := os.ReadFile(secret.StatePath(secretPath))
	if os.IsNotExist(err) {
		return secret.NewState()
	}
	if err != nil {
		t.Fatal(err)
	}
	st, err := secret.DecodeState(data)
	if err != nil {
		t.Fatalf("state file does not parse after a kill: %v\n%s", err, data)
	}
	return st
}

func tokenState(t *testing.T, secretPath string, states map[string]*secret.TokenState) *secret.TokenState {
	t.Helper()
	data, err := os.ReadFile(secretPath)
	if err != nil {
		t.Fatal(err)
	}
	f, err := secret.ParseFile(data)
	if err != nil {
		t.Fatal(err)
	}
	return states[f.Tokens[0].Fingerprint()]
}

// SPDX-License-Identifier: Apache-2.0

package test

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"pamtotp/internal/protocol"
	"pamtotp/internal/secret"
)

// The attacker of these tests has a user's password and a shell, and
// guesses codes through a setuid host (sudo, or su to the user) with
// everything the caller of a setuid program controls: resource limits,
// the terminal and its signals, and timing. Every guess must be counted.

// host is a setuid program that asks for a password and a code.
type host struct {
	name    string
	runner  *user    // who runs it: the attacker's shell
	victim  *user    // whose password and code it asks for
	argv    []string // the command, without any prlimit in front
	success string   // a line the command prints when it ran
	service string   // the PAM service its checker logs
	shown   string   // what the last attempt showed after the code was typed
}

// storeFor is the root-owned secret store of a test.
func storeFor(t *testing.T) string {
	t.Helper()
	store := filepath.Join(workDir, "store-"+strings.ReplaceAll(t.Name(), "/", "-"))
	if err := os.MkdirAll(store, 0o700); err != nil {
		t.Fatal(err)
	}
	return store
}

// sudoHost enrolls a new user in store and lets them run sudo with a PAM
// service of their own: the hardened set-up, in which the user cannot read
// their secret.
func sudoHost(t *testing.T, store string, opts ...string) *host {
	t.Helper()
	u := newUser(t)
	enroll(t, u, "--secret-file", store+"/%u")
	service := "sudo-" + u.name
	writeEtc(t, "/etc/pam.d/"+service, hostStack(append([]string{"secret=" + store + "/%u"}, opts...)...), 0o644)
	rule := fmt.Sprintf("Defaults:%s pam_service=%s, passwd_tries=1, !lecture\n%s ALL=(root) ALL\n", u.name, service, u.name)
	writeEtc(t, "/etc/sudoers.d/"+u.name, rule, 0o440)
	return &host{name: "sudo", runner: u, victim: u, service: service, success: "uid=0(root)",
		argv: []string{"sudo", "-k", "id"}}
}

// suHost enrolls a new victim in store, puts pam_totp into su's stack, and
// has another new user (the attacker's shell) run su to the victim.
func suHost(t *testing.T, store string, opts ...string) *host {
	t.Helper()
	victim, runner := newUser(t), newUser(t)
	enroll(t, victim, "--secret-file", store+"/%u")
	writeEtc(t, "/etc/pam.d/su", hostStack(append([]string{"secret=" + store + "/%u"}, opts...)...), 0o644)
	return &host{name: "su", runner: runner, victim: victim, service: "su",
		success: fmt.Sprintf("uid=%d(%s)", victim.uid, victim.name),
		argv:    []string{"su", "-c", "id", victim.name}}
}

// hostStack is a host's PAM service: the password, then pam_totp with
// opts, then the account and session parts a host needs.
func hostStack(opts ...string) string {
	return strings.Join([]string{
		"auth required pam_unix.so nodelay",
		module("required", opts...),
		"account required pam_unix.so",
		"session required pam_permit.so",
	}, "\n") + "\n"
}

// writeEtc writes a file in the namespace's /etc and puts back what was
// there when the test ends.
func writeEtc(t testing.TB, path, content string, mode os.FileMode) {
	t.Helper()
	old, err := os.ReadFile(path)
	existed := err == nil
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if existed {
			os.WriteFile(path, old, mode)
		} else {
			os.Remove(path)
		}
	})
}

// attempt runs the host in a terminal of its own with prefix in front
// (prlimit, say), types the password and then code, calls during (if not
// nil) right after the code was typed, and reports whether the command
// ran. A host still running after limit is killed.
func (h *host) attempt(t *testing.T, prefix []string, code string, during func(*terminal), limit time.Duration) bool {
	t.Helper()
	asked, ran := h.try(t, prefix, code, during, limit)
	if !asked {
		t.Fatalf("%s exited before asking for a code", h.name)
	}
	return ran
}

// try is attempt for a host that may die before it asks for the code (a
// limit can kill the host itself): asked is false then.
func (h *host) try(t *testing.T, prefix []string, code string, during func(*terminal), limit time.Duration) (asked, ran bool) {
	t.Helper()
	p := startTerminal(t, h.runner, append(prefix, h.argv...)...)
	// su asks "Password: ", sudo "[sudo] password for NAME: ".
	asks := []string{"assword: ", "assword for " + h.victim.name + ": "}
	at, which := p.expectAny(0, asks...)
	ok := which >= 0
	if ok {
		// A host that asks for the password again never reached us.
		p.typeText(h.victim.password + "\r")
		at, which = p.expectAny(at, append([]string{"Verification code: "}, asks...)...)
		ok = which == 0
	}
	if !ok {
		p.wait(0) // it exited, or waits for a password again
		return false, false
	}
	p.typeText(code + "\r")
	if during != nil {
		during(p)
	}
	p.wait(limit)
	h.shown = p.output()[at:]
	return true, strings.Contains(h.shown, h.success)
}

var decisionLine = regexp.MustCompile(`pam_totp\[\d+\]: user=(\S+) service=(\S+).* outcome=(\w+) reason=(.*)`)

// decisions are the checker's decision lines for h's victim since m.
func (h *host) decisions(m int) []string {
	var out []string
	for _, l := range syslogs.since(m) {
		if d := decisionLine.FindStringSubmatch(l); d != nil && d[1] == h.victim.name && d[2] == h.service {
			out = append(out, d[3]+" "+d[4])
		}
	}
	return out
}

// oneDecision waits for the single decision of one attempt made after m:
// a checker that never decides (killed, stopped) fails the test.
func (h *host) oneDecision(t *testing.T, m int) string {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		d := h.decisions(m)
		if len(d) > 1 {
			t.Fatalf("one attempt, %d decisions: %q", len(d), d)
		}
		if len(d) == 1 {
			return d[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("an attempt left no decision in 15 s: a checker was killed or stopped; log:\n%s", strings.Join(syslogs.since(m), "\n"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// storeState reads the victim's state in the store.
func storeState(t *testing.T, store string, u *user) *secret.State {
	t.Helper()
	return readState(t, filepath.Join(store, u.name))
}

const (
	comparedWrong      = `fail "bad code`
	refusedLocked      = `fail locked`
	notCompared        = `fail "cannot record the attempt, so no code was compared`
	savedNot           = `fail "cannot save state`
	conversationFailed = `fail "conversation failed`
)

// A file-size limit set by the caller (prlimit, inherited through the
// setuid host) once made a failure too large to record while a success
// still fit. Now, whatever the limit: every wrong code that is compared is
// counted, the account locks, and the right code never gets in while the
// limit is set.
func TestGuessesUnderFileSizeLimit(t *testing.T) {
	needRoot(t, "oathtool", "openssl", "sudo", "su", "prlimit")
	start := syslogs.mark()
	defer func() {
		if !t.Failed() {
			throughRunAgent(t, start)
		}
	}()
	const deny = 3
	for _, name := range []string{"sudo", "su"} {
		t.Run(name, func(t *testing.T) {
			store := storeFor(t)
			for _, limit := range []int{1, 64, 100, 128, 160, 200, 256, 400, 1024, 1 << 20} {
				var h *host
				if name == "sudo" {
					h = sudoHost(t, store, fmt.Sprintf("deny=%d", deny))
				} else {
					h = suHost(t, store, fmt.Sprintf("deny=%d", deny))
				}
				prlimit := []string{"prlimit", fmt.Sprintf("--fsize=%d:%d", limit, limit), "--"}
				compared, notAsked := 0, 0
				for i := 0; i <= deny; i++ {
					c := "000000"
					if i == deny {
						c = code(t, h.victim.secret, 0)
					}
					m := syslogs.mark()
					asked, ran := h.try(t, prlimit, c, nil, 20*time.Second)
					if ran {
						t.Fatalf("fsize %d, attempt %d: the command ran under the limit", limit, i)
					}
					if !asked {
						// The limit broke the host itself before it asked: no guess.
						for _, d := range h.decisions(m) {
							if !strings.HasPrefix(d, conversationFailed) {
								t.Fatalf("fsize %d: no code was asked for, yet the checker decided %q", limit, d)
							}
						}
						notAsked++
						continue
					}
					d := h.oneDecision(t, m)
					switch {
					case (strings.HasPrefix(d, comparedWrong) || strings.HasPrefix(d, savedNot)) && i < deny:
						// Counted before it was compared, whether or not the
						// final state could be written.
						compared++
					case strings.HasPrefix(d, refusedLocked) && i == deny && compared == deny:
					case strings.HasPrefix(d, notCompared):
					default:
						t.Fatalf("fsize %d, attempt %d (%d wrong codes compared so far): decision %q", limit, i, compared, d)
					}
				}
				st := storeState(t, store, h.victim)
				if st.Missed != compared {
					t.Fatalf("fsize %d: %d wrong codes were compared, the state counts %d", limit, compared, st.Missed)
				}
				if compared == deny && st.LockedUntil <= time.Now().Unix() {
					t.Fatalf("fsize %d: %d wrong codes counted, but the user is not locked", limit, compared)
				}
				// A state file fits in 1 MiB: there every guess must reach the
				// checker and lock the user, or the test proves nothing.
				if limit == 1<<20 && compared != deny {
					t.Fatalf("fsize %d: only %d of %d wrong codes were compared", limit, compared, deny)
				}
				t.Logf("%s, fsize %d: %d of %d wrong codes compared and counted, %d attempts never asked (the host died), the rest refused unread",
					name, limit, compared, deny, notAsked)
			}
		})
	}
}

// Ctrl-C and Ctrl-Z typed at the caller's terminal while the checker
// runs: the checker is in a session of its own, so every code that reached
// it is decided and counted, and none leaves the enrollment's lock held.
func TestGuessesUnderTerminalSignals(t *testing.T) {
	needRoot(t, "oathtool", "openssl", "sudo", "su")
	start := syslogs.mark()
	defer func() {
		if !t.Failed() {
			throughRunAgent(t, start)
		}
	}()
	for _, name := range []string{"sudo", "su"} {
		t.Run(name, func(t *testing.T) {
			store := storeFor(t)
			var h *host
			if name == "sudo" {
				h = sudoHost(t, store, "deny=1000")
			} else {
				h = suHost(t, store, "deny=1000")
			}
			// How long the checker takes from the typed code to its
			// decision, on this machine, now: the signals spread over that.
			var runs []time.Duration
			for i := 0; i < 3; i++ {
				m := syslogs.mark()
				h.attempt(t, nil, "000000", func(*terminal) {
					typed := time.Now()
					h.oneDecision(t, m)
					runs = append(runs, time.Since(typed))
				}, 20*time.Second)
			}
			span := medianDuration(runs)
			compared := 3
			for _, key := range []struct{ name, text string }{{"Ctrl-C", "\x03"}, {"Ctrl-Z", "\x1a"}} {
				for i := 0; i <= 10; i++ {
					delay := span * time.Duration(i) / 8
					m := syslogs.mark()
					// A stopped host is killed (by its pid) after a while; the checker must not care.
					h.attempt(t, nil, "000000", func(p *terminal) {
						time.Sleep(delay)
						p.typeText(key.text)
					}, span+2*time.Second)
					d := h.oneDecision(t, m)
					switch {
					case strings.HasPrefix(d, comparedWrong):
						compared++
					case strings.HasPrefix(d, conversationFailed):
						// The key came before the host had read the code: it never reached the checker.
					default:
						t.Fatalf("%s after %v: decision %q", key.name, delay, d)
					}
					// The decision is logged after the lock is released: it
					// must be free now, not after a timeout.
					f, err := os.Open(filepath.Join(store, h.victim.name))
					if err != nil {
						t.Fatal(err)
					}
					if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
						t.Fatalf("%s after %v: the enrollment is still locked after the decision: %v", key.name, delay, err)
					}
					f.Close()
				}
			}
			if st := storeState(t, store, h.victim); st.Missed != compared {
				t.Fatalf("%d wrong codes reached the checker, the state counts %d", compared, st.Missed)
			}
			// Some keys must land after the code reached the checker, or the
			// signals were never in the race this test is about.
			if compared <= 3 {
				t.Fatalf("no signalled attempt reached the checker (%d counted, 3 of them unsignalled)", compared)
			}
			m := syslogs.mark()
			if !h.attempt(t, nil, code(t, h.victim.secret, 0), nil, 20*time.Second) {
				t.Fatalf("the right code, without any key, did not get in; the terminal showed %q; decisions %q", h.shown, h.decisions(m))
			}
			// The owner learns how many guesses there were: su shows it. sudo
			// asks for silence (PAM_SILENT, its default), so the count waits
			// for a login that can show it.
			told := fmt.Sprintf("pam_totp: %d wrong verification code(s) were entered for your account since your last login.", compared)
			missed := storeState(t, store, h.victim).Missed
			switch {
			case name == "su" && (!strings.Contains(h.shown, told) || missed != 0):
				t.Fatalf("su: the count left is %d; the terminal should have shown %q:\n%s", missed, told, h.shown)
			case name == "sudo" && (strings.Contains(h.shown, "wrong verification code") || missed != compared):
				t.Fatalf("sudo (PAM_SILENT): the count left is %d, want %d kept; the terminal showed:\n%s", missed, compared, h.shown)
			}
			t.Logf("%s: %d wrong codes reached the checker among 25 attempts, all counted; signals spread over %v", name, compared, span)
		})
	}
}

// The checker SIGKILLed at the very moment its first write becomes
// visible, for wrong and right codes alike. That write must be the count:
// for a right code it is the same charged state a wrong code leaves, and
// the right code has not got in. So at no moment can a kill stop a wrong
// code from counting while a right one would already have succeeded.
// (TestCheckerKilledDuringUpdates kills at random delays over the run.)
// A HOTP token keeps a right code at hand for every run.
func TestCheckerKilledAtItsFirstWrite(t *testing.T) {
	needRoot(t, "oathtool", "openssl")
	store := storeFor(t)
	u := newUser(t)
	u.secret = newSecret(t)
	mustEnroll(t, "--user", u.name, "--secret", u.secret, "--no-confirm", "--qr", "none", "--type", "hotp",
		"--counter", "0", "--secret-file", store+"/%u")
	req := (&protocol.Req{User: u.name, Known: true, UID: u.uid, GID: u.gid, Home: u.home, Service: "kill-test",
		Options: []string{"secret=" + store + "/%u", "deny=0"}}).Marshal()
	root := &syscall.Credential{}
	state := func() (missed int, last int64) {
		st := storeState(t, store, u)
		last = -1
		for _, ts := range st.Tokens {
			if ts.Used {
				last = ts.LastStep
			}
		}
		return st.Missed, last
	}
	runs := 40
	if stressed() {
		runs = 400
	}
	conclusive := 0
	for i := 0; i < runs; i++ {
		missed, last := state()
		c := "000000"
		if i%2 == 1 {
			c = hotpCode(t, u.secret, int(last+1), 6)
		}
		writes := freezeAtFirstWrite(t, req, root, c, store, u.name+".state")
		gotMissed, gotLast := state()
		if writes == 1 {
			// Stopped with exactly its first write on disk. (With two, the
			// second was the login's own end, and proves nothing here.)
			conclusive++
			if gotLast != last {
				t.Fatalf("run %d (code %s): killed at its first write, yet the code was accepted (last counter %d -> %d)", i, c, last, gotLast)
			}
			if gotMissed != missed+1 {
				t.Fatalf("run %d (code %s): the first write is not the count: missed %d -> %d", i, c, missed, gotMissed)
			}
		}
	}
	t.Logf("%d runs killed at their first write; %d stopped before a second one", runs, conclusive)
	if conclusive < runs/4 {
		t.Fatalf("only %d of %d runs were stopped before their second write", conclusive, runs)
	}
}

// freezeAtFirstWrite runs the checker on answer and stops it (SIGSTOP) as
// soon as name in dir is written (in place) or replaced for the first
// time, then kills it. It returns how many records the checker had written
// when it stopped: 1 means the state now on disk is exactly that first write.
func freezeAtFirstWrite(t *testing.T, req []byte, cred *syscall.Credential, answer, dir, name string) int {
	t.Helper()
	in, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		t.Fatalf("inotify: %v", err)
	}
	defer unix.Close(in)
	if _, err := unix.InotifyAddWatch(in, dir, unix.IN_MOVED_TO|unix.IN_MODIFY); err != nil {
		t.Fatalf("inotify: %v", err)
	}
	// inotify merges like events that were not read yet, so the count of
	// writes comes from the records' sequence numbers.
	sequence := func() uint64 {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if os.IsNotExist(err) {
			return 0 // not written yet
		}
		if err != nil {
			t.Fatal(err)
		}
		n, err := secret.RecordSequence(data)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return n
	}
	before := sequence()
	cmd, verdict := startChecker(t, req, cred, answer)
	defer func() {
		cmd.Process.Kill() // our own child, by its pid
		cmd.Wait()
		<-verdict
	}()
	writes := 0
	count := func() {
		buf := make([]byte, 4096)
		for {
			n, err := unix.Read(in, buf)
			if n <= 0 || err != nil {
				return
			}
			for off := 0; off+unix.SizeofInotifyEvent <= n; {
				ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
				nameBytes := buf[off+unix.SizeofInotifyEvent : off+unix.SizeofInotifyEvent+int(ev.Len)]
				if strings.TrimRight(string(nameBytes), "\x00") == name {
					writes++
				}
				off += unix.SizeofInotifyEvent + int(ev.Len)
			}
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for writes == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the checker wrote no state in 10 s")
		}
		fds := []unix.PollFd{{Fd: int32(in), Events: unix.POLLIN}}
		unix.Poll(fds, 10)
		count()
	}
	cmd.Process.Signal(syscall.SIGSTOP)
	// Until it has really stopped (or exited): then every write it made is queued.
	var info unix.Siginfo
	if err := unix.Waitid(unix.P_PID, cmd.Process.Pid, &info, unix.WSTOPPED|unix.WEXITED|unix.WNOWAIT, nil); err != nil {
		t.Fatalf("waitid: %v", err)
	}
	return int(sequence() - before)
}

// grace_period for a local login holds within one login session, not for
// the terminal's name: a later session on the same /dev/pts/N is asked
// for a code, and so is a process with no login session at all.
func TestGraceIsPerLoginSession(t *testing.T) {
	needRoot(t, "oathtool", "openssl", "sudo", "setpriv")
	store := storeFor(t)
	h := sudoHost(t, store, "grace_period=300")
	u := h.runner
	p := newTerminal(t)
	// A new login session, as pam_loginuid makes one: writing the
	// loginuid gives the process a new audit session id, which its
	// children keep.
	session := func(commands string) {
		p.run(nil, u.home, "sh", "-c", fmt.Sprintf("echo %d >/proc/self/loginuid && exec setpriv --reuid=%d --regid=%d --clear-groups sh -c '%s'",
			u.uid, u.uid, u.gid, commands))
	}
	password := "assword for " + u.name + ": "
	sudo := func(from int, code string) int {
		at := p.expect(from, password)
		p.typeText(u.password + "\r")
		at, which := p.expectAny(at, "Verification code: ", h.success)
		switch {
		case which == 0 && code == "":
			t.Fatalf("asked for a code within the grace period; output:\n%s", p.output())
		case which == 1 && code != "":
			t.Fatalf("no code was asked for; output:\n%s", p.output())
		case which == 0:
			p.typeText(code + "\r")
			at = p.expect(at, h.success)
		}
		return at
	}

	session("sudo -k id; sudo -k id")
	at := sudo(0, code(t, u.secret, 0))
	sudo(at, "") // the same session, within grace_period
	if !p.wait(20 * time.Second) {
		t.Fatalf("first session: %v", p.err)
	}
	t.Logf("terminal %s", p.name())

	// The offset is taken before the program starts: it may print its
	// prompt before a later len(p.output()) is read.
	at = len(p.output())
	session("sudo -k id")
	sudo(at, code(t, u.secret, 1))
	p.wait(20 * time.Second)

	at = len(p.output())
	p.run(userCredential(u), u.home, "sudo", "-k", "id")
	sudo(at, code(t, u.secret, 2))
	p.wait(20 * time.Second)
}

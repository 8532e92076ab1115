// SPDX-License-Identifier: Apache-2.0

package test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// terminal is a pseudo-terminal on which programs run as a user at a
// console runs them: each is a session leader with the terminal as its
// controlling terminal, and what we write to the master is what the user
// types (including Ctrl-C and Ctrl-Z, which the terminal turns into
// signals for the foreground process group). Several programs can run on
// it one after the other, as logins on one /dev/pts/N do.
type terminal struct {
	t      testing.TB
	master *os.File
	slave  *os.File
	mu     sync.Mutex
	out    bytes.Buffer
	cmd    *exec.Cmd     // the program running now
	done   chan struct{} // closed when it has exited
	err    error
	// drained takes a request to say (by closing it) when the reader holds
	// nothing unread: the terminal queue is empty and all it read is in out.
	drained chan chan struct{}
}

// startTerminal runs argv as u on a new pseudo-terminal.
func startTerminal(t testing.TB, u *user, argv ...string) *terminal {
	t.Helper()
	p := newTerminal(t)
	p.run(userCredential(u), u.home, argv...)
	return p
}

func userCredential(u *user) *syscall.Credential {
	return &syscall.Credential{Uid: uint32(u.uid), Gid: uint32(u.gid), Groups: []uint32{uint32(u.gid)}}
}

// newTerminal opens a pseudo-terminal, closed when the test ends.
func newTerminal(t testing.TB) *terminal {
	t.Helper()
	master, slave, err := openPTY()
	if err != nil {
		t.Fatalf("pseudo-terminal: %v", err)
	}
	p := &terminal{t: t, master: master, slave: slave, drained: make(chan chan struct{})}
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop); master.Close(); slave.Close() })
	go func() {
		buf := make([]byte, 4096)
		var waiting []chan struct{}
		for {
			// Between reads the reader holds nothing: an empty queue then
			// means that everything written so far is in out.
			fds := []unix.PollFd{{Fd: int32(master.Fd()), Events: unix.POLLIN}}
			n, _ := unix.Poll(fds, 10)
			if n > 0 && fds[0].Revents&unix.POLLIN != 0 {
				m, err := master.Read(buf)
				p.mu.Lock()
				p.out.Write(buf[:max(m, 0)])
				p.mu.Unlock()
				if err != nil {
					return
				}
			}
			if q, err := unix.IoctlGetInt(int(master.Fd()), unix.TIOCINQ); err == nil && q == 0 {
				for _, w := range waiting {
					close(w)
				}
				waiting = nil
			}
			select {
			case w := <-p.drained:
				waiting = append(waiting, w)
			case <-stop:
				return
			default:
			}
		}
	}()
	return p
}

// run starts argv on the terminal with cred (nil: as root) in dir.
func (p *terminal) run(cred *syscall.Credential, dir string, argv ...string) {
	p.t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = []string{"PATH=/usr/bin:/bin:/usr/sbin:/sbin", "HOME=" + dir, "TERM=dumb", "LC_ALL=C"}
	cmd.Dir = dir
	cmd.Stdin, cmd.Stdout, cmd.Stderr = p.slave, p.slave, p.slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0, Credential: cred}
	if err := cmd.Start(); err != nil {
		p.t.Fatalf("starting %v: %v", argv, err)
	}
	p.cmd, p.done, p.err = cmd, make(chan struct{}), nil
	done := p.done
	go func() {
		p.err = cmd.Wait()
		close(done)
	}()
}

// name is the terminal's device, as PAM_TTY names it.
func (p *terminal) name() string { return p.slave.Name() }

// openPTY opens a new master and its slave side.
func openPTY() (*os.File, *os.File, error) {
	fd, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	master := os.NewFile(uintptr(fd), "/dev/ptmx")
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		master.Close()
		return nil, nil, fmt.Errorf("unlocking: %w", err)
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		master.Close()
		return nil, nil, fmt.Errorf("TIOCGPTN: %w", err)
	}
	slave, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		master.Close()
		return nil, nil, err
	}
	return master, slave, nil
}

// output is everything the program wrote so far.
func (p *terminal) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// expect waits until the output after from contains want, and returns
// the position after it. It fails the test if the program exits first or
// nothing comes within 20 s (a hang, not a slow machine).
func (p *terminal) expect(from int, want string) int {
	p.t.Helper()
	at, ok := p.expectOrExit(from, want)
	if !ok {
		p.t.Fatalf("%v exited (%v) before printing %q; output:\n%s", p.cmd.Args, p.err, want, p.output())
	}
	return at
}

// expectOrExit is expect that reports an exit instead of failing.
func (p *terminal) expectOrExit(from int, want string) (int, bool) {
	p.t.Helper()
	at, i := p.expectAny(from, want)
	return at, i == 0
}

// expectAny waits for the first of wants to appear after from and returns
// the position after it and its index, or -1 if the program exited first.
func (p *terminal) expectAny(from int, wants ...string) (int, int) {
	p.t.Helper()
	find := func() (int, int) {
		out := p.output()[from:]
		best, which := -1, -1
		for i, w := range wants {
			if j := strings.Index(out, w); j >= 0 && (best < 0 || j < best) {
				best, which = j, i
			}
		}
		if which < 0 {
			return 0, -1
		}
		return from + best + len(wants[which]), which
	}
	deadline := time.After(20 * time.Second)
	for {
		if at, i := find(); i >= 0 {
			return at, i
		}
		select {
		case <-p.done:
			time.Sleep(50 * time.Millisecond) // the last output may still be on its way
			return find()
		case <-deadline:
			p.t.Fatalf("%v printed none of %q in 20 s; output:\n%s", p.cmd.Args, wants, p.output())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// typeText writes s to the terminal as if typed.
func (p *terminal) typeText(s string) {
	p.t.Helper()
	if _, err := p.master.WriteString(s); err != nil {
		p.t.Fatalf("typing into the terminal: %v", err)
	}
}

// wait waits for the program to exit, killing it (our own child, by its
// pid) if it has not within limit; it reports whether it exited 0.
func (p *terminal) wait(limit time.Duration) bool {
	select {
	case <-p.done:
	case <-time.After(limit):
		p.cmd.Process.Kill()
		<-p.done
	}
	// What the program wrote before it exited (sudo's command's output)
	// may still be in the terminal: output must hold it before we return.
	w, timeout := make(chan struct{}), time.After(20*time.Second)
	select {
	case p.drained <- w:
	case <-timeout:
		p.t.Fatalf("the terminal's reader has stopped:\n%s", p.output())
	}
	select {
	case <-w:
	case <-timeout:
		p.t.Fatalf("the terminal's output was not all read within 20 s:\n%s", p.output())
	}
	return p.err == nil
}

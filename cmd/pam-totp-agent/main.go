// SPDX-License-Identifier: Apache-2.0

// Command pam-totp-agent keeps pam_totp's login path warm for the system
// store and directory=: pam_totp.so connects to its socket instead of
// starting pam-totp-check, and falls back to the checker when the agent
// is absent, full or declines. See pam-totp-agent(8) and
// docs/architecture.md.
//
// Under systemd it is socket-activated (pam-totp-agent.socket); without,
// it listens on --socket itself.
package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"

	"pamtotp/internal/agent"
	"pamtotp/internal/authlog"
	"pamtotp/internal/directory"
	"pamtotp/internal/relay"
)

// DefaultSocket is where pam_totp.so looks for the agent (agent=).
const DefaultSocket = "/run/pam-totp/agent.sock"

func main() {
	socket := flag.String("socket", DefaultSocket, "the socket to listen on, where systemd does not pass one")
	max := flag.Int("max", agent.DefaultMax, "logins served at once; past it the module starts the checker")
	firstFrame := flag.Duration("first-frame", agent.DefaultFirstFrame, "how long a caller may take to send its request")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: pam-totp-agent [--socket PATH] [--max N] [--first-frame DURATION]   (as root; see pam-totp-agent(8))")
	}
	flag.Parse()
	if flag.NArg() != 0 || *max < 1 || *max > 4096 || *firstFrame <= 0 || *firstFrame > agent.DefaultFirstFrame {
		flag.Usage()
		os.Exit(2)
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "pam-totp-agent: must run as root (it reads the system store and holds the host's key to the directory)")
		os.Exit(1)
	}
	// No core file may hold a secret; what it creates is root's alone.
	unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0)
	unix.Umask(0o077)
	ln, err := listener(*socket)
	if err != nil {
		fmt.Fprintln(os.Stderr, "pam-totp-agent:", err)
		os.Exit(1)
	}
	log := authlog.Open("pam_totp")
	pool := directory.NewPool()
	srv := &agent.Server{Log: log, Directory: pool.Open, Relay: relay.New(pool).Relay, Max: *max, FirstFrame: *firstFrame}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-stop
		ln.Close() // Serve then waits for the logins under way
	}()
	if err := srv.Serve(ln); err != nil {
		fmt.Fprintln(os.Stderr, "pam-totp-agent:", err)
		os.Exit(1)
	}
}

// listener is the socket systemd passed (LISTEN_FDS, fd 3), or one made
// at path: in a root-owned directory, mode 0600, replacing only a stale
// socket.
func listener(path string) (*net.UnixListener, error) {
	if os.Getenv("LISTEN_PID") == strconv.Itoa(os.Getpid()) && os.Getenv("LISTEN_FDS") == "1" {
		os.Unsetenv("LISTEN_PID")
		os.Unsetenv("LISTEN_FDS")
		os.Unsetenv("LISTEN_FDNAMES")
		l, err := net.FileListener(os.NewFile(3, "systemd socket"))
		if err != nil {
			return nil, fmt.Errorf("the socket systemd passed: %w", err)
		}
		ul, ok := l.(*net.UnixListener)
		if !ok {
			return nil, errors.New("the socket systemd passed is not a unix stream socket")
		}
		return ul, nil
	}
	if !filepath.IsAbs(path) {
		return nil, fmt.Errorf("--socket %s: not an absolute path", path)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var st unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil || st.Uid != 0 || st.Mode&0o022 != 0 || st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return nil, fmt.Errorf("%s: not a directory that only root can write", dir)
	}
	if err := unix.Lstat(path, &st); err == nil {
		if st.Mode&unix.S_IFMT != unix.S_IFSOCK {
			return nil, fmt.Errorf("%s exists and is not a socket: not replaced", path)
		}
		// A stale socket of an agent that is gone; one that still answers
		// is another agent's.
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			return nil, fmt.Errorf("%s: another agent is listening", path)
		}
		os.Remove(path)
	}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

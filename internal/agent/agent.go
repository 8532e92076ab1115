// SPDX-License-Identifier: Apache-2.0

// Package agent is pam-totp-agent: the login path of internal/check kept
// warm in a root daemon, so that a login pays no process start and, with
// directory=, no TLS handshake and no bind. pam_totp.so connects to its
// socket and speaks the protocol it speaks to the checker
// (docs/protocol.md); the same code decides, reads and writes the same
// store and logs the same line. It takes only the logins whose checker
// would run as root (options.Agent) and only from root callers; anything
// else, and any login while it is full, it declines at once, and the
// module starts the checker.
package agent

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"pamtotp/internal/check"
	"pamtotp/internal/options"
	"pamtotp/internal/protocol"
	"pamtotp/internal/store"
)

// Server serves logins on a listening unix socket.
type Server struct {
	Log       check.Logger
	Directory store.Opener
	// Relay hands directory= logins to verifiers where the configuration
	// names them (internal/relay); nil relays nothing.
	Relay check.Relay
	// Max bounds the logins served at once; a login past it is declined.
	Max int
	// FirstFrame bounds the wait for a client's request.
	FirstFrame time.Duration
	// MaxLogin bounds a whole login, prompts included (prompt_timeout is
	// at most an hour).
	MaxLogin time.Duration

	wg     sync.WaitGroup
	active chan struct{}
}

// Defaults for Server's bounds.
const (
	DefaultMax        = 256
	DefaultFirstFrame = 5 * time.Second
	DefaultMaxLogin   = 65 * time.Minute
	// declineWait bounds writing a Decline: three bytes into an empty
	// socket buffer go at once, and a client that does not read is not
	// waited for.
	declineWait = 100 * time.Millisecond
)

// Serve accepts connections until ln is closed, then waits for the logins
// under way.
func (s *Server) Serve(ln *net.UnixListener) error {
	if s.Max <= 0 {
		s.Max = DefaultMax
	}
	if s.FirstFrame <= 0 {
		s.FirstFrame = DefaultFirstFrame
	}
	if s.MaxLogin <= 0 {
		s.MaxLogin = DefaultMaxLogin
	}
	s.active = make(chan struct{}, s.Max)
	defer s.wg.Wait()
	for {
		c, err := ln.AcceptUnix()
		if errors.Is(err, net.ErrClosed) {
			return nil
		}
		if err != nil {
			// EMFILE and the like: the module falls back to the checker
			// meanwhile; try again shortly rather than spin.
			s.Log.Warning("pam-totp-agent: accept: " + err.Error())
			time.Sleep(50 * time.Millisecond)
			continue
		}
		cred, err := peer(c)
		switch {
		case err != nil:
			s.Log.Warning("pam-totp-agent: reading the caller's credentials: " + err.Error())
			decline(c)
		case cred.Uid != 0:
			// A host running as a user (a screen locker) keeps the checker,
			// which runs with its own credentials: the agent takes its
			// options, and so its policy, from root callers only.
			decline(c)
		default:
			select {
			case s.active <- struct{}{}:
				s.wg.Add(1)
				go s.serve(c, cred)
			default:
				decline(c) // full: the module starts the checker at once
			}
		}
	}
}

// decline tells the module to start the checker, and hangs up.
func decline(c *net.UnixConn) {
	c.SetWriteDeadline(time.Now().Add(declineWait))
	protocol.WriteFrame(c, protocol.Decline, nil)
	c.Close()
}

// serve runs one login. A panic in it fails that login alone (check.Run
// recovers and sends a failure); this recover is for what lies outside.
func (s *Server) serve(c *net.UnixConn, cred *unix.Ucred) {
	defer s.wg.Done()
	defer func() { <-s.active }()
	defer c.Close()
	defer func() {
		if r := recover(); r != nil {
			s.Log.Warning(fmt.Sprintf("pam-totp-agent: internal error: %v", r))
		}
	}()
	watchdog := time.AfterFunc(s.MaxLogin, func() { c.Close() })
	defer watchdog.Stop()
	c.SetReadDeadline(time.Now().Add(s.FirstFrame))
	check.Run(&check.Env{
		Conn: &conn{UnixConn: c},
		Log:  s.Log,
		Now:  time.Now,
		// The caller's audit session, as the checker, its child, would
		// read its own: the login it serves.
		LoginSession: func() string { return check.SessionOf(strconv.Itoa(int(cred.Pid))) },
		Directory:    s.Directory,
		Relay:        s.Relay,
		Serves:       (*options.Options).Agent,
	})
}

// conn bounds each write: the module reads as fast as the frames come,
// and one that stops reading must not hold a login's goroutine.
type conn struct{ *net.UnixConn }

func (c *conn) Write(p []byte) (int, error) {
	c.UnixConn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	return c.UnixConn.Write(p)
}

// peer is the credentials of the process that connected.
func peer(c *net.UnixConn) (*unix.Ucred, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	var cred *unix.Ucred
	var cerr error
	err = raw.Control(func(fd uintptr) { cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED) })
	if err == nil {
		err = cerr
	}
	return cred, err
}

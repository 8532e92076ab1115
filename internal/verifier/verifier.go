// SPDX-License-Identifier: Apache-2.0

// Package verifier is pam-totp-verifier: the decision engine of
// internal/check, run beside slapd for login hosts that hold no key to
// the directory. A host connects over mutual TLS with its certificate,
// which must be signed by the hosts' CA and name a member of the hosts
// group; it relays its module's frames, and the verifier decides as the
// checker and the agent do, with its own policy (Config.Options), its own
// identity in the directory, and one log line per decision that names
// the host. See pam-totp-verifier(8) and docs/fleet.md.
package verifier

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"pamtotp/internal/check"
	"pamtotp/internal/directory"
	"pamtotp/internal/protocol"
	"pamtotp/internal/store"
)

// Server serves the hosts' connections.
type Server struct {
	Log       check.Logger
	Directory store.Opener
	Metrics   *Metrics
	// Member says whether the host of this DN is in the hosts group.
	Member func(dn string) (bool, error)

	conf   atomic.Pointer[Config] // as last read (Reload)
	tls    *tls.Config            // as last read
	tlsAt  []directory.FileStamp  // the files it was read from, as they were
	tlsBad time.Time              // when reading them again last failed
	active chan struct{}
	wg     sync.WaitGroup

	mu       sync.Mutex
	members  map[string]time.Time // hosts found in the group, and when
	rates    map[string]*bucket
	waiting  map[*conn]bool // connections between two logins
	stopping bool
	// handshakes counts the connections in their TLS handshake, by the
	// address they come from.
	handshakes map[string]int
}

const (
	// handshakeFor bounds a connection's TLS handshake.
	handshakeFor = 10 * time.Second
	// idleFor bounds the wait for a host's next request; hosts close
	// theirs sooner (internal/relay).
	idleFor = 5 * time.Minute
	// memberAge: a host's membership is asked again after this long, so
	// that one taken out of the group is refused within it.
	memberAge = time.Minute
	// maxLogin bounds a whole login, prompts included.
	maxLogin = 65 * time.Minute
	// writeFor bounds each write to a host.
	writeFor = 10 * time.Second
	// maxHandshakesPerSource bounds the connections from one address that
	// are still in their TLS handshake; maxHandshakeSources the addresses.
	maxHandshakesPerSource = 128
	maxHandshakeSources    = 4096
	// tlsRetry: how long a certificate, key or CA that could not be read
	// again is left before the next try.
	tlsRetry = 10 * time.Second
)

// NewServer checks conf's files and makes a server.
func NewServer(conf *Config, log check.Logger, dir store.Opener, metrics *Metrics) (*Server, error) {
	tc, at, err := conf.serverTLS()
	if err != nil {
		return nil, err
	}
	if err := conf.checkDirectory(); err != nil {
		return nil, err
	}
	s := &Server{Log: log, Directory: dir, Metrics: metrics, tls: tc, tlsAt: at,
		members: map[string]time.Time{}, rates: map[string]*bucket{}, waiting: map[*conn]bool{}, handshakes: map[string]int{}}
	s.conf.Store(conf)
	s.Member = func(dn string) (bool, error) {
		conf := s.Config()
		c, err := directory.Load(conf.Directory)
		if err != nil {
			return false, err
		}
		return directory.IsMember(c, conf.HostsGroup, dn, time.Now().Add(memberFor))
	}
	return s, nil
}

// Config is the configuration in force.
func (s *Server) Config() *Config { return s.conf.Load() }

// Reload reads the configuration at path again (SIGHUP, systemctl
// reload), checks it as a start would, and puts it in force for the next
// connection and the next login of every connection: the policy, the
// hosts' rate, the hosts group, the certificate and the directory. One
// that does not check keeps the one in force, and the error says why.
// Where the server listens, where its metrics are served and max are
// taken at start: a change to them is kept for the next start, and
// changed names them.
func (s *Server) Reload(path string) (changed []string, err error) {
	conf, err := LoadConfig(path)
	if err != nil {
		return nil, err
	}
	tc, at, err := conf.serverTLS()
	if err != nil {
		return nil, err
	}
	if err := conf.checkDirectory(); err != nil {
		return nil, err
	}
	old := s.Config()
	for _, f := range []struct {
		name     string
		old, new any
	}{{"listen", old.Listen, conf.Listen}, {"metrics", old.Metrics, conf.Metrics}, {"max", old.Max, conf.Max}} {
		if f.old != f.new {
			changed = append(changed, f.name)
		}
	}
	conf.Listen, conf.Metrics, conf.Max = old.Listen, old.Metrics, old.Max
	s.mu.Lock()
	defer s.mu.Unlock()
	s.conf.Store(conf)
	s.tls, s.tlsAt, s.tlsBad = tc, at, time.Time{}
	// The group or the hosts' DNs may be others now: every host is
	// asked again before its next login.
	clear(s.members)
	return changed, nil
}

// Stop ends the connections that wait for a host's next login; those in
// a login end after it. Serve returns once ln is closed and all are over.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopping = true
	for c := range s.waiting {
		c.Conn.SetReadDeadline(time.Now())
	}
}

// Serve accepts connections until ln is closed, then waits for the logins
// under way.
func (s *Server) Serve(ln net.Listener) error {
	s.active = make(chan struct{}, s.Config().Max)
	defer s.wg.Wait()
	for {
		c, err := ln.Accept()
		if errors.Is(err, net.ErrClosed) {
			return nil
		}
		if err != nil {
			s.Log.Warning("pam-totp-verifier: accept: " + err.Error())
			time.Sleep(50 * time.Millisecond)
			continue
		}
		source := sourceOf(c)
		if !s.handshake(source, 1) {
			// Anyone who reaches the port can open connections and never
			// send a certificate, each held for the handshake's 10 s. They
			// take no slot of max (only hosts accepted do), and one source
			// gets a bounded number, so that they cannot use up memory.
			// Hosts behind one address (NAT, checkers started at once
			// without the agent) need room: the bound is generous.
			s.Log.Warning("pam-totp-verifier: " + c.RemoteAddr().String() + ": refused: too many connections from it still in their TLS handshake")
			c.Close()
			continue
		}
		s.wg.Add(1)
		go s.serve(c, source)
	}
}

// sourceOf is the address a connection comes from, without its port.
func sourceOf(c net.Conn) string {
	host, _, err := net.SplitHostPort(c.RemoteAddr().String())
	if err != nil {
		return c.RemoteAddr().String()
	}
	return host
}

// handshake counts a connection from source into (d 1) or out of (d -1)
// its TLS handshake; false when source has too many in it already, or the
// server has.
func (s *Server) handshake(source string, d int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d > 0 && (s.handshakes[source] >= maxHandshakesPerSource || len(s.handshakes) >= maxHandshakeSources) {
		return false
	}
	if s.handshakes[source] += d; s.handshakes[source] <= 0 {
		delete(s.handshakes, source)
	}
	return true
}

// serve runs the logins of one host's connection, one after the other.
// Only a host that completed the handshake and is in the hosts group
// takes one of the max slots.
func (s *Server) serve(raw net.Conn, source string) {
	defer s.wg.Done()
	defer raw.Close()
	defer func() {
		if r := recover(); r != nil {
			s.Log.Warning(fmt.Sprintf("pam-totp-verifier: internal error: %v", r))
		}
	}()
	host, tc, checked, err := s.accept(raw)
	s.handshake(source, -1)
	if err != nil {
		s.refuse(raw, tc, err)
		return
	}
	select {
	case s.active <- struct{}{}:
		defer func() { <-s.active }()
	default:
		// Full: the host tries the next verifier.
		s.refuse(raw, nil, errors.New("serving the most connections allowed (max)"))
		return
	}
	s.Metrics.connected(host, 1)
	defer s.Metrics.connected(host, -1)
	for {
		c := &conn{Conn: tc, srv: s}
		tc.SetDeadline(time.Now().Add(idleFor))
		if !s.wait(c, true) {
			return
		}
		watchdog := time.AfterFunc(maxLogin, func() { tc.Close() })
		untrusted := false
		check.Run(&check.Env{
			Conn:      c,
			Log:       s.Log,
			Now:       time.Now,
			Directory: s.Directory,
			// Options and Admit are asked when the request has come, not
			// now: a kept connection waits here for its next login, and
			// what changed meanwhile (a reload, the host's certificate
			// expired, the host taken out of the group) must decide it.
			Remote: &check.Remote{
				Host:    host,
				Options: func(line []string) []string { return s.Config().decideWith(line) },
				Admit: func() error {
					err := s.stillTrusted(tc, &checked)
					if err == nil {
						err = s.inGroup(host)
					}
					if err != nil {
						untrusted = true
						s.Metrics.refused()
						return err
					}
					return s.admit(host)
				},
				Decided: s.Metrics.decided,
			},
		})
		watchdog.Stop()
		s.wait(c, false)
		if c.err != nil || !c.verdict || untrusted {
			return // the host hung up, the login broke off, or the host is no longer taken: not reused
		}
		s.Metrics.took(time.Since(c.first) - c.waited)
	}
}

// wait notes that c waits for a request (or no longer does); false when
// the server is stopping.
func (s *Server) wait(c *conn, waiting bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if waiting {
		s.waiting[c] = true
	} else {
		delete(s.waiting, c)
	}
	return !s.stopping
}

// refuse logs why a host is turned away, and tells the host too where
// the TLS handshake went through (a Decline frame with the reason): it
// fails the login closed rather than taking the silence for a verifier
// that is down.
func (s *Server) refuse(raw net.Conn, tc *tls.Conn, err error) {
	s.Log.Warning("pam-totp-verifier: " + raw.RemoteAddr().String() + ": refused: " + err.Error())
	s.Metrics.refused()
	if tc != nil {
		tc.SetWriteDeadline(time.Now().Add(writeFor))
		protocol.WriteFrame(tc, protocol.Decline, []byte(err.Error()))
	}
}

// accept completes the handshake and names the host by its certificate;
// it also returns the TLS configuration the certificate was checked with.
func (s *Server) accept(raw net.Conn) (string, *tls.Conn, *tls.Config, error) {
	conf := s.serverTLS()
	tc := tls.Server(raw, conf)
	tc.SetDeadline(time.Now().Add(handshakeFor))
	if err := tc.Handshake(); err != nil {
		return "", nil, nil, fmt.Errorf("TLS: %w", err)
	}
	certs := tc.ConnectionState().PeerCertificates
	if len(certs) == 0 || certs[0].Subject.CommonName == "" {
		return "", tc, nil, errors.New("the host's certificate names no host (no common name)")
	}
	host := certs[0].Subject.CommonName
	if !hostName(host) {
		// It is logged with every decision and made into a DN: a host
		// name, nothing else.
		return "", tc, nil, fmt.Errorf("the host's certificate names it %q: want a host name (letters, digits, '.', '-', '_')", host)
	}
	return host, tc, conf, s.inGroup(host)
}

// stillTrusted checks a connection's host certificate again before each
// of its logins. A host keeps its connection for as long as it has logins
// to send, and meanwhile its certificate may expire, or the hosts' CA be
// replaced (renamed into place, or by a reload). Against the CA it was
// checked with, only the dates can have changed; against another, the
// whole chain is checked again, and then counts as checked with it.
func (s *Server) stillTrusted(tc *tls.Conn, checked **tls.Config) error {
	st := tc.ConnectionState()
	now := time.Now()
	conf := s.serverTLS()
	if conf == *checked && len(st.VerifiedChains) > 0 {
		for _, c := range st.VerifiedChains[0] {
			if now.Before(c.NotBefore) || now.After(c.NotAfter) {
				return fmt.Errorf("the host's certificate chain is no longer valid: %q is valid from %s until %s",
					c.Subject.CommonName, c.NotBefore.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339))
			}
		}
		return nil
	}
	certs := st.PeerCertificates
	if len(certs) == 0 {
		return errors.New("the host's certificate is gone")
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	_, err := certs[0].Verify(x509.VerifyOptions{Roots: conf.ClientCAs, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	if err != nil {
		return fmt.Errorf("the host's certificate is no longer trusted by ca_file: %w", err)
	}
	*checked = conf
	return nil
}

// serverTLS is the TLS for the next connection: read again when the
// certificate, its key or the hosts' CA changed (renewed, renamed into
// place), so that renewing needs no restart. A renewal that cannot be read
// keeps the last good one, and says so.
func (s *Server) serverTLS() *tls.Config {
	s.mu.Lock()
	defer s.mu.Unlock()
	if directory.Unchanged(s.tlsAt) || time.Since(s.tlsBad) < tlsRetry {
		return s.tls
	}
	tc, at, err := s.Config().serverTLS()
	if err != nil {
		// A renewal half done (the certificate there, the key not yet):
		// tried again in a while, not at every connection.
		s.Log.Warning("pam-totp-verifier: keeping the certificate read before: " + err.Error())
		s.tlsBad = time.Now()
		return s.tls
	}
	s.tls, s.tlsAt, s.tlsBad = tc, at, time.Time{}
	s.Log.Info("pam-totp-verifier: read its certificate, key and the hosts' CA again")
	return s.tls
}

// hostName says whether name is a plausible host name of at most 253
// bytes.
func hostName(name string) bool {
	if len(name) > 253 {
		return false
	}
	for _, c := range []byte(name) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// inGroup asks the directory whether host is in the hosts group, at most
// once a memberAge per host.
func (s *Server) inGroup(host string) error {
	s.mu.Lock()
	at, ok := s.members[host]
	s.mu.Unlock()
	if ok && time.Since(at) < memberAge {
		return nil
	}
	conf := s.Config()
	dn := conf.memberDN(host)
	member, err := s.Member(dn)
	if err != nil {
		return fmt.Errorf("host %s: cannot ask the directory about %s: %w", host, conf.HostsGroup, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !member {
		delete(s.members, host)
		return fmt.Errorf("host %s (%s) is not a member of %s", host, dn, conf.HostsGroup)
	}
	s.members[host] = time.Now()
	return nil
}

// bucket is a host's allowance of logins: RateN, refilled over
// RateSeconds.
type bucket struct {
	left float64
	at   time.Time
}

// admit takes one login from host's allowance. A stolen host key then
// tries at most that many codes a period, over all users.
func (s *Server) admit(host string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	conf := s.Config()
	n, per := float64(conf.RateN), time.Duration(conf.RateSeconds)*time.Second
	b := s.rates[host]
	now := time.Now()
	if b == nil {
		b = &bucket{left: n, at: now}
		s.rates[host] = b
	}
	b.left = min(n, b.left+n*float64(now.Sub(b.at))/float64(per))
	b.at = now
	if b.left < 1 {
		return fmt.Errorf("host %s is over its rate of %d logins in %d s (host_rate): refused before any code was asked", host, conf.RateN, conf.RateSeconds)
	}
	b.left--
	return nil
}

// conn is a host's connection during one login: each write bounded, the
// time spent waiting for the host's answers counted (it is not the
// decision's), and whether a verdict went out.
type conn struct {
	*tls.Conn
	srv     *Server
	err     error
	first   time.Time // when the request had come
	waited  time.Duration
	verdict bool
}

func (c *conn) Read(p []byte) (int, error) {
	start := time.Now()
	n, err := c.Conn.Read(p)
	if c.first.IsZero() {
		c.first = time.Now()
		c.srv.wait(c, false)
	} else {
		c.waited += time.Since(start)
	}
	if err != nil && c.err == nil {
		c.err = err
	}
	return n, err
}

func (c *conn) Write(p []byte) (int, error) {
	c.Conn.SetWriteDeadline(time.Now().Add(writeFor))
	n, err := c.Conn.Write(p)
	if err != nil && c.err == nil {
		c.err = err
	}
	// A frame is written whole by one Write (protocol.WriteFrame).
	c.verdict = err == nil && len(p) > 0 && p[0] == 'V'
	return n, err
}

// SPDX-License-Identifier: Apache-2.0

package directory

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"syscall"
	"time"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"

	"pamtotp/internal/store"
)

// MaxMessage bounds every message the directory sends us: an entry holds
// a secret and a state of at most 64 KiB each and a pending enrollment.
const MaxMessage = 512 << 10

// session is one bound connection to one server of the configuration.
type session struct {
	conf *Config
	tc   *tls.Config
	raw  net.Conn
	c    *ldap.Conn
	uri  *url.URL
}

// dial connects to the first server in the configuration that answers,
// with TLS checked against ca_file, and binds as the host. Each server
// gets one timeout for all of it. When no server could be reached at all,
// the error wraps store.ErrUnreachable; a server that answered but failed
// TLS or the bind gives that error instead, and is never skipped for the
// next one silently.
func dial(conf *Config) (*session, error) {
	// go-ldap's reader takes whatever length a message claims; a hostile
	// or broken server must not make a login allocate without bound.
	ber.MaxPacketLengthBytes = MaxMessage
	tc, err := tlsConfig(conf)
	if err != nil {
		return nil, err
	}
	var unreachable []string
	now := time.Now()
	servers, marked := conf.order(now)
	for i, u := range servers {
		if !conf.connectBy.IsZero() && !time.Now().Before(conf.connectBy) {
			// Out of time for the servers left: they are not marked down,
			// only not tried, and the login goes on as for silence.
			unreachable = append(unreachable, fmt.Sprintf("%d server(s) not tried: no time left", len(servers)-i))
			break
		}
		s, err := dialOne(conf, tc, u)
		if err == nil {
			if marked[u] {
				conf.MarkUp(u)
			}
			return s, nil
		}
		var ue *unreachableError
		if !errors.As(err, &ue) {
			return nil, err
		}
		conf.MarkDown(u, now)
		unreachable = append(unreachable, err.Error())
	}
	return nil, fmt.Errorf("%w: %s", store.ErrUnreachable, strings.Join(unreachable, "; "))
}

// silent says whether a failed connect is the server's silence: a time-out,
// a refused connection, no route to the host or its network, a name that
// does not resolve. Not the errors of this host that a local user without
// privilege can cause: every ephemeral port bound (EADDRNOTAVAIL), the
// descriptors or buffers used up (EMFILE, ENFILE, ENOBUFS), and a local
// firewall's EPERM or EACCES.
func silent(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	for _, e := range []syscall.Errno{syscall.ECONNREFUSED, syscall.EHOSTUNREACH, syscall.ENETUNREACH,
		syscall.EHOSTDOWN, syscall.ENETDOWN, syscall.ETIMEDOUT, syscall.ENOENT} {
		if errors.Is(err, e) {
			return true // ENOENT: an ldapi socket that is not there
		}
	}
	var de *net.DNSError
	return errors.As(err, &de) && (de.IsNotFound || de.IsTimeout)
}

type unreachableError struct{ err error }

func (e *unreachableError) Error() string { return e.err.Error() }
func (e *unreachableError) Unwrap() error { return e.err }

func dialOne(conf *Config, base *tls.Config, u *url.URL) (*session, error) {
	deadline := time.Now().Add(conf.Timeout)
	if !conf.connectBy.IsZero() && conf.connectBy.Before(deadline) {
		deadline = conf.connectBy // the login's one deadline for connecting
	}
	allowed := time.Until(deadline).Round(100 * time.Millisecond)
	network, addr := "tcp", u.Host
	switch u.Scheme {
	case "ldapi":
		network, addr = "unix", u.Host
		if addr == "" {
			addr = "/run/slapd/ldapi"
		}
	case "ldaps":
		if u.Port() == "" {
			addr = net.JoinHostPort(u.Hostname(), "636")
		}
	case "ldap":
		if u.Port() == "" {
			addr = net.JoinHostPort(u.Hostname(), "389")
		}
	}
	raw, err := (&net.Dialer{Timeout: min(conf.ConnectTimeout, time.Until(deadline))}).Dial(network, addr)
	if err != nil && silent(err) {
		return nil, &unreachableError{fmt.Errorf("%s: %w", u, err)}
	}
	if err != nil {
		// This host's own trouble, which a local user can cause: neither a
		// reason to bypass the directory (fallback=local) nor to mark the
		// server down.
		return nil, fmt.Errorf("%s: this host cannot connect (not the server's doing): %w", u, err)
	}
	// One deadline covers the TLS handshake, StartTLS and the bind.
	raw.SetDeadline(deadline)
	s := &session{conf: conf, tc: base, raw: raw, uri: u}
	fail := func(err error) (*session, error) {
		raw.Close()
		var ne net.Error
		switch {
		case errors.As(err, &ne) && ne.Timeout():
			return nil, &unreachableError{fmt.Errorf("%s: no answer within %s", u, allowed)}
		case errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, io.EOF):
			// The server went away in the middle (it died, or restarts):
			// as good as silent. A certificate or a bind it refused is
			// never taken for that.
			return nil, &unreachableError{fmt.Errorf("%s: the server closed the connection: %v", u, err)}
		}
		return nil, fmt.Errorf("%s: %w", u, err)
	}
	tc := base.Clone()
	tc.ServerName = u.Hostname()
	if conf.ServerName != "" {
		tc.ServerName = conf.ServerName
	}
	conn := raw
	if u.Scheme == "ldaps" {
		t := tls.Client(raw, tc)
		if err := t.Handshake(); err != nil {
			return fail(fmt.Errorf("TLS: %w", err))
		}
		conn = t
	}
	s.c = ldap.NewConn(conn, u.Scheme == "ldaps")
	s.c.Start()
	s.c.SetTimeout(conf.Timeout)
	if u.Scheme == "ldap" {
		// StartTLS always: a password or a secret never crosses in clear.
		if err := s.c.StartTLS(tc); err != nil {
			s.c.Close()
			return fail(fmt.Errorf("StartTLS: %w", err))
		}
	}
	switch {
	case conf.anonymous:
	case conf.BindDN != "":
		err = s.c.Bind(conf.BindDN, conf.Password)
	case conf.CertFile != "" || u.Scheme == "ldapi":
		// The client certificate, or over the local socket our uid.
		err = s.c.ExternalBind()
	}
	if err != nil {
		s.c.Close()
		return fail(fmt.Errorf("bind: %w", err))
	}
	return s, nil
}

// tlsConfig is the TLS a connection uses: Load's, without the host's
// certificate where the configuration binds otherwise (an admin's own
// bind, doctor's anonymous probe).
func tlsConfig(conf *Config) (*tls.Config, error) {
	if conf.tls == nil {
		return nil, fmt.Errorf("%s: the configuration was not loaded", conf.Path)
	}
	tc := conf.tls.Clone()
	if conf.CertFile == "" {
		tc.Certificates = nil
	}
	return tc, nil
}

// buildTLS checks the server's certificate against ca_file alone, and
// holds the host's own certificate if given.
func buildTLS(conf *Config) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if conf.CAFile != "" {
		pem, err := readRootFile(conf.CAFile, false, &conf.read)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca_file %s: no PEM certificate", conf.CAFile)
		}
		tc.RootCAs = pool
	}
	if conf.CertFile != "" {
		certPEM, err := readRootFile(conf.CertFile, false, &conf.read)
		if err != nil {
			return nil, err
		}
		keyPEM, err := readRootFile(conf.KeyFile, true, &conf.read)
		if err != nil {
			return nil, err
		}
		cert, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return nil, fmt.Errorf("cert_file %s, key_file %s: %w", conf.CertFile, conf.KeyFile, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// op runs one operation with a fresh deadline. A connection that the
// server (or an expired deadline while a user sat at the prompt) closed
// before we sent anything is made again, to the same server if it answers
// and else to the next (nothing was sent, so nothing is lost). One that
// died after the request went out is errLost: the server may or may not
// have applied it, and the caller finds out (Account.recover).
func (s *session) op(f func(*ldap.Conn) error) error {
	if s.c.IsClosing() {
		n, err := dialOne(s.conf, s.tc, s.uri)
		var ue *unreachableError
		if errors.As(err, &ue) {
			s.conf.MarkDown(s.uri, time.Now())
			n, err = dial(s.conf)
		}
		if err != nil {
			return err
		}
		s.Close()
		*s = *n
	}
	s.raw.SetDeadline(time.Now().Add(s.conf.Timeout))
	err := f(s.c)
	// A time-out is ErrorNetwork; a connection that died under the request
	// is a plain error with the connection closing. Either way the server
	// may or may not have applied it. An answer (a refusal included) leaves
	// the connection open.
	if err != nil && (ldap.IsErrorWithCode(err, ldap.ErrorNetwork) || s.c.IsClosing()) {
		return &lostError{uri: s.uri, err: err}
	}
	return err
}

// lostError is a connection that died, or a server that went silent,
// under a request already sent.
type lostError struct {
	uri *url.URL
	err error
}

func (e *lostError) Error() string { return fmt.Sprintf("%s: connection lost: %v", e.uri, e.err) }
func (e *lostError) Unwrap() error { return e.err }

// failover moves the session to another server after a connection was
// lost under a request: the server is marked down, so that this and the
// next logins try the others first.
func (s *session) failover() error {
	s.conf.MarkDown(s.uri, time.Now())
	s.Close()
	n, err := dial(s.conf)
	if err != nil {
		return err
	}
	*s = *n
	return nil
}

func (s *session) Close() error {
	if s.c != nil {
		return s.c.Close()
	}
	return nil
}

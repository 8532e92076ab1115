// SPDX-License-Identifier: Apache-2.0

// Package relay is a login host's side of pam-totp-verifier: when the
// directory= configuration names verifiers, the host holds no key to the
// directory and decides nothing. It sends the module's request to a
// verifier over mutual TLS (the host's certificate is its identity), and
// carries frames between the module and the verifier until the verdict.
// The password never leaves the host: where an answer holds the password
// in front of the code, the verifier asks for the codes alone (a Split
// frame) and names the reading that decided, and the host sets that
// reading's password as PAM_AUTHTOK. docs/fleet.md and docs/protocol.md
// describe it.
package relay

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"pamtotp/internal/check"
	"pamtotp/internal/directory"
	"pamtotp/internal/options"
	"pamtotp/internal/protocol"
	"pamtotp/internal/store"
)

// Configs gives a configuration as loaded, read again when it changed:
// the directory store's (directory.Pool in the agent, directory.Once in
// the checker), so that a login reads its configuration once.
type Configs interface {
	Config(path string) (*directory.Config, error)
}

// Client relays logins to verifiers, and keeps the connections it made
// for the next login (pam-totp-agent keeps one Client for its life).
type Client struct {
	configs Configs
	mu      sync.Mutex
	idle    map[string][]idleConn // by configuration path
}

type idleConn struct {
	c     *tls.Conn
	conf  *directory.Config // the configuration it was made under
	to    string            // the verifier's address
	since time.Time
}

const (
	// maxIdle bounds the connections kept per configuration.
	maxIdle = 16
	// maxIdleAge: older idle connections are closed rather than reused,
	// well before the verifier's own idle limit.
	maxIdleAge = time.Minute
)

// New is a client with no connections yet, which asks configs for the
// configurations.
func New(configs Configs) *Client {
	return &Client{configs: configs, idle: map[string][]idleConn{}}
}

// Relay is check.Env's Relay: it runs one login through the first
// verifier that answers. Verifiers that cannot be reached are skipped
// (and marked down) only until one has received the request and
// answered: from then on the verifier may have counted the attempt, and
// any failure fails the login closed.
func (c *Client) Relay(path string, req *protocol.Req, opts *options.Options, module io.ReadWriter, connectBy time.Time) (byte, string, error) {
	conf, err := c.configs.Config(path)
	if err != nil {
		return protocol.Fail, "", err
	}
	if len(conf.Verifiers) == 0 {
		return 0, "", check.ErrNotRelayed
	}
	fwd := *req
	fwd.Authtok, fwd.Held = nil, req.Authtok != nil
	request := fwd.Marshal()
	wait := time.Duration(opts.Timeout)*time.Second - time.Second // the module's wait between frames, less room to say why
	var unreachable []string
	now := time.Now()
	for _, u := range conf.VerifierOrder(now) {
		for _, pooled := range []bool{true, false} {
			if !time.Now().Before(connectBy) {
				unreachable = append(unreachable, "no time left for "+u.Host)
				break
			}
			var vc *tls.Conn
			if pooled {
				if vc = c.take(path, conf, u); vc == nil {
					continue
				}
			} else {
				if vc, err = dial(conf, u, connectBy); err != nil {
					if !silent(err) {
						return protocol.Fail, u.Host, fmt.Errorf("verifier %s: %w", u.Host, err)
					}
					conf.MarkDown(u, now)
					unreachable = append(unreachable, err.Error())
					break
				}
			}
			// Until its first frame, a verifier has counted nothing (it
			// charges only once a code is in), and one that is slow to
			// start is left for the next within the directory's timeout.
			deadline := time.Now().Add(conf.Timeout)
			if last := connectBy.Add(time.Second); last.Before(deadline) {
				deadline = last
			}
			vc.SetDeadline(deadline)
			t, p, err := first(vc, request)
			if err != nil {
				vc.Close()
				if pooled {
					continue // closed while idle (a restart): a fresh one
				}
				if refused(err) {
					return protocol.Fail, u.Host, fmt.Errorf("verifier %s refused this host: %w", u.Host, err)
				}
				conf.MarkDown(u, now)
				unreachable = append(unreachable, fmt.Sprintf("%s: %v", u.Host, err))
				break
			}
			if !pooled {
				conf.MarkUp(u)
			}
			if t == protocol.Decline {
				// The verifier does not take this host (not in the hosts
				// group): an answer, which the next verifier would give too.
				vc.Close()
				return protocol.Fail, u.Host, fmt.Errorf("verifier %s refused this host: %s", u.Host, sanitize(p))
			}
			v, err := converse(vc, t, p, req, opts, module, wait)
			if err != nil {
				vc.Close()
				return protocol.Fail, u.Host, fmt.Errorf("verifier %s: %w; the login fails closed (the verifier may have counted it)", u.Host, err)
			}
			c.give(path, conf, u, vc)
			return v, u.Host, nil
		}
	}
	return 0, "", fmt.Errorf("%w: no verifier answered: %s", store.ErrUnreachable, strings.Join(unreachable, "; "))
}

// sanitize keeps a verifier's message to one printable line of bounded
// length for the log.
func sanitize(p []byte) string {
	if len(p) > 300 {
		p = p[:300]
	}
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return '?'
		}
		return r
	}, string(p))
}

// first sends the request and reads the verifier's first frame.
func first(vc *tls.Conn, request []byte) (protocol.Type, []byte, error) {
	if err := protocol.WriteFrame(vc, protocol.Request, request); err != nil {
		return 0, nil, err
	}
	return protocol.ReadFrame(vc)
}

// converse carries frames between the module and the verifier until the
// verdict, starting with the verifier's frame t, p.
func converse(vc *tls.Conn, t protocol.Type, p []byte, req *protocol.Req, opts *options.Options, module io.ReadWriter, wait time.Duration) (byte, error) {
	var passwords []string
	for {
		switch t {
		case protocol.Verdict:
			if len(p) != 1 || (p[0] != protocol.Success && p[0] != protocol.Fail && p[0] != protocol.Ignore) {
				return protocol.Fail, fmt.Errorf("bad verdict %q", p)
			}
			return p[0], nil
		case protocol.Info, protocol.Error, protocol.Pending:
			if err := protocol.WriteFrame(module, t, p); err != nil {
				return protocol.Fail, fmt.Errorf("to the module: %w", err)
			}
		case protocol.PromptEchoOff, protocol.PromptEchoOn:
			at, answer, err := ask(module, t, p, opts)
			if err != nil {
				return protocol.Fail, err
			}
			// The user took their time: the deadline set before is past.
			vc.SetDeadline(time.Now().Add(wait))
			if err := protocol.WriteFrame(vc, at, answer); err != nil {
				return protocol.Fail, err
			}
		case protocol.Split:
			lengths, prompt, err := protocol.ParseSplit(p)
			if err != nil {
				return protocol.Fail, err
			}
			answer := ""
			if prompt != "" {
				at, a, err := ask(module, protocol.PromptEchoOff, []byte(prompt), opts)
				if err != nil {
					return protocol.Fail, err
				}
				vc.SetDeadline(time.Now().Add(wait))
				if at != protocol.Answer {
					// The application could not ask: the verifier hears so.
					if err := protocol.WriteFrame(vc, at, nil); err != nil {
						return protocol.Fail, err
					}
					break
				}
				answer = string(a)
			} else if req.Authtok != nil {
				answer = *req.Authtok
			}
			var codes []string
			codes, passwords = check.Readings(answer, lengths)
			if err := protocol.WriteFrame(vc, protocol.Answer, protocol.CodesPayload(codes)); err != nil {
				return protocol.Fail, err
			}
		case protocol.SetAuthtok:
			i, err := strconv.Atoi(string(p))
			if err != nil || i < 0 || i >= len(passwords) {
				return protocol.Fail, fmt.Errorf("set-authtok for reading %q of %d", p, len(passwords))
			}
			if err := protocol.WriteFrame(module, protocol.SetAuthtok, []byte(passwords[i])); err != nil {
				return protocol.Fail, fmt.Errorf("to the module: %w", err)
			}
		default:
			return protocol.Fail, fmt.Errorf("unexpected frame %q", t)
		}
		vc.SetDeadline(time.Now().Add(wait))
		var err error
		if t, p, err = protocol.ReadFrame(vc); err != nil {
			return protocol.Fail, err
		}
	}
}

// ask relays a prompt to the module and returns its answer frame (an
// Answer or ConvFailed), waiting no longer than the prompt may take.
func ask(module io.ReadWriter, t protocol.Type, text []byte, opts *options.Options) (protocol.Type, []byte, error) {
	if err := protocol.WriteFrame(module, t, text); err != nil {
		return 0, nil, fmt.Errorf("to the module: %w", err)
	}
	if d, ok := module.(interface{ SetReadDeadline(time.Time) error }); ok {
		d.SetReadDeadline(time.Now().Add(time.Duration(opts.PromptTimeout+opts.Timeout) * time.Second))
		defer d.SetReadDeadline(time.Time{})
	}
	at, answer, err := protocol.ReadFrame(module)
	switch {
	case err != nil:
		return 0, nil, fmt.Errorf("from the module: %w", err)
	case at != protocol.Answer && at != protocol.ConvFailed:
		return 0, nil, fmt.Errorf("unexpected frame %q from the module", at)
	}
	return at, answer, nil
}

// dial connects to u and completes the TLS handshake, within the
// configuration's connect_timeout and timeout and before connectBy.
func dial(conf *directory.Config, u *url.URL, connectBy time.Time) (*tls.Conn, error) {
	tc, err := conf.VerifierTLS(u)
	if err != nil {
		return nil, err
	}
	d := net.Dialer{Timeout: min(conf.ConnectTimeout, time.Until(connectBy)), Deadline: connectBy}
	raw, err := d.Dial("tcp", u.Host)
	if err != nil {
		return nil, &unreachable{err}
	}
	vc := tls.Client(raw, tc)
	deadline := time.Now().Add(conf.Timeout)
	if connectBy.Before(deadline) {
		deadline = connectBy
	}
	vc.SetDeadline(deadline)
	if err := vc.Handshake(); err != nil {
		raw.Close()
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil, &unreachable{fmt.Errorf("TLS handshake: %w", err)}
		}
		return nil, fmt.Errorf("TLS handshake: %w", err)
	}
	return vc, nil
}

// unreachable is a verifier's silence: the next one is tried.
type unreachable struct{ err error }

func (e *unreachable) Error() string { return e.err.Error() }
func (e *unreachable) Unwrap() error { return e.err }

func silent(err error) bool {
	var u *unreachable
	return errors.As(err, &u)
}

// refused says whether the verifier turned this host away with a TLS
// alert (a certificate it does not accept): that is an answer, not
// silence, and the login fails closed rather than trying the next.
func refused(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "remote error"
}

// take is an idle connection to u made under conf, or nil.
func (c *Client) take(path string, conf *directory.Config, u *url.URL) *tls.Conn {
	c.mu.Lock()
	defer c.mu.Unlock()
	idle := c.idle[path]
	for i := len(idle) - 1; i >= 0; i-- {
		ic := idle[i]
		if ic.conf != conf || time.Since(ic.since) > maxIdleAge {
			ic.c.Close()
			idle = append(idle[:i], idle[i+1:]...)
			continue
		}
		if ic.to == u.Host {
			c.idle[path] = append(idle[:i], idle[i+1:]...)
			return ic.c
		}
	}
	c.idle[path] = idle
	return nil
}

// give keeps a connection whose login ended with a verdict. One made
// under a configuration read before (an admin changed it, or its
// certificate) is dropped by take.
func (c *Client) give(path string, conf *directory.Config, u *url.URL, vc *tls.Conn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.idle[path]) >= maxIdle {
		vc.Close()
		return
	}
	vc.SetDeadline(time.Time{})
	c.idle[path] = append(c.idle[path], idleConn{c: vc, conf: conf, to: u.Host, since: time.Now()})
}

// ProbeResult is what one verifier said to doctor's probe.
type ProbeResult struct {
	Verifier string `json:"verifier"`
	// Accepted: the TLS handshake went through and the verifier took this
	// host; Read: it read the user's entry (enrolled or not).
	Accepted bool   `json:"accepted"`
	Read     bool   `json:"read_entry"`
	Error    string `json:"error,omitempty"`
}

// Probe asks every verifier of the configuration at path, in order,
// whether it takes this host and can read req.User's entry (req.Probe is
// set here): for totp-enroll doctor. Nothing is written and no code is
// asked.
func Probe(path string, req protocol.Req) ([]ProbeResult, error) {
	conf, err := directory.Load(path)
	if err != nil {
		return nil, err
	}
	req.Probe, req.Authtok = true, nil
	var out []ProbeResult
	for _, u := range conf.Verifiers {
		r := ProbeResult{Verifier: u.Host}
		err := probeOne(conf, u, &req, &r)
		if err != nil {
			r.Error = err.Error()
		}
		out = append(out, r)
	}
	return out, nil
}

func probeOne(conf *directory.Config, u *url.URL, req *protocol.Req, r *ProbeResult) error {
	vc, err := dial(conf, u, time.Now().Add(conf.ConnectTimeout+conf.Timeout))
	if err != nil {
		return err
	}
	defer vc.Close()
	vc.SetDeadline(time.Now().Add(2 * conf.Timeout))
	t, p, err := first(vc, req.Marshal())
	var msg []string
	for ; err == nil; t, p, err = protocol.ReadFrame(vc) {
		switch t {
		case protocol.Decline:
			return fmt.Errorf("refuses this host: %s", sanitize(p))
		case protocol.Error, protocol.Info:
			msg = append(msg, sanitize(p))
			continue
		case protocol.Verdict:
			r.Accepted = true
			r.Read = len(p) == 1 && p[0] == protocol.Ignore
			if !r.Read {
				return fmt.Errorf("cannot read the user's entry: %s", strings.Join(msg, "; "))
			}
			return nil
		default:
			return fmt.Errorf("unexpected frame %q", t)
		}
	}
	if refused(err) {
		return fmt.Errorf("refused this host's certificate: %w", err)
	}
	return err
}

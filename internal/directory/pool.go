// SPDX-License-Identifier: Apache-2.0

package directory

import (
	"net/url"
	"sync"
	"time"

	"pamtotp/internal/store"
)

// Pool is the directory for a long-running host of the login path
// (pam-totp-agent): it keeps each configuration file parsed, and a few
// bound connections to its servers, so that a login pays no TLS handshake
// and no bind. Everything else is as with Once: the same reads, the same
// compare-and-swap writes, the same failover and down marks.
type Pool struct {
	mu    sync.Mutex
	confs map[string]*pooled
}

// pooled is one configuration file as parsed, and its idle connections.
type pooled struct {
	conf *Config
	idle []idleSession
}

type idleSession struct {
	s     *session
	since time.Time
}

const (
	// maxIdle bounds the connections kept per configuration.
	maxIdle = 16
	// maxIdleAge: a connection idle longer is closed rather than reused, so
	// that one a firewall forgot is not found dead at a login (which would
	// cost that login the time-out and mark the server down).
	maxIdleAge = 2 * time.Minute
)

// NewPool is an empty pool.
func NewPool() *Pool { return &Pool{confs: map[string]*pooled{}} }

// Open is the store.Opener of the pool: Once's, with the configuration
// and a connection taken from the pool when there is one.
func (p *Pool) Open(conf, user string, connectBy time.Time) (store.Account, error) {
	pc, err := p.config(conf)
	if err != nil {
		return nil, err
	}
	c := *pc.conf
	if err := c.fits(connectBy); err != nil {
		return nil, err
	}
	c.connectBy = connectBy
	a := New(&c, user)
	a.records = maxRecords
	// Only a connection to the server a fresh login would try first: one
	// kept from a failover is not used once the first server's down mark
	// has expired, so that logins go back to it (and clear the mark) as
	// they do without the pool.
	servers, _ := c.order(time.Now())
	if s := p.take(conf, servers[0]); s != nil {
		s.conf = &c
		a.s = s
	}
	a.release = func(s *session) { p.give(conf, pc, s) }
	return a, nil
}

// Config is the configuration at path as the pool holds it (read again
// when a file it was made of changed): internal/relay asks it whether the
// configuration names verifiers, so that a login reads it once.
func (p *Pool) Config(path string) (*Config, error) {
	pc, err := p.config(path)
	if err != nil {
		return nil, err
	}
	return pc.conf, nil
}

// config is conf parsed, read again when it or a file it names (the CA,
// the certificate and key, the password file) changed. A file that can no
// longer be read, or no longer passes Load's checks, drops what was kept
// for it: the login fails closed as with Once.
func (p *Pool) config(conf string) (*pooled, error) {
	p.mu.Lock()
	pc := p.confs[conf]
	p.mu.Unlock()
	if pc != nil && pc.conf.Current() {
		return pc, nil
	}
	p.drop(conf)
	c, err := Load(conf)
	if err != nil {
		return nil, err
	}
	n := &pooled{conf: c}
	p.mu.Lock()
	if old := p.confs[conf]; old != nil {
		closeIdle(old.idle)
	}
	p.confs[conf] = n
	p.mu.Unlock()
	return n, nil
}

func (p *Pool) drop(conf string) {
	p.mu.Lock()
	if old := p.confs[conf]; old != nil {
		closeIdle(old.idle)
		delete(p.confs, conf)
	}
	p.mu.Unlock()
}

func closeIdle(idle []idleSession) {
	for _, i := range idle {
		i.s.Close()
	}
}

// take is an idle connection of conf's to the server first, the most
// recently used, or nil. Those to other servers, too old or closed by
// the server are closed.
func (p *Pool) take(conf string, first *url.URL) *session {
	p.mu.Lock()
	defer p.mu.Unlock()
	pc := p.confs[conf]
	for pc != nil && len(pc.idle) > 0 {
		i := pc.idle[len(pc.idle)-1]
		pc.idle = pc.idle[:len(pc.idle)-1]
		if time.Since(i.since) < maxIdleAge && !i.s.c.IsClosing() && i.s.uri.String() == first.String() {
			return i.s
		}
		i.s.Close()
	}
	return nil
}

// give keeps a login's connection for the next, if it is sound, made
// under the configuration as it still is (from, not one read before an
// admin changed the file or its certificate), and there is room; else it
// closes it.
func (p *Pool) give(conf string, from *pooled, s *session) {
	p.mu.Lock()
	defer p.mu.Unlock()
	pc := p.confs[conf]
	if pc == nil || pc != from || s.c.IsClosing() || len(pc.idle) >= maxIdle {
		s.Close()
		return
	}
	// No deadline while idle: the next login sets its own.
	s.raw.SetDeadline(time.Time{})
	pc.idle = append(pc.idle, idleSession{s: s, since: time.Now()})
}

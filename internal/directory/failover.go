// SPDX-License-Identifier: Apache-2.0

package directory

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Failover: a host tries the servers of uri in order, so that while the
// first is up every host writes to it alone (docs/fleet.md). A server
// that did not answer is remembered as down for down_for seconds, in a
// root-only file under cache_dir, and tried last meanwhile: a dead
// server then costs one connect timeout per host per down_for, not one
// per login. The mark only ever changes the order servers are tried in,
// never what a server's answer means, so a lost or stale mark is safe.

// DefaultConnectTimeout is how long a host waits for a server's TCP
// connection before it tries the next.
const DefaultConnectTimeout = time.Second

// DefaultDownFor is how long a server that did not answer is tried last.
const DefaultDownFor = 30 * time.Second

// DefaultCacheDir holds the marks: tmpfs, gone at boot.
const DefaultCacheDir = "/run/pam-totp"

// order is the servers to try: those not marked down, in uri's order,
// then the marked ones, so that a login still reaches one if it is the
// only server left. marked holds every server with a mark, also an
// expired one, for MarkUp to forget once the server answers.
func (c *Config) order(now time.Time) (servers []*url.URL, marked map[*url.URL]bool) {
	return c.orderOf(c.URIs, now)
}

// VerifierOrder is the verifiers to try, as order is for uri: the marks
// of the ones that did not answer put them last.
func (c *Config) VerifierOrder(now time.Time) []*url.URL {
	servers, _ := c.orderOf(c.Verifiers, now)
	return servers
}

func (c *Config) orderOf(list []*url.URL, now time.Time) (servers []*url.URL, marked map[*url.URL]bool) {
	if !c.cacheDir() {
		return list, nil
	}
	var up, down []*url.URL
	marked = map[*url.URL]bool{}
	for _, u := range list {
		isDown, has := c.mark(u, now)
		marked[u] = has
		if isDown {
			down = append(down, u)
		} else {
			up = append(up, u)
		}
	}
	return append(up, down...), marked
}

func (c *Config) markFile(u *url.URL) string {
	sum := sha256.Sum256([]byte(u.String()))
	return filepath.Join(c.CacheDir, "down-"+hex.EncodeToString(sum[:8]))
}

// cacheDir reports whether the marks' directory is root's alone, making it
// if need be. Anything else there, and no marks are read or written.
func (c *Config) cacheDir() bool {
	if c.DownFor == 0 {
		return false
	}
	if err := os.Mkdir(c.CacheDir, 0o700); err != nil && !os.IsExist(err) {
		return false
	}
	var st unix.Stat_t
	if err := unix.Lstat(c.CacheDir, &st); err != nil {
		return false
	}
	return st.Mode&unix.S_IFMT == unix.S_IFDIR && st.Uid == 0 && st.Mode&0o077 == 0
}

// mark reports whether u has a mark, and whether it is younger than
// down_for.
func (c *Config) mark(u *url.URL, now time.Time) (down, has bool) {
	data, err := readRootFile(c.markFile(u), true, nil)
	if err != nil {
		return false, !errors.Is(err, fs.ErrNotExist)
	}
	at, err := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
	if err != nil {
		return false, true
	}
	age := now.Sub(time.Unix(at, 0))
	return age >= -time.Minute && age < c.DownFor, true // a clock set back does not pin a mark
}

// MarkDown remembers that u (a server of uri, or a verifier) did not
// answer.
func (c *Config) MarkDown(u *url.URL, now time.Time) {
	if !c.cacheDir() {
		return
	}
	f, err := os.CreateTemp(c.CacheDir, ".down-*")
	if err != nil {
		return
	}
	_, err = fmt.Fprintf(f, "%d\n", now.Unix())
	if cerr := f.Close(); err == nil && cerr == nil {
		err = os.Rename(f.Name(), c.markFile(u))
	}
	if err != nil {
		os.Remove(f.Name())
	}
}

// MarkUp forgets a mark once u answered again.
func (c *Config) MarkUp(u *url.URL) { os.Remove(c.markFile(u)) }

// sameServer reports whether a referral's URI names u: the same scheme,
// host and port.
func sameServer(ref, u *url.URL) bool {
	port := func(x *url.URL) string {
		if p := x.Port(); p != "" {
			return p
		}
		return map[string]string{"ldap": "389", "ldaps": "636"}[x.Scheme]
	}
	return ref.Scheme == u.Scheme && strings.EqualFold(ref.Hostname(), u.Hostname()) && port(ref) == port(u)
}

// referred is the server of uri that a referral names, or an error that
// says why it is not followed.
func (c *Config) referred(ref string) (*url.URL, error) {
	r, err := url.Parse(ref)
	if err != nil || r.Hostname() == "" {
		return nil, fmt.Errorf("the server referred the write to %q, which is not an LDAP URI", ref)
	}
	for _, u := range c.URIs {
		if u.Scheme != "ldapi" && sameServer(r, u) {
			return u, nil
		}
	}
	return nil, fmt.Errorf("the server referred the write to %s, which is not in uri: not followed", net.JoinHostPort(r.Hostname(), r.Port()))
}

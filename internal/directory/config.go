// SPDX-License-Identifier: Apache-2.0

// Package directory keeps enrollments in an LDAP directory (OpenLDAP),
// so that a user enrolls once for a fleet and a code works once across
// it. It implements the login path's store.Account with no locks: every
// write is one modify that deletes the value read and adds the new one,
// which the server refuses whole once the value has changed (RFC 4511
// §4.6), so two hosts can never both write over the same state. See
// docs/fleet.md.
package directory

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/go-ldap/ldap/v3"
	"golang.org/x/sys/unix"
)

// Config is a parsed directory configuration file.
type Config struct {
	Path       string     // where it was read from, for messages
	URIs       []*url.URL // tried in order
	Base       string     // the subtree that holds the users
	UserFilter string     // with %u: the user's entry under Base
	UserDN     string     // with %u: the user's entry itself (a base search)
	// NameAttr is the attribute that %u stands for in UserFilter or UserDN
	// (uid by default). An entry is the account's only if this attribute
	// holds the account's name byte for byte: the directory matches it
	// without regard to case, and SYA1 must not find sya1's enrollment.
	NameAttr string
	// CreateIn is where totp-enroll creates the entry of a user who has
	// none (uid=NAME, objectClass pamTOTPAccount): a directory of pam_totp's
	// own, for users who live in another one. Logins never create entries.
	CreateIn   string
	CAFile     string
	CertFile   string // the host's TLS client certificate (SASL EXTERNAL)
	KeyFile    string
	BindDN     string        // or a simple bind
	Password   string        // read from bind_password_file
	ServerName string        // the name the server's certificate must have, if not the URI's host
	Timeout    time.Duration // each operation, and connect, TLS and bind together
	// ConnectTimeout bounds the TCP connect to one server, so that a dead
	// one costs a login little before the next is tried.
	ConnectTimeout time.Duration
	DownFor        time.Duration // how long a server that did not answer is tried last; 0: not remembered
	CacheDir       string        // where that is remembered
	// Verifiers are the pam-totp-verifier servers (host:port) a login host
	// relays its logins to, tried in order with the same down marks as
	// uri: with them, the host holds no key to the directory and reads no
	// secret (docs/fleet.md). A configuration has uri or verifier lines.
	Verifiers []*url.URL
	anonymous bool        // doctor's probe: no bind at all
	connectBy time.Time   // a login's: connecting to any server must be over by then
	tls       *tls.Config // built by Load from ca_file, cert_file and key_file
	read      []FileStamp // the files Load read, as it read them
}

// DefaultTimeout is how long one directory operation may take: well
// inside the module's own timeout= (10 s by default), so that a slow
// directory fails the login with a log line rather than the module
// killing the checker.
const DefaultTimeout = 3 * time.Second

// maxConfigSize bounds the configuration file and the files it names.
const maxConfigSize = 64 << 10

// keys are the configuration keys, and the names ldap.conf(5) and
// sssd-ldap(5) give the same thing, for admins who copy from those.
var keys = map[string]string{
	"uri": "uri", "base": "base", "user_filter": "user_filter", "user_dn": "user_dn",
	"ca_file": "ca_file", "tls_cacert": "ca_file", "ldap_tls_cacert": "ca_file",
	"cert_file": "cert_file", "tls_cert": "cert_file", "ldap_tls_cert": "cert_file",
	"key_file": "key_file", "tls_key": "key_file", "ldap_tls_key": "key_file",
	"bind_dn": "bind_dn", "binddn": "bind_dn", "ldap_default_bind_dn": "bind_dn",
	"bind_password_file": "bind_password_file",
	"tls_server_name":    "tls_server_name",
	"timeout":            "timeout",
	// ldap.conf's and sssd's network timeout is the connect's.
	"connect_timeout": "connect_timeout", "network_timeout": "connect_timeout", "ldap_network_timeout": "connect_timeout",
	"down_for": "down_for", "cache_dir": "cache_dir", "create_in": "create_in",
	"verifier": "verifier",
}

// Load reads the configuration file at path. It must be root's and
// readable by root only: it may name a password file, and whoever can
// change it can point logins at a directory of their own.
func Load(path string) (*Config, error) {
	var read []FileStamp
	data, err := readRootFile(path, true, &read)
	if err != nil {
		return nil, err
	}
	c, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	c.Path = path
	c.read = read
	// Read once, here: every connection of this login uses them.
	if c.tls, err = buildTLS(c); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if pw := c.Password; pw != "" {
		data, err := readRootFile(pw, true, &c.read)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		c.Password = strings.TrimRight(string(data), "\r\n")
		if c.Password == "" || strings.ContainsAny(c.Password, "\r\n") {
			return nil, fmt.Errorf("%s: bind_password_file %s must hold one line, the password", path, pw)
		}
	}
	return c, nil
}

// Parse parses the content of a configuration file. Password holds the
// password file's path until Load reads it.
func Parse(data []byte) (*Config, error) {
	c := &Config{UserFilter: "(uid=%u)", Timeout: DefaultTimeout, ConnectTimeout: DefaultConnectTimeout,
		DownFor: DefaultDownFor, CacheDir: DefaultCacheDir}
	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		k, v := line, ""
		if i := strings.IndexAny(line, " \t"); i > 0 {
			k, v = line[:i], strings.TrimSpace(line[i:])
		}
		key, ok := keys[strings.ToLower(k)]
		if !ok {
			return nil, fmt.Errorf("line %d: unknown key %q", n, k)
		}
		if v == "" {
			return nil, fmt.Errorf("line %d: %s needs a value", n, k)
		}
		if seen[key] && key != "uri" && key != "verifier" {
			return nil, fmt.Errorf("line %d: %s given twice", n, key)
		}
		seen[key] = true
		if err := c.set(key, v); err != nil {
			return nil, fmt.Errorf("line %d: %s: %w", n, key, err)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return c, c.check()
}

func (c *Config) set(key, v string) error {
	plain := map[string]*string{"base": &c.Base, "ca_file": &c.CAFile, "cert_file": &c.CertFile, "key_file": &c.KeyFile,
		"bind_dn": &c.BindDN, "bind_password_file": &c.Password, "tls_server_name": &c.ServerName}
	if p, ok := plain[key]; ok {
		*p = v
		return nil
	}
	switch key {
	case "uri":
		// ldap.conf allows several URIs on one line.
		for _, s := range strings.Fields(v) {
			if rest, ok := strings.CutPrefix(s, "ldapi://"); ok {
				// The socket's path is the host, escaped (ldap.conf(5)),
				// which net/url does not take.
				path, err := url.PathUnescape(strings.TrimSuffix(rest, "/"))
				if err != nil || path != "" && !strings.HasPrefix(path, "/") {
					return fmt.Errorf("%q: want the socket's path, as ldapi://%%2Frun%%2Fslapd%%2Fldapi", s)
				}
				c.URIs = append(c.URIs, &url.URL{Scheme: "ldapi", Host: path})
				continue
			}
			u, err := url.Parse(s)
			if err != nil {
				return err
			}
			switch {
			case u.Scheme != "ldaps" && u.Scheme != "ldap":
				return fmt.Errorf("%q: want ldaps://, ldap:// (with StartTLS) or ldapi://", s)
			case u.Hostname() == "":
				return fmt.Errorf("%q: no host", s)
			case u.Path != "" && u.Path != "/" || u.RawQuery != "" || u.User != nil:
				return fmt.Errorf("%q: only a scheme, a host and a port", s)
			}
			c.URIs = append(c.URIs, u)
		}
	case "verifier":
		for _, s := range strings.Fields(v) {
			host, port, err := net.SplitHostPort(s)
			if err != nil || host == "" || port == "" || strings.Contains(s, "/") {
				return fmt.Errorf("%q: want host:port, as verifier ldap1.example.org:7636", s)
			}
			c.Verifiers = append(c.Verifiers, &url.URL{Scheme: "verifier", Host: s})
		}
	case "user_filter":
		if !strings.HasPrefix(v, "(") || !strings.HasSuffix(v, ")") || strings.Count(v, "%u") != 1 {
			return errors.New("want a filter in parentheses with %u once, such as (uid=%u)")
		}
		c.UserFilter = v
	case "user_dn":
		if strings.Count(v, "%u") != 1 {
			return errors.New("want a DN with %u once, such as uid=%u,ou=people,dc=example,dc=org")
		}
		c.UserDN = v
	case "timeout", "connect_timeout":
		n, err := strconv.ParseFloat(v, 64)
		if err != nil || n < 0.1 || n > 30 {
			return errors.New("want seconds, 0.1..30")
		}
		if key == "timeout" {
			c.Timeout = time.Duration(n * float64(time.Second))
		} else {
			c.ConnectTimeout = time.Duration(n * float64(time.Second))
		}
	case "down_for":
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > 3600 {
			return errors.New("want whole seconds, 0..3600 (0: not remembered)")
		}
		c.DownFor = time.Duration(n) * time.Second
	case "cache_dir":
		if !strings.HasPrefix(v, "/") {
			return errors.New("want an absolute path")
		}
		c.CacheDir = v
	case "create_in":
		if _, err := ldap.ParseDN(v); err != nil || !strings.Contains(v, "=") {
			return errors.New("want a DN, such as ou=totp,dc=example,dc=org")
		}
		c.CreateIn = v
	}
	return nil
}

// check refuses a configuration that would send a password or a secret
// in clear, or that names no way to the users.
func (c *Config) check() error {
	if len(c.Verifiers) > 0 {
		return c.checkVerifiers()
	}
	if len(c.URIs) == 0 {
		return errors.New("no uri")
	}
	if c.Base == "" && c.UserDN == "" {
		return errors.New("no base (or user_dn)")
	}
	pattern, key := c.UserFilter, "user_filter"
	if c.UserDN != "" {
		pattern, key = c.UserDN, "user_dn"
	}
	if c.NameAttr = nameAttr(pattern); c.NameAttr == "" {
		return fmt.Errorf("%s: %%u must be a whole value of one attribute, such as uid=%%u: the entry found is checked against it", key)
	}
	if c.CreateIn != "" {
		// The entries it makes must be the ones logins find.
		inBase, err := dnWithin(c.CreateIn, c.Base)
		switch {
		case c.UserDN != "" || !strings.EqualFold(c.NameAttr, "uid"):
			return errors.New("create_in needs base and a user_filter on uid, such as (uid=%u): the entries it makes are uid=NAME,create_in")
		case err != nil || !inBase:
			return fmt.Errorf("create_in %s is not within base %s, where logins look", c.CreateIn, c.Base)
		}
	}
	networked := false
	for _, u := range c.URIs {
		networked = networked || u.Scheme != "ldapi"
	}
	switch {
	case networked && c.CAFile == "":
		// Without our own CA, any certificate the system trusts would do.
		return errors.New("ca_file is required: the server's certificate is checked against it")
	case (c.CertFile == "") != (c.KeyFile == ""):
		return errors.New("cert_file and key_file go together")
	case (c.BindDN == "") != (c.Password == ""):
		return errors.New("bind_dn and bind_password_file go together")
	case c.CertFile != "" && c.BindDN != "":
		return errors.New("either cert_file and key_file (SASL EXTERNAL) or bind_dn, not both")
	case networked && c.CertFile == "" && c.BindDN == "":
		return errors.New("the host needs an identity: cert_file and key_file, or bind_dn and bind_password_file")
	}
	return nil
}

// checkVerifiers refuses a host's configuration for verifiers that would
// also reach the directory, or that lacks the host's identity: the
// verifiers accept hosts by their certificates alone.
func (c *Config) checkVerifiers() error {
	switch {
	case len(c.URIs) > 0:
		return errors.New("uri and verifier lines: a host reaches the directory itself or through verifiers, not both")
	case c.BindDN != "" || c.Password != "" || c.CreateIn != "" || c.Base != "" || c.UserDN != "":
		return errors.New("with verifier lines, the directory's settings (base, user_dn, bind_dn, create_in) belong in the verifiers' configuration")
	case c.CAFile == "":
		return errors.New("ca_file is required: the verifiers' certificates are checked against it")
	case c.CertFile == "" || c.KeyFile == "":
		return errors.New("cert_file and key_file are required: they are the host's identity to the verifiers")
	}
	return nil
}

// Current says whether every file c was made of is still as Load read
// it: a long-running host loads it again when not.
func (c *Config) Current() bool { return Unchanged(c.read) }

// Unchanged says whether every file is still as it was read.
func Unchanged(read []FileStamp) bool {
	for _, f := range read {
		var st unix.Stat_t
		if unix.Lstat(f.path, &st) != nil || stampOf(f.path, &st) != f {
			return false
		}
	}
	return true
}

// VerifierTLS is the TLS of a connection to the verifier u: the verifier's
// certificate checked against ca_file for u's host (or tls_server_name),
// and the host's certificate as its identity.
func (c *Config) VerifierTLS(u *url.URL) (*tls.Config, error) {
	tc, err := tlsConfig(c)
	if err != nil {
		return nil, err
	}
	tc.ServerName = c.ServerName
	if tc.ServerName == "" {
		tc.ServerName = u.Hostname()
	}
	return tc, nil
}

// Identity names who this configuration binds as, for messages.
func (c *Config) Identity() string {
	switch {
	case c.BindDN != "":
		return c.BindDN
	case c.CertFile != "":
		return "the host certificate " + c.CertFile
	}
	return "an anonymous or SASL EXTERNAL (ldapi) identity"
}

// dnWithin says whether dn is base or below it.
func dnWithin(dn, base string) (bool, error) {
	d, err := ldap.ParseDN(dn)
	if err != nil {
		return false, err
	}
	b, err := ldap.ParseDN(base)
	if err != nil {
		return false, err
	}
	return d.Equal(b) || b.AncestorOf(d), nil
}

// nameAttr is ATTR where pattern holds "ATTR=%u" with nothing else in that
// value (the next byte ends it: ")" in a filter, "," or the end in a DN),
// or "".
func nameAttr(pattern string) string {
	i := strings.Index(pattern, "=%u")
	if i <= 0 {
		return ""
	}
	if rest := pattern[i+3:]; rest != "" && rest[0] != ')' && rest[0] != ',' && rest[0] != '+' {
		return ""
	}
	start := i
	for start > 0 && (isAttrChar(pattern[start-1])) {
		start--
	}
	if start == i {
		return ""
	}
	return pattern[start:i]
}

func isAttrChar(b byte) bool {
	return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '-' || b == '.'
}

// FileStamp is a file's identity as Load read it: another inode, size,
// time, owner or mode at that path (an admin's edit, a renewed
// certificate renamed into place) means the configuration is read again.
type FileStamp struct {
	path                         string
	dev, ino, size, mtime, ctime int64
	uid, mode                    uint32
}

func stampOf(path string, st *unix.Stat_t) FileStamp {
	return FileStamp{path: path, dev: int64(st.Dev), ino: int64(st.Ino), size: st.Size, mtime: st.Mtim.Nano(), ctime: st.Ctim.Nano(), uid: st.Uid, mode: st.Mode}
}

// readRootFile reads a small file that must be root's, not a link, and
// not writable by anyone else; private also forbids reading by others.
//
// With read, it appends the identity of the file it read (taken from the
// open file, not the path): a Pool reads the configuration again when a
// file it was made of changes.
func readRootFile(path string, private bool, read *[]FileStamp) ([]byte, error) {
	if !strings.HasPrefix(path, "/") {
		return nil, fmt.Errorf("%s: not an absolute path", path)
	}
	var st unix.Stat_t
	data, err := readOwned(path, 0, "root", private, &st)
	if err == nil && read != nil {
		*read = append(*read, stampOf(path, &st))
	}
	return data, err
}

// ReadRootFile reads a small file of root's that nobody else may write,
// and with private nobody else read (but the group of a daemon of its
// own: readOwned), not through a link: pam-totp-verifier's configuration
// and keys. With read, it appends the file's stamp as it was read, for
// Unchanged.
func ReadRootFile(path string, private bool, read *[]FileStamp) ([]byte, error) {
	return readRootFile(path, private, read)
}

// ReadOwnFile reads a small file of secrets of the caller's own, as the
// host's bind_password_file is read: an admin's --bind-password-file can
// replace every user's secret, so nobody else may read or change it.
func ReadOwnFile(path string) ([]byte, error) {
	return readOwnedFile(path, os.Geteuid(), "you", true)
}

// readOwnedFile reads a small regular file, not through a link, owned by
// uid (named who in messages), that nobody else may write, and with
// private nobody else may read either.
func readOwnedFile(path string, uid int, who string, private bool) ([]byte, error) {
	var st unix.Stat_t
	return readOwned(path, uid, who, private, &st)
}

// readOwned is readOwnedFile that also gives the file's status, as opened.
func readOwned(path string, uid int, who string, private bool, st *unix.Stat_t) ([]byte, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
	if errors.Is(err, unix.ELOOP) {
		return nil, fmt.Errorf("%s is a symbolic link; name the file itself", path)
	}
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	defer unix.Close(fd)
	if err := unix.Fstat(fd, st); err != nil {
		return nil, fmt.Errorf("stat %s: %w", path, err)
	}
	bad := uint32(0o022)
	if private {
		bad = 0o077
		if uid == 0 && os.Geteuid() != 0 && int(st.Gid) == os.Getegid() {
			// A daemon of its own user (pam-totp-verifier) reads root's
			// files through its own group, which only it is in: root
			// writes them, the group may read them, nobody else.
			bad = 0o037
		}
	}
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		return nil, fmt.Errorf("%s is not a regular file", path)
	case int(st.Uid) != uid:
		return nil, fmt.Errorf("%s belongs to uid %d, not to %s (uid %d)", path, st.Uid, who, uid)
	case st.Mode&bad != 0:
		return nil, fmt.Errorf("%s is open to others (mode %04o): it has mode %04o where at most %04o is allowed", path, st.Mode&0o7777, st.Mode&0o7777, 0o777&^bad&^0o111)
	case st.Size > maxConfigSize:
		return nil, fmt.Errorf("%s is larger than %d bytes", path, maxConfigSize)
	}
	buf := make([]byte, maxConfigSize+1)
	n := 0
	for n < len(buf) {
		m, err := unix.Read(fd, buf[n:])
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", path, err)
		}
		if m == 0 {
			break
		}
		n += m
	}
	if n > maxConfigSize {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, maxConfigSize)
	}
	return buf[:n], nil
}

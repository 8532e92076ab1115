// SPDX-License-Identifier: Apache-2.0

package verifier

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/go-ldap/ldap/v3"

	"pamtotp/internal/directory"
	"pamtotp/internal/options"
	"pamtotp/internal/secret"
	"pamtotp/internal/store"
)

// DefaultConfig is where pam-totp-verifier reads its configuration.
const DefaultConfig = "/etc/pam-totp/verifier.conf"

// Config is a parsed verifier.conf (pam-totp-verifier(8)).
type Config struct {
	Path      string
	Listen    string // host:port for the hosts' TLS connections
	CertFile  string // the verifier's certificate, shown to hosts
	KeyFile   string
	CAFile    string // the CA of the hosts' certificates
	Directory string // the verifier's own directory configuration (directory.conf(5))
	// HostsGroup is the group whose members may relay logins; HostDN
	// makes a member's DN from its certificate's common name (%s), as
	// slapd's authz-regexp does for directory=.
	HostsGroup string
	HostDN     string
	// Options are the module options every login is decided with: the
	// fleet's policy, whatever a host's module line says.
	Options []string
	// RateN logins per RateSeconds from one host, at most.
	RateN       int
	RateSeconds int
	Metrics     string // host:port of the Prometheus text endpoint, "" for none
	Max         int    // logins at once
}

// Defaults.
const (
	DefaultRateN       = 600
	DefaultRateSeconds = 60
	DefaultMax         = 1024
)

// hostOptions are the module options a host's line keeps through a
// verifier: how that host converses (which prompt, whether the password
// comes in the same answer, whether an unenrolled user is passed over).
// Everything that decides how hard a code is to guess is the verifier's.
var hostOptions = map[string]bool{
	"forward_pass": true, "use_first_pass": true, "try_first_pass": true,
	"echo_code": true, "echo_verification_code": true, "prompt": true, "authtok_prompt": true,
	"nullok": true, "debug": true,
}

// notHere are options that name a host's own files or ways to the
// directory, which a verifier has no use for.
var notHere = map[string]bool{
	"directory": true, "agent": true, "fallback": true, "user": true, "secret": true,
	"checker": true, "allowed_perm": true, "no_strict_owner": true, "allow_readonly": true,
	"trust_file_settings": true,
}

func optionKey(o string) string {
	k, _, _ := strings.Cut(o, "=")
	return k
}

// LoadConfig reads and checks a verifier configuration: root's, and
// readable only by root or the verifier's group.
func LoadConfig(path string) (*Config, error) {
	data, err := directory.ReadRootFile(path, true, nil)
	if err != nil {
		return nil, err
	}
	c, err := ParseConfig(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	c.Path = path
	return c, nil
}

// ParseConfig parses a verifier configuration's content.
func ParseConfig(data []byte) (*Config, error) {
	c := &Config{RateN: DefaultRateN, RateSeconds: DefaultRateSeconds, Max: DefaultMax}
	seen := map[string]bool{}
	plain := map[string]*string{"listen": &c.Listen, "cert_file": &c.CertFile, "key_file": &c.KeyFile,
		"ca_file": &c.CAFile, "directory": &c.Directory, "hosts_group": &c.HostsGroup, "host_dn": &c.HostDN,
		"metrics": &c.Metrics}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		key, v, _ := strings.Cut(line, " ")
		v = strings.TrimSpace(v)
		if seen[key] {
			return nil, fmt.Errorf("line %d: %s given twice", n, key)
		}
		seen[key] = true
		if v == "" {
			return nil, fmt.Errorf("line %d: %s needs a value", n, key)
		}
		if p, ok := plain[key]; ok {
			*p = v
			continue
		}
		var err error
		switch key {
		case "options":
			c.Options = strings.Fields(v)
		case "host_rate":
			f := strings.Fields(v)
			if len(f) != 2 {
				err = errors.New("want logins and seconds, as 600 60")
				break
			}
			c.RateN, err = strconv.Atoi(f[0])
			if err == nil {
				c.RateSeconds, err = strconv.Atoi(f[1])
			}
			if err != nil || c.RateN < 1 || c.RateSeconds < 1 || c.RateSeconds > 86400 {
				err = errors.New("want logins and seconds, as 600 60")
			}
		case "max":
			c.Max, err = strconv.Atoi(v)
			if err != nil || c.Max < 1 || c.Max > 65536 {
				err = errors.New("want a number of logins, 1..65536")
			}
		default:
			err = errors.New("unknown key")
		}
		if err != nil {
			return nil, fmt.Errorf("line %d: %s: %w", n, key, err)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return c, c.check()
}

func (c *Config) check() error {
	for k, v := range map[string]string{"listen": c.Listen, "cert_file": c.CertFile, "key_file": c.KeyFile,
		"ca_file": c.CAFile, "directory": c.Directory, "hosts_group": c.HostsGroup, "host_dn": c.HostDN} {
		if v == "" {
			return fmt.Errorf("%s is required", k)
		}
	}
	for _, addr := range []string{c.Listen, c.Metrics} {
		if _, _, err := net.SplitHostPort(addr); addr != "" && err != nil {
			return fmt.Errorf("%q: want host:port", addr)
		}
	}
	if _, err := ldap.ParseDN(c.HostsGroup); err != nil {
		return fmt.Errorf("hosts_group: %w", err)
	}
	if strings.Count(c.HostDN, "%s") != 1 {
		return errors.New("host_dn: want a DN with %s once, as cn=%s,ou=hosts,dc=example,dc=org")
	}
	if _, err := ldap.ParseDN(strings.Replace(c.HostDN, "%s", "x", 1)); err != nil {
		return fmt.Errorf("host_dn: %w", err)
	}
	for _, o := range c.Options {
		switch k := optionKey(o); {
		case hostOptions[k]:
			return fmt.Errorf("options: %s is each host's own, from its module line", k)
		case notHere[k]:
			return fmt.Errorf("options: %s has no meaning in a verifier", k)
		}
	}
	if _, err := options.Parse(c.Options); err != nil {
		return fmt.Errorf("options: %w", err)
	}
	return nil
}

// memberDN is the DN of the host whose certificate names it cn.
func (c *Config) memberDN(cn string) string {
	return strings.Replace(c.HostDN, "%s", ldap.EscapeDN(cn), 1)
}

// decideWith is the options a login from a host is decided with: the
// verifier's, the host's conversation options, and the verifier's
// directory.
func (c *Config) decideWith(host []string) []string {
	out := append([]string{}, c.Options...)
	for _, o := range host {
		if hostOptions[optionKey(o)] {
			out = append(out, o)
		}
	}
	return append(out, "directory="+c.Directory)
}

// serverTLS is the TLS the hosts meet: the verifier's certificate, and
// theirs required and checked against ca_file alone; and the files'
// stamps, as they were read.
func (c *Config) serverTLS() (*tls.Config, []directory.FileStamp, error) {
	var at []directory.FileStamp
	certPEM, err := directory.ReadRootFile(c.CertFile, false, &at)
	if err != nil {
		return nil, at, err
	}
	keyPEM, err := directory.ReadRootFile(c.KeyFile, true, &at)
	if err != nil {
		return nil, at, err
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, at, fmt.Errorf("cert_file %s, key_file %s: %w", c.CertFile, c.KeyFile, err)
	}
	caPEM, err := directory.ReadRootFile(c.CAFile, false, &at)
	if err != nil {
		return nil, at, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, at, fmt.Errorf("ca_file %s: no PEM certificate", c.CAFile)
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
	}, at, nil
}

// checkDirectory refuses a directory configuration of a login host's.
func (c *Config) checkDirectory() error {
	dc, err := directory.Load(c.Directory)
	if err != nil {
		return err
	}
	if len(dc.Verifiers) > 0 {
		return fmt.Errorf("directory %s names verifiers: a verifier reaches the directory itself (uri)", c.Directory)
	}
	return nil
}

// memberFor bounds each hosts-group check.
const memberFor = 5 * time.Second

// Check is pam-totp-verifier --check beyond the files: what the verifier's
// own identity finds in the directory, a line per finding, and whether
// every finding allows logins. With user, it also reads that user's
// entry as a login would.
func (c *Config) Check(user string, open func(conf, user string, by time.Time) (store.Account, error)) ([]string, bool) {
	dc, err := directory.Load(c.Directory)
	if err != nil {
		return []string{"error: " + err.Error()}, false
	}
	var lines []string
	ok := true
	say := func(good bool, format string, a ...any) {
		level := "ok"
		if !good {
			level, ok = "error", false
		}
		lines = append(lines, level+": "+fmt.Sprintf(format, a...))
	}
	writers := 0
	for _, u := range dc.URIs {
		srv := directory.Describe(dc.Only(u))
		switch {
		case !srv.Reachable:
			lines = append(lines, fmt.Sprintf("warning: %s: %s", u, srv.Error))
		case !srv.Schema || !srv.Records:
			say(false, "%s: pam_totp's schema with state records is not loaded", u)
		default:
			if srv.Writes {
				writers++
			}
			say(true, "%s: reachable, bound as %s, member of %s", u, srv.BoundAs, strings.Join(srv.Groups, "; "))
		}
	}
	say(writers > 0, "%d server(s) take writes", writers)
	if _, err := directory.IsMember(dc, c.HostsGroup, c.memberDN("pam-totp-check"), time.Now().Add(memberFor)); err != nil {
		say(false, "cannot ask who is in %s: %v", c.HostsGroup, err)
	} else {
		say(true, "can ask who is in %s", c.HostsGroup)
	}
	if user != "" {
		acct, err := open(c.Directory, user, time.Now().Add(memberFor))
		if err == nil {
			defer acct.Close()
			_, err = acct.Read()
		}
		switch {
		case errors.Is(err, secret.ErrNotEnrolled):
			say(true, "%s's entry is read; %s is not enrolled", user, user)
		case err != nil:
			say(false, "%s's entry: %v", user, err)
		default:
			say(true, "%s's enrollment is read", user)
		}
	}
	return lines, ok
}

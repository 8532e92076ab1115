// SPDX-License-Identifier: Apache-2.0

// Package options parses the pam_totp.so module arguments (the words after
// the module name in /etc/pam.d). The C module reads the few it needs itself
// (checker=, timeout=, nodelay, secret=, user= and the *_pass options) and
// passes all of them on; the checker parses them all and refuses anything
// unknown, so a typo fails closed instead of silently weakening the check.
//
// pam_google_authenticator's options are accepted with their meaning, so
// that its module line can be kept when the module name is changed
// (docs/migrating.md).
package options

import (
	"errors"
	"fmt"
	"os/user"
	"strconv"
	"strings"
	"time"

	"pamtotp/internal/secret"
	"pamtotp/internal/verify"
)

// DefaultSecret is the secret file of a user when secret= is not given;
// without it, a pam_google_authenticator file is used if there is one.
const (
	DefaultSecret = "~/.pam_totp"
	GoogleSecret  = "~/.google_authenticator"
)

// DefaultTimeout is the C module's timeout= (DEFAULT_TIMEOUT there).
const DefaultTimeout = 10

// ConnectMargin is what connecting to a directory leaves of the module's
// timeout=, for fallback=local and the first prompt after it.
const ConnectMargin = 2 * time.Second

// ConnectBudget is how long connecting to a directory may take in all: the
// module waits timeout= for the first prompt.
func (o *Options) ConnectBudget() time.Duration {
	return time.Duration(o.Timeout)*time.Second - ConnectMargin
}

// DefaultPromptTimeout is how long a login may sit at a prompt: sshd's
// LoginGraceTime default. su and sudo set no limit of their own.
const DefaultPromptTimeout = 120

// Options are the module arguments.
type Options struct {
	Secret        string // template: %u user, %h or a leading ~ home
	SecretGiven   bool   // secret= was given
	secretAsUser  bool   // the secret is the user's own file, read as the user
	RunAs         string // user=: the account that owns the secret files
	Perm          uint32 // permission bits a secret file may have
	AllowRoot     bool   // no_strict_owner: root may own the user's file too
	NullOK        bool
	Policy        verify.Policy
	NoHOTPAdvance bool  // no_increment_hotp
	GracePeriod   int64 // seconds; 0: off
	PromptTimeout int   // seconds the checker waits for an answer to a prompt
	Timeout       int   // timeout=: seconds the module waits for the checker between two frames
	ForwardPass   bool
	UseFirstPass  bool
	TryFirstPass  bool
	Prompt        string
	EchoCode      bool
	AllowReadonly bool   // accepted, never honoured: it would allow replay
	EnrollAtLogin bool   // enroll=login
	EnrollUntil   int64  // Unix time after which enroll=login stops; 0: no end
	ExemptGroup   string // exempt_group=, which the C module applies; doctor reads it
	// A pam_google_authenticator file's WINDOW_SIZE may be wider than the
	// module line's window= (and hotp_window=) only with this option.
	TrustFileSettings bool
	Debug             bool
	// Directory is directory=: the configuration file of the directory
	// that holds the enrollments (docs/fleet.md); "" for files.
	Directory string
	// FallbackLocal is fallback=local: when the directory cannot be
	// reached, a user enrolled locally at secret= is checked there.
	FallbackLocal bool
}

// Parse parses module arguments.
func Parse(args []string) (*Options, error) {
	o := &Options{Secret: DefaultSecret, secretAsUser: true, Perm: 0o600, Policy: verify.DefaultPolicy, Prompt: "Verification code: ",
		PromptTimeout: DefaultPromptTimeout, Timeout: DefaultTimeout}
	maxUnlockGiven := false
	for _, a := range args {
		name, val, hasVal := strings.Cut(a, "=")
		flag := func(p *bool) error {
			if hasVal {
				return errors.New("takes no value")
			}
			*p = true
			return nil
		}
		var err error
		switch name {
		case "nullok":
			err = flag(&o.NullOK)
		case "forward_pass":
			err = flag(&o.ForwardPass)
		case "use_first_pass":
			err = flag(&o.UseFirstPass)
		case "try_first_pass":
			err = flag(&o.TryFirstPass)
		case "echo_code", "echo_verification_code":
			err = flag(&o.EchoCode)
		case "noskewadj":
			err = flag(new(bool))
			o.Policy.ResyncRange, o.Policy.HOTPResync = 0, 0
		case "no_increment_hotp":
			err = flag(&o.NoHOTPAdvance)
		case "no_strict_owner":
			err = flag(&o.AllowRoot)
		case "allow_readonly":
			err = flag(&o.AllowReadonly)
		case "user":
			o.RunAs = val
			err = checkAccount(val, hasVal)
		case "allowed_perm":
			var n uint64
			n, err = strconv.ParseUint(val, 8, 32)
			switch {
			case !hasVal || err != nil || n > 0o777 || n&0o400 == 0:
				err = errors.New("want an octal mode such as 0600")
			case n&0o022 != 0:
				err = errors.New("group or other write access would let someone else change the secret")
			}
			o.Perm = uint32(n)
		case "prompt_timeout":
			o.PromptTimeout, err = number(val, hasVal, 1, 3600)
		case "grace_period":
			var n int
			n, err = number(val, hasVal, 0, 7*86400)
			o.GracePeriod = int64(n)
		case "enroll":
			o.EnrollAtLogin = true
			if val != "login" {
				err = errors.New("the only value is login")
			}
		case "enroll_until":
			var d time.Time
			d, err = time.Parse("2006-01-02", val)
			if err != nil {
				err = errors.New("want a date YYYY-MM-DD")
			}
			o.EnrollUntil = d.Add(24 * time.Hour).Unix() // through the end of that day, UTC
		case "hotp_window":
			o.Policy.HOTPWindow, err = number(val, hasVal, 1, 100)
		case "debug":
			err = flag(&o.Debug)
		case "nodelay":
			// read by the C module
			err = flag(new(bool))
		case "require_group", "exempt_group":
			// decided by the C module with the host's NSS; checked here too
			if !hasVal || ValidUser(val) != nil {
				err = errors.New("needs a group name")
			}
			if name == "exempt_group" {
				o.ExemptGroup = val
			}
		case "agent":
			// The module's: agent=off, or the agent's socket.
			if !hasVal || val == "" || (val != "off" && !strings.HasPrefix(val, "/")) {
				err = errors.New("want agent=off or agent=/ABSOLUTE/PATH")
			}
		case "checker":
			// read and checked by the C module, which refuses a bad path
			if !hasVal || !strings.HasPrefix(val, "/") {
				err = errors.New("needs an absolute path")
			}
		case "timeout":
			// the C module's, which refuses the same range
			o.Timeout, err = number(val, hasVal, 1, 300)
		case "secret":
			o.Secret, o.secretAsUser, err = template(val)
			o.SecretGiven = true
		case "prompt", "authtok_prompt":
			o.Prompt = val
			if !hasVal || val == "" {
				err = errors.New("needs a value")
			}
		case "window":
			o.Policy.Behind, err = number(val, hasVal, 0, 10)
			o.Policy.Ahead = o.Policy.Behind
		case "resync_window":
			o.Policy.ResyncRange, err = number(val, hasVal, 0, 60)
		case "initial_window":
			o.Policy.InitialWindow, err = number(val, hasVal, 0, 600)
		case "directory":
			o.Directory = val
			if !hasVal || !strings.HasPrefix(val, "/") {
				err = errors.New("needs an absolute path")
			}
		case "fallback":
			o.FallbackLocal = true
			if val != "local" {
				err = errors.New("the only value is local")
			}
		case "trust_file_settings":
			err = flag(&o.TrustFileSettings)
		case "deny":
			o.Policy.Deny, err = number(val, hasVal, 0, 1000)
		case "unlock_time":
			var n int
			n, err = number(val, hasVal, 1, 7*86400)
			o.Policy.UnlockTime = int64(n)
		case "max_unlock_time":
			var n int
			n, err = number(val, hasVal, 1, 30*86400)
			o.Policy.MaxUnlockTime, maxUnlockGiven = int64(n), true
		default:
			err = errors.New("unknown option")
		}
		if err != nil {
			return nil, fmt.Errorf("option %q: %w", a, err)
		}
	}
	n := 0
	for _, b := range []bool{o.ForwardPass, o.UseFirstPass, o.TryFirstPass} {
		if b {
			n++
		}
	}
	if n > 1 {
		return nil, errors.New("forward_pass, use_first_pass and try_first_pass exclude each other")
	}
	if o.EnrollAtLogin && n > 0 {
		return nil, errors.New("enroll=login needs a prompt of its own: not with forward_pass, use_first_pass or try_first_pass")
	}
	if o.Policy.MaxUnlockTime < o.Policy.UnlockTime {
		if maxUnlockGiven {
			return nil, errors.New("max_unlock_time= must not be below unlock_time=")
		}
		o.Policy.MaxUnlockTime = o.Policy.UnlockTime
	}
	if o.Directory != "" && o.RunAs != "" {
		return nil, errors.New("directory= runs the checker as root: not with user=")
	}
	if o.FallbackLocal && o.Directory == "" {
		return nil, errors.New("fallback=local needs directory=")
	}
	if o.FallbackLocal && o.AsUser() {
		// The checker runs as root for the directory, and root never reads
		// a file the user can change.
		return nil, errors.New("fallback=local needs secret= in a root-owned store, such as secret=/etc/pam-totp/local/%u")
	}
	if o.EnrollUntil != 0 && !o.EnrollAtLogin {
		return nil, errors.New("enroll_until= needs enroll=login")
	}
	return o, nil
}

func number(val string, hasVal bool, min, max int) (int, error) {
	n, err := strconv.Atoi(val)
	if !hasVal || err != nil || n < min || n > max {
		return 0, fmt.Errorf("want a whole number from %d to %d", min, max)
	}
	return n, nil
}

// Secrets returns the templates to look for, in order: the one given, or
// our own file and then pam_google_authenticator's.
func (o *Options) Secrets() []string {
	if o.SecretGiven {
		return []string{o.Secret}
	}
	return []string{DefaultSecret, GoogleSecret}
}

// AsUser reports whether the secret files are the user's own, read and
// written as the user: a file in the home, or a pam_google_authenticator
// template with ${USER}, which that module reads as the user too. Otherwise
// they belong to the account of user=, or to root (the system store).
// pam_totp.c applies the same rule when it starts the checker.
func (o *Options) AsUser() bool { return o.RunAs == "" && o.secretAsUser }

// Agent says whether pam-totp-agent, which runs as root, may serve logins
// with these options: the directory, and the system store (a root-owned
// secret= outside the home), the enrollments whose checker would run as
// root anyway. Files a user or user= owns stay with the exec'd checker,
// running as their owner. pam_totp.c applies the same rule (agent_serves).
func (o *Options) Agent() bool { return o.Directory != "" || (o.RunAs == "" && !o.secretAsUser) }

// Access is who must own a user's files, and which modes they may have:
// the account of user=, else the user (uid userUID) for their own files,
// else root for the system store. It is the one statement of this rule in
// Go: the checker verifies with it that it runs as the owner that
// pam_totp.c chose (choose_identity, which must agree), and totp-enroll
// acts as that owner.
func (o *Options) Access(userUID int) (secret.Access, error) {
	acc := secret.Access{Perm: o.Perm, AllowRoot: o.AllowRoot}
	switch {
	case o.RunAs != "":
		uid, err := runAsUID(o.RunAs)
		if err != nil {
			return acc, err
		}
		acc.Owner = uid
	case o.AsUser():
		acc.Owner = userUID
	}
	return acc, nil
}

// runAsUID resolves user=NAME or user=UID. Names are looked up in
// /etc/passwd: the checker is a static program without NSS.
func runAsUID(v string) (int, error) {
	if n, err := strconv.ParseUint(v, 10, 32); err == nil {
		return int(n), nil
	}
	if v == "root" {
		return 0, nil
	}
	u, err := user.Lookup(v)
	if err != nil {
		return 0, fmt.Errorf("user=%s: %w", v, err)
	}
	return strconv.Atoi(u.Uid)
}

// template checks a secret= value and turns pam_google_authenticator's
// ${USER} and ${HOME} into %u and %h.
func template(t string) (string, bool, error) {
	asUser := strings.HasPrefix(t, "~") || strings.HasPrefix(t, "%h") || strings.HasPrefix(t, "${HOME}") ||
		strings.Contains(t, "${USER}")
	if strings.Contains(t, "${") {
		t = strings.ReplaceAll(t, "%", "%%")
		t = strings.ReplaceAll(t, "${USER}", "%u")
		if strings.HasPrefix(t, "${HOME}") {
			t = "%h" + t[len("${HOME}"):]
		}
		if strings.Contains(t, "${") {
			return "", false, errors.New("only ${USER} anywhere and ${HOME} at the start are supported")
		}
	}
	if !strings.HasPrefix(t, "~") && !strings.HasPrefix(t, "%h") && !strings.HasPrefix(t, "/") {
		return "", false, errors.New("must be an absolute path or start with ~, %h or ${HOME}")
	}
	if strings.HasPrefix(t, "~") && len(t) > 1 && t[1] != '/' {
		return "", false, errors.New("~user is not supported: use ~/ or %h/")
	}
	_, err := Expand(t, "user", "/home/user")
	return t, asUser, err
}

// checkAccount accepts user=NAME or user=UID.
func checkAccount(v string, hasVal bool) error {
	if !hasVal || v == "" {
		return errors.New("needs an account name or a uid")
	}
	if _, err := strconv.ParseUint(v, 10, 32); err == nil {
		return nil
	}
	return ValidUser(v)
}

// Expand fills in a template for one user. It refuses user names that could
// leave the intended directory or collide with a state file.
func Expand(template, user, home string) (string, error) {
	if err := ValidUser(user); err != nil {
		return "", err
	}
	var b strings.Builder
	t := template
	if strings.HasPrefix(t, "~") {
		b.WriteString(home)
		t = t[1:]
	}
	for i := 0; i < len(t); i++ {
		if t[i] != '%' {
			b.WriteByte(t[i])
			continue
		}
		if i++; i == len(t) {
			return "", errors.New("template ends in %")
		}
		switch t[i] {
		case 'u':
			b.WriteString(user)
		case 'h':
			if i != 1 || template[0] == '~' {
				return "", errors.New("%h is only allowed at the start")
			}
			b.WriteString(home)
		case '%':
			b.WriteByte('%')
		default:
			return "", fmt.Errorf("unknown %%%c in template", t[i])
		}
	}
	p := b.String()
	if !strings.HasPrefix(p, "/") || strings.Contains(p, "/../") || strings.HasSuffix(p, "/..") || strings.HasSuffix(p, "/") {
		return "", fmt.Errorf("%q is not an absolute file path", p)
	}
	return p, nil
}

// ValidUser accepts the user names that can safely go into a path: the
// portable set plus '@' (sssd's user@domain) and a trailing '$'.
func ValidUser(u string) error {
	if u == "" || len(u) > 256 || u[0] == '-' || u[0] == '.' || strings.HasSuffix(u, ".state") || strings.HasSuffix(u, ".lock") || strings.Contains(u, ".pending-") {
		return fmt.Errorf("unsupported user name %q", u)
	}
	for i, c := range []byte(u) {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '.' || c == '_' || c == '-' || c == '@' || (c == '$' && i == len(u)-1)
		if !ok {
			return fmt.Errorf("unsupported user name %q", u)
		}
	}
	return nil
}

// Package options parses the pam_totp.so module arguments (the words after
// the module name in /etc/pam.d). The C module reads the few it needs itself
// (checker=, timeout=, nodelay and the *_pass options) and passes all of them
// on; the checker parses them all and refuses anything unknown, so a typo
// fails closed instead of silently weakening the check.
package options

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"pamtotp/internal/verify"
)

// DefaultSecret is the secret file of a user when secret= is not given.
const DefaultSecret = "~/.pam_totp"

// Options are the module arguments.
type Options struct {
	Secret       string // template: %u user, %h or a leading ~ home
	NullOK       bool
	Policy       verify.Policy
	ForwardPass  bool
	UseFirstPass bool
	TryFirstPass bool
	Prompt       string
	EchoCode     bool
	Debug        bool
}

// Parse parses module arguments.
func Parse(args []string) (*Options, error) {
	o := &Options{Secret: DefaultSecret, Policy: verify.DefaultPolicy, Prompt: "Verification code: "}
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
		case "echo_code":
			err = flag(&o.EchoCode)
		case "debug":
			err = flag(&o.Debug)
		case "nodelay":
			// read by the C module
			err = flag(new(bool))
		case "checker", "timeout":
			// read and checked by the C module, which refuses bad values
			if !hasVal {
				err = errors.New("needs a value")
			}
		case "secret":
			o.Secret = val
			err = checkTemplate(val)
		case "prompt":
			o.Prompt = val
			if !hasVal || val == "" {
				err = errors.New("needs a value")
			}
		case "window":
			o.Policy.Window, err = number(val, hasVal, 0, 10)
		case "deny":
			o.Policy.Deny, err = number(val, hasVal, 0, 1000)
		case "unlock_time":
			var n int
			n, err = number(val, hasVal, 1, 7*86400)
			o.Policy.UnlockTime = int64(n)
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
	return o, nil
}

func number(val string, hasVal bool, min, max int) (int, error) {
	n, err := strconv.Atoi(val)
	if !hasVal || err != nil || n < min || n > max {
		return 0, fmt.Errorf("want a whole number from %d to %d", min, max)
	}
	return n, nil
}

// InHome reports whether a secret template names a file in the user's home,
// which the checker reads and writes as that user. Any other template is the
// root-owned system store.
func InHome(template string) bool {
	return strings.HasPrefix(template, "~") || strings.HasPrefix(template, "%h")
}

func checkTemplate(t string) error {
	if !InHome(t) && !strings.HasPrefix(t, "/") {
		return errors.New("must be an absolute path or start with ~ or %h")
	}
	if strings.HasPrefix(t, "~") && len(t) > 1 && t[1] != '/' {
		return errors.New("~user is not supported: use ~/ or %h/")
	}
	_, err := Expand(t, "user", "/home/user")
	return err
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
	if u == "" || len(u) > 256 || u[0] == '-' || u[0] == '.' || strings.HasSuffix(u, ".state") {
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

// SPDX-License-Identifier: Apache-2.0

// Package secret holds a user's enrollment: the secret file (tokens and
// scratch codes, written by totp-enroll, never changed by a login), the state
// file beside it (what logins change: last accepted step, drift, used scratch
// codes, failures), and the locked, atomic, durable way both are read and
// written. docs/file-format.md describes both formats.
package secret

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"pamtotp/internal/otp"
)

// Headers: the first line that is not a comment. A new incompatible format
// gets a new number, and this parser refuses what it does not know.
const (
	secretHeader = "pam_totp 1"
	stateHeader  = "pam_totp-state 1"
)

// MaxFileSize bounds what a login reads from a file a user may control.
const MaxFileSize = 64 << 10

// ValidTokenName reports whether s can name a token.
func ValidTokenName(s string) bool { return validName(s) }

// validName accepts 1 to 32 letters, digits, '.', '_' and '-', starting
// with a letter or digit. (Not a regexp: compiling one costs every login.)
func validName(s string) bool {
	if len(s) == 0 || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || c != '.' && c != '_' && c != '-') {
			return false
		}
	}
	return true
}

// Kind is a token's type, as the secret file writes it.
type Kind string

// Token kinds.
const (
	TOTP Kind = "totp" // time-based, RFC 6238
	HOTP Kind = "hotp" // counter-based, RFC 4226
)

// Token is one enrolled authenticator.
type Token struct {
	Name     string
	Type     Kind
	Key      []byte
	Params   otp.Params // Period is 0 for HOTP
	Counter  int64      // HOTP: the first counter the token will show
	Created  int64      // Unix time, 0 if unknown
	Comment  string     // free text for the admin, at most 200 bytes
	Disabled bool       // kept, but its codes are not accepted (a lost device)
	// ValidFrom and ValidUntil bound when its codes are accepted (Unix
	// times, 0 if unbounded): a vendor's start and expiry dates, or an
	// admin's.
	ValidFrom, ValidUntil int64
	// The issuer and the account name the app was given at enrollment, so
	// that showing the token again gives the same entry, not a new one.
	Issuer, Label string
}

// Fingerprint identifies a token's key and parameters in the state file
// without revealing the key, so that state recorded for an old key never
// applies to a new one. Two tokens with the same key and parameters produce
// the same codes, and rightly share one replay state.
func (t *Token) Fingerprint() string {
	h := sha256.New()
	if t.Type == HOTP {
		// TOTP fingerprints predate HOTP and must not change.
		h.Write([]byte("hotp\x00"))
	}
	fmt.Fprintf(h, "pam_totp state\x00%s\x00%d\x00%d\x00", t.Params.Algorithm, t.Params.Digits, t.Params.Period)
	h.Write(t.Key)
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// Describe says what kind of token t is, in the one wording every command
// and message uses: "time-based, SHA1, 6 digits, 30 s" or "counter-based,
// SHA1, 8 digits, next counter 0".
func (t *Token) Describe() string {
	if t.Type == HOTP {
		return fmt.Sprintf("counter-based, %s, %d digits, next counter %d", t.Params.Algorithm, t.Params.Digits, t.Counter)
	}
	return fmt.Sprintf("time-based, %s, %d digits, %d s", t.Params.Algorithm, t.Params.Digits, t.Params.Period)
}

// ValidAt reports whether now is within the token's validity dates.
func (t *Token) ValidAt(now int64) bool {
	return now >= t.ValidFrom && (t.ValidUntil == 0 || now < t.ValidUntil)
}

// Validity says when the token is valid, or "" if always.
func (t *Token) Validity() string { return Validity(t.ValidFrom, t.ValidUntil) }

// Validity says when codes are accepted between the Unix times from and
// until (0: unbounded), or "" if always.
func Validity(from, until int64) string {
	day := func(u int64) string { return time.Unix(u, 0).UTC().Format(time.RFC3339) }
	switch {
	case from != 0 && until != 0:
		return "valid " + day(from) + " to " + day(until)
	case from != 0:
		return "valid from " + day(from)
	case until != 0:
		return "valid until " + day(until)
	}
	return ""
}

// SameKey reports whether t and u share a key: their codes then overlap
// (a 6-digit code is the tail of the 8-digit one), whatever the digits.
func (t *Token) SameKey(u *Token) bool { return subtle.ConstantTimeCompare(t.Key, u.Key) == 1 }

// File is the content of a secret file.
type File struct {
	Tokens    []Token
	Scratch   []string // 8-digit single-use codes for the user
	Passcodes []string // 8-digit single-use codes an admin handed out
}

// ParseFile parses a secret file strictly: anything unknown is an error,
// because a file we half-understand could let the wrong code in.
func ParseFile(data []byte) (*File, error) {
	lines, err := contentLines(data, secretHeader)
	if err != nil {
		return nil, err
	}
	f := &File{}
	seenScratch := map[string]bool{}
	for _, l := range lines {
		keyword, rest, _ := strings.Cut(l.text, " ")
		switch keyword {
		case "token":
			t, err := parseToken(rest)
			if err != nil {
				return nil, fmt.Errorf("line %d: %w", l.no, err)
			}
			if f.Token(t.Name) != nil {
				return nil, fmt.Errorf("line %d: duplicate token %q", l.no, t.Name)
			}
			f.Tokens = append(f.Tokens, *t)
		case "scratch", "passcode":
			if !otp.IsDigits(rest, otp.ScratchLen) {
				return nil, fmt.Errorf("line %d: a %s code is %d digits", l.no, keyword, otp.ScratchLen)
			}
			if seenScratch[rest] {
				return nil, fmt.Errorf("line %d: duplicate single-use code", l.no)
			}
			seenScratch[rest] = true
			if keyword == "scratch" {
				f.Scratch = append(f.Scratch, rest)
			} else {
				f.Passcodes = append(f.Passcodes, rest)
			}
		default:
			return nil, fmt.Errorf("line %d: unknown keyword %q", l.no, keyword)
		}
	}
	if len(f.Tokens) == 0 {
		return nil, errors.New("no token in file")
	}
	return f, nil
}

func parseToken(s string) (*Token, error) {
	fields := strings.Fields(s)
	if len(fields) == 0 || !validName(fields[0]) {
		return nil, errors.New("token needs a name of 1-32 letters, digits, '.', '_' or '-'")
	}
	t := &Token{Name: fields[0], Params: otp.DefaultParams}
	hasPeriod := false
	seen := map[string]bool{}
	for _, kv := range fields[1:] {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || seen[k] {
			return nil, fmt.Errorf("token %s: bad or repeated field %q", t.Name, k)
		}
		seen[k] = true
		var err error
		switch k {
		case "type":
			t.Type = Kind(v)
			if t.Type != TOTP && t.Type != HOTP {
				err = fmt.Errorf("unknown type %q", v)
			}
		case "counter":
			t.Counter, err = strconv.ParseInt(v, 10, 64)
			if err == nil && t.Counter < 0 {
				err = errors.New("must not be negative")
			}
		case "secret":
			t.Key, err = otp.DecodeKey(v)
		case "algorithm":
			t.Params.Algorithm, err = otp.ParseAlgorithm(v)
		case "digits":
			t.Params.Digits, err = strconv.Atoi(v)
		case "period":
			t.Params.Period, err = strconv.Atoi(v)
			hasPeriod = true
		case "created":
			t.Created, err = strconv.ParseInt(v, 10, 64)
		case "comment":
			t.Comment, err = url.QueryUnescape(v)
			if err == nil {
				err = CheckComment(t.Comment)
			}
		case "issuer", "label":
			var text string
			if text, err = url.QueryUnescape(v); err == nil {
				err = CheckAppText(text)
			}
			if k == "issuer" {
				t.Issuer = text
			} else {
				t.Label = text
			}
		case "valid-from", "valid-until":
			var n int64
			if n, err = strconv.ParseInt(v, 10, 64); err == nil && n <= 0 {
				err = errors.New("want a Unix time")
			}
			if k == "valid-from" {
				t.ValidFrom = n
			} else {
				t.ValidUntil = n
			}
		case "disabled":
			t.Disabled = true
			if v != "1" {
				err = errors.New("want disabled=1")
			}
		default:
			err = errors.New("unknown field")
		}
		if err != nil {
			return nil, fmt.Errorf("token %s: %s: %w", t.Name, k, err)
		}
	}
	if !seen["type"] || t.Key == nil {
		return nil, fmt.Errorf("token %s: type and secret are required", t.Name)
	}
	if t.Type == HOTP {
		if hasPeriod {
			return nil, fmt.Errorf("token %s: a HOTP token has no period", t.Name)
		}
		t.Params.Period = 0
	} else if seen["counter"] {
		return nil, fmt.Errorf("token %s: a TOTP token has no counter", t.Name)
	}
	if err := t.Validate(); err != nil {
		return nil, fmt.Errorf("token %s: %w", t.Name, err)
	}
	return t, nil
}

// CheckAppText accepts an issuer or an account name for the app: a
// comment without ':', which separates the two in an otpauth URI.
func CheckAppText(s string) error {
	if strings.Contains(s, ":") {
		return errors.New("cannot contain ':'")
	}
	return CheckComment(s)
}

// CheckComment accepts printable text of at most 200 bytes.
func CheckComment(c string) error {
	if len(c) > 200 {
		return errors.New("a comment has at most 200 bytes")
	}
	for _, r := range c {
		if r < ' ' || r == 0x7f {
			return errors.New("a comment has no control characters")
		}
	}
	return nil
}

// Validate reports whether t is a token pam_totp can use and write. It is
// the one judge of a token: the file parser, enrollment, migration and
// every import ask it.
func (t *Token) Validate() error {
	if !validName(t.Name) {
		return fmt.Errorf("token name %q: want 1-32 letters, digits, '.', '_' or '-', starting with a letter or digit", t.Name)
	}
	if len(t.Key) < otp.MinKeyBytes || len(t.Key) > otp.MaxKeyBytes {
		return fmt.Errorf("the secret must be %d to %d bytes, not %d", otp.MinKeyBytes, otp.MaxKeyBytes, len(t.Key))
	}
	if err := CheckComment(t.Comment); err != nil {
		return err
	}
	if t.ValidUntil != 0 && t.ValidUntil <= t.ValidFrom {
		return errors.New("valid-until must come after valid-from")
	}
	switch t.Type {
	case TOTP:
		if t.Counter != 0 {
			return errors.New("a TOTP token has no counter")
		}
		return t.Params.Validate()
	case HOTP:
		if t.Counter < 0 {
			return errors.New("the counter must not be negative")
		}
		if t.Params.Period != 0 {
			return errors.New("a HOTP token has no period")
		}
		p := t.Params
		p.Period = otp.MinPeriod // not used by HOTP
		return p.Validate()
	}
	return fmt.Errorf("unknown token type %q", t.Type)
}

// WithKey returns the token that has t's key, or nil: a new token must not
// reuse a key the user already has, or one code would open both.
func (f *File) WithKey(t *Token) *Token {
	for i := range f.Tokens {
		if f.Tokens[i].SameKey(t) {
			return &f.Tokens[i]
		}
	}
	return nil
}

// Add appends t, refusing a name or a key the file already has.
func (f *File) Add(t Token) error {
	if f.Token(t.Name) != nil {
		return fmt.Errorf("there is already a token %q", t.Name)
	}
	if old := f.WithKey(&t); old != nil {
		return fmt.Errorf("token %q already has this key: one code would open both", old.Name)
	}
	f.Tokens = append(f.Tokens, t)
	return nil
}

// Token returns the token called name, or nil.
func (f *File) Token(name string) *Token {
	for i := range f.Tokens {
		if f.Tokens[i].Name == name {
			return &f.Tokens[i]
		}
	}
	return nil
}

// Marshal returns the file's text.
func (f *File) Marshal() []byte {
	var b bytes.Buffer
	b.WriteString("# pam_totp secret file. Keep it private: mode 0600. Format: pam_totp docs/file-format.md\n")
	b.WriteString(secretHeader + "\n")
	for _, t := range f.Tokens {
		if t.Type == HOTP {
			fmt.Fprintf(&b, "token %s type=hotp algorithm=%s digits=%d counter=%d secret=%s",
				t.Name, t.Params.Algorithm, t.Params.Digits, t.Counter, otp.EncodeKey(t.Key))
		} else {
			fmt.Fprintf(&b, "token %s type=totp algorithm=%s digits=%d period=%d secret=%s",
				t.Name, t.Params.Algorithm, t.Params.Digits, t.Params.Period, otp.EncodeKey(t.Key))
		}
		if t.Created != 0 {
			fmt.Fprintf(&b, " created=%d", t.Created)
		}
		if t.Comment != "" {
			fmt.Fprintf(&b, " comment=%s", url.QueryEscape(t.Comment))
		}
		if t.Issuer != "" {
			fmt.Fprintf(&b, " issuer=%s", url.QueryEscape(t.Issuer))
		}
		if t.Label != "" {
			fmt.Fprintf(&b, " label=%s", url.QueryEscape(t.Label))
		}
		if t.ValidFrom != 0 {
			fmt.Fprintf(&b, " valid-from=%d", t.ValidFrom)
		}
		if t.ValidUntil != 0 {
			fmt.Fprintf(&b, " valid-until=%d", t.ValidUntil)
		}
		if t.Disabled {
			b.WriteString(" disabled=1")
		}
		b.WriteString("\n")
	}
	for _, s := range f.Scratch {
		fmt.Fprintf(&b, "scratch %s\n", s)
	}
	for _, s := range f.Passcodes {
		fmt.Fprintf(&b, "passcode %s\n", s)
	}
	return b.Bytes()
}

type line struct {
	no   int
	text string
}

// contentLines checks the header and returns the lines after it, without
// comments and blank lines. NUL bytes and control characters are refused.
func contentLines(data []byte, header string) ([]line, error) {
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("file larger than %d bytes", MaxFileSize)
	}
	if bytes.IndexByte(data, 0) >= 0 {
		return nil, errors.New("file contains a NUL byte")
	}
	var out []line
	sawHeader := false
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), MaxFileSize)
	for no := 1; sc.Scan(); no++ {
		text := strings.TrimRight(sc.Text(), " \t\r")
		if text == "" || text[0] == '#' {
			continue
		}
		for _, r := range text {
			if r < ' ' && r != '\t' {
				return nil, fmt.Errorf("line %d: control character", no)
			}
		}
		if !sawHeader {
			if text != header {
				return nil, fmt.Errorf("line %d: want %q, the format's first line", no, header)
			}
			sawHeader = true
			continue
		}
		out = append(out, line{no, text})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if !sawHeader {
		return nil, fmt.Errorf("empty file: want %q", header)
	}
	return out, nil
}

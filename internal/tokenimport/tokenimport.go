// SPDX-License-Identifier: Apache-2.0

// Package tokenimport reads token files from vendors and other systems:
// CSV lists of hardware tokens, pam_oath's users file and decrypted PSKC
// key packages (internal/pskc), into entries that totp-enroll adds to
// users' files. Everything here comes from outside and is checked line by
// line; a bad line is an error naming it, never a half-read token.
package tokenimport

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"pamtotp/internal/options"
	"pamtotp/internal/otp"
	"pamtotp/internal/pskc"
	"pamtotp/internal/secret"
)

// Entry is one token to import: from a line of a users file, or a
// key package.
type Entry struct {
	Line  int    // the line, or the key package's number
	User  string // whose token it is
	Base  string // the token's name, or the start of it if taken
	Token secret.Token
	Last  int64 // the step or counter of the last code used, -1 if none
	Drift int64 // TOTP: steps the token's clock is ahead (+) or behind (-)
}

// ParseCSV reads hardware tokens from semicolon-separated UTF-8 lines:
// "hex key;time step;comment", or with user "" "user;hex key;time
// step;comment". It returns the good lines' entries and an error for each
// bad line.
func ParseCSV(data []byte, user string, now time.Time) ([]Entry, []error) {
	if !utf8.Valid(data) {
		return nil, []error{errors.New("the file is not UTF-8")}
	}
	text := strings.TrimPrefix(string(data), "\ufeff")
	return parseLines(text, func(l string) (*Entry, error) { return parseCSVLine(l, user, now) })
}

func parseCSVLine(l, user string, now time.Time) (*Entry, error) {
	f := strings.Split(l, ";")
	if user == "" {
		if len(f) != 4 {
			return nil, errors.New("want user;hex key;time step;comment")
		}
		user, f = strings.TrimSpace(f[0]), f[1:]
		if err := options.ValidUser(user); err != nil {
			return nil, err
		}
	} else if len(f) != 3 {
		return nil, errors.New("want hex key;time step;comment")
	}
	key, err := hex.DecodeString(strings.TrimSpace(f[0]))
	if err != nil {
		return nil, errors.New("the key is not hexadecimal")
	}
	if len(key) < 16 || len(key) > otp.MaxKeyBytes {
		return nil, fmt.Errorf("the key must be 16 to %d bytes (128 bits at least), not %d", otp.MaxKeyBytes, len(key))
	}
	period := 30
	if s := strings.TrimSpace(f[1]); s != "" {
		if period, err = strconv.Atoi(s); err != nil {
			return nil, fmt.Errorf("time step %q is not a number", s)
		}
	}
	t := secret.Token{Name: "hw", Type: secret.TOTP, Key: key, Params: otp.Params{Algorithm: otp.DefaultParams.Algorithm, Digits: otp.DefaultDigit, Period: period},
		Created: now.Unix(), Comment: strings.TrimSpace(f[2])}
	if err := t.Validate(); err != nil {
		return nil, err
	}
	return &Entry{User: user, Base: "hw", Token: t, Last: -1}, nil
}

// parseLines runs parse on each line that is neither blank nor a comment
// ('#'), and returns the entries of the good lines and one error a bad line.
func parseLines(data string, parse func(line string) (*Entry, error)) ([]Entry, []error) {
	var out []Entry
	var bad []error
	for i, l := range strings.Split(data, "\n") {
		l = strings.TrimRight(l, "\r")
		if t := strings.TrimSpace(l); t == "" || t[0] == '#' {
			continue
		}
		e, err := parse(l)
		if err != nil {
			bad = append(bad, fmt.Errorf("line %d: %w", i+1, err))
			continue
		}
		e.Line = i + 1
		out = append(out, *e)
	}
	return out, bad
}

// ParseOath reads a pam_oath (oath-toolkit) users file: lines of
// "TYPE USER PIN HEXKEY [COUNTER [LASTOTP [TIME]]]".
func ParseOath(data []byte, now time.Time) ([]Entry, []error) {
	return parseLines(string(data), func(l string) (*Entry, error) { return parseOathLine(l, now) })
}

func parseOathLine(l string, now time.Time) (*Entry, error) {
	f := strings.Fields(l)
	if len(f) < 4 || len(f) > 7 {
		return nil, errors.New("want TYPE USER PIN HEXKEY [COUNTER [LASTOTP [TIME]]]")
	}
	t := secret.Token{Name: "oath", Type: secret.HOTP, Params: otp.Params{Algorithm: otp.DefaultParams.Algorithm, Digits: otp.DefaultDigit}, Created: now.Unix()}
	parts := strings.Split(f[0], "/")
	if parts[0] != "HOTP" || len(parts) > 3 {
		return nil, fmt.Errorf("unknown token type %q", f[0])
	}
	for i, p := range parts[1:] {
		switch {
		case i == 0 && p == "E":
		case i == 0 && strings.HasPrefix(p, "T"):
			n, err := strconv.Atoi(p[1:])
			if err != nil {
				return nil, fmt.Errorf("bad time step in %q", f[0])
			}
			t.Type, t.Params.Period = secret.TOTP, n
		default:
			n, err := strconv.Atoi(p)
			if err != nil {
				return nil, fmt.Errorf("bad digits in %q", f[0])
			}
			t.Params.Digits = n
		}
	}
	if err := options.ValidUser(f[1]); err != nil {
		return nil, err
	}
	if f[2] != "-" && f[2] != "+" {
		return nil, errors.New("a PIN in the users file is not supported (pam_totp stacks after the password module); remove it first")
	}
	key, err := hex.DecodeString(f[3])
	if err != nil {
		return nil, errors.New("the key is not hexadecimal")
	}
	t.Key = key
	e := &Entry{User: f[1], Base: "oath", Token: t, Last: -1}
	if len(f) >= 5 && e.Token.Type == secret.HOTP {
		if e.Token.Counter, err = strconv.ParseInt(f[4], 10, 64); err != nil || e.Token.Counter < 0 {
			return nil, fmt.Errorf("bad counter %q", f[4])
		}
		// Once a code was accepted, pam_oath keeps that code's counter and
		// the code (LASTOTP), which it refuses by value. pam_totp has no
		// such list: the next counter is the one after it.
		if len(f) >= 6 && f[5] != "-" {
			e.Last = e.Token.Counter
			e.Token.Counter++
		}
	}
	if len(f) == 7 && e.Token.Type == secret.TOTP {
		// pam_oath writes local time with an L, or UTC with a Z.
		loc, stamp := time.Local, strings.TrimSuffix(f[6], "L")
		if strings.HasSuffix(f[6], "Z") {
			loc, stamp = time.UTC, strings.TrimSuffix(f[6], "Z")
		}
		at, err := time.ParseInLocation("2006-01-02T15:04:05", stamp, loc)
		if err != nil {
			return nil, fmt.Errorf("bad time of the last code %q", f[6])
		}
		e.Last = otp.Step(at.Unix(), t.Params.Period)
	}
	if err := e.Token.Validate(); err != nil {
		return nil, err
	}
	return e, nil
}

// FromPSKC turns a decrypted PSKC key package into user's entry. A key
// past its expiry date is refused; one not yet valid keeps its start.
func FromPSKC(k pskc.Key, user string, now time.Time) (*Entry, error) {
	if !k.ValidUntil.IsZero() && !now.Before(k.ValidUntil) {
		return nil, fmt.Errorf("expired on %s (--ignore-expiry imports it without its expiry date)", k.ValidUntil.UTC().Format(time.RFC3339))
	}
	alg, err := otp.ParseAlgorithm(k.Hash)
	if k.Hash == "" {
		alg, err = otp.DefaultParams.Algorithm, nil
	}
	if err != nil {
		return nil, err
	}
	t := secret.Token{Type: secret.TOTP, Key: k.Secret, Params: otp.Params{Algorithm: alg, Digits: k.Digits, Period: k.Period},
		Created: now.Unix(), Comment: strings.TrimSpace(k.Issuer + " " + k.Serial)}
	if k.HOTP {
		t.Type, t.Params.Period, t.Counter = secret.HOTP, 0, k.Counter
	}
	if !k.ValidFrom.IsZero() {
		t.ValidFrom = k.ValidFrom.Unix()
	}
	if !k.ValidUntil.IsZero() {
		t.ValidUntil = k.ValidUntil.Unix()
	}
	if secret.CheckComment(t.Comment) != nil {
		t.Comment = "" // the vendor's free text is not worth refusing a token
	}
	t.Name = "pskc"
	if name := "token-" + k.Serial; k.Serial != "" && secret.ValidTokenName(name) {
		t.Name = name
	}
	if err := t.Validate(); err != nil {
		return nil, err
	}
	e := &Entry{User: user, Base: t.Name, Token: t, Last: -1}
	if !k.HOTP {
		e.Drift = k.Drift
	}
	return e, nil
}

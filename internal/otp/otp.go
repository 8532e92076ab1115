// SPDX-License-Identifier: Apache-2.0

// Package otp computes HOTP (RFC 4226) and TOTP (RFC 6238) codes for a token.
//
// Code generation is delegated to github.com/pquerna/otp; this package
// holds the token parameters and the constant-time comparison, so that the
// window search in package verify knows exactly which step matched.
package otp

import (
	"crypto/subtle"
	"encoding/base32"
	"errors"
	"fmt"
	"strings"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/hotp"
)

// Algorithm is the HMAC hash of a token.
type Algorithm string

const (
	SHA1   Algorithm = "SHA1"
	SHA256 Algorithm = "SHA256"
	SHA512 Algorithm = "SHA512"
)

// ParseAlgorithm accepts the three RFC 6238 hashes, case-insensitively.
func ParseAlgorithm(s string) (Algorithm, error) {
	switch a := Algorithm(strings.ToUpper(s)); a {
	case SHA1, SHA256, SHA512:
		return a, nil
	}
	return "", fmt.Errorf("unknown algorithm %q (want SHA1, SHA256 or SHA512)", s)
}

func (a Algorithm) lib() otp.Algorithm {
	switch a {
	case SHA256:
		return otp.AlgorithmSHA256
	case SHA512:
		return otp.AlgorithmSHA512
	}
	return otp.AlgorithmSHA1
}

// Limits on token parameters, shared by the file parser and totp-enroll.
const (
	MinPeriod    = 10
	MaxPeriod    = 120
	MinKeyBytes  = 10 // 80 bits: RFC 4226 requires at least 128, but old tokens use 80
	MaxKeyBytes  = 128
	ScratchLen   = 8
	DefaultDigit = 6
)

// DefaultParams are what authenticator apps assume when nothing else is
// said (RFC 6238's example and Google Authenticator's otpauth defaults):
// every new token and every format that leaves a parameter out uses them.
var DefaultParams = Params{Algorithm: SHA1, Digits: DefaultDigit, Period: 30}

// Params are the parameters of one token apart from its key.
type Params struct {
	Algorithm Algorithm
	Digits    int // 6, 7 or 8
	Period    int // seconds, TOTP only
}

// Validate reports whether p is usable.
func (p Params) Validate() error {
	if _, err := ParseAlgorithm(string(p.Algorithm)); err != nil {
		return err
	}
	if p.Digits < 6 || p.Digits > 8 {
		return fmt.Errorf("digits must be 6, 7 or 8, not %d", p.Digits)
	}
	if p.Period < MinPeriod || p.Period > MaxPeriod {
		return fmt.Errorf("period must be %d..%d seconds, not %d", MinPeriod, MaxPeriod, p.Period)
	}
	return nil
}

// Code returns the HOTP value of key at counter (for TOTP, counter is the time step).
func Code(key []byte, counter uint64, p Params) (string, error) {
	// pquerna/otp takes the key in base32; encoding it here keeps our own
	// files free to store it however they like.
	enc := base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(key)
	return hotp.GenerateCodeCustom(enc, counter, hotp.ValidateOpts{
		Digits:    otp.Digits(p.Digits),
		Algorithm: p.Algorithm.lib(),
	})
}

// Equal compares a code typed by a user with an expected code in constant time.
func Equal(typed, expected string) bool {
	return subtle.ConstantTimeCompare([]byte(typed), []byte(expected)) == 1
}

// Step returns the TOTP time step of a Unix time.
func Step(unix int64, period int) int64 {
	if unix < 0 {
		return 0
	}
	return unix / int64(period)
}

// DecodeKey decodes a base32 secret as people type it: case-insensitive,
// spaces and dashes ignored, padding optional.
func DecodeKey(s string) ([]byte, error) {
	s = strings.Map(func(r rune) rune {
		switch r {
		case ' ', '\t', '-':
			return -1
		}
		return r
	}, strings.ToUpper(s))
	s = strings.TrimRight(s, "=")
	key, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(s)
	if err != nil {
		return nil, errors.New("secret is not valid base32")
	}
	if len(key) < MinKeyBytes || len(key) > MaxKeyBytes {
		return nil, fmt.Errorf("secret must be %d to %d bytes, not %d", MinKeyBytes, MaxKeyBytes, len(key))
	}
	return key, nil
}

// EncodeKey returns the unpadded base32 form of key used in files and URIs.
func EncodeKey(key []byte) string {
	return base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(key)
}

// IsDigits reports whether s is n ASCII digits.
func IsDigits(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

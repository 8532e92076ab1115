// SPDX-License-Identifier: Apache-2.0

// Package enroll makes what a new enrollment shows and stores: a random key,
// scratch codes, the otpauth:// URI and its QR code for a terminal.
package enroll

import (
	"crypto/rand"
	"fmt"
	"io"
	"math/big"
	"net/url"
	"strconv"
	"strings"

	"github.com/mdp/qrterminal/v3"

	"pamtotp/internal/otp"
	"pamtotp/internal/secret"
)

// KeyBytes is the size of a new key: 160 bits, as RFC 4226 recommends.
const KeyBytes = 20

// NewKey returns a random key.
func NewKey() ([]byte, error) {
	k := make([]byte, KeyBytes)
	if _, err := io.ReadFull(rand.Reader, k); err != nil {
		return nil, fmt.Errorf("reading random bytes: %w", err)
	}
	return k, nil
}

// ScratchCodes returns n distinct random 8-digit codes (10000000-99999999).
func ScratchCodes(n int) ([]string, error) {
	seen := map[string]bool{}
	var out []string
	for len(out) < n {
		v, err := rand.Int(rand.Reader, big.NewInt(90_000_000))
		if err != nil {
			return nil, fmt.Errorf("reading random bytes: %w", err)
		}
		c := strconv.FormatInt(v.Int64()+10_000_000, 10)
		if !seen[c] {
			seen[c] = true
			out = append(out, c)
		}
	}
	return out, nil
}

// URI is the otpauth:// URI an authenticator app reads. It carries the
// algorithm, digits and period (or counter), so a non-default token reaches
// the phone intact (pam_google_authenticator's leaves the period out).
func URI(issuer, account string, t *secret.Token) string {
	q := url.Values{}
	q.Set("secret", otp.EncodeKey(t.Key))
	q.Set("issuer", issuer)
	q.Set("algorithm", string(t.Params.Algorithm))
	q.Set("digits", strconv.Itoa(t.Params.Digits))
	kind := secret.TOTP
	if t.Type == secret.HOTP {
		kind = secret.HOTP
		q.Set("counter", strconv.FormatInt(t.Counter, 10))
	} else {
		q.Set("period", strconv.Itoa(t.Params.Period))
	}
	// The URI names the kind as the file does: "totp" or "hotp".
	u := url.URL{Scheme: "otpauth", Host: string(kind), Path: "/" + issuer + ":" + account, RawQuery: q.Encode()}
	return u.String()
}

// Grouped writes a key in groups of four for typing.
func Grouped(key []byte) string {
	s := otp.EncodeKey(key)
	var parts []string
	for len(s) > 4 {
		parts = append(parts, s[:4])
		s = s[4:]
	}
	return strings.Join(append(parts, s), " ")
}

// QR modes.
const (
	QRUTF8 = "utf8" // half blocks: two modules a character, compact
	QRANSI = "ansi" // colored spaces: two characters a module
	QRNone = "none"
	// QRPlain is QRUTF8 without colours, for text that passes through PAM
	// and SSH, where escape sequences are filtered: light modules are full
	// blocks, so it scans on a dark terminal.
	QRPlain = "plain"
)

// Dark and light, set explicitly: the QR code is dark on light on every
// terminal, whatever its own colours (scanners want dark modules).
const (
	ansiLightOnDark = "\x1b[97;40m" // half-block glyphs draw the light modules
	ansiReset       = "\x1b[0m"
)

// WriteQR writes uri as a QR code with a quiet zone of four modules.
func WriteQR(w io.Writer, uri, mode string) error {
	switch mode {
	case QRNone:
		return nil
	case QRANSI:
		qrterminal.GenerateWithConfig(uri, qrterminal.Config{
			Level: qrterminal.M, Writer: w, QuietZone: 4,
			BlackChar: qrterminal.BLACK, WhiteChar: qrterminal.WHITE,
		})
		return nil
	case QRUTF8, QRPlain:
		var b strings.Builder
		qrterminal.GenerateWithConfig(uri, qrterminal.Config{
			Level: qrterminal.M, Writer: &b, QuietZone: 4, HalfBlocks: true,
			BlackChar: qrterminal.BLACK_BLACK, WhiteChar: qrterminal.WHITE_WHITE,
			BlackWhiteChar: qrterminal.BLACK_WHITE, WhiteBlackChar: qrterminal.WHITE_BLACK,
		})
		on, off := ansiLightOnDark, ansiReset
		if mode == QRPlain {
			on, off = "", ""
		}
		for _, line := range strings.Split(strings.TrimRight(b.String(), "\n"), "\n") {
			if _, err := fmt.Fprintf(w, "%s%s%s\n", on, line, off); err != nil {
				return err
			}
		}
		return nil
	}
	return fmt.Errorf("unknown QR mode %q (want utf8, ansi or none)", mode)
}

// SPDX-License-Identifier: Apache-2.0

// What totp-enroll shows of a token: its QR code, secret and URI, and
// single-use codes. Enrollment and the admin commands share it.
package main

import (
	"fmt"
	"io"
	"strings"
	"unicode"
	"unicode/utf8"

	"pamtotp/internal/enroll"
	"pamtotp/internal/secret"
)

// showToken prints a token's QR code, its secret for typing and its URI.
func showToken(w io.Writer, issuer, label string, t *secret.Token, qr string) error {
	uri := enroll.URI(issuer, label, t)
	if err := enroll.WriteQR(w, uri, qr); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nOr type the secret: %s\n(%s)\n%s\n\n", enroll.Grouped(t.Key), t.Describe(), uri)
	return nil
}

// printCodes lists single-use codes under a title.
func printCodes(out io.Writer, title string, codes []string) {
	fmt.Fprintln(out, title)
	for _, c := range codes {
		fmt.Fprintf(out, "  %s\n", c)
	}
}

// printable is s with every byte or rune that a terminal could act on
// (C0 and C1 controls, DEL, invalid UTF-8, format characters) escaped, so
// that text from a user's files or from an account database cannot move
// the cursor or change the screen of the admin reading it.
func printable(s string) string {
	clean := true
	for _, r := range s {
		if r == utf8.RuneError || !unicode.IsPrint(r) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n <= 1:
			fmt.Fprintf(&b, "\\x%02x", s[i])
		case !unicode.IsPrint(r):
			fmt.Fprintf(&b, "\\u%04x", r)
		default:
			b.WriteRune(r)
		}
		i += n
	}
	return b.String()
}

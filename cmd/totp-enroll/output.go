// SPDX-License-Identifier: Apache-2.0

// What totp-enroll shows of a token: its QR code, secret and URI, and
// single-use codes. Enrollment and the admin commands share it.
package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/term"

	"pamtotp/internal/enroll"
	"pamtotp/internal/secret"
)

// showToken prints a token's QR code, its secret for typing and its URI.
func showToken(w io.Writer, issuer, label string, t *secret.Token, qr string) error {
	uri := enroll.URI(issuer, label, t)
	var code strings.Builder
	if err := enroll.WriteQR(&code, uri, qr); err != nil {
		return err
	}
	// A QR code wider than the terminal wraps into something no phone
	// reads: say so, and leave the secret and the URI to type or copy.
	if cols, need := terminalWidth(w), qrWidth(code.String()); cols > 0 && need > cols {
		fmt.Fprintf(w, "The QR code needs a terminal %d columns wide; this one has %d. Widen the window and run the command again (totp-enroll show NAME, as root), or type the secret below.\n", need, cols)
	} else {
		io.WriteString(w, code.String())
	}
	lead := "\nOr type the secret"
	if qr == enroll.QRNone {
		lead = "\nThe secret"
	}
	fmt.Fprintf(w, "%s: %s\n(%s)\n%s\n\n", lead, enroll.Grouped(t.Key), t.Describe(), uri)
	return nil
}

// terminalWidth is the width of the terminal w is, or 0.
func terminalWidth(w io.Writer) int {
	f, ok := w.(*os.File)
	if !ok {
		return 0
	}
	cols, _, err := term.GetSize(int(f.Fd()))
	if err != nil {
		return 0
	}
	return cols
}

// qrWidth is the widest line of a drawn QR code in terminal columns:
// runes, not counting ANSI colour sequences.
func qrWidth(drawn string) int {
	widest := 0
	for _, line := range strings.Split(drawn, "\n") {
		n := 0
		for i := 0; i < len(line); {
			if line[i] == 0x1b { // ESC [ ... letter
				for i < len(line) && !(line[i] >= 'A' && line[i] <= 'Z' || line[i] >= 'a' && line[i] <= 'z') {
					i++
				}
				i++
				continue
			}
			_, size := utf8.DecodeRuneInString(line[i:])
			i += size
			n++
		}
		widest = max(widest, n)
	}
	return widest
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

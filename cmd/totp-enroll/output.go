// SPDX-License-Identifier: Apache-2.0

// What totp-enroll shows of a token: its QR code, secret and URI, and
// single-use codes. Enrollment and the admin commands share it.
package main

import (
	"fmt"
	"io"
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

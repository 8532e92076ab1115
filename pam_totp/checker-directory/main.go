// SPDX-License-Identifier: Apache-2.0

// Command pam-totp-check-directory is pam-totp-check with the directory
// store (internal/directory): pam_totp.so starts it, as root, for a module
// line with directory=. See docs/fleet.md.
package main

import (
	"pamtotp/internal/check"
	"pamtotp/internal/directory"
	"pamtotp/internal/relay"
)

func main() {
	// One configuration read for the relay's question (does it name
	// verifiers?) and the login.
	dir := directory.NewOnce()
	check.Main(dir.Open, relay.New(dir).Relay)
}

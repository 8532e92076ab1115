// SPDX-License-Identifier: Apache-2.0

package check

import (
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"pamtotp/internal/authlog"
	"pamtotp/internal/store"
)

// Main is the checker's main: started by pam_totp.so with its socket on
// standard input, it runs one check. dir opens the directory's accounts
// and relay hands a login to pam-totp-verifier; both are nil in the
// checker that has no directory code.
func Main(dir store.Opener, relay Relay) {
	var st unix.Stat_t
	if unix.Fstat(0, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		fmt.Fprintln(os.Stderr, "pam-totp-check: started by pam_totp.so with a socket on standard input, not by hand")
		os.Exit(2)
	}
	// No core file of ours may hold a secret.
	unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0)
	unix.Umask(0o077)
	// Non-blocking, so that Go's poller takes the socket and a prompt can
	// have a time-out (prompt_timeout).
	if err := unix.SetNonblock(0, true); err != nil {
		fmt.Fprintln(os.Stderr, "pam-totp-check:", err)
		os.Exit(2)
	}
	Run(&Env{
		Conn:         os.NewFile(0, "pam_totp socket"),
		Log:          authlog.Open("pam_totp"),
		Now:          time.Now,
		LoginSession: loginSession,
		Directory:    dir,
		Relay:        relay,
	})
}

// loginSession is the audit session id that pam_loginuid gave the login
// this host runs in; fork and setsid keep it, and a new login gets a new
// one. "" when unset.
func loginSession() string { return SessionOf("self") }

// SessionOf is the audit session of process proc ("self" or a pid), "" if
// it has none.
func SessionOf(proc string) string {
	data, err := os.ReadFile("/proc/" + proc + "/sessionid")
	id := strings.TrimSpace(string(data))
	n, perr := strconv.ParseUint(id, 10, 32)
	if err != nil || perr != nil || n == math.MaxUint32 {
		return ""
	}
	return id
}

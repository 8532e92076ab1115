// Command pam-totp-check is started by pam_totp.so for every
// authentication, with its socket to the module on standard input. It is not
// meant to be run by hand. See docs/architecture.md.
package main

import (
	"fmt"
	"log/syslog"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"pamtotp/internal/check"
	"pamtotp/internal/privilege"
)

func main() {
	var st unix.Stat_t
	if unix.Fstat(0, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		fmt.Fprintln(os.Stderr, "pam-totp-check: started by pam_totp.so with a socket on standard input, not by hand")
		os.Exit(2)
	}
	unix.Umask(0o077)
	if os.Geteuid() == 0 {
		// Under sudo the real uid is the caller's, who could then signal
		// us; a process of our own has no reason to keep it.
		if err := privilege.Drop(0, 0); err != nil {
			os.Exit(1) // the module logs the missing verdict
		}
	}
	check.Run(&check.Env{
		Conn:   os.Stdin,
		Log:    openLog(),
		Now:    time.Now,
		Become: privilege.Drop,
	})
}

// openLog logs to syslog's authpriv facility; like pam_syslog, it drops the
// lines when no syslog daemon listens rather than refusing logins.
func openLog() check.Logger {
	w, err := syslog.New(syslog.LOG_AUTHPRIV|syslog.LOG_INFO, "pam_totp")
	if err != nil {
		return discard{}
	}
	return w
}

type discard struct{}

func (discard) Info(string) error    { return nil }
func (discard) Warning(string) error { return nil }
func (discard) Debug(string) error   { return nil }

// SPDX-License-Identifier: Apache-2.0

// Package authlog writes the checker's decision lines to the local syslog
// socket, facility authpriv, as pam_syslog does. It replaces log/syslog,
// whose net package costs the checker most of a millisecond at every login.
package authlog

import (
	"fmt"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// Severities (RFC 5424) used by the checker.
const (
	warning = 4
	info    = 6
	debug   = 7
	// authpriv is facility 10.
	authpriv = 10 << 3
)

// Writer sends lines to /dev/log. Like pam_syslog, it drops them when no
// syslog daemon listens rather than refusing logins. It is safe for
// concurrent use (pam-totp-agent logs from every login it serves).
type Writer struct {
	mu  sync.Mutex
	fd  int // -1 when there is no syslog
	tag string
}

// Open connects to /dev/log.
func Open(tag string) *Writer {
	w := &Writer{fd: -1, tag: fmt.Sprintf("%s[%d]", tag, os.Getpid())}
	w.fd = connect()
	return w
}

func connect() int {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1
	}
	if err := unix.Connect(fd, &unix.SockaddrUnix{Name: "/dev/log"}); err != nil {
		unix.Close(fd)
		return -1
	}
	return fd
}

func (w *Writer) send(severity int, msg string) error {
	// The local syslog socket takes RFC 3164 lines; the daemon adds the time.
	line := []byte(fmt.Sprintf("<%d>%s: %s", authpriv|severity, w.tag, msg))
	w.mu.Lock()
	defer w.mu.Unlock()
	_, err := unix.Write(w.fd, line)
	if w.fd < 0 || err != nil {
		// A syslog daemon that restarted made a new socket: a long-running
		// writer (the agent) connects again, once per line at most.
		if w.fd >= 0 {
			unix.Close(w.fd)
		}
		if w.fd = connect(); w.fd < 0 {
			return nil
		}
		_, err = unix.Write(w.fd, line)
	}
	return err
}

// Info logs an accepted login or a neutral event.
func (w *Writer) Info(msg string) error { return w.send(info, msg) }

// Warning logs a refusal.
func (w *Writer) Warning(msg string) error { return w.send(warning, msg) }

// Debug logs what the debug option adds.
func (w *Writer) Debug(msg string) error { return w.send(debug, msg) }

// SPDX-License-Identifier: Apache-2.0

// Command nullcheck is the floor that make bench measures pam_totp
// against: a Go program with nothing in it that pam_totp.so can start as
// its checker. It reads the request, asks for a code as pam-totp-check
// does (behind sshd that is a round trip to the client) and answers
// success, whatever the code. Built with
// -X main.sync=1 it also writes 64 bytes in place into a file in the
// user's home and fdatasyncs it: the least any checker must do to make a
// login's replay state durable. Never install it: it lets everyone in.
package main

import (
	"bytes"
	"io"
	"os"
	"syscall"
)

var sync string // "1": one in-place write and fdatasync

func main() {
	conn := os.Stdin
	var hdr [3]byte
	if _, err := io.ReadFull(conn, hdr[:]); err != nil || hdr[0] != 'Q' {
		os.Exit(1)
	}
	req := make([]byte, int(hdr[1])<<8|int(hdr[2]))
	if _, err := io.ReadFull(conn, req); err != nil {
		os.Exit(1)
	}
	const prompt = "Verification code: "
	conn.Write(append([]byte{'P', 0, byte(len(prompt))}, prompt...))
	if _, err := io.ReadFull(conn, hdr[:]); err != nil || hdr[0] != 'A' {
		os.Exit(1)
	}
	if _, err := io.ReadFull(conn, make([]byte, int(hdr[1])<<8|int(hdr[2]))); err != nil {
		os.Exit(1)
	}
	if sync == "1" {
		home := field(req, "home")
		f, err := os.OpenFile(home+"/.nullcheck", os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			os.Exit(1)
		}
		if _, err := f.WriteAt(make([]byte, 64), 0); err != nil || syscall.Fdatasync(int(f.Fd())) != nil {
			os.Exit(1)
		}
		f.Close()
	}
	conn.Write([]byte{'V', 0, 1, 'S'})
}

// field is the value of key in the request's NUL-separated key=value list.
func field(req []byte, key string) string {
	for _, kv := range bytes.Split(req, []byte{0}) {
		if k, v, ok := bytes.Cut(kv, []byte{'='}); ok && string(k) == key {
			return string(v)
		}
	}
	return ""
}

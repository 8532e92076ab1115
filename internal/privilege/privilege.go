// SPDX-License-Identifier: Apache-2.0

// Package privilege switches a process to a user for good before it touches
// that user's files, so that a user's home can never make root read or
// write something through a link or a swapped file.
package privilege

import (
	"fmt"
	"os"
	"syscall"
)

// Drop makes the process uid and gid, with gid as its only group. Go applies
// these calls to every thread of the process. It fails if the process cannot
// become that user; a process already running as uid keeps running.
func Drop(uid, gid int) error {
	if os.Geteuid() != 0 {
		if os.Geteuid() == uid && os.Getuid() == uid {
			return nil
		}
		return fmt.Errorf("running as uid %d, cannot act as uid %d", os.Geteuid(), uid)
	}
	if err := syscall.Setgroups([]int{gid}); err != nil {
		return fmt.Errorf("setgroups: %w", err)
	}
	if err := syscall.Setresgid(gid, gid, gid); err != nil {
		return fmt.Errorf("setresgid: %w", err)
	}
	if err := syscall.Setresuid(uid, uid, uid); err != nil {
		return fmt.Errorf("setresuid: %w", err)
	}
	if os.Getuid() != uid || os.Geteuid() != uid || os.Getgid() != gid || os.Getegid() != gid {
		return fmt.Errorf("still running as uid %d", os.Geteuid())
	}
	return nil
}

// As runs fn with the effective uid and gid of a user and its only group,
// and returns to root afterwards. The real and saved uid stay root, so the
// user can neither signal nor trace the process meanwhile (and the kernel
// marks it not dumpable). totp-enroll uses it to act in several users'
// homes in one run. If root cannot be restored, the process exits.
func As(uid, gid int, fn func() error) error {
	if os.Geteuid() != 0 {
		if os.Geteuid() == uid {
			return fn()
		}
		return fmt.Errorf("running as uid %d, cannot act as uid %d", os.Geteuid(), uid)
	}
	groups, err := syscall.Getgroups()
	if err != nil {
		return fmt.Errorf("getgroups: %w", err)
	}
	egid := os.Getegid()
	if err := syscall.Setgroups([]int{gid}); err != nil {
		return fmt.Errorf("setgroups: %w", err)
	}
	restore := func() {
		if syscall.Setresuid(-1, 0, -1) != nil || syscall.Setresgid(-1, egid, -1) != nil || syscall.Setgroups(groups) != nil {
			fmt.Fprintln(os.Stderr, "cannot return to root after acting as a user; stopping")
			os.Exit(1)
		}
	}
	if err := syscall.Setresgid(-1, gid, -1); err != nil {
		restore()
		return fmt.Errorf("setresgid: %w", err)
	}
	if err := syscall.Setresuid(-1, uid, -1); err != nil {
		restore()
		return fmt.Errorf("setresuid: %w", err)
	}
	defer restore()
	return fn()
}

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

// SPDX-License-Identifier: Apache-2.0

// Package store is where a user's enrollment lives, as the login path sees
// it: read it to decide how to prompt, hold it to decide, publish the
// charge, save. The login path (internal/check) calls only this interface
// and never knows which store it has. Three stores implement it: pam_totp's
// secret files and pam_google_authenticator's file (Files, through
// internal/secret), and the directory (internal/directory).
package store

import (
	"errors"
	"time"

	"pamtotp/internal/gafile"
	"pamtotp/internal/secret"
)

// ErrConflict means the enrollment changed after it was read: another
// login or an admin wrote it first. The caller reads it again and decides
// again. Files never return it, since they hold a lock for the whole
// decision; the directory has no locks and compares and swaps instead.
var ErrConflict = errors.New("the enrollment was changed by someone else meanwhile")

// ErrUnreachable means the store could not be reached at all (no server
// answered within the time-out). It is the only error after which
// fallback=local may check a local enrollment: a store that answered,
// even with "no" or with a broken entry, is never bypassed.
var ErrUnreachable = errors.New("the directory cannot be reached")

// An Account is one user's place in a store.
type Account interface {
	// Read returns the enrollment as it is now, without holding it, or
	// secret.ErrNotEnrolled. Logins use it to decide how to prompt.
	Read() (*secret.File, error)
	// Hold reads the enrollment for a decision. For files it takes the
	// enrollment's lock until Close; for the directory it remembers what
	// was read, so that every write compares and swaps against it.
	Hold() (Enrollment, error)
	// CreatePending writes an enrollment made at login, not yet active,
	// after asking still whether the user may still enroll.
	CreatePending(f *secret.File, st *secret.State, name string, still func() error) error
	// Activate makes a pending enrollment the user's, if still allows it
	// and the user has none: two first logins give one enrollment.
	Activate(name string, still func() error) error
	// Where names the enrollment for log lines and messages.
	Where() string
	// Close releases what the account holds (a connection).
	Close() error
}

// An Enrollment is held for one decision.
type Enrollment interface {
	Secret() *secret.File
	// State is the state as read. The caller changes only copies of it.
	State() *secret.State
	// Google is the pam_google_authenticator file the enrollment is, or
	// nil: its settings adjust the policy.
	Google() *gafile.File
	// Publish writes the charged state, the one a wrong code leaves,
	// where every later login sees it, before any code is compared.
	Publish(charged *secret.State) error
	// Save writes the state the decision leaves, durably; a login may
	// succeed only after it returns nil.
	Save(st *secret.State) error
	Close() error
}

// Opener opens a user's account in the directory that the configuration
// file at conf describes. The checker gives it to the login path, which
// never imports the directory's code. Connecting, to whichever server of
// the configuration answers, must be over by connectBy: the module waits
// for the first prompt only so long, and fallback=local needs time after it.
type Opener func(conf, user string, connectBy time.Time) (Account, error)

// Files is a user's enrollment in files: pam_totp's secret file and its
// state file, or a pam_google_authenticator file that holds both.
type Files struct {
	Path string
	Acc  secret.Access
}

func (f Files) Read() (*secret.File, error) { return secret.Read(f.Path, f.Acc) }

func (f Files) Hold() (Enrollment, error) {
	l, err := secret.Lock(f.Path, f.Acc)
	if err != nil {
		return nil, err
	}
	return heldFile{l}, nil
}

func (f Files) CreatePending(file *secret.File, st *secret.State, name string, still func() error) error {
	return secret.CreatePending(f.Path, f.Acc, file, st, name, still)
}

func (f Files) Activate(name string, still func() error) error {
	return secret.Activate(f.Path, f.Acc, name, still)
}

func (f Files) Where() string { return f.Path }
func (f Files) Close() error  { return nil }

// heldFile is a locked enrollment in files.
type heldFile struct{ l *secret.LockedEnrollment }

func (h heldFile) Secret() *secret.File                { return h.l.File }
func (h heldFile) State() *secret.State                { return h.l.State }
func (h heldFile) Google() *gafile.File                { return h.l.Google() }
func (h heldFile) Publish(charged *secret.State) error { return h.l.Publish(charged) }
func (h heldFile) Close() error                        { return h.l.Close() }

func (h heldFile) Save(st *secret.State) error {
	h.l.State = st
	return h.l.SaveState()
}

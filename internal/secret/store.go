// SPDX-License-Identifier: Apache-2.0

package secret

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"pamtotp/internal/gafile"
)

// ErrNotEnrolled means the secret file does not exist.
var ErrNotEnrolled = errors.New("no secret file")

// StatePath returns the state file that belongs to a secret file.
func StatePath(secretPath string) string { return secretPath + ".state" }

// Access says who must own a user's files and which permission bits they
// may have.
type Access struct {
	Owner     int    // the uid that owns the files
	AllowRoot bool   // root may own them too (no_strict_owner)
	Perm      uint32 // permission bits allowed; group and other write never are
}

// Owner is the usual access: files owned by uid, mode 0600 or stricter.
func Owner(uid int) Access { return Access{Owner: uid, Perm: 0o600} }

// openChecked opens path for reading without following a symlink and
// refuses anything but a small regular file owned as acc says with no
// permission bits beyond acc.Perm. O_NONBLOCK keeps a FIFO planted by a
// user from hanging the login.
func openChecked(path string, acc Access) (*os.File, error) { return openCheckedWith(path, acc, 0) }

// openCheckedWith is openChecked with more open(2) flags: O_CREAT makes a
// missing file, mode 0600, as the caller's uid.
func openCheckedWith(path string, acc Access, flags int) (*os.File, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC|unix.O_NOCTTY|flags, 0o600)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil, fs.ErrNotExist
		}
		if errors.Is(err, unix.ELOOP) {
			return nil, fmt.Errorf("%s is a symbolic link", path)
		}
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	f := os.NewFile(uintptr(fd), path)
	if _, err := checkFile(f, acc); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// checkFile refuses what openChecked refuses, and returns the file's size.
func checkFile(f *os.File, acc Access) (int64, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return 0, fmt.Errorf("stat %s: %w", f.Name(), err)
	}
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		return 0, fmt.Errorf("%s is not a regular file", f.Name())
	case int(st.Uid) != acc.Owner && !(acc.AllowRoot && st.Uid == 0):
		return 0, fmt.Errorf("%s is owned by uid %d, not %d", f.Name(), st.Uid, acc.Owner)
	case st.Mode&^(acc.Perm&^0o022)&0o7777 != 0:
		return 0, fmt.Errorf("%s has mode %04o: allowed are at most %04o", f.Name(), st.Mode&0o7777, acc.Perm&^0o022)
	case st.Size > MaxFileSize:
		return 0, fmt.Errorf("%s is larger than %d bytes", f.Name(), MaxFileSize)
	}
	return st.Size, nil
}

func readBounded(f *os.File) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", f.Name(), err)
	}
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("%s is larger than %d bytes", f.Name(), MaxFileSize)
	}
	return data, nil
}

// CheckStoreDir refuses a store whose directory someone other than its
// owner (root, or the account of user=) could change: there a user could
// plant a hard link to a file of the owner, or swap files between our
// checks and our reads.
func CheckStoreDir(path string, owner int) error {
	dir := filepath.Dir(path)
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return fmt.Errorf("store directory %s: %w", dir, err)
	}
	if (int(st.Uid) != owner && st.Uid != 0) || st.Mode&0o022 != 0 {
		return fmt.Errorf("store directory %s must be owned by uid %d or root and writable by its owner only", dir, owner)
	}
	return nil
}

// Read opens, checks and parses a secret file without locking it. Logins use
// it to decide how to prompt; the decision itself is made under Lock.
func Read(path string, acc Access) (*File, error) {
	f, err := openChecked(path, acc)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNotEnrolled
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	file, _, err := parseOpen(f, path)
	return file, err
}

// ReadState reads and parses the state file of the secret file at path
// without locking, with the same checks as a login (no symlink, a small
// regular file owned as acc says). A missing state file is an empty state.
func ReadState(path string, acc Access) (*State, error) {
	st, _, err := readState(path, acc)
	return st, err
}

// readState also returns where the state file's records are.
func readState(path string, acc Access) (*State, slots, error) {
	f, err := openChecked(StatePath(path), acc)
	if errors.Is(err, fs.ErrNotExist) {
		return NewState(), slots{cur: -1}, nil
	}
	if err != nil {
		return nil, slots{}, err
	}
	defer f.Close()
	data, err := readBounded(f)
	if err != nil {
		return nil, slots{}, err
	}
	st, at, err := decodeState(data)
	if err != nil {
		return nil, slots{}, fmt.Errorf("%s: %w", StatePath(path), err)
	}
	return st, at, nil
}

// DecodeState parses a state file's content, in slots or as text.
func DecodeState(data []byte) (*State, error) {
	st, _, err := decodeState(data)
	return st, err
}

// RecordSequence is the sequence number of a state file's current record:
// how many records were written into it since it was created.
func RecordSequence(data []byte) (uint64, error) {
	if !isSlotted(data) {
		return 0, errors.New("not a state file in slots")
	}
	_, at, err := decodeSlots(data)
	return at.seq, err
}

func decodeState(data []byte) (*State, slots, error) {
	at := slots{cur: -1}
	if isSlotted(data) {
		var err error
		if data, at, err = decodeSlots(data); err != nil {
			return nil, slots{}, err
		}
	}
	st, err := ParseState(data)
	if err != nil {
		return nil, slots{}, err
	}
	return st, at, nil
}

// EncodeState is a new state file holding st: a record in slots, or the
// text alone if st is too large for a slot.
func EncodeState(st *State, f *File) []byte { return encodeState(1, st.Marshal(f)) }

func encodeState(seq uint64, payload []byte) []byte {
	if img := image(seq, payload); img != nil {
		return img
	}
	return payload
}

// parseOpen reads and parses an opened, checked secret file, in pam_totp's
// format or pam_google_authenticator's.
func parseOpen(f *os.File, path string) (*File, *google, error) {
	data, err := readBounded(f)
	if err != nil {
		return nil, nil, err
	}
	if gafile.Looks(data) {
		fi, err := f.Stat()
		if err != nil {
			return nil, nil, fmt.Errorf("stat %s: %w", path, err)
		}
		g, err := parseGoogle(data, fi.Mode().Perm())
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", path, err)
		}
		return g.file, g, nil
	}
	file, err := ParseFile(data)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return file, nil, nil
}

// LockedEnrollment is an enrollment opened under an exclusive lock: the secret, the
// state, and the right to write the state. Close releases the lock.
type LockedEnrollment struct {
	Path   string
	File   *File
	State  *State
	acc    Access
	lock   *os.File
	google *google
	slots  slots    // where the state file's records are (pam_totp's format)
	state  *os.File // the state file, opened for writing at the first record
	// published: a state was written without waiting for the disk, and
	// SaveState must write one that is durable.
	published bool
}

// Lock opens the secret file at path, takes an exclusive lock on it and reads
// the secret and the state. The lock is on the secret file, which logins
// never replace; totp-enroll replaces it only while holding the same lock, and
// Lock notices a replacement and locks the new file instead.
//
// A lock held longer than LockTimeout (by a stopped process, or by a user
// holding their own file) gives ErrBusy instead of a hang.
func Lock(path string, acc Access) (*LockedEnrollment, error) {
	return LockBy(path, acc, time.Now().Add(LockTimeout))
}

// LockBy is Lock with a deadline of the caller's: a command that reads
// many enrollments waits once in all, not LockTimeout for each.
func LockBy(path string, acc Access, deadline time.Time) (*LockedEnrollment, error) {
	for attempt := 0; attempt < 10; attempt++ {
		f, err := openChecked(path, acc)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, ErrNotEnrolled
		}
		if err != nil {
			return nil, err
		}
		if err := lockWithin(f, deadline); err != nil {
			f.Close()
			return nil, fmt.Errorf("locking %s: %w", path, err)
		}
		if !samePath(f, path) {
			f.Close() // replaced while we waited: lock the new one
			continue
		}
		a, err := load(f, path, acc)
		if err != nil {
			f.Close()
			return nil, err
		}
		return a, nil
	}
	return nil, fmt.Errorf("locking %s: the file keeps being replaced", path)
}

// LockTimeout is how long Lock waits for another holder of the lock. A
// login holds it for milliseconds; the module's own timeout is 10 s.
const LockTimeout = 5 * time.Second

// ErrBusy means another process held an enrollment's lock for LockTimeout.
var ErrBusy = errors.New("held by another process for too long (a login in progress, or a stopped process)")

// lockWithin takes an exclusive flock before deadline. flock(2) cannot be
// given a timeout, so it polls without blocking.
func lockWithin(f *os.File, deadline time.Time) error {
	wait := time.Millisecond
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if !errors.Is(err, unix.EWOULDBLOCK) {
			return err
		}
		if time.Now().After(deadline) {
			return ErrBusy
		}
		time.Sleep(wait)
		wait = min(2*wait, 20*time.Millisecond)
	}
}

func samePath(f *os.File, path string) bool {
	var a, b unix.Stat_t
	if unix.Fstat(int(f.Fd()), &a) != nil || unix.Lstat(path, &b) != nil {
		return false
	}
	return a.Dev == b.Dev && a.Ino == b.Ino
}

func load(f *os.File, path string, acc Access) (*LockedEnrollment, error) {
	file, g, err := parseOpen(f, path)
	if err != nil {
		return nil, err
	}
	if g != nil {
		return &LockedEnrollment{Path: path, File: file, State: g.state, acc: acc, lock: f, google: g}, nil
	}
	state, at, err := readState(path, acc)
	if err != nil {
		return nil, err
	}
	return &LockedEnrollment{Path: path, File: file, State: state, acc: acc, lock: f, slots: at}, nil
}

// Publish writes st where the next login sees it, before the caller
// compares a code: a checker killed after Publish returns cannot take the
// write back. It does not wait for the disk; the SaveState that ends every
// login does.
func (a *LockedEnrollment) Publish(st *State) error {
	a.published = true
	return a.save(st, false)
}

// SaveState writes the state durably; the login may only succeed after it returns nil.
func (a *LockedEnrollment) SaveState() error { return a.save(a.State, true) }

func (a *LockedEnrollment) save(st *State, durable bool) error {
	if a.google == nil {
		return a.writeState(st, durable)
	}
	data, changed := a.google.update(st)
	if !changed && !(durable && a.published) {
		return nil
	}
	// The state is in the secret file itself: it is replaced, under the
	// lock, and keeps its mode (pam_google_authenticator does the same).
	if err := a.replace(a.Path, data, a.google.mode, durable); err != nil {
		return err
	}
	g, err := parseGoogle(data, a.google.mode)
	if err != nil {
		return fmt.Errorf("%s: %w", a.Path, err)
	}
	a.google = g
	return nil
}

// replace puts data at path while the lock is held, by a synced temporary
// file and a rename; durable also syncs the directory. No one else writes
// then, so the temporary file can have a fixed name: a checker killed
// mid-write leaves at most that one file behind, and the next login
// replaces it. When path is the locked file itself (a
// pam_google_authenticator file holds its own state), the new file is
// locked before it takes the old one's place, so that a login opening the
// path meanwhile waits for us instead of reading a half-decided state.
func (a *LockedEnrollment) replace(path string, data []byte, mode os.FileMode, durable bool) (err error) {
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing %s: %w", tmp, err)
	}
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("creating %s: %w", tmp, err)
	}
	relock, renamed := path == a.Path, false
	defer func() {
		switch {
		case !renamed:
			f.Close()
			os.Remove(tmp)
		case !relock:
			if cerr := f.Close(); err == nil && cerr != nil {
				err = fmt.Errorf("closing %s: %w", path, cerr)
			}
		}
	}()
	if mode != 0o600 {
		// After creation, so the umask does not narrow it.
		if err := f.Chmod(mode); err != nil {
			return fmt.Errorf("chmod %s: %w", tmp, err)
		}
	}
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("writing %s: %w", tmp, err)
	}
	// Always, also for a charge: a rename can reach the disk before the
	// data it names (ext4 with noauto_da_alloc, XFS), and after a crash
	// the file would be empty, its secret lost. Synced first, the file is
	// the old one or the whole new one at any moment. Only the directory's
	// sync, which makes the new one the one that stays, waits for SaveState.
	if err := f.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", tmp, err)
	}
	if relock {
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			return fmt.Errorf("locking %s: %w", tmp, err)
		}
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("replacing %s: %w", path, err)
	}
	renamed = true
	if relock {
		// Logins waiting on the old file wake, see it replaced and wait on this one.
		a.lock.Close()
		a.lock = f
	}
	if durable {
		return syncDir(filepath.Dir(path))
	}
	return nil
}

// writeState writes st as the next record of the state file, in place,
// with one fdatasync when durable. A file that is missing, in the old text
// format, or whose slots st has outgrown is replaced by a new one instead,
// durably even for a charge: it happens once, and the record in it must not
// be the only one when the next write overwrites it in place.
func (a *LockedEnrollment) writeState(st *State, durable bool) error {
	payload := st.Marshal(a.File)
	path := StatePath(a.Path)
	if a.slots.size > 0 && slotHeader+len(payload) <= a.slots.size {
		return a.writeSlot(path, payload, durable)
	}
	seq := a.slots.seq + 1
	data := encodeState(seq, payload)
	if a.state != nil {
		a.state.Close() // the file it is open on is being replaced
		a.state = nil
	}
	if err := a.replace(path, data, 0o600, true); err != nil {
		return err
	}
	a.slots = slots{cur: -1}
	if isSlotted(data) {
		a.slots = slots{size: len(data) / 2, cur: 0, seq: seq, durable: true}
	}
	return nil
}

// writeSlot writes one record into the slot its turn gives (slots.next).
// The file is opened and checked once per lock: a login's charge and its
// final record go through the same descriptor.
func (a *LockedEnrollment) writeSlot(path string, payload []byte, durable bool) error {
	if a.state == nil {
		fd, err := unix.Open(path, unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
		if err != nil {
			return fmt.Errorf("opening %s: %w", path, err)
		}
		f := os.NewFile(uintptr(fd), path)
		size, err := checkFile(f, a.acc)
		if err == nil && size != int64(2*a.slots.size) {
			err = fmt.Errorf("%s changed size while locked", path)
		}
		if err != nil {
			f.Close()
			return err
		}
		a.state = f
	}
	i := a.slots.next()
	if _, err := a.state.WriteAt(record(a.slots.seq+1, durable, payload), int64(i*a.slots.size)); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if durable {
		if err := unix.Fdatasync(int(a.state.Fd())); err != nil {
			return fmt.Errorf("syncing %s: %w", path, err)
		}
	}
	a.slots.cur, a.slots.seq, a.slots.durable = i, a.slots.seq+1, durable
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("opening %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", dir, err)
	}
	return nil
}

// Close releases the lock.
func (a *LockedEnrollment) Close() error {
	if a.state != nil {
		a.state.Close()
	}
	return a.lock.Close()
}

// Google is the pam_google_authenticator file the enrollment was read
// from, whose lines also hold its state; nil for pam_totp's own format.
func (a *LockedEnrollment) Google() *gafile.File {
	if a.google == nil {
		return nil
	}
	return a.google.ga
}

// WriteAtomic replaces path with data: a temporary file in the same directory,
// written and fsynced, renamed over path, then the directory fsynced. Readers
// see the old file or the new one, never a part. With replace false it fails
// if path exists. The file gets mode 0600 and the caller's uid: callers that
// write into a user's home have become that user first.
func WriteAtomic(path string, data []byte, replace bool) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("creating temporary file in %s: %w", dir, err)
	}
	return commit(tmp, path, data, replace)
}

// commit writes data to the new temporary file tmp and puts it in place of
// path, durably; on any error tmp is removed.
func commit(tmp *os.File, path string, data []byte, replace bool) (err error) {
	dir := filepath.Dir(path)
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err = tmp.Write(data); err != nil {
		return fmt.Errorf("writing %s: %w", tmp.Name(), err)
	}
	if err = tmp.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", tmp.Name(), err)
	}
	if err = tmp.Close(); err != nil {
		return fmt.Errorf("closing %s: %w", tmp.Name(), err)
	}
	if replace {
		err = os.Rename(tmp.Name(), path)
	} else {
		// link(2) fails if path exists, so two enrollments cannot both win.
		if err = os.Link(tmp.Name(), path); err == nil {
			os.Remove(tmp.Name())
		}
	}
	if err != nil {
		return fmt.Errorf("replacing %s: %w", path, err)
	}
	return syncDir(dir)
}

// LockPath is the enrollment lock of the secret file at path. An
// enrollment is created only while it is held, and only after the holder
// has found the user unenrolled: there is no secret file yet to lock, and
// two enrollments (totp-enroll, a login with enroll=login) must not both
// write the state.
func LockPath(path string) string { return path + ".lock" }

// lockEnrollment takes the enrollment lock of path, creating the lock file
// if needed, with the same checks as every file of the enrollment.
func lockEnrollment(path string, acc Access) (*os.File, error) {
	lp := LockPath(path)
	f, err := openCheckedWith(lp, acc, unix.O_CREAT)
	if err != nil {
		return nil, err
	}
	if err := lockWithin(f, time.Now().Add(LockTimeout)); err != nil {
		f.Close()
		return nil, fmt.Errorf("locking %s: %w", lp, err)
	}
	return f, nil
}

// Create writes a new enrollment under the enrollment lock: the state,
// then the secret file. With force false it refuses when the user is
// enrolled. With force true an existing enrollment is replaced while its
// own lock is held too, so that no login decides on it meanwhile. A nil
// st keeps the state file that is there (it may hold a lockout), or
// starts an empty one.
func Create(path string, acc Access, f *File, st *State, force bool) error {
	data := f.Marshal()
	if _, err := ParseFile(data); err != nil {
		return fmt.Errorf("refusing to write an invalid file: %w", err)
	}
	l, err := lockEnrollment(path, acc)
	if err != nil {
		return err
	}
	defer l.Close()
	old, err := Lock(path, acc)
	switch {
	case errors.Is(err, ErrNotEnrolled):
		old = nil
	case err != nil && !force:
		return err
	case err != nil:
		old = nil // a broken or foreign file: --force replaces it without its lock
	case !force:
		old.Close()
		return fmt.Errorf("%s exists: the user is enrolled (use --force to replace)", path)
	}
	if old != nil {
		defer old.Close()
	}
	if st != nil {
		err = WriteAtomic(StatePath(path), EncodeState(st, f), true)
	} else if err = WriteAtomic(StatePath(path), EncodeState(NewState(), f), false); errors.Is(err, fs.ErrExist) {
		err = nil
	}
	if err != nil {
		return err
	}
	if err := WriteAtomic(path, data, old != nil || force); err != nil {
		return err
	}
	removePending(path)
	return nil
}

// PendingPath is where an enrollment made at login waits, under a random
// name, until the login as a whole has succeeded; its state waits at
// StatePath(PendingPath(...)). Neither is the enrollment's until Activate.
func PendingPath(path, name string) string { return path + ".pending-" + name }

// CreatePending writes an enrollment that is not yet active, and nothing
// of the enrollment's own files: a login parked at its prompt must not be
// able to touch an enrollment made meanwhile. Under the enrollment lock it
// asks still whether the user may still enroll, and removes the pending
// enrollments of earlier logins that never completed, so that failed
// logins cannot fill the store.
func CreatePending(path string, acc Access, f *File, st *State, name string, still func() error) error {
	data := f.Marshal()
	if _, err := ParseFile(data); err != nil {
		return fmt.Errorf("refusing to write an invalid file: %w", err)
	}
	l, err := lockEnrollment(path, acc)
	if err != nil {
		return err
	}
	defer l.Close()
	if err := still(); err != nil {
		return err
	}
	removePending(path)
	p := PendingPath(path, name)
	if err := WriteAtomic(StatePath(p), EncodeState(st, f), false); err != nil {
		return err
	}
	return WriteAtomic(p, data, false)
}

// Activate makes the pending enrollment name the enrollment at path. Under
// the enrollment lock it asks still whether the user may enroll now (not
// enrolled meanwhile, by any file the module reads; the policy still
// allows it), and only then writes the state and the secret. It never
// changes an existing enrollment or its state.
func Activate(path string, acc Access, name string, still func() error) error {
	l, err := lockEnrollment(path, acc)
	if err != nil {
		return err
	}
	defer l.Close()
	if err := still(); err != nil {
		return err
	}
	// Whatever still said: every writer of path holds this lock, so a
	// path absent now stays absent until the link below.
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s exists: the user is enrolled", path)
	}
	pending := PendingPath(path, name)
	f, err := openChecked(pending, acc)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("no pending enrollment %s", pending)
	}
	if err != nil {
		return err
	}
	defer f.Close()
	file, _, err := parseOpen(f, pending)
	if err != nil {
		return err
	}
	st, _, err := readState(pending, acc)
	if err != nil {
		return err
	}
	if err := WriteAtomic(StatePath(path), EncodeState(st, file), true); err != nil {
		return err
	}
	if err := os.Link(pending, path); err != nil {
		return fmt.Errorf("activating %s: %w", pending, err)
	}
	removePending(path)
	return syncDir(filepath.Dir(path))
}

// removePending removes the pending enrollments of path: those of logins
// that did not complete, and, once the user is enrolled, all of them (none
// can be activated then). Callers hold the enrollment lock.
func removePending(path string) {
	dir, prefix := filepath.Dir(path), filepath.Base(PendingPath(path, ""))
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

// Update changes an existing enrollment under the lock that logins take,
// and writes the state and then the secret file.
func Update(path string, acc Access, change func(*File, *State) error) error {
	a, err := Lock(path, acc)
	if err != nil {
		return err
	}
	defer a.Close()
	if a.google != nil {
		return fmt.Errorf("%s is a pam_google_authenticator file: convert it with totp-enroll migrate first", path)
	}
	if err := change(a.File, a.State); err != nil {
		return err
	}
	data := a.File.Marshal()
	if _, err := ParseFile(data); err != nil {
		return fmt.Errorf("refusing to write an invalid file: %w", err)
	}
	if err := a.replace(StatePath(path), encodeState(a.slots.seq+1, a.State.Marshal(a.File)), 0o600, true); err != nil {
		return err
	}
	return WriteAtomic(path, data, true)
}

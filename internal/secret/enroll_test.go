// SPDX-License-Identifier: Apache-2.0

package secret

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"pamtotp/internal/otp"
)

func allow() error { return nil }

func testFile() *File {
	return &File{Tokens: []Token{{Name: "default", Type: TOTP, Key: []byte("12345678901234567890"), Params: otp.DefaultParams}}}
}

// An enrollment made at login writes only its own pending files, and
// becomes the enrollment only if the caller's check, made under the
// enrollment lock, still allows it.
func TestPendingAndActivate(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "alice")
	acc := Owner(os.Getuid())
	st := NewState()
	st.Failures = 3 // what the pending state carries, to recognise it
	if err := CreatePending(path, acc, testFile(), st, "aa", allow); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(StatePath(path)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("CreatePending touched the enrollment's state file: %v", err)
	}
	refused := errors.New("enrolled meanwhile")
	if err := Activate(path, acc, "aa", func() error { return refused }); !errors.Is(err, refused) {
		t.Fatalf("Activate with a refusing check: %v", err)
	}
	for _, p := range []string{path, StatePath(path)} {
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("a refused activation wrote %s", p)
		}
	}
	if err := Activate(path, acc, "aa", func() error { return nil }); err != nil {
		t.Fatal(err)
	}
	got, err := ReadState(path, acc)
	if err != nil || got.Failures != 3 {
		t.Fatalf("the activated state: %+v, %v (want the pending one)", got, err)
	}
	if left, _ := filepath.Glob(PendingPath(path, "*")); len(left) != 0 {
		t.Fatalf("pending files left: %v", left)
	}
	// A second pending enrollment cannot replace the first, even if the check says yes.
	if err := CreatePending(path, acc, testFile(), NewState(), "bb", allow); err != nil {
		t.Fatal(err)
	}
	if err := Activate(path, acc, "bb", func() error { return nil }); err == nil {
		t.Fatal("a second activation replaced an enrollment")
	}
	if got, _ := ReadState(path, acc); got.Failures != 3 {
		t.Fatalf("a failed activation changed the state: %+v", got)
	}
}

// Create refuses an existing enrollment without force, and writes nothing then.
func TestCreateRefusesAnEnrollment(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bob")
	acc := Owner(os.Getuid())
	if err := Create(path, acc, testFile(), NewState(), false); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(StatePath(path))
	st := NewState()
	st.Failures = 7
	if err := Create(path, acc, testFile(), st, false); err == nil {
		t.Fatal("Create without force replaced an enrollment")
	}
	if after, _ := os.ReadFile(StatePath(path)); string(after) != string(before) {
		t.Fatal("a refused Create changed the state")
	}
	if err := Create(path, acc, testFile(), st, true); err != nil {
		t.Fatal(err)
	}
	if got, _ := ReadState(path, acc); got.Failures != 7 {
		t.Fatalf("Create with force: state %+v", got)
	}
}

// Logins that enroll and then fail (a later module refuses) leave at most
// one pending enrollment of a file, whoever makes them.
func TestPendingIsBounded(t *testing.T) {
	path := filepath.Join(t.TempDir(), "carol")
	acc := Owner(os.Getuid())
	for _, name := range []string{"a1", "a2", "a3"} {
		if err := CreatePending(path, acc, testFile(), NewState(), name, allow); err != nil {
			t.Fatal(err)
		}
	}
	left, _ := filepath.Glob(PendingPath(path, "*"))
	if len(left) != 2 || left[0] != PendingPath(path, "a3") || left[1] != StatePath(PendingPath(path, "a3")) {
		t.Fatalf("pending files: %v, want only the last one's secret and state", left)
	}
	refused := errors.New("enrolled meanwhile")
	if err := CreatePending(path, acc, testFile(), NewState(), "a4", func() error { return refused }); !errors.Is(err, refused) {
		t.Fatalf("CreatePending with a refusing check: %v", err)
	}
	if _, err := os.Lstat(PendingPath(path, "a4")); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("a refused CreatePending wrote its file")
	}
}

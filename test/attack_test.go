// SPDX-License-Identifier: Apache-2.0

package test

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/msteinert/pam/v2"
)

func fileHash(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// What a user can plant in their home to make the checker read or write
// something it should not: each is refused, without a hang, and the root
// file it points at is left unchanged.
func TestPAMAttacksFromHome(t *testing.T) {
	needRoot(t, "oathtool", "openssl")
	dir := service(t, module("required"))
	// A root-owned 0600 file on the same file system as the homes, so that
	// a hard link to it is possible.
	target := filepath.Join(workDir, "root-secret")
	if err := os.WriteFile(target, []byte("pam_totp 1\ntoken x type=totp secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		plant func(u *user) error
		log   string
	}{
		{"secret is a hard link to a root file", func(u *user) error {
			return os.Link(target, filepath.Join(u.home, ".pam_totp"))
		}, "permission denied|owned by uid 0"},
		{"state is a symlink to /etc/shadow", func(u *user) error {
			return os.Symlink("/etc/shadow", filepath.Join(u.home, ".pam_totp.state"))
		}, "symbolic link"},
		{"state is a hard link to a root file", func(u *user) error {
			return os.Link(target, filepath.Join(u.home, ".pam_totp.state"))
		}, "permission denied|owned by uid 0"},
		{"state is a FIFO", func(u *user) error {
			return mknodAs(u, filepath.Join(u.home, ".pam_totp.state"), syscall.S_IFIFO|0o600, 0)
		}, "not a regular file"},
		{"secret is a character device", func(u *user) error { // /dev/null's numbers
			return mknodAs(u, filepath.Join(u.home, ".pam_totp"), syscall.S_IFCHR|0o600, 1<<8|3)
		}, "not a regular file"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			u := newUser(t)
			if tc.name[:5] == "state" {
				enroll(t, u)
				// The user replaces the state file enrollment wrote.
				os.Remove(filepath.Join(u.home, ".pam_totp.state"))
			}
			if err := tc.plant(u); err != nil {
				t.Fatal(err)
			}
			shadow, root := fileHash(t, "/etc/shadow"), fileHash(t, target)
			m := syslogs.mark()
			answer := "123456"
			if u.secret != "" {
				answer = code(t, u.secret, 0) // even the right code must not get in
			}
			start := time.Now()
			if err := authenticate(t, dir, u.name, &conv{answers: []string{answer}}); !errors.Is(err, pam.ErrAuth) {
				t.Fatalf("%v, want ErrAuth", err)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Fatalf("took %v", d)
			}
			expectLog(t, m, `user=`+u.name+`.*outcome=fail reason=.*(`+tc.log+`)`)
			if fileHash(t, "/etc/shadow") != shadow || fileHash(t, target) != root {
				t.Fatal("a root-owned file changed")
			}
		})
	}
}

// 50 parallel logins of one user with one code: exactly one succeeds. 200
// parallel logins of distinct users: all succeed.
func TestPAMRaces(t *testing.T) {
	needRoot(t, "oathtool", "openssl")
	dir := service(t, module("required", "deny=0"))
	u := newUser(t)
	enroll(t, u)
	good := code(t, u.secret, 0)
	var mu sync.Mutex
	ok := 0
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if authenticate(t, dir, u.name, &conv{answers: []string{good}}) == nil {
				mu.Lock()
				ok++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if ok != 1 {
		t.Fatalf("%d of 50 parallel logins with one code succeeded, want exactly 1", ok)
	}

	users := make([]*user, 200)
	codes := make([]string, len(users))
	for i := range users {
		users[i] = newUser(t)
		enroll(t, users[i])
		codes[i] = code(t, users[i].secret, 0)
	}
	errs := make(chan error, len(users))
	for i := range users {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if err := authenticate(t, dir, users[i].name, &conv{answers: []string{codes[i]}}); err != nil {
				errs <- fmt.Errorf("%s: %v", users[i].name, err)
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// totp-enroll --force replacing the secret again and again while logins
// run: every login sees the old file or the new one, never a mixed or
// broken one, and none hangs.
func TestPAMEnrollmentDuringLogins(t *testing.T) {
	needRoot(t, "oathtool", "openssl")
	u := newUser(t)
	enroll(t, u)
	secrets := []string{u.secret, newSecret(t)}
	dir := service(t, module("required", "deny=0"))
	stop := make(chan struct{})
	enrolled := make(chan error, 1)
	go func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				enrolled <- nil
				return
			default:
			}
			out, err := exec.Command(filepath.Join(libDir, "totp-enroll"), "--user", u.name, "--secret", secrets[i%2],
				"--force", "--no-confirm", "--qr", "none").CombinedOutput()
			if err != nil {
				enrolled <- fmt.Errorf("totp-enroll: %v %s", err, out)
				return
			}
		}
	}()
	m := syslogs.mark()
	var wg sync.WaitGroup
	for i := 0; i < 100; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			authenticate(t, dir, u.name, &conv{answers: []string{code(t, secrets[i%2], 0)}})
		}(i)
	}
	wg.Wait()
	close(stop)
	if err := <-enrolled; err != nil {
		t.Fatal(err)
	}
	decisions := 0
	for _, line := range syslogs.since(m) {
		if !strings.Contains(line, "user="+u.name+" ") {
			continue
		}
		decisions++
		if !regexp.MustCompile(`outcome=(ok|fail reason=("bad code"|replay))`).MatchString(line) {
			t.Errorf("a login saw something other than a whole file: %s", line)
		}
	}
	if decisions < 100 {
		t.Fatalf("only %d decisions logged for 100 logins", decisions)
	}
}

// The secret file swapped between a real file and a symlink to /etc/shadow
// while logins with the right code run. Every decision must be one the real
// file or the refused link explains (accepted, replay, symbolic link, or the
// file kept being replaced while the login waited to lock it), never a read
// through the link, a missing file or a hang; both sides of the swap must be
// seen, or the test proved nothing.
func TestPAMSecretSwappedDuringLogins(t *testing.T) {
	needRoot(t, "oathtool", "openssl")
	u := newUser(t)
	enroll(t, u)
	path := filepath.Join(u.home, ".pam_totp")
	real := path + ".real"
	if err := os.Link(path, real); err != nil {
		t.Fatal(err)
	}
	shadow := fileHash(t, "/etc/shadow")
	dir := service(t, module("required", "deny=0"))
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tmp := path + ".swap"
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			// A hard link of the real file or a symlink, renamed over the
			// secret: the swap a user can do in their home.
			os.Remove(tmp)
			if i%2 == 1 {
				os.Symlink("/etc/shadow", tmp)
			} else {
				os.Link(real, tmp)
			}
			os.Rename(tmp, path)
			time.Sleep(time.Duration(i%3) * 100 * time.Microsecond)
		}
	}()
	m := syslogs.mark()
	good := code(t, u.secret, 0)
	for i := 0; i < 60; i++ {
		start := time.Now()
		authenticate(t, dir, u.name, &conv{answers: []string{good}})
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("login %d took %v", i, d)
		}
	}
	close(stop)
	<-done
	allowed := regexp.MustCompile(`outcome=(ok reason=|fail reason=(replay$|".*(symbolic link|keeps being replaced)))`)
	seen := map[bool]int{}
	for _, line := range syslogs.since(m) {
		if !strings.Contains(line, "user="+u.name+" ") {
			continue
		}
		if !allowed.MatchString(line) {
			t.Errorf("a decision the swap does not explain: %s", line)
		}
		seen[strings.Contains(line, "symbolic link")]++
	}
	if seen[true] == 0 || seen[false] == 0 {
		t.Fatalf("decisions through the link %d, through the real file %d: the swap was not exercised", seen[true], seen[false])
	}
	if fileHash(t, "/etc/shadow") != shadow {
		t.Fatal("/etc/shadow changed")
	}
}

// The secret's directory replaced by a symlink into a root-only directory
// that holds a valid secret: the checker, running as the user, cannot follow
// it there, so the login fails even with that secret's right code.
func TestPAMSecretDirectoryIsASymlink(t *testing.T) {
	needRoot(t, "oathtool", "openssl")
	u := newUser(t)
	rootDir := filepath.Join(workDir, "root-only")
	if err := os.MkdirAll(rootDir, 0o700); err != nil {
		t.Fatal(err)
	}
	key := newSecret(t)
	file := fmt.Sprintf("pam_totp 1\ntoken x type=totp secret=%s\n", key)
	if err := os.WriteFile(filepath.Join(rootDir, "pam_totp"), []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(rootDir, filepath.Join(u.home, ".config")); err != nil {
		t.Fatal(err)
	}
	dir := service(t, module("required", "secret=%h/.config/pam_totp"))
	m := syslogs.mark()
	if err := authenticate(t, dir, u.name, &conv{answers: []string{code(t, key, 0)}}); !errors.Is(err, pam.ErrAuth) {
		t.Fatalf("%v, want ErrAuth", err)
	}
	expectLog(t, m, `user=`+u.name+`.*outcome=fail reason=.*permission denied`)
}

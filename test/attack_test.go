package test

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
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
			p := filepath.Join(u.home, ".pam_totp.state")
			if err := syscall.Mkfifo(p, 0o600); err != nil {
				return err
			}
			return os.Chown(p, u.uid, u.gid)
		}, "not a regular file"},
		{"secret is a character device", func(u *user) error {
			p := filepath.Join(u.home, ".pam_totp")
			if err := syscall.Mknod(p, syscall.S_IFCHR|0o600, 1<<8|3); err != nil { // /dev/null's numbers
				return err
			}
			return os.Chown(p, u.uid, u.gid)
		}, "not a regular file"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			u := newUser(t)
			if tc.name[:5] == "state" {
				enroll(t, u)
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

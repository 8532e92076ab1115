// SPDX-License-Identifier: Apache-2.0

package test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/msteinert/pam/v2"
)

// enrollCmd runs the real totp-enroll as root; one that runs for a minute
// has hung (on a user's planted file, say), and fails the test.
func enrollCmd(t testing.TB, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, filepath.Join(libDir, "totp-enroll"), args...).CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("totp-enroll %q hung for a minute:\n%s", args, out)
	}
	return string(out), err
}

func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

func ownedBy(t *testing.T, path string, uid int) {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Lstat(path, &st); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if int(st.Uid) != uid || st.Mode&0o077 != 0 || st.Mode&syscall.S_IFMT != syscall.S_IFREG {
		t.Fatalf("%s: uid %d mode %o, want a regular file of uid %d with no group or other bits", path, st.Uid, st.Mode, uid)
	}
}

func TestMigrateTOTP(t *testing.T) {
	needGoogle(t)
	u := newUser(t)
	gaPath := gaEnroll(t, u, "-t", "-d", "-u", "-w", "3", "-e", "3")
	ga := service(t, "auth required pam_google_authenticator.so")
	waitForFreshStep(30, 12)
	used := code(t, u.secret, 0)
	if err := authenticate(t, ga, u.name, &conv{answers: []string{used}}); err != nil {
		t.Fatalf("old module: %v", err)
	}
	if err := authenticate(t, ga, u.name, &conv{answers: []string{u.scratch[0]}}); err != nil {
		t.Fatalf("old module, scratch: %v", err)
	}
	before, _ := os.ReadFile(gaPath)

	out, err := enrollCmd(t, "migrate", "--user", u.name, "--dry-run")
	if err != nil || !strings.Contains(out, "would migrate 1, failed 0") || !strings.Contains(out, "2 scratch codes") {
		t.Fatalf("dry run: %v\n%s", err, out)
	}
	if _, err := os.Lstat(filepath.Join(u.home, ".pam_totp")); err == nil {
		t.Fatal("the dry run wrote a file")
	}
	out, err = enrollCmd(t, "migrate", "--user", u.name)
	if err != nil || !strings.Contains(out, "migrated 1, failed 0") {
		t.Fatalf("migrate: %v\n%s", err, out)
	}
	ownedBy(t, filepath.Join(u.home, ".pam_totp"), u.uid)
	ownedBy(t, filepath.Join(u.home, ".pam_totp.state"), u.uid)
	// The replay state came over, and status says the token was used.
	if out := mustEnroll(t, "--user", u.name, "status"); strings.Contains(out, "last used never") || !strings.Contains(out, "last used 20") {
		t.Fatalf("status after migrate does not show the use carried over:\n%s", out)
	}
	if after, _ := os.ReadFile(gaPath); string(after) != string(before) {
		t.Fatal("migrate changed the old file")
	}
	// Again: refused without --force, nothing changed; and a dry run says
	// exactly that, as the real run does.
	if out, err := enrollCmd(t, "migrate", "--user", u.name, "--dry-run"); exitCode(err) != 1 || !strings.Contains(out, "exists") || !strings.Contains(out, "would migrate 0, failed 1") {
		t.Fatalf("second migrate, dry run: %v\n%s", err, out)
	}
	if out, err := enrollCmd(t, "migrate", "--user", u.name); exitCode(err) != 1 || !strings.Contains(out, "exists") || !strings.Contains(out, "migrated 0, failed 1") {
		t.Fatalf("second migrate: %v\n%s", err, out)
	}

	dir := service(t, module("required"))
	m := syslogs.mark()
	if err := authenticate(t, dir, u.name, &conv{answers: []string{used}}); !errors.Is(err, pam.ErrAuth) {
		t.Fatalf("a code the old module accepted works after migrating: %v", err)
	}
	expectLog(t, m, `user=`+u.name+`.*token=default outcome=fail reason=replay`)
	if err := authenticate(t, dir, u.name, &conv{answers: []string{u.scratch[0]}}); !errors.Is(err, pam.ErrAuth) {
		t.Fatalf("a used scratch code works after migrating: %v", err)
	}
	if err := authenticate(t, dir, u.name, &conv{answers: []string{u.scratch[1]}}); err != nil {
		t.Fatalf("an unused scratch code: %v", err)
	}
	m = syslogs.mark()
	if err := authenticate(t, dir, u.name, &conv{answers: []string{code(t, u.secret, 1)}}); err != nil {
		t.Fatalf("next code after migrating: %v", err)
	}
	expectLog(t, m, `user=`+u.name+`.*token=default outcome=ok`) // the native file, not the old one
}

func TestMigrateSkewAndHOTP(t *testing.T) {
	needGoogle(t)
	// A learned clock skew carries over: +4 steps.
	u := newUser(t)
	path := gaEnroll(t, u, "-t", "-d", "-u", "-w", "3", "-e", "1")
	data, _ := os.ReadFile(path)
	first, rest, _ := strings.Cut(string(data), "\n")
	if err := writeAs(u, path, first+"\n\" TIME_SKEW 4\n"+rest, 0o400); err != nil {
		t.Fatal(err)
	}
	if out, err := enrollCmd(t, "migrate", "--user", u.name); err != nil || !strings.Contains(out, "drift 4 steps") {
		t.Fatalf("migrate: %v\n%s", err, out)
	}
	dir := service(t, module("required"))
	waitForFreshStep(30, 8)
	if err := authenticate(t, dir, u.name, &conv{answers: []string{code(t, u.secret, 4)}}); err != nil {
		t.Fatalf("code 4 steps ahead after migrating a skew of 4: %v", err)
	}

	// A counter-based file keeps its counter.
	h := newUser(t)
	gaEnroll(t, h, "-c", "-u", "-w", "3", "-e", "1")
	hotp := func(c int) string {
		out, _ := exec.Command("oathtool", "--hotp", "-b", h.secret, "-c", strconv.Itoa(c)).Output()
		return strings.TrimSpace(string(out))
	}
	ga := service(t, "auth required pam_google_authenticator.so")
	for _, c := range []int{1, 2} {
		if err := authenticate(t, ga, h.name, &conv{answers: []string{hotp(c)}}); err != nil {
			t.Fatalf("old module, counter %d: %v", c, err)
		}
	}
	if out, err := enrollCmd(t, "migrate", "--user", h.name); err != nil || !strings.Contains(out, "next counter 3") {
		t.Fatalf("migrate HOTP: %v\n%s", err, out)
	}
	if err := authenticate(t, dir, h.name, &conv{answers: []string{hotp(2)}}); !errors.Is(err, pam.ErrAuth) {
		t.Fatalf("used counter after migrating: %v", err)
	}
	if err := authenticate(t, dir, h.name, &conv{answers: []string{hotp(3)}}); err != nil {
		t.Fatalf("next counter after migrating: %v", err)
	}
}

func TestMigrateAllIntoStore(t *testing.T) {
	needGoogle(t)
	a, b, none := newUser(t), newUser(t), newUser(t)
	gaEnroll(t, a, "-t", "-d", "-u", "-w", "3", "-e", "1")
	gaEnroll(t, b, "-t", "-d", "-u", "-w", "3", "-S", "5", "-e", "1") // a 5 s step: pam_totp's minimum is 10
	store := filepath.Join(workDir, "migrated-store")
	out, err := enrollCmd(t, "migrate", "--all", "--secret-file", store+"/%u")
	if exitCode(err) != 1 || !strings.Contains(out, b.name+": cannot convert") {
		t.Fatalf("--all with one file that cannot be converted: %v\n%s", err, out)
	}
	ownedBy(t, filepath.Join(store, a.name), 0)
	for _, u := range []*user{b, none} {
		if _, err := os.Lstat(filepath.Join(store, u.name)); err == nil {
			t.Fatalf("%s has a file in the store", u.name)
		}
	}
	dir := service(t, module("required", "secret="+store+"/%u"))
	if err := authenticate(t, dir, a.name, &conv{answers: []string{code(t, a.secret, 0)}}); err != nil {
		t.Fatalf("login from the store after migrate --all: %v", err)
	}
}

func TestImportOath(t *testing.T) {
	needRoot(t, "oathtool", "openssl")
	a, b := newUser(t), newUser(t)
	keyA, keyB, keyB2 := hexKey(t), hexKey(t), hexKey(t)
	now := time.Now()
	usersFile := filepath.Join(t.TempDir(), "users.oath")
	good := fmt.Sprintf("# pam_oath users\nHOTP/T30/6 %s - %s 0 123456 %s\nHOTP %s - %s 5\nHOTP/E/8 %s + %s\n",
		a.name, keyA, now.Format("2006-01-02T15:04:05L"), b.name, keyB, b.name, keyB2)
	os.WriteFile(usersFile, []byte(good+"HOTP/T30 nosuchuser42 - "+keyA+"\n"), 0o600)

	// A bad line refuses the whole file, and names the line.
	out, err := enrollCmd(t, "import", "oath", usersFile)
	if exitCode(err) != 1 || !strings.Contains(out, "line 5") || !strings.Contains(out, "nothing was imported") {
		t.Fatalf("bad line: %v\n%s", err, out)
	}
	for _, u := range []*user{a, b} {
		if _, err := os.Lstat(filepath.Join(u.home, ".pam_totp")); err == nil {
			t.Fatalf("%s: a file was written although the import was refused", u.name)
		}
	}
	out, err = enrollCmd(t, "import", "oath", usersFile, "--skip-bad")
	if err != nil || !strings.Contains(out, "tokens 3, bad lines 1") {
		t.Fatalf("--skip-bad: %v\n%s", err, out)
	}
	ownedBy(t, filepath.Join(a.home, ".pam_totp"), a.uid)
	ownedBy(t, filepath.Join(b.home, ".pam_totp"), b.uid)

	dir := service(t, module("required"))
	oath := func(args ...string) string {
		out, err := exec.Command("oathtool", args...).Output()
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(out))
	}
	// The time of A's last code carries over: that step's code is a replay.
	waitForFreshStep(30, 8)
	if err := authenticate(t, dir, a.name, &conv{answers: []string{oath("--totp", keyA)}}); !errors.Is(err, pam.ErrAuth) {
		t.Fatalf("the step of the last pam_oath login: %v", err)
	}
	if err := authenticate(t, dir, a.name, &conv{answers: []string{oath("--totp", keyA, "-N", "now + 30 sec")}}); err != nil {
		t.Fatalf("the next step: %v", err)
	}
	// B's counter-based token starts at counter 5; the 8-digit one at 0.
	if err := authenticate(t, dir, b.name, &conv{answers: []string{oath("--hotp", keyB, "-c", "4")}}); !errors.Is(err, pam.ErrAuth) {
		t.Fatalf("counter 4, before the stored counter: %v", err)
	}
	for _, c := range []string{oath("--hotp", keyB, "-c", "5"), oath("--hotp", "-d", "8", keyB2, "-c", "0")} {
		if err := authenticate(t, dir, b.name, &conv{answers: []string{c}}); err != nil {
			t.Fatalf("imported HOTP token: %v", err)
		}
	}
	data, _ := os.ReadFile(filepath.Join(b.home, ".pam_totp"))
	if !strings.Contains(string(data), "token oath type=hotp") || !strings.Contains(string(data), "token oath-2 type=hotp algorithm=SHA1 digits=8") {
		t.Fatalf("B's file:\n%s", data)
	}
	// Importing again adds tokens to the existing file.
	one := filepath.Join(t.TempDir(), "one.oath")
	os.WriteFile(one, []byte(fmt.Sprintf("HOTP/T60/8 %s - %s\n", a.name, hexKey(t))), 0o600)
	if out, err := enrollCmd(t, "import", "oath", one, "--user", a.name); err != nil || !strings.Contains(out, "token oath-2 (time-based, SHA1, 8 digits, 60 s)") {
		t.Fatalf("second import: %v\n%s", err, out)
	}
}

func hexKey(t *testing.T) string {
	k := make([]byte, 20)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(k)
}

// From pam_oath, for real: a user logs in through pam_oath with an HOTP
// code (pam_oath rewrites its users file with that code's counter and the
// code), the file is imported, and that code does not work again through
// pam_totp; the next one does.
func TestImportOathAfterPamOath(t *testing.T) {
	needRoot(t, "oathtool", "openssl")
	if _, err := os.Stat("/lib/x86_64-linux-gnu/security/pam_oath.so"); err != nil {
		t.Skip("needs Debian's libpam-oath (scripts/deps --tests installs it)")
	}
	u := newUser(t)
	key := "3132333435363738393031323334353637383930"
	dir := t.TempDir()
	usersFile := filepath.Join(dir, "users.oath")
	os.WriteFile(usersFile, []byte(fmt.Sprintf("HOTP %s - %s\n", u.name, key)), 0o600)
	hotp := func(counter int) string {
		out, err := exec.Command("oathtool", "--hotp", "-c", strconv.Itoa(counter), key).Output()
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(out))
	}
	oathSvc := service(t, "auth required pam_oath.so usersfile="+usersFile+" window=5 digits=6")
	if err := authenticate(t, oathSvc, u.name, &conv{answers: []string{hotp(0)}}); err != nil {
		t.Fatalf("pam_oath with the code of counter 0: %v", err)
	}
	written, _ := os.ReadFile(usersFile)
	if !strings.Contains(string(written), hotp(0)) {
		t.Fatalf("pam_oath did not record its last code:\n%s", written)
	}
	store := storeFor(t)
	if out, err := enrollCmd(t, "import", "oath", usersFile, "--secret-file", store+"/%u"); err != nil {
		t.Fatalf("import oath: %v\n%s", err, out)
	}
	svc := service(t, module("required", "secret="+store+"/%u"))
	if err := loginWith(t, svc, u, hotp(0)); err == nil {
		t.Fatal("the code pam_oath accepted last worked again after the import")
	}
	if err := loginWith(t, svc, u, hotp(1)); err != nil {
		t.Fatalf("the next code after the import: %v", err)
	}
}

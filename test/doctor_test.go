// SPDX-License-Identifier: Apache-2.0

package test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
)

// doctorRun runs totp-enroll doctor on a staged PAM directory holding
// services (name -> lines) and, if sshdConfig is not empty, a staged
// sshd_config with a host key of its own.
func doctorRun(t *testing.T, services map[string][]string, sshdConfig string, extra ...string) (string, int) {
	t.Helper()
	dir := t.TempDir()
	pamDir := filepath.Join(dir, "pam.d")
	os.Mkdir(pamDir, 0o755)
	for name, lines := range services {
		if err := os.WriteFile(filepath.Join(pamDir, name), []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	args := append([]string{"doctor", "--pam-dir", pamDir, "--sshd-config", filepath.Join(dir, "none")}, extra...)
	if sshdConfig != "" {
		key := filepath.Join(dir, "hostkey")
		if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen: %v\n%s", err, out)
		}
		cfg := filepath.Join(dir, "sshd_config")
		if err := os.WriteFile(cfg, []byte("HostKey "+key+"\n"+sshdConfig), 0o600); err != nil {
			t.Fatal(err)
		}
		args[4] = cfg
	}
	out, err := enrollCmd(t, args...)
	return out, exitCode(err)
}

// Each staged set-up, broken in one way, gives the finding it must; the
// sound one exits 0.
func TestDoctor(t *testing.T) {
	needRoot(t, "ssh-keygen", "/usr/sbin/sshd")
	password := "auth requisite pam_unix.so nodelay"
	tests := []struct {
		name     string
		services map[string][]string
		sshd     string
		exit     int
		want     string
	}{
		{"sound", map[string][]string{"sudo": {password, module("required", "nullok")}}, "", 0, "WARNING"},
		{"sufficient before", map[string][]string{"sudo": {"auth sufficient pam_permit.so", module("required", "nullok")}}, "", 1,
			"sufficient pam_permit.so comes before pam_totp: when it succeeds, the login succeeds without a code"},
		{"jump over", map[string][]string{"sudo": {"auth [success=1 default=ignore] pam_unix.so", module("required", "nullok"), "auth required pam_permit.so"}}, "", 1,
			"success=1 on pam_unix.so jumps over pam_totp"},
		{"jump over through an include", map[string][]string{
			"common": {"auth [success=2 default=ignore] pam_unix.so", "auth requisite pam_deny.so"},
			"sudo":   {"@include common", module("required", "nullok")}}, "", 1, "jumps over pam_totp"},
		{"optional pam_totp", map[string][]string{"sudo": {password, module("optional", "nullok")}}, "", 1, "ignores its failure"},
		{"a bad option", map[string][]string{"sudo": {password, module("required", "nullok", "windo=3")}}, "", 1, "refuses its options"},
		{"a timeout the C module refuses", map[string][]string{"sudo": {password, module("required", "nullok", "timeout=999")}}, "", 1,
			`option "timeout=999": want a whole number from 1 to 300`},
		{"enroll=login behind a module that goes on", map[string][]string{"sudo": {"auth required pam_env.so", module("required", "enroll=login")}}, "", 1,
			"enroll=login where a wrong password can reach it"},
		{"a missing group", map[string][]string{"sudo": {password, module("required", "nullok", "exempt_group=pamtotp-nosuchgroup")}}, "", 1,
			`exempt_group names group "pamtotp-nosuchgroup", which does not exist`},
		{"an unsafe checker", map[string][]string{"sudo": {password, "auth required pam_totp.so checker=/tmp/pamtotp-no-checker nullok"}}, "", 1,
			"the module would refuse the checker /tmp/pamtotp-no-checker"},
		{"no nullok, root not enrolled", map[string][]string{"su": {password, module("required")}}, "", 1,
			"cannot log in through su, having no enrollment: root"},
		{"sshd without PAM", map[string][]string{"sshd": {password, module("required", "nullok")}}, "UsePAM no\n", 1, "UsePAM is no"},
		{"sshd without keyboard-interactive", map[string][]string{"sshd": {password, module("required")}},
			"UsePAM yes\nKbdInteractiveAuthentication no\n", 1, "KbdInteractiveAuthentication is no: the code can never be typed, so logins through PAM fail"},
		{"sshd with passwords first", map[string][]string{"sshd": {password, module("required", "nullok")}},
			"UsePAM yes\nKbdInteractiveAuthentication yes\nPasswordAuthentication yes\n", 0, "PasswordAuthentication yes without AuthenticationMethods"},
		{"sshd letting keys in without a code", map[string][]string{"sshd": {password, module("required", "nullok")}},
			"UsePAM yes\nKbdInteractiveAuthentication yes\nPasswordAuthentication no\nPubkeyAuthentication yes\n", 0, "AuthenticationMethods lets a key alone in"},
		{"sshd's configuration broken", map[string][]string{"sshd": {password, module("required", "nullok")}}, "NoSuchOption yes\n", 2, "sshd -T"},
		{"a stack libpam cannot read", map[string][]string{"sudo": {"auth sometimes pam_totp.so"}}, "", 1, "cannot be read as libpam reads it"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, rc := doctorRun(t, tt.services, tt.sshd)
			t.Logf("%s", out)
			if rc != tt.exit || !strings.Contains(out, tt.want) {
				t.Fatalf("exit %d, want %d; want %q in:\n%s", rc, tt.exit, tt.want, out)
			}
			if tt.exit == 0 && strings.Contains(out, "ERROR") {
				t.Fatalf("exit 0 with an error:\n%s", out)
			}
		})
	}
	// Root running sudo is never asked to authenticate: not an account
	// that sudo's stack locks out.
	out, _ := doctorRun(t, map[string][]string{"sudo": {password, module("required")}}, "")
	if regexp.MustCompile(`cannot log in through sudo, having no enrollment: (\S+, )*root\b`).MatchString(out) {
		t.Fatalf("root reported as locked out of sudo:\n%s", out)
	}
	// sshd's service under another name: --sshd-service says which; a
	// --sshd-config with no such service is said to be unchecked.
	out, rc := doctorRun(t, map[string][]string{"sshd-a": {password, module("required", "nullok")}}, "UsePAM no\n", "--sshd-service", "sshd-a")
	if rc != 1 || !strings.Contains(out, "UsePAM is no") {
		t.Fatalf("--sshd-service sshd-a: exit %d:\n%s", rc, out)
	}
	out, _ = doctorRun(t, map[string][]string{"sshd-a": {password, module("required", "nullok")}}, "UsePAM no\n")
	if !strings.Contains(out, "not checked: ") || !strings.Contains(out, "has no service sshd") {
		t.Fatalf("--sshd-config without its service, not said to be unchecked:\n%s", out)
	}
	// A key that must be followed by a code is not reported.
	out, rc = doctorRun(t, map[string][]string{"sshd": {password, module("required", "nullok")}},
		"UsePAM yes\nKbdInteractiveAuthentication yes\nPasswordAuthentication no\nAuthenticationMethods publickey,keyboard-interactive\n")
	if rc != 0 || strings.Contains(out, "a key alone") {
		t.Fatalf("key and code required: exit %d, and reported as a key alone:\n%s", rc, out)
	}
	// --json for monitoring.
	out, rc = doctorRun(t, map[string][]string{"sudo": {"auth sufficient pam_permit.so", module("required", "nullok")}}, "", "--json")
	var findings []struct{ Level, Where, Finding, Fix string }
	if err := json.Unmarshal([]byte(out), &findings); err != nil || rc != 1 || len(findings) == 0 || findings[0].Level != "error" || findings[0].Fix == "" {
		t.Fatalf("--json: exit %d, %v:\n%s", rc, err, out)
	}
}

// The live paths, in the test's private mount namespace: doctor without
// --pam-dir reads /etc/pam.d, which the test replaces (a bind mount, gone
// with the test) by Debian's stock stacks without pam_totp, whatever this
// machine's own are; then pam_totp is added to sshd's stack. sshd's own
// configuration is the machine's (Debian's turns keyboard-interactive off).
func TestDoctorLive(t *testing.T) {
	needRoot(t, "/usr/sbin/sshd")
	if _, err := os.Stat("/etc/ssh/ssh_host_ed25519_key"); err != nil {
		t.Skip("needs sshd's host keys (openssh-server's postinst makes them)")
	}
	stock := t.TempDir()
	for name, text := range map[string]string{
		"common-auth":     "auth [success=1 default=ignore] pam_unix.so nullok\nauth requisite pam_deny.so\nauth required pam_permit.so\n",
		"common-account":  "account required pam_unix.so\n",
		"common-session":  "session required pam_unix.so\n",
		"common-password": "password required pam_unix.so\n",
		"other":           "@include common-auth\n@include common-account\n@include common-password\n@include common-session\n",
		"sshd":            "@include common-auth\naccount required pam_nologin.so\n@include common-account\n@include common-session\n@include common-password\n",
		"sudo":            "@include common-auth\n@include common-account\n@include common-session\n",
	} {
		if err := os.WriteFile(filepath.Join(stock, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := syscall.Mount(stock, "/etc/pam.d", "", syscall.MS_BIND, ""); err != nil {
		t.Fatalf("bind-mounting the stock stacks over /etc/pam.d: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount("/etc/pam.d", 0) })
	out, err := enrollCmd(t, "doctor")
	if exitCode(err) != 0 || !strings.Contains(out, "no service loads pam_totp.so") {
		t.Fatalf("doctor on the machine's own /etc/pam.d: %v\n%s", err, out)
	}
	stack, _ := os.ReadFile("/etc/pam.d/sshd")
	writeEtc(t, "/etc/pam.d/sshd", string(stack)+module("required")+"\n", 0o644)
	out, err = enrollCmd(t, "doctor")
	cfg, _ := exec.Command("/usr/sbin/sshd", "-T").Output()
	switch {
	case strings.Contains(string(cfg), "kbdinteractiveauthentication no"):
		if exitCode(err) != 1 || !strings.Contains(out, "KbdInteractiveAuthentication is no") {
			t.Fatalf("doctor with pam_totp in sshd's stack: %v\n%s", err, out)
		}
	default:
		if exitCode(err) == 2 {
			t.Fatalf("doctor could not read what it needs: %v\n%s", err, out)
		}
	}
}

// Findings that need enrolled users: a secret file the module would refuse,
// root allowed in by sshd without an enrollment, and a server clock that
// the tokens' learned drifts point at.
func TestDoctorFilesRootAndDrift(t *testing.T) {
	needRoot(t, "oathtool", "openssl", "ssh-keygen", "/usr/sbin/sshd")
	store := filepath.Join(workDir, "doctor-store")
	os.MkdirAll(store, 0o700)
	users := []*user{newUser(t), newUser(t), newUser(t)}
	dir := service(t, module("required", "secret="+store+"/%u"))
	for _, u := range users {
		enroll(t, u, "--secret-file", store+"/%u")
		// Every phone runs a minute ahead: the server is the one that is off.
		if err := authenticate(t, dir, u.name, &conv{answers: []string{code(t, u.secret, 2)}}); err != nil {
			t.Fatal(err)
		}
	}
	loose := newUser(t)
	enroll(t, loose)
	os.Chmod(filepath.Join(loose.home, ".pam_totp"), 0o644)
	// A user's planted FIFO must not hang root's doctor: it reads as a login does.
	fifo := newUser(t)
	enroll(t, fifo)
	os.Remove(filepath.Join(fifo.home, ".pam_totp.state")) // the user replaces it
	if err := mknodAs(fifo, filepath.Join(fifo.home, ".pam_totp.state"), syscall.S_IFIFO|0o600, 0); err != nil {
		t.Fatal(err)
	}

	line := module("required", "nullok", "secret="+store+"/%u")
	out, rc := doctorRun(t, map[string][]string{"sshd": {"auth requisite pam_unix.so", line}},
		"UsePAM yes\nKbdInteractiveAuthentication yes\nPasswordAuthentication no\nPermitRootLogin yes\n")
	if rc != 0 || !strings.Contains(out, "3 of 3 used tokens learned the same drift of +60 s") ||
		!strings.Contains(out, "PermitRootLogin yes while root has no enrollment") {
		t.Fatalf("exit %d:\n%s", rc, out)
	}
	out, rc = doctorRun(t, map[string][]string{"sudo": {"auth requisite pam_unix.so", module("required", "nullok")}}, "")
	refused := func(u *user, why string) string {
		return u.name + "'s enrollment " + filepath.Join(u.home, ".pam_totp") + " is refused by the module (" + why
	}
	if rc != 0 || !strings.Contains(out, refused(loose, filepath.Join(loose.home, ".pam_totp")+" has mode 0644")) ||
		!strings.Contains(out, refused(fifo, filepath.Join(fifo.home, ".pam_totp.state")+" is not a regular file")) {
		t.Fatalf("a loose secret file and a FIFO as the state: exit %d:\n%s", rc, out)
	}
	open := filepath.Join(workDir, "doctor-open-store")
	os.Mkdir(open, 0o777)
	os.Chmod(open, 0o777)
	out, rc = doctorRun(t, map[string][]string{"sudo": {"auth requisite pam_unix.so", module("required", "nullok", "secret="+open+"/%u")}}, "")
	if rc != 1 || !strings.Contains(out, "the store "+open+" is writable by group or others") {
		t.Fatalf("a store others can write: exit %d:\n%s", rc, out)
	}
}

// doctor on a stock Debian 12 with the package's own profile enabled
// (pam-auth-update) reports no error and no finding twice; sshd's
// AllowUsers, DenyUsers and PermitRootLogin decide who is listed for
// sshd; a symlinked secret file is reported as a link.
func TestDoctorStockDebian(t *testing.T) {
	needRoot(t, "ssh-keygen", "/usr/sbin/sshd", "oathtool", "openssl")
	// The package's line, with the checker of this test's build.
	services := stagedServices(t, "testdata/debian12-pam.d/*", 10, func(text string) string {
		return strings.ReplaceAll(text, "pam_totp.so nullok", "pam_totp.so checker="+libDir+"/pam-totp-check nullok")
	})
	if !strings.Contains(strings.Join(services["common-auth"], "\n"), "pam_totp.so") {
		t.Fatal("the staged common-auth does not load pam_totp")
	}
	sshdConfig, err := os.ReadFile("testdata/debian12-sshd_config")
	if err != nil {
		t.Fatal(err)
	}
	// The accounts of a fresh machine, not the enrolled users of the
	// other tests.
	homes := t.TempDir()
	for _, h := range []string{"root", "admin1"} {
		os.Mkdir(filepath.Join(homes, h), 0o755)
	}
	var out string
	var rc int
	withPasswd(t, []string{"root:x:0:0:root:" + homes + "/root:/bin/bash", "daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin",
		"admin1:x:1000:1000::" + homes + "/admin1:/bin/bash"}, func() { out, rc = doctorRun(t, services, string(sshdConfig)) })
	if rc != 0 || strings.Contains(out, "ERROR") {
		t.Fatalf("doctor on a stock Debian 12 with the package's profile: exit %d\n%s", rc, out)
	}
	seen := map[string]bool{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		what := l[strings.Index(l, ": ")+2:]
		what = regexp.MustCompile(`through \S+`).ReplaceAllString(what, "through X")
		what = regexp.MustCompile(`: [^.]*\.`).ReplaceAllString(what, ":")
		if seen[what] {
			t.Fatalf("a finding twice (%q):\n%s", what, out)
		}
		seen[what] = true
	}
	if strings.Contains(out, "pam_rootok") || strings.Contains(out, "common-auth (") {
		t.Fatalf("pam_rootok reported, or common-auth taken for a service:\n%s", out)
	}

	// sshd lists only whom it lets in. The accounts are root, a and b
	// alone, so that every name fits in the list doctor prints.
	a, b := newUser(t), newUser(t)
	accounts := []string{"root:x:0:0:root:" + homes + "/root:/bin/bash"}
	for _, u := range []*user{a, b} {
		accounts = append(accounts, fmt.Sprintf("%s:x:%d:%d::%s:/bin/sh", u.name, u.uid, u.gid, u.home))
	}
	stack := map[string][]string{"sshd": {"auth requisite pam_unix.so", module("required", "nullok")}}
	listed := func(sshdConfig string) string {
		withPasswd(t, accounts, func() {
			out, _ = doctorRun(t, stack, "UsePAM yes\nKbdInteractiveAuthentication yes\nPasswordAuthentication no\n"+sshdConfig)
		})
		m := regexp.MustCompile(`with nullok, these accounts log in through sshd without a code: (.*?)\. Fix:`).FindStringSubmatch(out)
		if m == nil {
			return "(none listed)"
		}
		return m[1]
	}
	for _, c := range []struct{ config, want string }{
		{"PermitRootLogin yes\n", "root, " + a.name + ", " + b.name},
		{"", a.name + ", " + b.name}, // sshd's default keeps root to keys
		{"PermitRootLogin yes\nAllowUsers " + a.name + " root\n", "root, " + a.name},
		{"AllowUsers " + a.name + " root\nPermitRootLogin no\n", a.name},
		{"PermitRootLogin yes\nDenyUsers " + a.name + "\n", "root, " + b.name},
	} {
		if got := listed(c.config); got != c.want {
			t.Fatalf("sshd_config %q: doctor lists %q, want %q", c.config, got, c.want)
		}
	}

	// A link instead of the secret file.
	enroll(t, b)
	real := filepath.Join(b.home, ".pam_totp.real")
	os.Rename(filepath.Join(b.home, ".pam_totp"), real)
	os.Symlink(real, filepath.Join(b.home, ".pam_totp"))
	out, _ = doctorRun(t, map[string][]string{"sudo": {"auth requisite pam_unix.so", module("required", "nullok")}}, "")
	line := grepLine(out, b.name+"'s enrollment")
	if !strings.Contains(line, "is a symbolic link") || strings.Contains(line, "chmod") || strings.Contains(line, "mode 0777") {
		t.Fatalf("a symlinked secret file:\n%s", out)
	}
}

// withPasswd runs fn with the namespace's /etc/passwd replaced by these
// lines (a bind mount, undone when fn returns), with sshd's own account,
// which sshd -T needs.
func withPasswd(t *testing.T, lines []string, fn func()) {
	t.Helper()
	passwd := filepath.Join(t.TempDir(), "passwd")
	lines = append(lines, "sshd:x:101:65534::/run/sshd:/usr/sbin/nologin")
	if err := os.WriteFile(passwd, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount(passwd, "/etc/passwd", "", syscall.MS_BIND, ""); err != nil {
		t.Fatalf("bind-mounting a passwd of the test's own: %v", err)
	}
	defer syscall.Unmount("/etc/passwd", 0)
	fn()
}

// grepLine is the first line of out that contains s.
func grepLine(out, s string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, s) {
			return l
		}
	}
	return ""
}

// doctor follows the sssd block of pam-auth-update's common-auth (staged,
// the files it really writes) and says what a local user, a directory
// user, a wrong password and an unenrolled user meet; with required in
// place of requisite pam_deny, it warns that a wrong directory password
// reaches the code.
func TestDoctorSSSDStacks(t *testing.T) {
	needRoot(t, "ssh-keygen", "/usr/sbin/sshd")
	services := stagedServices(t, "testdata/debian12-sssd-pam.d/common-*", 4, nil)
	services["sudo"] = []string{"@include common-auth", module("required", "nullok"), "@include common-account"}
	out, rc := doctorRun(t, services, "")
	want := "passwords are checked by pam_unix and pam_sss.so. A local user with the right password is asked for the code; a pam_sss user with the right password is asked for the code; a wrong password is refused before the code prompt (nothing counted); a user without an enrollment gets in with the password alone (nullok)."
	if rc != 0 || !strings.Contains(out, want) || strings.Contains(out, "reaches pam_totp") {
		t.Fatalf("doctor on pam-auth-update's sssd stack: exit %d, want the note %q and no warning:\n%s", rc, want, out)
	}
	weak := strings.ReplaceAll(strings.Join(services["common-auth"], "\n"), "requisite\t\t\tpam_deny.so", "required\t\t\tpam_deny.so")
	if weak == strings.Join(services["common-auth"], "\n") {
		t.Fatal("the staged common-auth has no requisite pam_deny.so to weaken")
	}
	services["common-auth"] = strings.Split(weak, "\n")
	out, _ = doctorRun(t, services, "")
	for _, w := range []string{"a wrong password is shown the code prompt, then refused",
		"WARNING", "a wrong pam_sss password reaches pam_totp", "requisite pam_deny.so"} {
		if !strings.Contains(out, w) {
			t.Fatalf("doctor with required pam_deny: no %q in:\n%s", w, out)
		}
	}
}

// stagedServices reads the PAM services of a testdata directory (at least
// min files match glob) as doctorRun stages them, each file's text through
// edit if it is not nil.
func stagedServices(t *testing.T, glob string, min int, edit func(string) string) map[string][]string {
	t.Helper()
	files, err := filepath.Glob(glob)
	if err != nil || len(files) < min {
		t.Fatalf("%s: %v, %d files", glob, err, len(files))
	}
	services := map[string][]string{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		text := string(data)
		if edit != nil {
			text = edit(text)
		}
		services[filepath.Base(f)] = strings.Split(strings.TrimRight(text, "\n"), "\n")
	}
	return services
}

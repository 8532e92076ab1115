// SPDX-License-Identifier: Apache-2.0

package test

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The Debian package: built, clean under lintian and hardening-check,
// installed with dpkg, used by a real sshd from its installed paths, then
// purged without a trace. dpkg installs into the machine for real (its
// database and /usr are not in the namespace); /etc is the namespace's copy.
func TestDebianPackage(t *testing.T) {
	needRoot(t, "dpkg-buildpackage", "lintian", "hardening-check", "oathtool", "openssl", "/usr/sbin/sshd")
	if out, _ := exec.Command("dpkg-query", "-W", "-f", "${Status}", "pam-totp").Output(); strings.Contains(string(out), "installed") {
		t.Skip("pam-totp is installed on this machine: the test will not replace it")
	}
	root := filepath.Join(buildDir, "..")
	if out, err := exec.Command("make", "-C", root, "deb").CombinedOutput(); err != nil {
		t.Fatalf("make deb: %v\n%s", err, tail(out))
	}
	debs, _ := filepath.Glob(filepath.Join(buildDir, "pam-totp_*.deb"))
	if len(debs) != 1 {
		t.Fatalf("want one package in build/, found %v", debs)
	}
	deb := debs[0]

	lintianClean(t, deb)

	// hardening-check on what the package ships. Control-flow protection is
	// not asked for: Debian 12's C start files carry no CET marking, so no
	// binary linked there has it (sshd and pam_unix neither); the stack
	// protector is not asked of the Go programs, which have no C stack frames.
	x := t.TempDir()
	if out, err := exec.Command("dpkg-deb", "-x", deb, x).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -x: %v %s", err, out)
	}
	checks := [][]string{
		{"--nocfprotection", x + "/lib/x86_64-linux-gnu/security/pam_totp.so"},
		{"--nocfprotection", "--nostackprotector", x + "/usr/libexec/pam-totp/pam-totp-check", x + "/usr/libexec/pam-totp/pam-totp-check-directory", x + "/usr/sbin/pam-totp-agent", x + "/usr/bin/totp-enroll"},
	}
	for _, args := range checks {
		if out, err := exec.Command("hardening-check", args...).CombinedOutput(); err != nil {
			t.Errorf("hardening-check %v: %v\n%s", args, err, out)
		}
	}

	// Every doc the man pages name, and every doc a shipped doc links, is
	// in the package under that name (not compressed away).
	named := map[string]bool{}
	for _, src := range []string{"../docs/man/pam_totp.8", "../docs/man/pam-totp-agent.8", "../docs/man/totp-enroll.1", "../docs/fleet.md", "../README.md"} {
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range regexp.MustCompile(`(?:/usr/share/doc/pam-totp/|\]\((?:docs/)?)([\w.-]+\.md)`).FindAllStringSubmatch(string(data), -1) {
			named[m[1]] = true
		}
	}
	if len(named) < 5 {
		t.Fatalf("found only %v named in the man pages and docs", named)
	}
	for name := range named {
		if _, err := os.Stat(filepath.Join(x, "usr/share/doc/pam-totp", name)); err != nil {
			t.Errorf("%s is named by the docs but not shipped under that name: %v", name, err)
		}
	}

	files := packageFiles(t, deb)
	before := snapshot(t, "/etc/pam.d")
	t.Cleanup(func() { exec.Command("dpkg", "--purge", "pam-totp").Run() })
	if out, err := exec.Command("dpkg", "-i", deb).CombinedOutput(); err != nil {
		t.Fatalf("dpkg -i: %v\n%s", err, out)
	}
	for _, f := range files {
		if _, err := os.Lstat(f); err != nil {
			t.Errorf("installed package lacks %s", f)
		}
	}
	if diff := compare(before, snapshot(t, "/etc/pam.d")); diff != "" {
		t.Errorf("installing changed /etc/pam.d (the profile must be off by default): %s", diff)
	}
	// The agent's socket unit is enabled (deb-systemd-helper; started
	// where systemd runs), its service only through the socket.
	const wants = "/etc/systemd/system/sockets.target.wants/pam-totp-agent.socket"
	if target, err := os.Readlink(wants); err != nil || !strings.HasSuffix(target, "/pam-totp-agent.socket") {
		t.Errorf("installing did not enable pam-totp-agent.socket: %q %v", target, err)
	}

	// A login through sshd with the installed module, checker and totp-enroll.
	u := newUser(t)
	u.secret = newSecret(t)
	if out, err := exec.Command("/usr/bin/totp-enroll", "--user", u.name, "--secret", u.secret, "--no-confirm", "--qr", "none").CombinedOutput(); err != nil {
		t.Fatalf("installed totp-enroll: %v %s", err, out)
	}
	s := startSSHD(t, false, "auth required pam_unix.so nodelay", "auth required pam_totp.so nodelay")
	good := code(t, u.secret, 0)
	if got, err := s.login(u.name, u.password, good, kbdFirst); err != nil || !strings.HasSuffix(got, u.name) {
		t.Fatalf("login through the installed module: %q, %v", got, err)
	}
	if _, err := s.login(u.name, u.password, good, kbdFirst); err == nil {
		t.Fatal("replay through the installed module got in")
	}
	os.Remove("/etc/pam.d/" + s.name)

	if out, err := exec.Command("dpkg", "--purge", "pam-totp").CombinedOutput(); err != nil {
		t.Fatalf("dpkg --purge: %v\n%s", err, out)
	}
	for _, f := range files {
		if _, err := os.Lstat(f); err == nil {
			t.Errorf("%s is left after purge", f)
		}
	}
	if out, _ := exec.Command("dpkg-query", "-W", "-f", "${Status}", "pam-totp").Output(); strings.Contains(string(out), "installed") {
		t.Errorf("dpkg still lists pam-totp: %s", out)
	}
	if _, err := os.Lstat(wants); err == nil {
		t.Errorf("%s is left after purge", wants)
	}
	if diff := compare(before, snapshot(t, "/etc/pam.d")); diff != "" {
		t.Errorf("/etc/pam.d differs after purge: %s", diff)
	}
	debianVerifierPackage(t)
}

// debianVerifierPackage: pam-totp-verifier, the second binary package of
// the same source: clean under lintian and hardening-check; installing it
// makes its user and enables its unit, which waits for a configuration;
// the installed program checks a configuration; purging it leaves nothing
// of its files.
func debianVerifierPackage(t *testing.T) {
	if out, _ := exec.Command("dpkg-query", "-W", "-f", "${Status}", "pam-totp-verifier").Output(); strings.Contains(string(out), "installed") {
		t.Skip("pam-totp-verifier is installed on this machine: the test will not replace it")
	}
	debs, _ := filepath.Glob(filepath.Join(buildDir, "pam-totp-verifier_*.deb"))
	if len(debs) != 1 {
		t.Fatalf("want one pam-totp-verifier package in build/, found %v", debs)
	}
	deb := debs[0]
	lintianClean(t, deb)
	x := t.TempDir()
	if out, err := exec.Command("dpkg-deb", "-x", deb, x).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -x: %v %s", err, out)
	}
	if out, err := exec.Command("hardening-check", "--nocfprotection", "--nostackprotector", x+"/usr/sbin/pam-totp-verifier").CombinedOutput(); err != nil {
		t.Errorf("hardening-check: %v\n%s", err, out)
	}
	unit, err := os.ReadFile(x + "/lib/systemd/system/pam-totp-verifier.service")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"User=pam-totp-verifier", "ProtectSystem=strict", "NoNewPrivileges=yes", "MemoryMax=", "ConditionPathExists=/etc/pam-totp/verifier.conf"} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("the unit lacks %s", want)
		}
	}

	files := packageFiles(t, deb)
	t.Cleanup(func() { exec.Command("dpkg", "--purge", "pam-totp-verifier").Run() })
	if out, err := exec.Command("dpkg", "-i", deb).CombinedOutput(); err != nil {
		t.Fatalf("dpkg -i pam-totp-verifier: %v\n%s", err, out)
	}
	for _, f := range files {
		if _, err := os.Lstat(f); err != nil {
			t.Errorf("installed package lacks %s", f)
		}
	}
	if out, err := exec.Command("getent", "passwd", "pam-totp-verifier").Output(); err != nil || !strings.Contains(string(out), "/nonexistent") {
		t.Errorf("installing made no pam-totp-verifier user: %q %v", out, err)
	}
	const wants = "/etc/systemd/system/multi-user.target.wants/pam-totp-verifier.service"
	if target, err := os.Readlink(wants); err != nil || !strings.HasSuffix(target, "/pam-totp-verifier.service") {
		t.Errorf("installing did not enable pam-totp-verifier.service: %q %v", target, err)
	}
	// The example, installed as its comment says, names files this machine
	// does not have: --check says which, in one line, and fails.
	example, err := os.ReadFile("/usr/share/pam-totp-verifier/verifier.conf")
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll("/etc/pam-totp", 0o755)
	conf := "/etc/pam-totp/verifier-deb-test.conf"
	os.WriteFile(conf, example, 0o640)
	defer os.Remove(conf)
	if out, err := exec.Command("chgrp", "pam-totp-verifier", conf).CombinedOutput(); err != nil {
		t.Fatalf("chgrp: %v %s", err, out)
	}
	out, err := exec.Command("/usr/sbin/pam-totp-verifier", "--check", "--config", conf).CombinedOutput()
	if err == nil || strings.Count(strings.TrimSpace(string(out)), "\n") != 0 || !strings.Contains(string(out), "/etc/pam-totp/verifier.pem") {
		t.Errorf("the installed verifier's --check on the example: %v\n%s", err, out)
	}
	if out, err := exec.Command("dpkg", "--purge", "pam-totp-verifier").CombinedOutput(); err != nil {
		t.Fatalf("dpkg --purge pam-totp-verifier: %v\n%s", err, out)
	}
	for _, f := range files {
		if _, err := os.Lstat(f); err == nil {
			t.Errorf("%s is left after purge", f)
		}
	}
	if _, err := os.Lstat(wants); err == nil {
		t.Errorf("%s is left after purge", wants)
	}
}

// packageFiles lists the files (not directories) a package installs.
func packageFiles(t *testing.T, deb string) []string {
	t.Helper()
	out, err := exec.Command("dpkg-deb", "-c", deb).Output()
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 6 && !strings.HasPrefix(f[0], "d") {
			files = append(files, strings.TrimPrefix(f[5], "."))
		}
	}
	if len(files) < 5 {
		t.Fatalf("package lists only %v", files)
	}
	return files
}

func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	m := map[string]string{}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err == nil {
			m[e.Name()] = string(b)
		}
	}
	return m
}

func compare(a, b map[string]string) string {
	var diff []string
	for k, v := range a {
		if w, ok := b[k]; !ok {
			diff = append(diff, k+" removed")
		} else if v != w {
			diff = append(diff, k+" changed")
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			diff = append(diff, k+" added")
		}
	}
	return strings.Join(diff, ", ")
}

func tail(b []byte) string {
	s := string(b)
	if len(s) > 3000 {
		s = "..." + s[len(s)-3000:]
	}
	return s
}

// lintianClean: lintian finds no error and no warning in deb.
func lintianClean(t *testing.T, deb string) {
	t.Helper()
	out, _ := exec.Command("lintian", deb).CombinedOutput()
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "E:") || strings.HasPrefix(line, "W:") {
			t.Errorf("lintian: %s", line)
		}
	}
}

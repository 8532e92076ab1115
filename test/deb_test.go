// SPDX-License-Identifier: Apache-2.0

package test

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The Debian packages: built, clean under lintian and hardening-check,
// installed with dpkg into a throwaway system (startPackageHost), used
// there by a real sshd from the installed paths, then purged without a
// trace. Nothing dpkg or the maintainer scripts write reaches the machine.
func TestDebianPackage(t *testing.T) {
	needRoot(t, "dpkg-buildpackage", "lintian", "hardening-check", "oathtool", "openssl", "/usr/sbin/sshd")
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

	// The user first: the host's /etc is a copy-on-write view of the
	// tests' /etc, and the package's scripts copy up the files they change.
	u := newUser(t)
	h := startPackageHost(t, "deb")
	files := packageFiles(t, deb)
	pamD := filepath.Join(h.etcDir(), "pam.d")
	before := snapshot(t, pamD)
	if out, err := h.run(t, "dpkg", "-i", deb); err != nil {
		t.Fatalf("dpkg -i: %v\n%s", err, out)
	}
	if missing := h.missing(t, files); len(missing) != 0 {
		t.Errorf("the installed package lacks %v", missing)
	}
	if diff := compare(before, snapshot(t, pamD)); diff != "" {
		t.Errorf("installing changed /etc/pam.d (the profile must be off by default): %s", diff)
	}
	// The agent's socket unit is enabled (deb-systemd-helper; started
	// where systemd runs), its service only through the socket.
	wants := filepath.Join(h.etcDir(), "systemd/system/sockets.target.wants/pam-totp-agent.socket")
	if target, err := os.Readlink(wants); err != nil || !strings.HasSuffix(target, "/pam-totp-agent.socket") {
		t.Errorf("installing did not enable pam-totp-agent.socket: %q %v", target, err)
	}

	// A login through sshd with the installed module, checker and totp-enroll.
	u.secret = newSecret(t)
	if out, err := h.run(t, "/usr/bin/totp-enroll", "--user", u.name, "--secret", u.secret, "--no-confirm", "--qr", "none"); err != nil {
		t.Fatalf("installed totp-enroll: %v %s", err, out)
	}
	s := startSSHDOn(t, h, false, strings.Join([]string{"auth required pam_unix.so nodelay", "auth required pam_totp.so nodelay",
		"account required pam_unix.so", "session required pam_permit.so", "password required pam_deny.so"}, "\n")+"\n")
	good := code(t, u.secret, 0)
	if got, err := s.login(u.name, u.password, good, kbdFirst); err != nil || !strings.HasSuffix(got, u.name) {
		t.Fatalf("login through the installed module: %q, %v", got, err)
	}
	if _, err := s.login(u.name, u.password, good, kbdFirst); err == nil {
		t.Fatal("replay through the installed module got in")
	}
	os.Remove(filepath.Join(pamD, s.name))

	if out, err := h.run(t, "dpkg", "--purge", "pam-totp"); err != nil {
		t.Fatalf("dpkg --purge: %v\n%s", err, out)
	}
	if left := present(files, h.missing(t, files)); len(left) != 0 {
		t.Errorf("left after purge: %v", left)
	}
	if out, _ := h.run(t, "dpkg-query", "-W", "-f", "${Status}", "pam-totp"); strings.Contains(out, "installed") {
		t.Errorf("dpkg still lists pam-totp: %s", out)
	}
	if _, err := os.Lstat(wants); err == nil {
		t.Errorf("%s is left after purge", wants)
	}
	if diff := compare(before, snapshot(t, pamD)); diff != "" {
		t.Errorf("/etc/pam.d differs after purge: %s", diff)
	}
	debianVerifierPackage(t, h)
}

// debianVerifierPackage: pam-totp-verifier, the second binary package of
// the same source: clean under lintian and hardening-check; installing it
// into h makes its user and enables its unit, which waits for a
// configuration; the installed program checks a configuration; purging it
// leaves nothing of its files.
func debianVerifierPackage(t *testing.T, h *nsHost) {
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
	for _, want := range []string{"User=pam-totp-verifier", "ProtectSystem=strict", "NoNewPrivileges=yes", "MemoryMax=", "ConditionPathExists=/etc/pam-totp/verifier.conf", "ExecReload=/bin/kill -HUP $MAINPID"} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("the unit lacks %s", want)
		}
	}

	// The host's /etc is the tests': the verifiers' tests may have made
	// the user there. The postinst must make it.
	if _, err := h.run(t, "getent", "passwd", "pam-totp-verifier"); err == nil {
		if out, err := h.run(t, "userdel", "pam-totp-verifier"); err != nil {
			t.Fatalf("userdel in the package host: %v %s", err, out)
		}
	}
	if out, err := h.run(t, "getent", "group", "pam-totp-verifier"); err == nil {
		t.Fatalf("the package host has the group pam-totp-verifier before the package: %s", out)
	}
	files := packageFiles(t, deb)
	if out, err := h.run(t, "dpkg", "-i", deb); err != nil {
		t.Fatalf("dpkg -i pam-totp-verifier: %v\n%s", err, out)
	}
	if missing := h.missing(t, files); len(missing) != 0 {
		t.Errorf("the installed package lacks %v", missing)
	}
	if out, err := h.run(t, "getent", "passwd", "pam-totp-verifier"); err != nil || !strings.Contains(out, "/nonexistent") {
		t.Errorf("installing made no pam-totp-verifier user: %q %v", out, err)
	}
	wants := filepath.Join(h.etcDir(), "systemd/system/multi-user.target.wants/pam-totp-verifier.service")
	if target, err := os.Readlink(wants); err != nil || !strings.HasSuffix(target, "/pam-totp-verifier.service") {
		t.Errorf("installing did not enable pam-totp-verifier.service: %q %v", target, err)
	}
	// The example, installed as its comment says, names files this host
	// does not have: --check says which, in one line, and fails.
	example, err := os.ReadFile(filepath.Join(h.dir, "usr/share/pam-totp-verifier/verifier.conf"))
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(h.etcDir(), "pam-totp"), 0o755)
	const conf = "/etc/pam-totp/verifier-deb-test.conf"
	if err := os.WriteFile(filepath.Join(h.dir, conf), example, 0o640); err != nil {
		t.Fatal(err)
	}
	if out, err := h.run(t, "chgrp", "pam-totp-verifier", conf); err != nil {
		t.Fatalf("chgrp: %v %s", err, out)
	}
	out, err := h.run(t, "/usr/sbin/pam-totp-verifier", "--check", "--config", conf)
	if err == nil || strings.Count(strings.TrimSpace(out), "\n") != 0 || !strings.Contains(out, "/etc/pam-totp/verifier.pem") {
		t.Errorf("the installed verifier's --check on the example: %v\n%s", err, out)
	}
	if out, err := h.run(t, "dpkg", "--purge", "pam-totp-verifier"); err != nil {
		t.Fatalf("dpkg --purge pam-totp-verifier: %v\n%s", err, out)
	}
	if left := present(files, h.missing(t, files)); len(left) != 0 {
		t.Errorf("left after purge: %v", left)
	}
	if _, err := os.Lstat(wants); err == nil {
		t.Errorf("%s is left after purge", wants)
	}
}

// startPackageHost makes a throwaway system to install packages into: a
// mount namespace whose /usr, /etc and /var are overlays (copy on write,
// on a tmpfs of the host's own) of the tests' namespace's, with a /run of
// its own, so no systemd runs there. dpkg, its maintainer scripts and sshd
// run in it through nsenter, and the test reads the host's files under
// h.dir. Nothing written there reaches the machine: not /usr, not dpkg's
// database, not /etc. (A debootstrap chroot would need a package mirror
// while the tests run, and the tests talk to 127.0.0.1 only.)
func startPackageHost(t testing.TB, name string) *nsHost {
	t.Helper()
	needRoot(t, "nsenter", "unshare", "mount", "umount")
	dir, err := os.MkdirTemp(workDir, "host-"+name+"-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	mount := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("mount", args...).CombinedOutput(); err != nil {
			t.Fatalf("mount %v: %v %s", args, err, out)
		}
	}
	layers := filepath.Join(dir, "layers")
	if err := os.Mkdir(layers, 0o700); err != nil {
		t.Fatal(err)
	}
	mount("-t", "tmpfs", "-o", "mode=0700", "layers-"+name, layers)
	mounted := []string{layers}
	t.Cleanup(func() {
		for i := len(mounted) - 1; i >= 0; i-- {
			exec.Command("umount", "--lazy", mounted[i]).Run()
		}
	})
	for _, top := range []string{"usr", "etc", "var"} {
		upper, work, merged := filepath.Join(layers, top), filepath.Join(layers, top+".work"), filepath.Join(dir, top)
		for _, d := range []string{upper, work, merged} {
			if err := os.Mkdir(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		mount("-t", "overlay", "-o", "lowerdir=/"+top+",upperdir="+upper+",workdir="+work, "overlay-"+name, merged)
		mounted = append(mounted, merged)
	}
	if err := os.MkdirAll(filepath.Join(dir, "run/sshd"), 0o755); err != nil {
		t.Fatal(err)
	}
	h := &nsHost{name: name, dir: dir, log: &syncBuffer{}}
	script := fmt.Sprintf(`set -e
for top in usr etc var run; do mount --bind %s/$top /$top; done
exec sleep infinity`, dir)
	h.cmd = exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c", script)
	h.cmd.Stdout, h.cmd.Stderr = h.log, h.log
	h.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := h.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopByPid(h.cmd) })
	// Ready when the host's /etc is its own: a file only h.dir/etc has.
	mark := filepath.Join(h.etcDir(), "pamtotp-package-host")
	if err := os.WriteFile(mark, []byte(name), 0o644); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if out, err := h.run(t, "cat", "/etc/pamtotp-package-host"); err == nil && out == name {
			break
		}
		if h.cmd.ProcessState != nil || time.Now().After(deadline) {
			t.Fatalf("package host %s did not start:\n%s", name, h.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := os.Stat("/etc/pamtotp-package-host"); err == nil {
		t.Fatal("a file written in the package host's /etc reached the tests' /etc")
	}
	return h
}

// missing lists which of paths (files and symlinks) h lacks, as seen
// inside h, where /lib is /usr/lib.
func (h *nsHost) missing(t testing.TB, paths []string) []string {
	t.Helper()
	out, err := h.run(t, "sh", append([]string{"-c", `for f; do [ -e "$f" ] || [ -L "$f" ] || echo "$f"; done`, "sh"}, paths...)...)
	if err != nil {
		t.Fatalf("looking for the package's files: %v %s", err, out)
	}
	return strings.Fields(out)
}

// present is paths less missing.
func present(paths, missing []string) []string {
	gone := map[string]bool{}
	for _, m := range missing {
		gone[m] = true
	}
	var left []string
	for _, p := range paths {
		if !gone[p] {
			left = append(left, p)
		}
	}
	return left
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

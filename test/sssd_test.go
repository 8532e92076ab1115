// SPDX-License-Identifier: Apache-2.0

package test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// nsHost is a host in a mount namespace of its own, held by cmd; sshd,
// sudo and totp-enroll run in it through nsenter.
//
// startSSSDHost makes a login host whose users come from the tests' slapd
// through a real sssd (Debian's sssd-ldap), which holds the namespace: its
// own /etc (nsswitch.conf with sss, the common-* files pam-auth-update
// writes for sssd, its sssd.conf), /var/lib/sss, /var/log/sssd and /run.
// The machine's sssd, /etc/pam.d and nsswitch.conf are never touched, and
// the sssd is stopped by its pid. startPackageHost (deb_test.go) makes a
// throwaway system to install packages into.
type nsHost struct {
	name string
	dir  string // etc/ and run/, and the rest of the host's own
	cmd  *exec.Cmd
	log  *syncBuffer
}

// etcDir is where the host's /etc is seen from the tests' namespace; a nil
// host is the tests' namespace itself.
func (h *nsHost) etcDir() string {
	if h == nil {
		return "/etc"
	}
	return filepath.Join(h.dir, "etc")
}

// command runs a program in the host's namespace (nsenter execs it, so the
// pid is the program's own); on a nil host, in the tests' namespace.
func (h *nsHost) command(path string, args ...string) *exec.Cmd {
	if h == nil {
		return exec.Command(path, args...)
	}
	ns := fmt.Sprintf("--mount=/proc/%d/ns/mnt", h.cmd.Process.Pid)
	return exec.Command("nsenter", append([]string{ns, "--", path}, args...)...)
}

// run runs a command in the host and returns what it printed.
func (h *nsHost) run(t testing.TB, path string, args ...string) (string, error) {
	t.Helper()
	cmd := h.command(path, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return "", err
	}
	hung := time.AfterFunc(60*time.Second, func() { cmd.Process.Kill() })
	err := cmd.Wait()
	if !hung.Stop() {
		t.Fatalf("%s %v hung for 60 s:\n%s", path, args, out.String())
	}
	return out.String(), err
}

// sssdOpts shape a host's sssd.conf and PAM stacks.
type sssdOpts struct {
	caseInsensitive bool   // case_sensitive = false, as for Active Directory
	commonDir       string // testdata directory of the common-* files; default pam-auth-update's for sssd
}

// startSSSDHost makes a host whose sssd resolves and authenticates the
// users of d, and waits until it answers.
func startSSSDHost(t testing.TB, d *slapd, name string, o sssdOpts) *nsHost {
	t.Helper()
	needRoot(t, "nsenter", "unshare", "/usr/sbin/sssd")
	if _, err := os.Stat("/usr/lib/x86_64-linux-gnu/security/pam_sss.so"); err != nil {
		if _, err := os.Stat("/lib/x86_64-linux-gnu/security/pam_sss.so"); err != nil {
			t.Skip("needs Debian's libpam-sss, libnss-sss and sssd-ldap (scripts/deps --tests installs them without starting sssd)")
		}
	}
	dir, err := os.MkdirTemp(workDir, "host-"+name+"-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	h := &nsHost{name: name, dir: dir, log: &syncBuffer{}}
	if out, err := exec.Command("cp", "-a", "/etc/.", filepath.Join(dir, "etc")).CombinedOutput(); err != nil {
		t.Fatalf("copying /etc for host %s: %v\n%s", name, err, out)
	}
	for _, d := range []string{"sss/db", "sss/pipes/private", "sss/mc", "sss/pubconf/krb5.include.d", "sss/gpo_cache",
		"sss/deskprofile", "sss/secrets", "log", "run/sshd", "etc/sssd"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"sss", "sss/pipes", "sss/mc", "sss/pubconf", "run", "run/sshd"} {
		os.Chmod(filepath.Join(dir, d), 0o755)
	}
	nss, err := os.ReadFile(filepath.Join(dir, "etc/nsswitch.conf"))
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, l := range strings.Split(string(nss), "\n") {
		for _, db := range []string{"passwd", "group", "shadow"} {
			if strings.HasPrefix(l, db+":") {
				l = db + ": files sss" // what libnss-sss's postinst writes
			}
		}
		lines = append(lines, l)
	}
	writeEtc(t, filepath.Join(dir, "etc/nsswitch.conf"), strings.Join(lines, "\n"), 0o644)
	common := o.commonDir
	if common == "" {
		common = "testdata/debian12-sssd-pam.d"
	}
	files, err := filepath.Glob(filepath.Join(common, "common-*"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no common-* files in %s", common)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		// The package's profile names the installed module: this build's instead.
		text := strings.ReplaceAll(string(data), "\tpam_totp.so ", fmt.Sprintf("\t%s/pam_totp.so checker=%s/pam-totp-check nodelay ", libDir, libDir))
		writeEtc(t, filepath.Join(dir, "etc/pam.d", filepath.Base(f)), text, 0o644)
	}
	conf := fmt.Sprintf(`[sssd]
services = nss, pam
domains = test

[nss]

[pam]

[domain/test]
id_provider = ldap
auth_provider = ldap
ldap_uri = %s
ldap_search_base = %s
ldap_id_use_start_tls = true
ldap_tls_cacert = %s
ldap_tls_reqcert = demand
cache_credentials = false
case_sensitive = %t
`, d.ldap, ldapSuffix, d.ca, !o.caseInsensitive)
	writeEtc(t, filepath.Join(dir, "etc/sssd/sssd.conf"), conf, 0o600)
	script := fmt.Sprintf(`set -e
mount --bind %[1]s/etc /etc
mount --bind %[1]s/sss /var/lib/sss
mount --bind %[1]s/log /var/log/sssd
mount --bind %[1]s/run /run
exec /usr/sbin/sssd -i --logger=stderr`, dir)
	h.cmd = exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c", script)
	h.cmd.Stdout, h.cmd.Stderr = h.log, h.log
	h.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := h.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stopByPid(h.cmd) // our own sssd; it ends its responders
		if t.Failed() {
			t.Logf("sssd of host %s:\n%s", name, h.log.String())
		}
	})
	// Ready when sssd resolves a directory entry: a group of the host's own.
	probe := "sssd-probe-" + name
	d.add(t, fmt.Sprintf("dn: cn=%s,ou=groups,%s\nobjectClass: posixGroup\ncn: %[1]s\ngidNumber: %[3]d\n", probe, ldapSuffix, 64000+len(name)+int(name[0])))
	deadline := time.Now().Add(60 * time.Second)
	for {
		out, err := h.run(t, "getent", "group", probe)
		if err == nil {
			break
		}
		if h.cmd.ProcessState != nil || time.Now().After(deadline) {
			t.Fatalf("sssd of host %s does not answer: %v %s\n%s", name, err, out, h.log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	return h
}

// ldapUser is an account that only the directory knows: a posixAccount
// entry with a password, a home, and no line in any /etc/passwd.
func ldapUser(t testing.TB, d *slapd, name string) *user {
	t.Helper()
	return ldapUserIn(t, d, name, filepath.Join(workDir, "home"))
}

// ldapUserIn is ldapUser with the home in homeRoot.
func ldapUserIn(t testing.TB, d *slapd, name, homeRoot string) *user {
	t.Helper()
	userMu.Lock()
	userNext++
	n := userNext
	userMu.Unlock()
	u := &user{name: name, uid: 63000 + n, gid: 63000 + n, password: "ldap password " + name}
	u.home = filepath.Join(homeRoot, name)
	if err := os.Mkdir(u.home, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(u.home, u.uid, u.gid); err != nil {
		t.Fatal(err)
	}
	d.addUser(t, u)
	d.add(t, fmt.Sprintf("dn: cn=%s,ou=groups,%s\nobjectClass: posixGroup\ncn: %[1]s\ngidNumber: %[3]d\n", u.name, ldapSuffix, u.gid))
	return u
}

// sudo runs "sudo -S -k id -un" on the host as u under the PAM service
// svc, with stdin as the answers to its prompts.
func (h *nsHost) sudo(t *testing.T, u *user, svc, stdin string) (string, error) {
	t.Helper()
	rule := fmt.Sprintf("Defaults:%s pam_service=%s, passwd_tries=1, !lecture\n%s ALL=(root) ALL\n", u.name, svc, u.name)
	writeEtc(t, filepath.Join(h.etcDir(), "sudoers.d", "pamtotp-"+u.name), rule, 0o440)
	ns := fmt.Sprintf("--mount=/proc/%d/ns/mnt", h.cmd.Process.Pid)
	return runSudo(t, exec.Command("nsenter", ns, fmt.Sprintf("--setuid=%d", u.uid), fmt.Sprintf("--setgid=%d", u.gid), "--",
		"sudo", "-S", "-k", "-p", "sudo-password: ", "id", "-un"), u, stdin)
}

// enrollOn runs the real totp-enroll on the host (where NSS knows the
// directory's users) for u with a known secret, and more arguments.
func (h *nsHost) enroll(t testing.TB, u *user, extra ...string) {
	t.Helper()
	u.secret = newSecret(t)
	args := append([]string{"--user", u.name, "--secret", u.secret, "--no-confirm", "--qr", "none", "--scratch-codes", "2"}, extra...)
	if out, err := h.run(t, filepath.Join(libDir, "totp-enroll"), args...); err != nil {
		t.Fatalf("totp-enroll on host %s %v: %v\n%s", h.name, args, err, out)
	}
}

// sssdStack is a PAM service as an admin writes it on an sssd host:
// Debian's common-* files, and pam_totp after common-auth.
func sssdStack(opts ...string) string {
	return strings.Join([]string{
		"@include common-auth",
		module("required", opts...),
		"@include common-account",
		"@include common-session",
		"@include common-password",
	}, "\n") + "\n"
}

// The blocker of the sssd fleet: after the common-auth that pam-auth-update
// writes for sssd, pam_unix refuses every directory user and pam_sss then
// accepts. With each store (the directory, the home, the system store),
// through real sshd and real sudo: an enrolled directory user gets in with
// password and code and not with a wrong code; an unenrolled one gets in
// with the password under nullok; a local user still works; and a wrong
// directory password never reaches a checker and costs no lock.
func TestSSSDUsersLogIn(t *testing.T) {
	d := startSlapd(t)
	local := newUser(t) // before the host, whose /etc is a copy
	conf := d.hostConf(t, "host-a")
	store := filepath.Join(workDir, "sssd-system-store")
	if err := os.MkdirAll(store, 0o700); err != nil {
		t.Fatal(err)
	}
	h := startSSSDHost(t, d, "a", sssdOpts{})
	h2 := startSSSDHost(t, d, "a2", sssdOpts{}) // a second host, with its own sssd
	for _, c := range []struct {
		name   string
		opts   []string
		enroll []string
	}{
		{"directory", []string{"directory=" + conf}, []string{"--directory", conf, "--bind-dn", ldapAdmin, "--bind-password-file", d.adminPass}},
		{"home", nil, nil},
		{"system", []string{"secret=" + store + "/%u"}, []string{"--secret-file", store + "/%u"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			opts := append([]string{"nullok", "deny=6"}, c.opts...)
			alice := ldapUser(t, d, "ls"+c.name[:3]+"a")
			bob := ldapUser(t, d, "ls"+c.name[:3]+"b") // never enrolled
			h.enroll(t, alice, c.enroll...)
			sd := startSSHDOn(t, h, true, sssdStack(opts...))
			svc := "sudo-" + sd.name
			writeEtc(t, filepath.Join(h.etcDir(), "pam.d", svc), sssdStack(opts...), 0o644)

			m := syslogs.mark()
			if out, err := sd.login(alice.name, alice.password, code(t, alice.secret, 0), kbdFirst); err != nil || out != "pamtotp-logged-in-as-"+alice.name {
				t.Fatalf("enrolled directory user, right password and code, through sshd: %q %v", out, err)
			}
			expectLog(t, m, `pam_sss\(`+sd.name+`:auth\): authentication success.*user=`+alice.name)
			expectLog(t, m, `pam_totp.*user=`+alice.name+` .*outcome=ok`)
			if c.name == "directory" {
				// One enrollment for both hosts: the code used on A is
				// refused on B, through B's own sssd and sudo.
				writeEtc(t, filepath.Join(h2.etcDir(), "pam.d", svc), sssdStack(opts...), 0o644)
				if out, err := h2.sudo(t, alice, svc, alice.password+"\n"+code(t, alice.secret, 0)+"\n"); err == nil {
					t.Fatalf("the code used through host A got in through host B: %q", out)
				}
			}
			if out, err := h.sudo(t, alice, svc, alice.password+"\n"+code(t, alice.secret, 1)+"\n"); err != nil || out != "root" {
				t.Fatalf("enrolled directory user, right password and code, through sudo: %q %v", out, err)
			}
			if out, err := sd.login(alice.name, alice.password, wrongCode(t, alice), kbdFirst); err == nil {
				t.Fatalf("a wrong code got in through sshd: %q", out)
			}
			if out, err := h.sudo(t, alice, svc, alice.password+"\n"+wrongCode(t, alice)+"\n"); err == nil {
				t.Fatalf("a wrong code got in through sudo: %q", out)
			}

			if out, err := sd.login(bob.name, bob.password, "", kbdFirst); err != nil || out != "pamtotp-logged-in-as-"+bob.name {
				t.Fatalf("unenrolled directory user under nullok, through sshd: %q %v", out, err)
			}
			if out, err := h.sudo(t, bob, svc, bob.password+"\n"); err != nil || out != "root" {
				t.Fatalf("unenrolled directory user under nullok, through sudo: %q %v", out, err)
			}

			// A wrong directory password: pam_deny (requisite) ends the
			// stack, so no checker runs and nothing is counted, however
			// often it is tried.
			m = syslogs.mark()
			for i := 0; i < 4; i++ {
				if out, err := sd.login(alice.name, "not the password", code(t, alice.secret, 1), passwordFirst); err == nil {
					t.Fatalf("a wrong directory password got in: %q", out)
				}
			}
			expectLog(t, m, `pam_sss\(`+sd.name+`:auth\): authentication failure.*user=`+alice.name)
			for _, l := range syslogs.since(m) {
				if strings.Contains(l, "pam_totp") && strings.Contains(l, "user="+alice.name) {
					t.Fatalf("a wrong directory password reached pam_totp: %s", l)
				}
			}
			// Not locked: the owner still gets in (deny=6; at most four wrong codes so far).
			if out, err := sd.login(alice.name, alice.password, code(t, alice.secret, 2), kbdFirst); err != nil || out != "pamtotp-logged-in-as-"+alice.name {
				t.Fatalf("the owner after wrong passwords: %q %v", out, err)
			}
		})
	}
	t.Run("local", func(t *testing.T) {
		h.enroll(t, local)
		sd := startSSHDOn(t, h, true, sssdStack("nullok"))
		if out, err := sd.login(local.name, local.password, code(t, local.secret, 0), kbdFirst); err != nil || out != "pamtotp-logged-in-as-"+local.name {
			t.Fatalf("a local user through the sssd stack: %q %v", out, err)
		}
		if out, err := sd.login(local.name, local.password, wrongCode(t, local), kbdFirst); err == nil {
			t.Fatalf("a local user's wrong code got in: %q", out)
		}
	})
}

// With sssd's case_sensitive = false (the usual set-up for Active
// Directory), a name typed in upper case is the account's own name to NSS,
// and reaches that account's enrollment and no other, through real sshd;
// the decision's line names the entry.
func TestSSSDCaseInsensitiveNames(t *testing.T) {
	d := startSlapd(t)
	conf := d.hostConf(t, "host-b")
	h := startSSSDHost(t, d, "b", sssdOpts{caseInsensitive: true})
	carol, dave := ldapUser(t, d, "lcarol"), ldapUser(t, d, "ldave")
	for _, u := range []*user{carol, dave} {
		h.enroll(t, u, "--directory", conf, "--bind-dn", ldapAdmin, "--bind-password-file", d.adminPass)
	}
	sd := startSSHDOn(t, h, true, sssdStack("directory="+conf))
	if out, err := sd.login("LCAROL", carol.password, code(t, dave.secret, 0), kbdFirst); err == nil {
		t.Fatalf("LCAROL got in with ldave's code: %q", out)
	}
	m := syslogs.mark()
	if out, err := sd.login("LCAROL", carol.password, code(t, carol.secret, 0), kbdFirst); err != nil || out != "pamtotp-logged-in-as-lcarol" {
		t.Fatalf("LCAROL with lcarol's code: %q %v", out, err)
	}
	expectLog(t, m, `user=lcarol typed=LCAROL .*store="ldap\S+ uid=lcarol,ou=people,dc=test".*outcome=ok`)
	// The code is lcarol's, used: refused by either spelling.
	if out, err := sd.login("lcarol", carol.password, code(t, carol.secret, 0), kbdFirst); err == nil {
		t.Fatalf("lcarol's used code again: %q", out)
	}
}

// migrate --home-root finds the users that NSS knows through sssd by their
// homes, moves the one with a file into the directory, and passes over
// without a word the one without, and a directory that is no user's; the
// moved user then logs in through sshd with the codes they had.
func TestSSSDMigrateHomeRoot(t *testing.T) {
	d := startSlapd(t)
	conf := d.hostConf(t, "host-a")
	h := startSSSDHost(t, d, "m", sssdOpts{})
	homes := filepath.Join(workDir, "sssd-homes")
	for _, dir := range []string{homes, filepath.Join(homes, "lost+found")} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	erin, fred := ldapUserIn(t, d, "lerin", homes), ldapUserIn(t, d, "lfred", homes)
	h.enroll(t, erin) // ~/.pam_totp, as erin; fred has nothing to move
	out, err := h.run(t, filepath.Join(libDir, "totp-enroll"), "migrate", "--to-directory", conf, "--home-root", homes,
		"--bind-dn", ldapAdmin, "--bind-password-file", d.adminPass)
	if err != nil || !strings.Contains(out, "lerin: ") || !strings.Contains(out, "migrated 1, failed 0") ||
		strings.Contains(out, fred.name) || strings.Contains(out, "lost+found") {
		t.Fatalf("migrate --home-root: %v\n%s", err, out)
	}
	sd := startSSHDOn(t, h, true, sssdStack("directory="+conf))
	if out, err := sd.login(erin.name, erin.password, code(t, erin.secret, 0), kbdFirst); err != nil || out != "pamtotp-logged-in-as-lerin" {
		t.Fatalf("lerin through the directory after the move: %q %v", out, err)
	}
}

// With the package's own profile enabled beside sss (pam-auth-update
// --enable pam-totp: pam_totp nullok inside common-auth), through real
// sshd and sudo: an unenrolled directory user gets in with the password,
// an enrolled one with password and code and not with a wrong code.
func TestSSSDPackageProfile(t *testing.T) {
	d := startSlapd(t)
	h := startSSSDHost(t, d, "p", sssdOpts{commonDir: "testdata/debian12-sssd-pam-totp-pam.d"})
	data, err := os.ReadFile(filepath.Join(h.etcDir(), "pam.d/common-auth"))
	if err != nil || !strings.Contains(string(data), libDir+"/pam_totp.so") {
		t.Fatalf("the host's common-auth does not load this build's pam_totp: %v\n%s", err, data)
	}
	gina, hank := ldapUser(t, d, "lgina"), ldapUser(t, d, "lhank")
	h.enroll(t, gina)
	stack := "@include common-auth\n@include common-account\n@include common-session\n@include common-password\n"
	sd := startSSHDOn(t, h, true, stack)
	svc := "sudo-" + sd.name
	writeEtc(t, filepath.Join(h.etcDir(), "pam.d", svc), stack, 0o644)
	if out, err := sd.login(hank.name, hank.password, "", kbdFirst); err != nil || out != "pamtotp-logged-in-as-lhank" {
		t.Fatalf("unenrolled directory user under the profile's nullok, through sshd: %q %v", out, err)
	}
	if out, err := h.sudo(t, hank, svc, hank.password+"\n"); err != nil || out != "root" {
		t.Fatalf("unenrolled directory user under the profile's nullok, through sudo: %q %v", out, err)
	}
	if out, err := sd.login(gina.name, gina.password, code(t, gina.secret, 0), kbdFirst); err != nil || out != "pamtotp-logged-in-as-lgina" {
		t.Fatalf("enrolled directory user through sshd: %q %v", out, err)
	}
	if out, err := h.sudo(t, gina, svc, gina.password+"\n"+wrongCode(t, gina)+"\n"); err == nil {
		t.Fatalf("a wrong code through sudo: %q", out)
	}
}

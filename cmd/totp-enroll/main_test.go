// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"pamtotp/internal/otp"
	"pamtotp/internal/secret"
)

// These tests use a root-owned store path: enrolling into a home makes the
// process become that user, which a test process must not do.
func storeDir(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the system store is root's (CI runs as root)")
	}
	return t.TempDir()
}

type failReader struct{ t *testing.T }

func (r failReader) Read([]byte) (int, error) {
	r.t.Error("read standard input")
	return 0, io.EOF
}

func enrollRun(t *testing.T, stdin io.Reader, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, stdin, &out, &errb)
	return code, out.String(), errb.String()
}

func TestEnrollNoConfirm(t *testing.T) {
	dir := storeDir(t)
	tmpl := dir + "/%u"
	code, out, errs := enrollRun(t, failReader{t}, "--secret-file", tmpl, "--no-confirm", "--qr", "none",
		"--digits", "8", "--period", "60", "--algorithm", "sha512", "--scratch-codes", "3")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errs)
	}
	// --qr none shows no QR code, and does not say it does.
	if strings.Contains(out, "QR") || !strings.Contains(out, "The secret: ") {
		t.Fatalf("--qr none speaks of a QR code, or not of the secret:\n%s", out)
	}
	paths, _ := filepath.Glob(dir + "/*")
	if len(paths) != 3 || paths[1] != secret.LockPath(paths[0]) || paths[2] != secret.StatePath(paths[0]) {
		t.Fatalf("files: %v (want the secret, its enrollment lock and its state, no temporary file)", paths)
	}
	if state, err := secret.ReadState(paths[0], secret.Owner(0)); err != nil || state.Failures != 0 || len(state.Tokens) != 0 {
		t.Fatalf("the new state file: %+v, %v", state, err)
	}
	st, err := os.Stat(paths[0])
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, %v", st.Mode(), err)
	}
	f, err := secret.Read(paths[0], secret.Owner(0))
	if err != nil {
		t.Fatal(err)
	}
	tok := f.Tokens[0]
	if tok.Params != (otp.Params{Algorithm: otp.SHA512, Digits: 8, Period: 60}) || len(tok.Key) != 20 || len(f.Scratch) != 3 {
		t.Fatalf("token %+v, %d scratch", tok.Params, len(f.Scratch))
	}
	for _, s := range f.Scratch {
		if !strings.Contains(out, "  "+s+"\n") {
			t.Errorf("scratch code %s not shown", s)
		}
	}
	if !strings.Contains(out, "period=60") || !strings.Contains(out, "digits=8") || !strings.Contains(out, "algorithm=SHA512") {
		t.Errorf("URI lacks the parameters:\n%s", out)
	}

	// An existing enrollment is kept unless --force.
	code, _, errs = enrollRun(t, failReader{t}, "--secret-file", tmpl, "--no-confirm", "--qr", "none")
	if code != exitError || !strings.Contains(errs, "--force") || strings.Count(errs, "\n") != 1 {
		t.Fatalf("second enrollment: exit %d, %q", code, errs)
	}
	if again, _ := secret.Read(paths[0], secret.Owner(0)); string(again.Tokens[0].Key) != string(tok.Key) {
		t.Fatal("the existing secret was replaced without --force")
	}
	code, _, errs = enrollRun(t, failReader{t}, "--secret-file", tmpl, "--no-confirm", "--qr", "none", "--force", "--secret", "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP")
	if code != exitOK {
		t.Fatalf("--force: exit %d, %s", code, errs)
	}
	if again, _ := secret.Read(paths[0], secret.Owner(0)); otp.EncodeKey(again.Tokens[0].Key) != "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP" {
		t.Fatal("--force --secret did not replace the secret")
	}
}

func TestEnrollConfirm(t *testing.T) {
	dir := storeDir(t)
	const key = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
	k, _ := otp.DecodeKey(key)
	p := otp.Params{Algorithm: otp.SHA1, Digits: 6, Period: 30}
	now := otp.Step(time.Now().Unix(), 30)
	valid := map[string]bool{}
	for s := now - 12; s <= now+12; s++ {
		c, _ := otp.Code(k, uint64(s), p)
		valid[c] = true
	}
	wrong := "000000"
	for valid[wrong] {
		wrong = "1" + wrong[1:]
	}

	// Three wrong codes: exit 3, nothing written, and no valid code shown.
	code, out, errs := enrollRun(t, strings.NewReader(wrong+"\n"+wrong+"\n"+wrong+"\n"), "--secret-file", dir+"/%u", "--qr", "none", "--secret", key)
	if code != exitNoConfirm {
		t.Fatalf("exit %d, %s", code, errs)
	}
	after := out[strings.Index(out, "to confirm"):]
	for c := range valid {
		if strings.Contains(after, c) {
			t.Fatalf("after a wrong code the output shows a valid code %s:\n%s", c, after)
		}
	}
	if paths, _ := filepath.Glob(dir + "/*"); len(paths) != 0 {
		t.Fatalf("written after a failed confirmation: %v", paths)
	}

	// The right code: written, and that code is recorded as used.
	right, _ := otp.Code(k, uint64(now), p)
	code, out, errs = enrollRun(t, strings.NewReader(wrong+"\n"+right+"\n"), "--secret-file", dir+"/%u", "--qr", "none", "--secret", key)
	if code != exitOK || !strings.Contains(out, "Confirmed.") {
		t.Fatalf("exit %d, %s\n%s", code, errs, out)
	}
	paths, _ := filepath.Glob(dir + "/*")
	var secretPath string
	for _, p := range paths {
		if !strings.HasSuffix(p, ".state") && !strings.HasSuffix(p, ".lock") {
			secretPath = p
		}
	}
	acct, err := secret.Lock(secretPath, secret.Owner(0))
	if err != nil {
		t.Fatal(err)
	}
	defer acct.Close()
	if ts := acct.State.Token(&acct.File.Tokens[0]); !ts.Used || ts.LastStep < now {
		t.Fatalf("confirmation code not recorded as used: %+v", ts)
	}
	// The wrong code typed while confirming is no guess to report at the
	// first login, and no failure toward a lock.
	if acct.State.Missed != 0 || acct.State.Failures != 0 {
		t.Fatalf("after a wrong code while confirming: missed %d, failures %d; want 0 and 0", acct.State.Missed, acct.State.Failures)
	}
}

func TestEnrollRefusesBadInput(t *testing.T) {
	dir := storeDir(t)
	for _, args := range [][]string{
		{"--digits", "9"}, {"--digits", "5"}, {"--period", "5"}, {"--period", "121"}, {"--algorithm", "MD5"}, {"--qr", "sixel"},
		{"--scratch-codes", "11"}, {"--secret", "not base32!"}, {"--secret", "JBSWY3DP"}, {"--name", "a b"},
		{"--nosuchflag"}, {"extra-arg"}, {"--issuer", "a:b"}, {"--user", "nosuchuser-pamtotp"},
		{"--secret-file", "relative/%u"}, {"--secret-file", "/x/%q"},
	} {
		args = append([]string{"--secret-file", dir + "/%u", "--no-confirm", "--qr", "none"}, args...)
		code, out, errs := enrollRun(t, failReader{t}, args...)
		if code != exitUsage || strings.Count(errs, "\n") != 1 || !strings.HasPrefix(errs, "totp-enroll: ") {
			t.Errorf("%q: exit %d, stderr %q", args, code, errs)
		}
		if strings.Contains(out, "Written") {
			t.Errorf("%q: wrote something", args)
		}
	}
	if paths, _ := filepath.Glob(dir + "/*"); len(paths) != 0 {
		t.Fatalf("files left behind: %v", paths)
	}
	// A store directory that cannot be created: a clean error, exit 1.
	code, _, errs := enrollRun(t, failReader{t}, "--secret-file", "/proc/nope/%u", "--no-confirm", "--qr", "none")
	if code != exitError || strings.Count(errs, "\n") != 1 {
		t.Fatalf("unwritable store: exit %d, %q", code, errs)
	}
}

func TestHelp(t *testing.T) {
	code, out, _ := enrollRun(t, failReader{t}, "--help")
	if code != exitOK || !strings.Contains(out, "--no-confirm") || !strings.Contains(out, "Exit status") {
		t.Fatalf("help: %d\n%s", code, out)
	}
}

// The command table is the list of commands: --help, the bash completion,
// docs/totp-enroll.md and the man page must name each of them, and the
// completion no command that does not exist.
func TestCommandsAreDocumented(t *testing.T) {
	names := []string{"add"}
	for name := range newCommands() {
		names = append(names, name)
	}
	read := func(path string) string {
		data, err := os.ReadFile(filepath.Join("..", "..", path))
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}
	completion := read("packaging/bash-completion/totp-enroll")
	words := regexp.MustCompile(`(?s)words="(add list.*?)"`).FindStringSubmatch(completion)
	if words == nil {
		t.Fatal("no command list in the bash completion")
	}
	docs := map[string]string{
		"--help":                 usage,
		"docs/totp-enroll.md":    read("docs/totp-enroll.md"),
		"docs/man/totp-enroll.1": read("docs/man/totp-enroll.1"),
	}
	for _, name := range names {
		if !slices.Contains(strings.Fields(words[1]), name) {
			t.Errorf("the bash completion lacks the command %s", name)
		}
		for where, text := range docs {
			if !regexp.MustCompile(`\b` + name + `\b`).MatchString(text) {
				t.Errorf("%s does not name the command %s", where, name)
			}
		}
	}
	for _, w := range strings.Fields(words[1]) {
		if !strings.HasPrefix(w, "-") && !strings.HasPrefix(w, "$") && !slices.Contains(names, w) {
			t.Errorf("the bash completion offers %s, which is no command", w)
		}
	}
}

// complete runs the bash completion for the words typed so far (the last
// one is being typed) and returns what it offers.
func complete(t *testing.T, words ...string) []string {
	t.Helper()
	script := `source ../../packaging/bash-completion/totp-enroll
COMP_WORDS=(totp-enroll "$@"); COMP_CWORD=$#; _totp_enroll; printf '%s\n' "${COMPREPLY[@]}"`
	out, err := exec.Command("bash", append([]string{"-c", script, "bash"}, words...)...).Output()
	if err != nil {
		t.Fatalf("bash completion of %q: %v", words, err)
	}
	return strings.Fields(string(out))
}

// Every flag a command's --help names is what the completion offers after
// that command, and a flag that takes a file completes file names.
func TestCompletionPerCommand(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("needs bash")
	}
	cases := [][]string{{"add"}, {"import", "csv"}, {"import", "pskc"}, {"import", "oath"}}
	for name := range newCommands() {
		if name != "help" && name != "import" {
			cases = append(cases, []string{name})
		}
	}
	flagRe := regexp.MustCompile(`--[a-z][a-z-]+`)
	for _, c := range cases {
		var out, errOut strings.Builder
		if code := run(append(append([]string{}, c...), "--help"), strings.NewReader(""), &out, &errOut); code != exitOK {
			t.Fatalf("%v --help: exit %d: %s", c, code, errOut.String())
		}
		offered := complete(t, append(append([]string{}, c...), "--")...)
		for _, f := range flagRe.FindAllString(out.String(), -1) {
			if !slices.Contains(offered, f) {
				t.Errorf("totp-enroll %s --help names %s, which the completion does not offer after %q (it offers %v)", strings.Join(c, " "), f, c, offered)
			}
		}
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "ldap.conf"), nil, 0o600)
	if got := complete(t, "status", "--directory", dir+"/ld"); !slices.Contains(got, dir+"/ldap.conf") {
		t.Errorf("--directory completes %v, want the file", got)
	}
	if got := complete(t, "st"); !slices.Equal(got, []string{"status"}) {
		t.Errorf("the command st... completes to %v", got)
	}
}

func TestVersion(t *testing.T) {
	changelog, err := os.ReadFile("../../packaging/deb/changelog")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`^pam-totp \(([^)]+)\)`).FindSubmatch(changelog)
	var out strings.Builder
	if m == nil || run([]string{"--version"}, strings.NewReader(""), &out, io.Discard) != exitOK || out.String() != "totp-enroll "+string(m[1])+"\n" {
		t.Fatalf("--version says %q; the changelog's version is %q", out.String(), m)
	}
}

func TestHelpCommand(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
		code int
	}{
		{[]string{"help"}, "Usage: totp-enroll [--user NAME]", exitOK},
		{[]string{"help", "status"}, "Usage: totp-enroll status [--all] [--json]", exitOK},
		{[]string{"help", "add"}, "Usage: totp-enroll add --name NAME", exitOK},
		{[]string{"add", "--help"}, "Usage: totp-enroll add --name NAME", exitOK},
		{[]string{"import", "--help"}, "Usage: totp-enroll import csv|pskc|oath", exitOK},
		{[]string{"help", "import", "pskc"}, "import pskc FILE", exitOK},
		{[]string{"help", "migrate"}, "Usage: totp-enroll migrate", exitOK},
		{[]string{"help", "nosuch"}, `no command "nosuch"`, exitUsage},
	} {
		var out strings.Builder
		code := run(c.args, strings.NewReader(""), &out, &out)
		if code != c.code || !strings.Contains(out.String(), c.want) {
			t.Errorf("totp-enroll %v: exit %d, want %d and %q:\n%s", c.args, code, c.code, c.want, out.String())
		}
	}
}

func TestPrintable(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"alice", "alice"},
		{"phone ü", "phone ü"},
		{"a\x1b[2Jb", `a\u001b[2Jb`},
		{"csi\u009b31m", `csi\u009b31m`},
		{"raw\x9bbyte", `raw\x9bbyte`},
		{"del\x7f", `del\u007f`},
		{"rtl\u202eoverride", `rtl\u202eoverride`},
	} {
		if got := printable(c.in); got != c.want {
			t.Errorf("printable(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestQRWidth(t *testing.T) {
	for _, c := range []struct {
		drawn string
		want  int
	}{
		{"", 0}, {"█▀▄ \n██", 4}, {"\x1b[47m  \x1b[40m  \x1b[0m\n", 4},
	} {
		if got := qrWidth(c.drawn); got != c.want {
			t.Errorf("qrWidth(%q) = %d, want %d", c.drawn, got, c.want)
		}
	}
}

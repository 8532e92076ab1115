// SPDX-License-Identifier: Apache-2.0

package pamconf

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const dir = "testdata/pam.d"

func TestIncludesContinuationsAndBrackets(t *testing.T) {
	lines, err := Auth(dir, "sshd")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range lines {
		got = append(got, l.Module+" "+l.Action("success")+"/"+l.Action("auth_err")+" "+strings.Join(l.Args, "|"))
	}
	want := []string{
		"pam_unix.so 1/ignore nullok",
		"pam_deny.so ok/die ",
		"pam_permit.so ok/bad ",
		"pam_totp.so ok/bad nullok|[prompt=Code from your phone: ]",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("sshd's auth stack:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if at, err := Index(lines, "pam_totp.so"); err != nil || at != 3 || lines[at].No != 4 {
		t.Fatalf("pam_totp at %d (line %d), %v", at, lines[at].No, err)
	}
}

func TestSubstackAndInclude(t *testing.T) {
	lines, err := Auth(dir, "sudo")
	if err != nil {
		t.Fatal(err)
	}
	if len(lines) != 5 {
		t.Fatalf("%d lines, want 5: %+v", len(lines), lines)
	}
	for i, want := range []int{1, 1, 1, 0, 0} {
		if lines[i].Depth != want {
			t.Errorf("line %d (%s): depth %d, want %d", i, lines[i].Module, lines[i].Depth, want)
		}
	}
	if l := lines[4]; l.Module != "pam_totp.so" || l.Action("auth_err") != "die" {
		t.Errorf("the included bracket line: %+v", l)
	}
	if _, err := Index(lines[:4], "pam_totp.so"); !errors.Is(err, ErrNoModule) {
		t.Errorf("Index without pam_totp: %v", err)
	}
}

func TestRefuses(t *testing.T) {
	for name, want := range map[string]string{
		"loop":       "nested more than",
		"badcontrol": "unknown control",
		"missing":    "no such file",
		"../sshd":    "bad service name",
	} {
		if _, err := Auth(dir, name); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error with %q", name, err, want)
		}
	}
}

// Reaches follows the stacks of pam-auth-update: with sssd, a directory
// user (pam_unix refuses, pam_sss accepts) and a local user reach the
// module with the stack intact, a wrong password stops at requisite
// pam_deny, and with required there it reaches the module, failed.
func TestReaches(t *testing.T) {
	sssd := []string{
		"auth [success=2 default=ignore] pam_unix.so nullok",
		"auth [success=1 default=ignore] pam_sss.so use_first_pass",
		"auth requisite pam_deny.so",
		"auth required pam_permit.so",
		"auth required pam_totp.so",
	}
	weak := append([]string{}, sssd...)
	weak[2] = "auth required pam_deny.so"
	results := map[string]map[string]string{
		"local":          {"pam_unix.so": "success", "pam_sss.so": "user_unknown"},
		"directory":      {"pam_unix.so": "auth_err", "pam_sss.so": "success"},
		"wrong password": {"pam_unix.so": "auth_err", "pam_sss.so": "auth_err"},
	}
	for _, c := range []struct {
		stack           []string
		who             string
		reached, failed bool
	}{
		{sssd, "local", true, false},
		{sssd, "directory", true, false},
		{sssd, "wrong password", false, true},
		{weak, "directory", true, false},
		{weak, "wrong password", true, true},
		{[]string{"auth sufficient pam_unix.so", "auth required pam_totp.so"}, "local", false, false},
		{[]string{"auth required pam_unix.so", "auth required pam_totp.so"}, "wrong password", true, true},
		{[]string{"auth requisite pam_unix.so", "auth required pam_totp.so"}, "directory", false, true},
	} {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "svc"), []byte(strings.Join(c.stack, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		lines, err := Auth(dir, "svc")
		if err != nil {
			t.Fatal(err)
		}
		at, _ := Index(lines, "pam_totp.so")
		reached, failed := Reaches(lines, at, func(l Line) string {
			if r, ok := results[c.who][l.Module]; ok {
				return r
			}
			if l.Module == "pam_deny.so" {
				return "auth_err"
			}
			return "success"
		})
		if reached != c.reached || failed != c.failed {
			t.Errorf("%q, %s: reached %v failed %v, want %v %v", c.stack, c.who, reached, failed, c.reached, c.failed)
		}
	}
}

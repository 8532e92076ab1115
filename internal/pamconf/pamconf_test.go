// SPDX-License-Identifier: Apache-2.0

package pamconf

import (
	"errors"
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

// SPDX-License-Identifier: Apache-2.0

package directory

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	files, err := filepath.Glob("testdata/*.conf")
	if err != nil || len(files) < 10 {
		t.Fatalf("testdata: %v (%d files)", err, len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			first, _, _ := strings.Cut(string(data), "\n")
			want := strings.TrimPrefix(first, "# ")
			c, err := Parse(data)
			switch {
			case want == "ok" && err != nil:
				t.Fatalf("refused: %v", err)
			case want == "ok" && (len(c.URIs)+len(c.Verifiers) == 0 || c.Timeout <= 0):
				t.Fatalf("parsed without a uri, a verifier or a timeout: %+v", c)
			case want != "ok" && err == nil:
				t.Fatalf("accepted, want an error with %q", want)
			case want != "ok" && !strings.Contains(err.Error(), want):
				t.Fatalf("error %q, want one with %q", err, want)
			}
		})
	}
}

func TestParseKeepsOrderAndDefaults(t *testing.T) {
	c, err := Parse([]byte("uri ldaps://a.example ldaps://b.example\nuri ldaps://c.example\nbase dc=x\nca_file /ca\ncert_file /c\nkey_file /k\n"))
	if err != nil {
		t.Fatal(err)
	}
	var hosts []string
	for _, u := range c.URIs {
		hosts = append(hosts, u.Host)
	}
	if strings.Join(hosts, " ") != "a.example b.example c.example" {
		t.Fatalf("uris in the order %v, want as written", hosts)
	}
	if c.UserFilter != "(uid=%u)" || c.Timeout != DefaultTimeout || c.ConnectTimeout != DefaultConnectTimeout || c.DownFor != DefaultDownFor || c.CacheDir != DefaultCacheDir {
		t.Fatalf("defaults: %+v", c)
	}
	// ldap.conf's and sssd's network timeout is the connect's, not each
	// operation's.
	data, _ := os.ReadFile("testdata/failover-keys.conf")
	if c, err = Parse(data); err != nil || c.ConnectTimeout != 500*time.Millisecond || c.Timeout != DefaultTimeout || c.DownFor != 0 || c.CacheDir != "/var/cache/pam-totp" {
		t.Fatalf("failover-keys.conf: %+v %v", c, err)
	}
}

func TestUserAttr(t *testing.T) {
	for filter, want := range map[string]string{
		"(uid=%u)": "uid", "(sAMAccountName=%u)": "sAMAccountName",
		"(&(objectClass=posixAccount)(uid=%u))": "", "uid=%u": "",
	} {
		c := &Config{UserFilter: filter, NameAttr: nameAttr(filter)}
		if got := c.listAttr(); got != want {
			t.Errorf("listAttr of user_filter %q = %q, want %q", filter, got, want)
		}
	}
}

// The attribute the entry found is checked against: the one whose whole
// value %u is, in a filter or a DN; none where %u is part of a value.
func TestNameAttr(t *testing.T) {
	for pattern, want := range map[string]string{
		"(uid=%u)": "uid", "(sAMAccountName=%u)": "sAMAccountName",
		"(&(objectClass=posixAccount)(uid=%u))":       "uid",
		"uid=%u,ou=people,dc=example,dc=org":          "uid",
		"cn=%u+uid=x,ou=people":                       "cn",
		"(&(objectClass=user)(userPrincipalName=%u))": "userPrincipalName",
		"(uid=%u*)": "", "(cn=*%u)": "", "(uid=x%u)": "", "(=%u)": "", "%u": "",
	} {
		if got := nameAttr(pattern); got != want {
			t.Errorf("nameAttr(%q) = %q, want %q", pattern, got, want)
		}
	}
	if _, err := Parse([]byte("uri ldaps://a.example\nbase dc=x\nca_file /ca\ncert_file /c\nkey_file /k\nuser_filter (uid=%u*)\n")); err == nil ||
		!strings.Contains(err.Error(), "whole value of one attribute") {
		t.Fatalf("a filter whose %%u is part of a value: %v, want it refused", err)
	}
}

// create_in makes entries that logins find, or is refused.
func TestCreateIn(t *testing.T) {
	head := "uri ldaps://a.example\nca_file /ca\ncert_file /c\nkey_file /k\n"
	for conf, want := range map[string]string{
		"base dc=x\ncreate_in ou=totp,dc=x\n":                      "",
		"base dc=x\ncreate_in dc=x\n":                              "",
		"base ou=people,dc=x\ncreate_in ou=totp,dc=x\n":            "is not within base",
		"user_dn uid=%u,ou=totp,dc=x\ncreate_in ou=totp,dc=x\n":    "needs base and a user_filter on uid",
		"base dc=x\nuser_filter (cn=%u)\ncreate_in ou=totp,dc=x\n": "needs base and a user_filter on uid",
		"base dc=x\ncreate_in totp\n":                              "want a DN",
	} {
		_, err := Parse([]byte(head + conf))
		if want == "" && err != nil || want != "" && (err == nil || !strings.Contains(err.Error(), want)) {
			t.Errorf("%q: %v, want %q", conf, err, want)
		}
	}
}

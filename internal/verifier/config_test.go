// SPDX-License-Identifier: Apache-2.0

package verifier

import (
	"github.com/go-ldap/ldap/v3"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestParseConfig(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.conf")
	if len(files) < 10 {
		t.Fatalf("only %d cases in testdata", len(files))
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		want := strings.TrimSpace(strings.TrimPrefix(strings.SplitN(string(data), "\n", 2)[0], "#"))
		_, err = ParseConfig(data)
		switch {
		case want == "ok" && err != nil:
			t.Errorf("%s: %v", f, err)
		case want != "ok" && err == nil:
			t.Errorf("%s: accepted, want an error with %q", f, want)
		case want != "ok" && !strings.Contains(err.Error(), want):
			t.Errorf("%s: error %q, want %q", f, err, want)
		}
	}
}

// TestDecideWith: a host's line keeps how it converses; the verifier's
// policy and directory replace everything else.
func TestDecideWith(t *testing.T) {
	data, err := os.ReadFile("testdata/ok-full.conf")
	if err != nil {
		t.Fatal(err)
	}
	c, err := ParseConfig(data)
	if err != nil {
		t.Fatal(err)
	}
	got := c.decideWith([]string{"deny=0", "window=10", "forward_pass", "prompt=Code:", "directory=/etc/host.conf", "secret=/tmp/%u", "nullok", "enroll=login", "grace_period=3600"})
	want := []string{"deny=5", "unlock_time=600", "window=3", "enroll=login", "forward_pass", "prompt=Code:", "nullok", "directory=/etc/pam-totp/verifier-directory.conf"}
	if !slices.Equal(got, want) {
		t.Fatalf("got %q\nwant %q", got, want)
	}
}

// TestMemberDN: whatever a certificate's name holds, it is one value of
// the first RDN: it cannot name another entry.
func TestMemberDN(t *testing.T) {
	c := &Config{HostDN: "cn=%s,ou=hosts,dc=example,dc=org"}
	for _, cn := range []string{"web1", "evil,ou=admins", "x+uid=root", `back\slash`, "#hash", " space "} {
		dn, err := ldap.ParseDN(c.memberDN(cn))
		if err != nil {
			t.Errorf("%q: %v", cn, err)
			continue
		}
		if len(dn.RDNs) != 4 || len(dn.RDNs[0].Attributes) != 1 || dn.RDNs[0].Attributes[0].Value != cn {
			t.Errorf("%q: made %q", cn, c.memberDN(cn))
		}
	}
}

func TestHostName(t *testing.T) {
	for name, want := range map[string]bool{
		"web1": true, "web-1.example.org": true, "db_2": true,
		"evil,ou=admins": false, "a\nb": false, "x y": false, `"q"`: false, strings.Repeat("a", 254): false,
	} {
		if hostName(name) != want {
			t.Errorf("hostName(%q) = %v", name, !want)
		}
	}
}

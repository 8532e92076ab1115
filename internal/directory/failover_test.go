// SPDX-License-Identifier: Apache-2.0

package directory

import (
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func failoverConf(t *testing.T) *Config {
	t.Helper()
	c, err := Parse([]byte("uri ldaps://a.example ldap://b.example:1389 ldaps://c.example\nbase dc=x\nca_file /ca\ncert_file /c\nkey_file /k\n"))
	if err != nil {
		t.Fatal(err)
	}
	c.CacheDir = filepath.Join(t.TempDir(), "cache")
	return c
}

func hosts(us []*url.URL, _ map[*url.URL]bool) string {
	var h []string
	for _, u := range us {
		h = append(h, u.Hostname())
	}
	return strings.Join(h, " ")
}

// A server marked down is tried last for down_for, then first again; a
// mark is forgotten when the server answers; a clock set far back, or a
// cache directory that is not root's alone, leaves the order alone.
func TestFailoverOrder(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the marks are root's: run as root (make test does)")
	}
	c := failoverConf(t)
	now := time.Unix(1_800_000_000, 0)
	if got := hosts(c.order(now)); got != "a.example b.example c.example" {
		t.Fatalf("no marks: %s", got)
	}
	c.MarkDown(c.URIs[0], now)
	for _, tc := range []struct {
		at   time.Time
		want string
	}{
		{now, "b.example c.example a.example"},
		{now.Add(c.DownFor - time.Second), "b.example c.example a.example"},
		{now.Add(c.DownFor), "a.example b.example c.example"},
		{now.Add(-2 * time.Minute), "a.example b.example c.example"}, // the clock went back
	} {
		if got := hosts(c.order(tc.at)); got != tc.want {
			t.Errorf("at %v: %s, want %s", tc.at.Sub(now), got, tc.want)
		}
	}
	// An expired mark still counts as one to forget when the server answers.
	if _, marked := c.order(now.Add(c.DownFor)); !marked[c.URIs[0]] || marked[c.URIs[1]] {
		t.Errorf("marked after expiry: %v", marked)
	}
	c.MarkUp(c.URIs[0])
	if got := hosts(c.order(now)); got != "a.example b.example c.example" {
		t.Errorf("after MarkUp: %s", got)
	}
	if _, marked := c.order(now); marked[c.URIs[0]] {
		t.Error("the mark is still there after MarkUp")
	}
	c.MarkDown(c.URIs[1], now)
	os.Chmod(c.CacheDir, 0o755)
	if got := hosts(c.order(now)); got != "a.example b.example c.example" {
		t.Errorf("a cache directory others can read is not used: %s", got)
	}
	c.DownFor = 0
	os.Chmod(c.CacheDir, 0o700)
	if got := hosts(c.order(now)); got != "a.example b.example c.example" {
		t.Errorf("down_for 0 remembers nothing: %s", got)
	}
}

func TestReferred(t *testing.T) {
	c := failoverConf(t)
	for ref, want := range map[string]string{
		"ldaps://a.example":                      "a.example",
		"ldaps://A.EXAMPLE:636/uid=x,dc=x??base": "a.example",
		"ldap://b.example:1389":                  "b.example",
		"ldap://b.example":                       "", // another port
		"ldaps://b.example:1389":                 "", // another scheme
		"ldaps://evil.example":                   "",
		"not a uri":                              "",
		"":                                       "",
	} {
		u, err := c.referred(ref)
		got := ""
		if err == nil {
			got = u.Hostname()
		}
		if got != want {
			t.Errorf("referral %q: %q (%v), want %q", ref, got, err, want)
		}
	}
}

// Behind names a server that lacks a change another has had for longer
// than the grace, per serverID, and only then.
func TestBehind(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	csn := func(ago time.Duration, sid string) string {
		return now.Add(-ago).Format("20060102150405.000000Z") + "#000000#" + sid + "#000000"
	}
	srv := func(uri string, csns ...string) Server { return Server{URI: uri, Reachable: true, ContextCSN: csns} }
	for _, tc := range []struct {
		name    string
		servers []Server
		want    string
	}{
		{"in step", []Server{srv("s1", csn(time.Minute, "001"), csn(time.Hour, "002")), srv("s2", csn(time.Minute, "001"), csn(time.Hour, "002"))}, ""},
		{"behind for a second", []Server{srv("s1", csn(time.Second, "001")), srv("s2", csn(time.Hour, "001"))}, ""},
		{"behind for a minute", []Server{srv("s1", csn(time.Minute, "001")), srv("s2", csn(time.Hour, "001"))}, "s2 lacks a change that s1 has had for 1m0s (serverID 001)"},
		{"missing a serverID", []Server{srv("s1", csn(time.Minute, "001"), csn(time.Minute, "002")), srv("s2", csn(time.Minute, "001"))}, "s2 lacks a change that s1 has had for 1m0s (serverID 002)"},
		{"an unreachable server is not judged", []Server{srv("s1", csn(time.Minute, "001")), {URI: "s2"}}, ""},
	} {
		got := strings.Join(Behind(tc.servers, now, 5*time.Second), "; ")
		if got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

// SPDX-License-Identifier: Apache-2.0

package options

import "testing"

func TestParse(t *testing.T) {
	o, err := Parse([]string{"nullok", "window=3", "deny=0", "unlock_time=60", "secret=/var/lib/pam-totp/%u",
		"prompt=Code please: ", "echo_code", "debug", "forward_pass", "checker=/x", "timeout=5", "nodelay"})
	if err != nil {
		t.Fatal(err)
	}
	if !o.NullOK || o.Policy.Behind != 3 || o.Policy.Ahead != 3 || o.Policy.Deny != 0 || o.Policy.UnlockTime != 60 || o.Secret != "/var/lib/pam-totp/%u" ||
		o.Prompt != "Code please: " || !o.EchoCode || !o.Debug || !o.ForwardPass {
		t.Fatalf("%+v", o)
	}
	d, err := Parse(nil)
	if err != nil || d.Secret != DefaultSecret || d.Policy.Behind != 1 || d.Policy.Deny != 5 || d.Policy.UnlockTime != 300 || d.NullOK {
		t.Fatalf("defaults: %+v %v", d, err)
	}
}

func TestParseRejects(t *testing.T) {
	for _, args := range [][]string{
		{"nulok"}, {"nullok=1"}, {"window=11"}, {"window=-1"}, {"window=x"}, {"window"}, {"deny=1e3"},
		{"unlock_time=0"}, {"secret=relative/%u"}, {"secret=/x/%q"}, {"secret=~bob/x"}, {"secret=/x/%h"},
		{"prompt="}, {"checker"}, {"forward_pass", "use_first_pass"}, {""}, {"window=01x"},
	} {
		if _, err := Parse(args); err == nil {
			t.Errorf("%q accepted", args)
		}
	}
}

func TestExpand(t *testing.T) {
	tests := []struct{ tmpl, user, want string }{
		{"~/.pam_totp", "alice", "/home/alice/.pam_totp"},
		{"%h/.config/totp", "alice", "/home/alice/.config/totp"},
		{"/var/lib/pam-totp/%u", "bob@example.com", "/var/lib/pam-totp/bob@example.com"},
		{"/srv/100%%/%u", "w$", "/srv/100%/w$"},
	}
	for _, tt := range tests {
		home := "/home/" + tt.user
		if got, err := Expand(tt.tmpl, tt.user, home); err != nil || got != tt.want {
			t.Errorf("Expand(%q, %q) = %q, %v", tt.tmpl, tt.user, got, err)
		}
	}
	for _, u := range []string{"", "..", ".x", "a/b", "-x", "a b", "a\x00", "x.state", "x.lock", "x.pending-0", "a$b", "é"} {
		if _, err := Expand("/var/lib/pam-totp/%u", u, "/home/x"); err == nil {
			t.Errorf("user %q accepted", u)
		}
	}
	for tmpl, asUser := range map[string]bool{"~/.x": true, "%h/x": true, "/var/lib/x/%u": false,
		"${HOME}/.google_authenticator": true, "/var/unencrypted/${USER}/.ga": true, "/srv/100%/${USER}": true} {
		o, err := Parse([]string{"secret=" + tmpl})
		if err != nil || o.AsUser() != asUser {
			t.Errorf("secret=%s: AsUser %v, %v", tmpl, o != nil && o.AsUser(), err)
		}
	}
	o, err := Parse([]string{"secret=/srv/100%/${USER}", "user=root"})
	if err != nil || o.AsUser() {
		t.Fatalf("user=root: %v", err)
	}
	if p, err := Expand(o.Secret, "bob", "/home/bob"); err != nil || p != "/srv/100%/bob" {
		t.Errorf("GA template expanded to %q, %v", p, err)
	}
}

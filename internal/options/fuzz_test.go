// SPDX-License-Identifier: Apache-2.0

package options

import (
	"strings"
	"testing"
)

// Module arguments and user names as an admin or an attacker could write
// them: no panic, and an expanded path never leaves its directory.
func FuzzParseAndExpand(f *testing.F) {
	f.Add("secret=/var/lib/pam-totp/%u window=3 nullok", "alice")
	f.Add("secret=~/.pam_totp deny=0", "../root")
	f.Add("secret=%h/x%%y prompt=Code:", "bob@example.com")
	f.Fuzz(func(t *testing.T, args, user string) {
		o, err := Parse(strings.Fields(args))
		if err != nil {
			return
		}
		p, err := Expand(o.Secret, user, "/home/u")
		if err != nil {
			return
		}
		if !strings.HasPrefix(p, "/") || strings.Contains(p, "/../") || strings.HasSuffix(p, "/..") {
			t.Fatalf("Expand(%q, %q) = %q", o.Secret, user, p)
		}
		if strings.Contains(o.Secret, "%u") && strings.Contains(user, "/") {
			t.Fatalf("user %q with a slash was expanded into %q", user, p)
		}
	})
}

// SPDX-License-Identifier: Apache-2.0

package gafile

import (
	"os"
	"path/filepath"
	"testing"
)

// Any file: no panic; one that parses is written back byte for byte, and
// stays parseable after the edits a login makes.
func FuzzParse(f *testing.F) {
	names, _ := filepath.Glob("testdata/*.txt")
	for _, n := range names {
		data, err := os.ReadFile(n)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		g, err := Parse(data)
		if err != nil {
			return
		}
		if string(g.Marshal()) != string(data) {
			t.Fatal("not written back unchanged")
		}
		n := len(g.Scratch)
		if n > 0 {
			g.RemoveScratch(g.Scratch[0])
		}
		g.Set("DISALLOW_REUSE", "5 6")
		g.Set(LockoutKey, "1 0")
		back, err := Parse(g.Marshal())
		if err != nil {
			t.Fatalf("edited file does not parse: %v\n%q", err, g.Marshal())
		}
		if n > 0 && len(back.Scratch) != n-1 && len(back.Scratch) != n {
			t.Fatalf("scratch codes %d -> %d", n, len(back.Scratch))
		}
		if back.Failures != 1 || !back.DisallowReuse {
			t.Fatal("edits lost")
		}
	})
}

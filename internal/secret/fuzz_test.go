// SPDX-License-Identifier: Apache-2.0

package secret

import (
	"os"
	"path/filepath"
	"testing"
)

// Whatever a user puts in their file: no panic, and what parses survives a
// write and a read unchanged.
func FuzzParseFile(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.txt")
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("pam_totp 1\ntoken a type=totp secret=JBSWY3DPEHPK3PXP digits=8 period=60\nscratch 12345678\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := ParseFile(data)
		if err != nil {
			return
		}
		back, err := ParseFile(file.Marshal())
		if err != nil {
			t.Fatalf("marshalled file does not parse: %v", err)
		}
		if len(back.Tokens) != len(file.Tokens) || len(back.Scratch) != len(file.Scratch) {
			t.Fatal("round trip changed the file")
		}
		for i := range file.Tokens {
			if back.Tokens[i].Fingerprint() != file.Tokens[i].Fingerprint() || back.Tokens[i].Name != file.Tokens[i].Name {
				t.Fatalf("round trip changed token %d", i)
			}
		}
	})
}

func FuzzParseState(f *testing.F) {
	f.Add([]byte("pam_totp-state 1\ntoken 0123456789abcdef last=5 drift=-1 pending=9:4\nscratch-used 12345678\nfailures 2\nlocked-until 99\n"))
	f.Add([]byte("pam_totp-state 1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := ParseState(data)
		if err != nil {
			return
		}
		if st.Failures < 0 {
			t.Fatal("negative failure count accepted")
		}
	})
}

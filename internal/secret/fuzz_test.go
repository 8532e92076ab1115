// SPDX-License-Identifier: Apache-2.0

package secret

import (
	"bytes"
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

// FuzzDecodeSlots: whatever the bytes, a record is returned only if its
// checksum holds, and it lies inside its slot.
func FuzzDecodeSlots(f *testing.F) {
	f.Add(image(1, []byte("pam_totp-state 1\nfailures 2\n")))
	f.Add(image(7, []byte("pam_totp-state 1\n")))
	f.Fuzz(func(t *testing.T, data []byte) {
		payload, at, err := decodeSlots(data)
		if err != nil {
			return
		}
		if at.cur < 0 || at.cur > 1 || len(payload) > at.size-slotHeader {
			t.Fatalf("record outside its slot: %+v, %d bytes", at, len(payload))
		}
		rec := data[at.cur*at.size : at.cur*at.size+slotHeader+len(payload)]
		if sum := checksum(rec); !bytes.Equal(sum[:], rec[24:slotHeader]) {
			t.Fatal("a record with a wrong checksum was returned")
		}
	})
}

// SPDX-License-Identifier: Apache-2.0

package protocol

import (
	"bytes"
	"reflect"
	"testing"
)

// Anything the module could send: no panic, no frame over the limit, and
// requests that parse survive a round trip.
func FuzzReadFrame(f *testing.F) {
	f.Add([]byte{'Q', 0, 3, 'v', '=', '1'})
	f.Add([]byte{'P', 0xff, 0xff})
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		for i := 0; i < 8; i++ {
			_, p, err := ReadFrame(r)
			if err != nil {
				return
			}
			if len(p) > MaxPayload {
				t.Fatalf("frame of %d bytes accepted", len(p))
			}
		}
	})
}

func FuzzParseReq(f *testing.F) {
	tok := "pw123456"
	f.Add((&Req{User: "alice", Known: true, UID: 1, GID: 1, Home: "/h", Service: "sshd", Authtok: &tok, Options: []string{"nullok"}}).Marshal())
	f.Add([]byte("v=1\x00user=a\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := ParseReq(data)
		if err != nil {
			return
		}
		back, err := ParseReq(r.Marshal())
		if err != nil || !reflect.DeepEqual(back, r) {
			t.Fatalf("round trip: %+v, %v; want %+v", back, err, r)
		}
	})
}

// What a verifier or a host could send in a Split exchange: no panic;
// what parses survives a round trip, and codes are digits only.
func FuzzParseSplit(f *testing.F) {
	f.Add(SplitPayload([]int{6, 8}, "Password & verification code: "))
	f.Add(CodesPayload([]string{"123456", "12345678"}))
	f.Fuzz(func(t *testing.T, data []byte) {
		if lengths, prompt, err := ParseSplit(data); err == nil {
			l2, p2, err := ParseSplit(SplitPayload(lengths, prompt))
			if err != nil || !reflect.DeepEqual(l2, lengths) || p2 != prompt {
				t.Fatalf("split %v %q does not survive a round trip: %v %q %v", lengths, prompt, l2, p2, err)
			}
		}
		if codes, err := ParseCodes(data); err == nil {
			for _, c := range codes {
				if len(c) > MaxCodeLen || bytes.Trim([]byte(c), "0123456789") != nil && len(bytes.Trim([]byte(c), "0123456789")) > 0 {
					t.Fatalf("code %q accepted", c)
				}
			}
		}
	})
}

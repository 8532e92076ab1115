// SPDX-License-Identifier: Apache-2.0

package pskc

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

// Each cipher against a value another implementation made: RFC 3394's own
// test vector (section 4.1) for the AES key wrap, and OpenSSL 3.0
// (openssl enc -id-aes256-wrap-pad, -des3-wrap, -des-ede3-cbc; two-key 3DES as K1 K2 K1) for the others.
func TestDecryptCiphers(t *testing.T) {
	hx := func(s string) []byte { b, _ := hex.DecodeString(s); return b }
	b64 := func(s string) []byte { b, _ := base64.StdEncoding.DecodeString(s); return b }
	des3Key := hx("255e0d1c07b646dfb3134cc843ba8aa71f025b7c0838251f")
	aes256 := hx("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f")
	tests := []struct {
		name, alg string
		key, ct   []byte
		want      string
	}{
		{"RFC 3394 4.1", xmlenc + "kw-aes128", hx("000102030405060708090a0b0c0d0e0f"),
			hx("1fa68b0a8112b447aef34bd8fb5a7b829d3e862371d2cfe5"), string(hx("00112233445566778899aabbccddeeff"))},
		{"AES-256 key wrap with padding", "http://www.w3.org/2009/xmlenc11#kw-aes-256-pad", aes256,
			b64("X3D7zxE1N/zMVnqeZpq20K3IoEfdU2O5z0XyD5IvssM="), "12345678901234567890"},
		{"3DES key wrap", xmlenc + "kw-tripledes", des3Key,
			b64("bw6FSKqnCDdnA4gOB3jUMNvetgBOBPIhSMz2/2DxkhORlUqB7iWhgA=="), "123456789012345678901234"},
		{"3DES-CBC", xmlenc + "tripledes-cbc", des3Key,
			append(hx("0102030405060708"), b64("Wa4lpMbbkodbqyr1b9ILrqiGaDwAONI/")...), "12345678901234567890"},
		{"two-key 3DES-CBC", xmlenc + "tripledes-cbc", hx("0123456789abcdeffedcba9876543210"),
			append(hx("0102030405060708"), b64("cKabSD5SKoJhho5LPmRqV9hWlvjIS+bc")...), "12345678901234567890"},
	}
	for _, tt := range tests {
		got, err := decrypt(tt.key, tt.alg, tt.ct)
		if err != nil || string(got) != tt.want {
			t.Errorf("%s: %x, %v", tt.name, got, err)
		}
		// One bit of the key changed: the integrity check or the padding fails.
		wrong := append([]byte{}, tt.key...)
		wrong[0] ^= 0x80
		if got, err := decrypt(wrong, tt.alg, tt.ct); !errors.Is(err, ErrMAC) {
			t.Errorf("%s with a wrong key: %x, %v; want ErrMAC", tt.name, got, err)
		}
		// One bit of the value changed.
		ct := append([]byte{}, tt.ct...)
		ct[len(ct)-1] ^= 1
		if got, err := decrypt(tt.key, tt.alg, ct); err == nil && string(got) == tt.want {
			t.Errorf("%s: a changed value still gave the plaintext", tt.name)
		}
	}
	for _, alg := range []string{"http://www.w3.org/2001/04/xmldsig-more#camellia128-cbc", "http://www.w3.org/2001/04/xmldsig-more#kw-camellia128"} {
		if _, err := decrypt(make([]byte, 16), alg, make([]byte, 32)); err == nil || !strings.Contains(err.Error(), "Camellia") {
			t.Errorf("%s: %v, want Camellia refused by name", alg, err)
		}
	}
	if _, err := decrypt(make([]byte, 16), xmlenc+"kw-aes256", make([]byte, 24)); err == nil || !strings.Contains(err.Error(), "needs 32") {
		t.Errorf("a 16-byte key for kw-aes256: %v", err)
	}
}

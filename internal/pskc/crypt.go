// SPDX-License-Identifier: Apache-2.0

package pskc

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/des"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// The encryption algorithms of XML Encryption that PSKC files use
// (RFC 6030 §6.1; XML Encryption 1.1 for the padded AES key wrap).
type cipherAlg struct {
	keyLens []int // the key sizes it takes, in bytes
	wrap    bool  // a key wrap: its own integrity check, so no ValueMAC is needed
	open    func(key, ct []byte) ([]byte, error)
}

// 3DES takes three keys, or two (K1 K2 K1) as some vendors write them.
var aes128, aes192, aes256, des3 = []int{16}, []int{24}, []int{32}, []int{24, 16}

const xmlenc = "http://www.w3.org/2001/04/xmlenc#"

var ciphers = map[string]cipherAlg{
	xmlenc + "aes128-cbc":                            {aes128, false, cbcAES},
	xmlenc + "aes192-cbc":                            {aes192, false, cbcAES},
	xmlenc + "aes256-cbc":                            {aes256, false, cbcAES},
	xmlenc + "tripledes-cbc":                         {des3, false, cbc3DES},
	xmlenc + "kw-aes128":                             {aes128, true, unwrapAES},
	xmlenc + "kw-aes192":                             {aes192, true, unwrapAES},
	xmlenc + "kw-aes256":                             {aes256, true, unwrapAES},
	"http://www.w3.org/2009/xmlenc11#kw-aes-128-pad": {aes128, true, unwrapAES},
	"http://www.w3.org/2009/xmlenc11#kw-aes-192-pad": {aes192, true, unwrapAES},
	"http://www.w3.org/2009/xmlenc11#kw-aes-256-pad": {aes256, true, unwrapAES},
	xmlenc + "kw-tripledes":                          {des3, true, unwrap3DES},
}

// decrypt opens ct, encrypted with alg under key. A wrong key shows as a
// bad padding or a failed integrity check, which is ErrMAC.
func decrypt(key []byte, alg string, ct []byte) ([]byte, error) {
	c, err := cipherFor(alg)
	if err != nil {
		return nil, err
	}
	if !slices.Contains(c.keyLens, len(key)) {
		return nil, fmt.Errorf("the key has %d bytes; %s needs %d", len(key), strings.TrimSpace(alg), c.keyLens[0])
	}
	return c.open(key, ct)
}

func cipherFor(alg string) (cipherAlg, error) {
	alg = strings.TrimSpace(alg)
	c, ok := ciphers[alg]
	switch {
	case ok:
		return c, nil
	case alg == "":
		return c, errors.New("the encrypted value names no EncryptionMethod")
	case strings.Contains(strings.ToLower(alg), "camellia"):
		return c, fmt.Errorf("Camellia (%q) is not supported: ask the vendor for AES", alg)
	}
	return c, fmt.Errorf("unsupported encryption %q (want AES-CBC, AES key wrap, 3DES-CBC or 3DES key wrap)", alg)
}

func cbcAES(key, ct []byte) ([]byte, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return openCBC(b, ct)
}

// tripleDES is the cipher of a three-key or a two-key 3DES key.
func tripleDES(key []byte) (cipher.Block, error) {
	if len(key) == 16 {
		key = append(append([]byte{}, key...), key[:8]...)
	}
	return des.NewTripleDESCipher(key)
}

func cbc3DES(key, ct []byte) ([]byte, error) {
	b, err := tripleDES(key)
	if err != nil {
		return nil, err
	}
	return openCBC(b, ct)
}

// openCBC decrypts IV || ciphertext and removes the PKCS#7 padding.
func openCBC(b cipher.Block, ct []byte) ([]byte, error) {
	n := b.BlockSize()
	if len(ct) < 2*n || len(ct)%n != 0 {
		return nil, errors.New("the cipher value is not an IV and whole cipher blocks")
	}
	pt := make([]byte, len(ct)-n)
	cipher.NewCBCDecrypter(b, ct[:n]).CryptBlocks(pt, ct[n:])
	pad := int(pt[len(pt)-1])
	if pad < 1 || pad > n || !bytes.Equal(pt[len(pt)-pad:], bytes.Repeat([]byte{byte(pad)}, pad)) {
		return nil, ErrMAC
	}
	return pt[:len(pt)-pad], nil
}

// unwrapAES undoes the AES key wrap of RFC 3394, and its padded form of
// RFC 5649, which the integrity value tells apart.
func unwrapAES(key, ct []byte) ([]byte, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	if len(ct) < 16 || len(ct)%8 != 0 {
		return nil, errors.New("the cipher value is not a wrapped key")
	}
	n := len(ct)/8 - 1
	a := binary.BigEndian.Uint64(ct)
	r := bytes.Clone(ct[8:])
	var buf [16]byte
	if n == 1 {
		// RFC 5649 §4.2: one block, wrapped with a single AES operation.
		b.Decrypt(buf[:], ct)
		a, r = binary.BigEndian.Uint64(buf[:8]), bytes.Clone(buf[8:])
	} else {
		for j := 5; j >= 0; j-- {
			for i := n; i >= 1; i-- {
				binary.BigEndian.PutUint64(buf[:8], a^uint64(n*j+i))
				copy(buf[8:], r[(i-1)*8:i*8])
				b.Decrypt(buf[:], buf[:])
				a = binary.BigEndian.Uint64(buf[:8])
				copy(r[(i-1)*8:i*8], buf[8:])
			}
		}
	}
	if a == 0xA6A6A6A6A6A6A6A6 && n > 1 {
		return r, nil
	}
	// RFC 5649: A6 59 59 A6 and the length of the key before padding.
	mli := int(uint32(a))
	if uint32(a>>32) != 0xA65959A6 || mli > len(r) || mli <= len(r)-8 || !allZero(r[mli:]) {
		return nil, ErrMAC
	}
	return r[:mli], nil
}

func allZero(b []byte) bool {
	return subtle.ConstantTimeCompare(b, make([]byte, len(b))) == 1
}

// unwrap3DES undoes the CMS Triple-DES key wrap of RFC 3217 §3.2.
func unwrap3DES(key, ct []byte) ([]byte, error) {
	b, err := tripleDES(key)
	if err != nil {
		return nil, err
	}
	if len(ct) < 24 || len(ct)%8 != 0 {
		return nil, errors.New("the cipher value is not a wrapped key")
	}
	temp3 := make([]byte, len(ct))
	cipher.NewCBCDecrypter(b, []byte{0x4a, 0xdd, 0xa2, 0x2c, 0x79, 0xe8, 0x21, 0x05}).CryptBlocks(temp3, ct)
	for i, j := 0, len(temp3)-1; i < j; i, j = i+1, j-1 {
		temp3[i], temp3[j] = temp3[j], temp3[i]
	}
	iv, temp1 := temp3[:8], temp3[8:]
	cekicv := make([]byte, len(temp1))
	cipher.NewCBCDecrypter(b, iv).CryptBlocks(cekicv, temp1)
	cek, icv := cekicv[:len(cekicv)-8], cekicv[len(cekicv)-8:]
	sum := sha1.Sum(cek)
	if subtle.ConstantTimeCompare(sum[:8], icv) != 1 {
		return nil, ErrMAC
	}
	return cek, nil
}

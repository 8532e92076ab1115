// SPDX-License-Identifier: Apache-2.0

package pskc

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"hash"
	"os"
	"strings"
	"testing"
)

// The RFC's figures 6 and 7 (testdata, copies of the RFC's examples): both hold the
// key ASCII "12345678901234567890", HOTP, 8 digits.
func read(t testing.TB, name string) []byte {
	t.Helper()
	data, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestDecrypt(t *testing.T) {
	psk, _ := hex.DecodeString("12345678901234567890123456789012")
	tests := []struct {
		file string
		cred Credentials
	}{
		{"rfc6030-figure6.xml", Credentials{PSK: psk}},
		{"rfc6030-figure7.xml", Credentials{Password: "qwerty"}},
	}
	for _, tt := range tests {
		keys, err := Parse(read(t, tt.file), tt.cred)
		if err != nil {
			t.Fatalf("%s: %v", tt.file, err)
		}
		k := keys[0]
		if len(keys) != 1 || string(k.Secret) != "12345678901234567890" || !k.HOTP || k.Digits != 8 || k.Counter != 0 || k.Serial != "987654321" {
			t.Fatalf("%s: %+v", tt.file, keys)
		}
	}
}

func TestRefused(t *testing.T) {
	psk, _ := hex.DecodeString("12345678901234567890123456789012")
	wrongPSK, _ := hex.DecodeString("12345678901234567890123456789013")
	fig6, fig7 := read(t, "rfc6030-figure6.xml"), read(t, "rfc6030-figure7.xml")
	changedMAC := bytes.Replace(fig6, []byte("Su+NvtQfmvfJzF6bmQiJqoLRExc="), []byte("Tu+NvtQfmvfJzF6bmQiJqoLRExc="), 1)
	changedSecret := bytes.Replace(fig6, []byte("AAECAwQFBgcICQoLDA0OD+cIHItlB3Wra1DU"), []byte("AAECAwQFBgcICQoLDA0OD+cIHItlB3Wra1DV"), 1)
	noMAC := bytes.Replace(fig6, []byte("<MACMethod"), []byte("<NoMACMethod"), 1)
	noMAC = bytes.Replace(noMAC, []byte("</MACMethod>"), []byte("</NoMACMethod>"), 1)
	for name, tc := range map[string]struct {
		data    []byte
		cred    Credentials
		wantMAC bool
	}{
		"wrong key":       {fig6, Credentials{PSK: wrongPSK}, true},
		"wrong password":  {fig7, Credentials{Password: "qwertz"}, true},
		"changed MAC":     {changedMAC, Credentials{PSK: psk}, true},
		"changed secret":  {changedSecret, Credentials{PSK: psk}, true},
		"no key given":    {fig6, Credentials{}, false},
		"no password":     {fig7, Credentials{PSK: psk}, false},
		"no MAC method":   {noMAC, Credentials{PSK: psk}, false},
		"short key":       {fig6, Credentials{PSK: psk[:8]}, false},
		"not XML":         {[]byte("hello"), Credentials{}, false},
		"no key packages": {[]byte(`<KeyContainer Version="1.0"></KeyContainer>`), Credentials{}, false},
		"unknown version": {bytes.Replace(fig6, []byte(`Version="1.0"`), []byte(`Version="2.0"`), 1), Credentials{PSK: psk}, false},
		"other algorithm": {bytes.Replace(fig6, []byte("pskc:hotp"), []byte("pskc:ocra"), 1), Credentials{PSK: psk}, false},
		"9 digits":        {bytes.Replace(fig6, []byte(`Length="8"`), []byte(`Length="9"`), 1), Credentials{PSK: psk}, false},
		"5 digits":        {bytes.Replace(fig6, []byte(`Length="8"`), []byte(`Length="5"`), 1), Credentials{PSK: psk}, false},
	} {
		_, err := Parse(tc.data, tc.cred)
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		if tc.wantMAC != errors.Is(err, ErrMAC) {
			t.Errorf("%s: %v", name, err)
		}
		if strings.Contains(err.Error(), "1234567890") {
			t.Errorf("%s: the error shows the secret: %v", name, err)
		}
	}
}

func TestPlainTOTP(t *testing.T) {
	in := `<?xml version="1.0"?>
<KeyContainer Version="1.0" xmlns="urn:ietf:params:xml:ns:keyprov:pskc">
 <KeyPackage><DeviceInfo><SerialNo>A1</SerialNo></DeviceInfo>
  <Key Id="1" Algorithm="urn:ietf:params:xml:ns:keyprov:pskc:totp">
   <AlgorithmParameters><ResponseFormat Length="6" Encoding="DECIMAL"/></AlgorithmParameters>
   <Data><Secret><PlainValue>MTIzNDU2Nzg5MDEyMzQ1Njc4OTA=</PlainValue></Secret>
    <TimeInterval><PlainValue>60</PlainValue></TimeInterval></Data>
  </Key></KeyPackage>
</KeyContainer>`
	keys, err := Parse([]byte(in), Credentials{})
	if err != nil || len(keys) != 1 || keys[0].HOTP || keys[0].Period != 60 || keys[0].Digits != 6 || string(keys[0].Secret) != "12345678901234567890" {
		t.Fatalf("%+v %v", keys, err)
	}
}

// <Suite> gives the hash; a key package that cannot be used is reported
// by serial and the others are read.
func TestSuiteAndBadPackages(t *testing.T) {
	f, err := ParseAll(read(t, "suites-and-pin.xml"), Credentials{})
	if err != nil {
		t.Fatal(err)
	}
	keys, bad := f.Keys, f.Bad
	if len(keys) != 3 || keys[0].Hash != "SHA256" || keys[1].Hash != "SHA512" || keys[2].Hash != "SHA1" || keys[0].Period != 30 || keys[1].Digits != 8 {
		t.Fatalf("keys %+v", keys)
	}
	if keys[0].Package != 1 || keys[2].Package != 5 {
		t.Fatalf("package numbers %d, %d", keys[0].Package, keys[2].Package)
	}
	if len(bad) != 2 || !strings.Contains(bad[0].Error(), `serial "PIN-1"`) || !strings.Contains(bad[0].Error(), "unsupported algorithm") ||
		!strings.Contains(bad[1].Error(), `unsupported suite "OCRA-1:HOTP-SHA1-6:QN08"`) {
		t.Fatalf("bad %v", bad)
	}
	if _, err := Parse(read(t, "suites-and-pin.xml"), Credentials{}); err == nil || !strings.Contains(err.Error(), "PIN-1") {
		t.Fatalf("Parse of a file with a PIN key: %v, want the PIN key named", err)
	}
}

func FuzzParse(f *testing.F) {
	psk, _ := hex.DecodeString("12345678901234567890123456789012")
	f.Add(read(f, "rfc6030-figure6.xml"))
	f.Add(read(f, "rfc6030-figure7.xml"))
	f.Add(read(f, "suites-and-pin.xml"))
	f.Add(read(f, "policy-and-time.xml"))
	f.Add(read(f, "hoyer.xml"))
	f.Add(read(f, "draft02.xml"))
	f.Fuzz(func(t *testing.T, data []byte) {
		// No password: a mutated iteration count would make each run take
		// seconds. The derived-key path is covered by TestDecrypt/TestRefused.
		keys, err := Parse(data, Credentials{PSK: psk})
		if err != nil {
			return
		}
		for _, k := range keys {
			if k.Digits < 6 || k.Digits > 8 || k.Counter < 0 {
				t.Fatalf("accepted %+v", k)
			}
		}
	})
}

// sealCBC is IV || AES-CBC(key, pt with PKCS#7 padding), the IV all
// bytes iv, as RFC 6030's CipherValue holds it.
func sealCBC(key []byte, iv byte, pt []byte) []byte {
	n := aes.BlockSize - len(pt)%aes.BlockSize
	pt = append(append([]byte{}, pt...), bytes.Repeat([]byte{byte(n)}, n)...)
	ivs := bytes.Repeat([]byte{iv}, aes.BlockSize)
	block, _ := aes.NewCipher(key)
	ct := make([]byte, len(pt))
	cipher.NewCBCEncrypter(block, ivs).CryptBlocks(ct, pt)
	return append(ivs, ct...)
}

// sealed builds a PSKC file whose secret (and counter) are AES-128-CBC
// encrypted under psk and MACed with the HMAC of macAlg, as a vendor's
// tool would write it.
func sealed(t *testing.T, psk, secret []byte, macAlg string, h func() hash.Hash, counterText string) []byte {
	t.Helper()
	enc := func(pt []byte) string { return base64.StdEncoding.EncodeToString(sealCBC(psk, 7, pt)) }
	macKey := bytes.Repeat([]byte{0x42}, 20)
	ct := enc(secret)
	raw, _ := base64.StdEncoding.DecodeString(ct)
	m := hmac.New(h, macKey)
	m.Write(raw)
	return []byte(`<?xml version="1.0"?>
<KeyContainer Version="1.0" xmlns="urn:ietf:params:xml:ns:keyprov:pskc" xmlns:xenc="http://www.w3.org/2001/04/xmlenc#" xmlns:ds="http://www.w3.org/2000/09/xmldsig#">
 <EncryptionKey><ds:KeyName>Pre-shared-key</ds:KeyName></EncryptionKey>
 <MACMethod Algorithm="` + macAlg + `"><MACKey>
  <xenc:EncryptionMethod Algorithm="http://www.w3.org/2001/04/xmlenc#aes128-cbc"/>
  <xenc:CipherData><xenc:CipherValue>` + enc(macKey) + `</xenc:CipherValue></xenc:CipherData></MACKey></MACMethod>
 <KeyPackage><DeviceInfo><SerialNo>S1</SerialNo></DeviceInfo>
  <Key Id="1" Algorithm="urn:ietf:params:xml:ns:keyprov:pskc:hotp">
   <AlgorithmParameters><ResponseFormat Length="6" Encoding="DECIMAL"/></AlgorithmParameters>
   <Data><Secret><EncryptedValue>
     <xenc:EncryptionMethod Algorithm="http://www.w3.org/2001/04/xmlenc#aes128-cbc"/>
     <xenc:CipherData><xenc:CipherValue>` + ct + `</xenc:CipherValue></xenc:CipherData></EncryptedValue>
     <ValueMAC>` + base64.StdEncoding.EncodeToString(m.Sum(nil)) + `</ValueMAC></Secret>
    <Counter><PlainValue>` + counterText + `</PlainValue></Counter></Data>
  </Key></KeyPackage>
</KeyContainer>`)
}

// Every ValueMAC hash RFC 6030 and RFC 6931 name opens its file, a MAC of
// another hash does not, and a counter may be written in base64.
func TestMACHashesAndBase64Counter(t *testing.T) {
	psk := []byte("0123456789abcdef")
	secret := []byte("12345678901234567890")
	more := "http://www.w3.org/2001/04/xmldsig-more#hmac-"
	for _, c := range []struct {
		alg string
		h   func() hash.Hash
	}{{"http://www.w3.org/2000/09/xmldsig#hmac-sha1", sha1.New}, {more + "sha224", sha256.New224}, {more + "sha256", sha256.New},
		{more + "sha384", sha512.New384}, {more + "sha512", sha512.New}} {
		keys, err := Parse(sealed(t, psk, secret, c.alg, c.h, "AAAAAAAAAAU="), Credentials{PSK: psk})
		if err != nil || len(keys) != 1 || string(keys[0].Secret) != string(secret) || keys[0].Counter != 5 {
			t.Fatalf("%s: %+v %v", c.alg, keys, err)
		}
		// The MAC made with another hash than the file says: refused.
		if _, err := Parse(sealed(t, psk, secret, c.alg, md5.New, "5"), Credentials{PSK: psk}); !errors.Is(err, ErrMAC) {
			t.Fatalf("%s with an MD5 MAC: %v, want ErrMAC", c.alg, err)
		}
	}
	if _, err := Parse(sealed(t, psk, secret, "http://example.org/hmac-md5", md5.New, "5"), Credentials{PSK: psk}); err == nil || !strings.Contains(err.Error(), "unsupported MAC") {
		t.Fatalf("an unknown MAC: %v", err)
	}
}

// Time, TimeDrift, UserId and key policies: what pam_totp can honour is
// read, and every policy it cannot is one bad package naming it.
func TestPolicyAndTime(t *testing.T) {
	f, err := ParseAll(read(t, "policy-and-time.xml"), Credentials{})
	if err != nil {
		t.Fatal(err)
	}
	if !f.Signed {
		t.Error("the signature was not reported")
	}
	got := map[string]Key{}
	for _, k := range f.Keys {
		got[k.Serial] = k
	}
	if len(f.Keys) != 3 {
		t.Errorf("read %d keys, want DRIFT-1, LOCAL-1 and EXPIRED-1: %+v", len(f.Keys), f.Keys)
	}
	d := got["DRIFT-1"]
	if d.Drift != -2 || d.User != "alice" || d.ValidFrom.Year() != 2020 || d.ValidUntil.Year() != 2099 || string(d.Secret) != "policy-test-secret-01" {
		t.Errorf("DRIFT-1: %+v", d)
	}
	if l := got["LOCAL-1"]; l.User != "UID=bob,DC=example,DC=net" {
		t.Errorf("LOCAL-1: the device's UserId %q", l.User)
	}
	if e := got["EXPIRED-1"]; e.ValidUntil.Year() != 2022 {
		t.Errorf("EXPIRED-1: %+v", e)
	}
	want := map[string]string{
		"T0-1":      "Time (T0) is 100",
		"COUNT-1":   "NumberOfTransactions",
		"UNKNOWN-1": "<OnWeekDaysOnly> is not understood",
		"PREPEND-1": `PINUsageMode "Prepend"`,
		"CR-1":      "usage is CR, not OTP",
		"PINATTR-1": "attribute OnWeekDaysOnly is not understood",
	}
	if len(f.Bad) != len(want) {
		t.Errorf("bad: %v", f.Bad)
	}
	for _, e := range f.Bad {
		ok := false
		for serial, reason := range want {
			ok = ok || strings.Contains(e.Error(), `"`+serial+`"`) && strings.Contains(e.Error(), reason)
		}
		if !ok {
			t.Errorf("unexpected: %v", e)
		}
	}
}

// The older rules: a key wrap needs no ValueMAC, a MACMethod without a
// MACKey MACs with the encryption key, and a MAC may be over the
// plaintext. A changed value is refused under each.
func TestOlderMACRules(t *testing.T) {
	key, _ := hex.DecodeString("000102030405060708090a0b0c0d0e0f")
	wrapped, _ := hex.DecodeString("1fa68b0a8112b447aef34bd8fb5a7b829d3e862371d2cfe5") // RFC 3394 4.1
	secret, _ := hex.DecodeString("00112233445566778899aabbccddeeff")
	mac := func(data []byte) string {
		m := hmac.New(sha1.New, key)
		m.Write(data)
		return base64.StdEncoding.EncodeToString(m.Sum(nil))
	}
	file := func(macMethod, alg string, ct []byte, valueMAC string) []byte {
		if valueMAC != "" {
			valueMAC = "<ValueMAC>" + valueMAC + "</ValueMAC>"
		}
		return []byte(`<KeyContainer Version="1.0" xmlns="urn:ietf:params:xml:ns:keyprov:pskc" xmlns:xenc="http://www.w3.org/2001/04/xmlenc#">
 <EncryptionKey><KeyName xmlns="http://www.w3.org/2000/09/xmldsig#">k</KeyName></EncryptionKey>` + macMethod + `
 <KeyPackage><Key Id="1" Algorithm="urn:ietf:params:xml:ns:keyprov:pskc:hotp"><Data><Secret><EncryptedValue>
  <xenc:EncryptionMethod Algorithm="` + alg + `"/><xenc:CipherData><xenc:CipherValue>` + base64.StdEncoding.EncodeToString(ct) +
			`</xenc:CipherValue></xenc:CipherData></EncryptedValue>` + valueMAC + `</Secret></Data></Key></KeyPackage></KeyContainer>`)
	}
	noKey := `<MACMethod Algorithm="http://www.w3.org/2000/09/xmldsig#hmac-sha1"/>`
	aes128 := xmlenc + "aes128-cbc"
	ct := sealCBC(key, 9, secret)
	changed := append([]byte{}, ct...)
	changed[20] ^= 1
	for name, tc := range map[string]struct {
		data []byte
		ok   bool
	}{
		"key wrap, no ValueMAC":           {file("", xmlenc+"kw-aes128", wrapped, ""), true},
		"key wrap, changed":               {file("", xmlenc+"kw-aes128", append(append([]byte{}, wrapped[:23]...), wrapped[23]^1), ""), false},
		"CBC, no ValueMAC":                {file(noKey, aes128, ct, ""), false},
		"no MAC key: the encryption key":  {file(noKey, aes128, ct, mac(ct)), true},
		"no MAC key, changed":             {file(noKey, aes128, changed, mac(ct)), false},
		"MAC over the plaintext":          {file(noKey, aes128, ct, mac(secret)), true},
		"MAC over the plaintext, changed": {file(noKey, aes128, changed, mac(secret)), false},
	} {
		keys, err := Parse(tc.data, Credentials{PSK: key})
		if tc.ok != (err == nil) || err == nil && !bytes.Equal(keys[0].Secret, secret) {
			t.Errorf("%s: %v %v", name, keys, err)
		}
	}
}

// A file encrypted to a certificate says so, not that --key is missing.
func TestAsymmetricNamed(t *testing.T) {
	in := []byte(`<KeyContainer Version="1.0" xmlns="urn:ietf:params:xml:ns:keyprov:pskc" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" xmlns:xenc="http://www.w3.org/2001/04/xmlenc#">
 <EncryptionKey><ds:X509Data><ds:X509Certificate>MIIB</ds:X509Certificate></ds:X509Data></EncryptionKey>
 <KeyPackage><Key Id="1" Algorithm="urn:ietf:params:xml:ns:keyprov:pskc:hotp"><Data><Secret><EncryptedValue>
  <xenc:EncryptionMethod Algorithm="http://www.w3.org/2001/04/xmlenc#rsa_1_5"/><xenc:CipherData><xenc:CipherValue>AAAA</xenc:CipherValue></xenc:CipherData>
 </EncryptedValue></Secret></Data></Key></KeyPackage></KeyContainer>`)
	_, err := Parse(in, Credentials{})
	if err == nil || !strings.Contains(err.Error(), "public key of a certificate") || strings.Contains(err.Error(), "--key") {
		t.Fatalf("%v", err)
	}
}

// The formats before RFC 6030 (testdata made by us in their layouts),
// with a wrong key refused as in RFC files.
func TestDraftFormats(t *testing.T) {
	key, _ := hex.DecodeString("000102030405060708090a0b0c0d0e0f")
	wrong, _ := hex.DecodeString("000102030405060708090a0b0c0d0e0e")
	for _, tt := range []struct {
		file, secret, serial string
		hotp                 bool
		digits, period       int
		counter              int64
		bad                  int
	}{
		{"hoyer.xml", "hoyer-draft-secret-1", "H-1", true, 8, 30, 42, 0},
		{"draft02.xml", "draft-02-secret-one1", "D-1", false, 6, 60, 0, 1},
	} {
		f, err := ParseAll(read(t, tt.file), Credentials{PSK: key})
		if err != nil || len(f.Keys) != 1 || len(f.Bad) != tt.bad {
			t.Fatalf("%s: %+v %v", tt.file, f, err)
		}
		k := f.Keys[0]
		if string(k.Secret) != tt.secret || k.Serial != tt.serial || k.HOTP != tt.hotp || k.Digits != tt.digits || k.Counter != tt.counter || (!k.HOTP && k.Period != tt.period) {
			t.Errorf("%s: %+v", tt.file, k)
		}
		if _, err := ParseAll(read(t, tt.file), Credentials{PSK: wrong}); !errors.Is(err, ErrMAC) {
			t.Errorf("%s with a wrong key: %v", tt.file, err)
		}
	}
	// draft-hoyer's password-based 3DES.
	keys, err := Parse(read(t, "hoyer-pbe.xml"), Credentials{Password: "correct-horse"})
	if err != nil || len(keys) != 1 || string(keys[0].Secret) != "hoyer-pbe-secret-abc" || !keys[0].HOTP {
		t.Errorf("hoyer-pbe.xml: %+v %v", keys, err)
	}
	if _, err := Parse(read(t, "hoyer-pbe.xml"), Credentials{Password: "correct-horsf"}); !errors.Is(err, ErrMAC) {
		t.Errorf("hoyer-pbe.xml with a wrong password: %v", err)
	}
	// draft-hoyer's device Expiry becomes the key's expiry.
	f, _ := ParseAll(read(t, "hoyer.xml"), Credentials{PSK: key})
	if f.Keys[0].ValidUntil.Year() != 2098 {
		t.Errorf("hoyer expiry: %v", f.Keys[0].ValidUntil)
	}
}

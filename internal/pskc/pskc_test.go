// SPDX-License-Identifier: Apache-2.0

package pskc

import (
	"bytes"
	"encoding/hex"
	"errors"
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
		"7 digits":        {bytes.Replace(fig6, []byte(`Length="8"`), []byte(`Length="7"`), 1), Credentials{PSK: psk}, false},
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
	keys, bad, err := ParseAll(read(t, "suites-and-pin.xml"), Credentials{})
	if err != nil {
		t.Fatal(err)
	}
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
	f.Fuzz(func(t *testing.T, data []byte) {
		// No password: a mutated iteration count would make each run take
		// seconds. The derived-key path is covered by TestDecrypt/TestRefused.
		keys, err := Parse(data, Credentials{PSK: psk})
		if err != nil {
			return
		}
		for _, k := range keys {
			if k.Digits != 6 && k.Digits != 8 || k.Counter < 0 {
				t.Fatalf("accepted %+v", k)
			}
		}
	})
}

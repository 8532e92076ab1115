// SPDX-License-Identifier: Apache-2.0

package pskc

import (
	"encoding/base64"
	"encoding/xml"
	"strings"
	"time"
)

// The format of draft-hoyer-keyprov-portable-symmetric-key-container
// (2006-2007), which ActivIdentity and others shipped before RFC 6030:
// values in <Data Name="SECRET">, one EncryptionMethod (with its IV) and
// one DigestMethod for the whole file, the MAC keyed with the encryption
// key and taken over the plaintext. hoyerContainer reads it, and toRFC
// puts it into RFC 6030's form, so that one decrypter and one set of
// checks serve both.
type hoyerContainer struct {
	XMLName    xml.Name
	Version    string `xml:"version,attr"`
	Encryption struct {
		Algorithm  string `xml:"Algorithm,attr"`
		Algorithm2 string `xml:"algorithm,attr"`
		IV         string `xml:"IV"`
		Salt       string `xml:"PBESalt"`
		Iterations int    `xml:"PBEIterationCount"`
	} `xml:"EncryptionMethod"`
	Digest struct {
		Algorithm  string `xml:"Algorithm,attr"`
		Algorithm2 string `xml:"algorithm,attr"`
	} `xml:"DigestMethod"`
	Signature *struct{}     `xml:"http://www.w3.org/2000/09/xmldsig# Signature"`
	Devices   []hoyerDevice `xml:"Device"`
}

type hoyerDevice struct {
	Serial string     `xml:"DeviceId>SerialNo"`
	Expiry string     `xml:"DeviceId>Expiry"`
	Keys   []hoyerKey `xml:"Key"`
	// Draft 00's name for Key.
	Secrets []hoyerKey `xml:"Secret"`
}

type hoyerKey struct {
	ID        string `xml:"KeyId,attr"`
	ID2       string `xml:"SecretId,attr"`
	Algorithm string `xml:"KeyAlgorithm,attr"`
	Alg2      string `xml:"SecretAlgorithm,attr"`
	Issuer    string `xml:"Issuer"`
	Format    struct {
		Length  int    `xml:"Length,attr"`
		Length2 int    `xml:"length,attr"`
		Format  string `xml:"Format,attr"`
		Format2 string `xml:"format,attr"`
	} `xml:"Usage>ResponseFormat"`
	Data []struct {
		Name   string `xml:"Name,attr"`
		Value  string `xml:"Value"`
		Digest string `xml:"ValueDigest"`
	} `xml:"Data"`
}

// isHoyer reports whether the file's root is the draft's container.
func isHoyer(root xml.Name) bool {
	return root.Local == "SecretContainer" || strings.HasPrefix(root.Space, "urn:ietf:params:xml:ns:keyprov:container") ||
		strings.HasPrefix(root.Space, "http://www.openauthentication.org/OATH/2006")
}

// hoyerPBE are the draft's password-based encryptions.
var hoyerPBE = map[string]struct {
	alg    string
	keyLen int
}{
	"PBE-3DES112-CBC": {xmlenc + "tripledes-cbc", 16},
	"PBE-3DES168-CBC": {xmlenc + "tripledes-cbc", 24},
	"PBE-AES128-CBC":  {xmlenc + "aes128-cbc", 16},
	"PBE-AES192-CBC":  {xmlenc + "aes192-cbc", 24},
	"PBE-AES256-CBC":  {xmlenc + "aes256-cbc", 32},
}

// fromHoyer reads the draft's container into RFC 6030's form.
func fromHoyer(h *hoyerContainer) (*container, error) {
	c := &container{Version: "1.0", Signature: h.Signature}
	enc := strings.TrimSpace(h.Encryption.Algorithm + h.Encryption.Algorithm2)
	pbe, isPBE := hoyerPBE[strings.ToUpper(enc)]
	switch {
	case enc == "" || strings.EqualFold(enc, "NONE"):
		enc = ""
	case isPBE:
		// A key derived from the password with PBKDF2 (HMAC-SHA1), as
		// RFC 6030 later wrote out in full.
		enc = pbe.alg
		c.EncryptionKey = &encryptionKey{DerivedKey: &derivedKey{}}
		m := &c.EncryptionKey.DerivedKey.Method
		m.Algorithm = nsPBKDF2
		m.Params.Salt, m.Params.Iterations, m.Params.KeyLength = h.Encryption.Salt, h.Encryption.Iterations, pbe.keyLen
	default:
		if _, err := cipherFor(enc); err != nil {
			return nil, err
		}
		c.EncryptionKey = &encryptionKey{}
	}
	if enc != "" {
		mac := strings.TrimSpace(h.Digest.Algorithm + h.Digest.Algorithm2)
		if strings.EqualFold(mac, "HMAC-SHA1") {
			mac = nsHMAC
		}
		c.MACMethod = &macMethod{Algorithm: mac}
	}
	iv := strings.Join(strings.Fields(h.Encryption.IV), "")
	for _, d := range h.Devices {
		expiry, err := time.Parse("01/02/2006", strings.TrimSpace(d.Expiry))
		for _, k := range append(d.Keys, d.Secrets...) {
			e := keyElem{ID: k.ID + k.ID2, Algorithm: strings.ToLower(k.Algorithm + k.Alg2), Issuer: k.Issuer}
			if !strings.Contains(e.Algorithm, "#") {
				e.Algorithm = "pskc#" + e.Algorithm // the draft's bare "HOTP"
			}
			e.Format = responseFormat{Length: k.Format.Length + k.Format.Length2, Encoding: k.Format.Format + k.Format.Format2}
			if err == nil {
				e.Policy = &policy{ExpiryDate: expiry.Format(time.RFC3339)}
			}
			for _, v := range k.Data {
				val := hoyerValue(v.Value, v.Digest, enc, iv, v.Name == "SECRET")
				switch v.Name {
				case "SECRET":
					e.Secret = *val
				case "COUNTER":
					e.Counter = val
				case "TIME":
					e.Time = val
				case "TIME_INTERVAL":
					e.TimeInterval = val
				case "TIME_DRIFT":
					e.TimeDrift = val
				}
			}
			c.Packages = append(c.Packages, keyPackage{Serial: d.Serial, Keys: []keyElem{e}})
		}
	}
	return c, nil
}

// hoyerValue is a draft value: plain, or ciphertext under the file's one
// IV. A secret is encrypted whenever the file is; other values are
// encrypted only where they carry a digest.
func hoyerValue(v, digest, enc, iv string, secret bool) *value {
	v = strings.Join(strings.Fields(v), "")
	if enc == "" || (!secret && strings.TrimSpace(digest) == "") {
		return &value{PlainValue: &v}
	}
	e := &encrypted{CipherValue: v}
	if iv != "" {
		// The file's one IV goes before each value, where RFC 6030 has it.
		a, err1 := base64.StdEncoding.DecodeString(iv)
		b, err2 := base64.StdEncoding.DecodeString(v)
		e.CipherValue = "!" // not base64: refused as such
		if err1 == nil && err2 == nil {
			e.CipherValue = base64.StdEncoding.EncodeToString(append(a, b...))
		}
	}
	e.Method.Algorithm = enc
	return &value{EncryptedValue: e, ValueMAC: digest}
}

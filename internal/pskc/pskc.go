// SPDX-License-Identifier: Apache-2.0

// Package pskc reads key packages of the Portable Symmetric Key Container
// (RFC 6030), the file hardware token vendors ship with their tokens:
// plaintext secrets, secrets encrypted with AES-CBC under a pre-shared key,
// and under a key derived from a password with PBKDF2. An encrypted secret
// is used only after its HMAC-SHA1 ValueMAC matched.
package pskc

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"strings"
)

// MaxSize bounds the file.
const MaxSize = 4 << 20

// Key is one token's key package.
type Key struct {
	ID, Serial, Issuer string
	HOTP               bool // counter-based; else time-based
	Secret             []byte
	Digits             int
	Counter            int64 // HOTP
	Period             int   // TOTP, seconds
	// Hash is the HMAC's hash from <Suite>: SHA1 (the default), SHA256
	// or SHA512.
	Hash string
	// Package is the key package's place in the file, from 1.
	Package int
}

// Credentials decrypt encrypted secrets: a pre-shared AES key, or the
// password of a PBKDF2-derived key.
type Credentials struct {
	PSK      []byte
	Password string
}

// ErrMAC is returned when a ValueMAC does not match: a wrong key or password,
// or a changed file.
var ErrMAC = errors.New("the ValueMAC does not match: wrong key or password, or the file was changed")

const (
	nsAES128 = "http://www.w3.org/2001/04/xmlenc#aes128-cbc"
	nsAES192 = "http://www.w3.org/2001/04/xmlenc#aes192-cbc"
	nsAES256 = "http://www.w3.org/2001/04/xmlenc#aes256-cbc"
	nsHMAC   = "http://www.w3.org/2000/09/xmldsig#hmac-sha1"
	nsPBKDF2 = "http://www.rsasecurity.com/rsalabs/pkcs/schemas/pkcs-5v2-0#pbkdf2"
)

type encrypted struct {
	Method struct {
		Algorithm string `xml:"Algorithm,attr"`
	} `xml:"EncryptionMethod"`
	CipherValue string `xml:"CipherData>CipherValue"`
}

type value struct {
	PlainValue     *string    `xml:"PlainValue"`
	EncryptedValue *encrypted `xml:"EncryptedValue"`
	ValueMAC       string     `xml:"ValueMAC"`
}

type container struct {
	XMLName       xml.Name `xml:"KeyContainer"`
	Version       string   `xml:"Version,attr"`
	EncryptionKey *struct {
		KeyName    string `xml:"KeyName"`
		DerivedKey *struct {
			Method struct {
				Algorithm string `xml:"Algorithm,attr"`
				Params    struct {
					Salt       string `xml:"Salt>Specified"`
					Iterations int    `xml:"IterationCount"`
					KeyLength  int    `xml:"KeyLength"`
					PRF        struct {
						Algorithm string `xml:"Algorithm,attr"`
					} `xml:"PRF"`
				} `xml:"PBKDF2-params"`
			} `xml:"KeyDerivationMethod"`
		} `xml:"DerivedKey"`
	} `xml:"EncryptionKey"`
	MACMethod *struct {
		Algorithm string    `xml:"Algorithm,attr"`
		MACKey    encrypted `xml:"MACKey"`
	} `xml:"MACMethod"`
	Packages []keyPackage `xml:"KeyPackage"`
}

type keyPackage struct {
	Serial string `xml:"DeviceInfo>SerialNo"`
	Key    struct {
		ID        string `xml:"Id,attr"`
		Algorithm string `xml:"Algorithm,attr"`
		Issuer    string `xml:"Issuer"`
		Suite     string `xml:"AlgorithmParameters>Suite"`
		Format    struct {
			Length   int    `xml:"Length,attr"`
			Encoding string `xml:"Encoding,attr"`
		} `xml:"AlgorithmParameters>ResponseFormat"`
		Secret       value  `xml:"Data>Secret"`
		Counter      *value `xml:"Data>Counter"`
		TimeInterval *value `xml:"Data>TimeInterval"`
	} `xml:"Key"`
}

// Parse reads every key package; any problem refuses the whole file.
func Parse(data []byte, cred Credentials) ([]Key, error) {
	keys, bad, err := ParseAll(data, cred)
	if err == nil && len(bad) > 0 {
		err = bad[0]
	}
	if err != nil {
		return nil, err
	}
	return keys, nil
}

// ParseAll reads every key package. A package that cannot be used (an
// OCRA or PIN key, an unknown suite, a secret that does not decrypt) is
// one error in bad, naming its serial, and the others are read; a file
// that is not a PSKC file at all is err.
func ParseAll(data []byte, cred Credentials) (keys []Key, bad []error, err error) {
	if len(data) > MaxSize {
		return nil, nil, fmt.Errorf("file larger than %d bytes", MaxSize)
	}
	var c container
	d := xml.NewDecoder(bytes.NewReader(data))
	d.Strict = true
	d.Entity = map[string]string{} // no entity expansion beyond XML's own
	if err := d.Decode(&c); err != nil {
		return nil, nil, fmt.Errorf("not a PSKC file: %w", err)
	}
	if c.Version != "1.0" {
		return nil, nil, fmt.Errorf("PSKC version %q, want 1.0", c.Version)
	}
	if len(c.Packages) == 0 {
		return nil, nil, errors.New("no key package")
	}
	dec := &decrypter{c: &c, cred: cred}
	macs := 0
	for i, p := range c.Packages {
		k, err := dec.readKey(&c.Packages[i])
		if err != nil {
			if errors.Is(err, ErrMAC) {
				macs++
			}
			name := fmt.Sprintf("key package %d (Id %q", i+1, p.Key.ID)
			if sn := strings.TrimSpace(p.Serial); sn != "" {
				name += fmt.Sprintf(", serial %q", sn)
			}
			bad = append(bad, fmt.Errorf("%s): %w", name, err))
			continue
		}
		k.Package = i + 1
		keys = append(keys, k)
	}
	if macs == len(c.Packages) {
		// Not one secret opened: the key or the password is wrong.
		return nil, nil, ErrMAC
	}
	return keys, bad, nil
}

// readKey reads one key package.
func (dec *decrypter) readKey(p *keyPackage) (Key, error) {
	k := Key{ID: p.Key.ID, Serial: strings.TrimSpace(p.Serial), Issuer: strings.TrimSpace(p.Key.Issuer), Digits: 6, Hash: "SHA1"}
	switch a := p.Key.Algorithm; {
	case strings.HasSuffix(a, "pskc:hotp") || strings.HasSuffix(a, "pskc#hotp"):
		k.HOTP = true
	case strings.HasSuffix(a, "pskc:totp") || strings.HasSuffix(a, "pskc#totp"):
	default:
		return Key{}, fmt.Errorf("unsupported algorithm %q (want HOTP or TOTP)", a)
	}
	switch strings.ToUpper(strings.TrimSpace(p.Key.Suite)) {
	case "", "HMAC-SHA1", "SHA1":
	case "HMAC-SHA256", "SHA256":
		k.Hash = "SHA256"
	case "HMAC-SHA512", "SHA512":
		k.Hash = "SHA512"
	default:
		return Key{}, fmt.Errorf("unsupported suite %q (want HMAC-SHA1, HMAC-SHA256 or HMAC-SHA512)", p.Key.Suite)
	}
	if f := p.Key.Format; f.Length != 0 || f.Encoding != "" {
		if f.Encoding != "DECIMAL" || (f.Length != 6 && f.Length != 8) {
			return Key{}, fmt.Errorf("response format %d %s: want 6 or 8 DECIMAL digits", f.Length, f.Encoding)
		}
		k.Digits = f.Length
	}
	secret, err := dec.value(&p.Key.Secret)
	if err != nil {
		return Key{}, fmt.Errorf("secret: %w", err)
	}
	k.Secret = secret
	if k.Counter, err = dec.number(p.Key.Counter, 0); err != nil {
		return Key{}, fmt.Errorf("counter: %w", err)
	}
	period, err := dec.number(p.Key.TimeInterval, 30)
	if err != nil {
		return Key{}, fmt.Errorf("time interval: %w", err)
	}
	k.Period = int(period)
	return k, nil
}

type decrypter struct {
	c    *container
	cred Credentials
	key  []byte // the encryption key, once derived
	mac  []byte // the MAC key, once decrypted
}

// number reads an integer value (plain, or encrypted as 8 bytes big-endian).
func (d *decrypter) number(v *value, def int64) (int64, error) {
	if v == nil {
		return def, nil
	}
	var b []byte
	if v.PlainValue != nil {
		text := strings.TrimSpace(*v.PlainValue)
		n, err := strconv.ParseInt(text, 10, 64)
		if err == nil && n >= 0 {
			return n, nil
		}
		// Some vendors write a number as base64 of its big-endian bytes.
		if b, err = base64.StdEncoding.Strict().DecodeString(text); err != nil {
			return 0, fmt.Errorf("%q is neither a whole number nor base64", *v.PlainValue)
		}
	} else {
		var err error
		if b, err = d.value(v); err != nil {
			return 0, err
		}
	}
	if len(b) == 0 || len(b) > 8 {
		return 0, errors.New("bad encrypted number")
	}
	var n int64
	for _, x := range b {
		n = n<<8 | int64(x)
	}
	if n < 0 {
		return 0, errors.New("bad encrypted number")
	}
	return n, nil
}

// value returns a plaintext value, or decrypts one after checking its MAC.
func (d *decrypter) value(v *value) ([]byte, error) {
	switch {
	case v.PlainValue != nil:
		b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(*v.PlainValue))
		if err != nil {
			return nil, errors.New("the plain value is not base64")
		}
		return b, nil
	case v.EncryptedValue == nil:
		return nil, errors.New("no value")
	}
	key, err := d.encryptionKey()
	if err != nil {
		return nil, err
	}
	macKey, err := d.macKey()
	if err != nil {
		return nil, err
	}
	ct, err := cipherValue(v.EncryptedValue)
	if err != nil {
		return nil, err
	}
	want, err := base64.StdEncoding.Strict().DecodeString(strings.TrimSpace(v.ValueMAC))
	if err != nil || len(want) == 0 {
		return nil, errors.New("an encrypted value needs a ValueMAC")
	}
	h, err := d.macHash()
	if err != nil {
		return nil, err
	}
	m := hmac.New(h, macKey)
	m.Write(ct)
	if !hmac.Equal(m.Sum(nil), want) {
		return nil, ErrMAC
	}
	return decryptCBC(key, v.EncryptedValue.Method.Algorithm, ct)
}

func (d *decrypter) encryptionKey() ([]byte, error) {
	if d.key != nil {
		return d.key, nil
	}
	ek := d.c.EncryptionKey
	switch {
	case ek == nil:
		return nil, errors.New("encrypted value without an EncryptionKey")
	case ek.DerivedKey != nil:
		m := ek.DerivedKey.Method
		if m.Algorithm != nsPBKDF2 {
			return nil, fmt.Errorf("unsupported key derivation %q", m.Algorithm)
		}
		if d.cred.Password == "" {
			return nil, errors.New("the key is derived from a password: give --password or --password-file")
		}
		salt, err := base64.StdEncoding.DecodeString(strings.TrimSpace(m.Params.Salt))
		p := m.Params
		if err != nil || len(salt) == 0 || p.Iterations < 1 || p.Iterations > 1_000_000 || (p.KeyLength != 16 && p.KeyLength != 24 && p.KeyLength != 32) {
			return nil, errors.New("bad PBKDF2 parameters")
		}
		if p.PRF.Algorithm != "" && !strings.HasSuffix(p.PRF.Algorithm, "hmac-sha1") && !strings.HasSuffix(p.PRF.Algorithm, "hmac-sha256") {
			return nil, fmt.Errorf("unsupported PBKDF2 PRF %q", p.PRF.Algorithm)
		}
		if strings.HasSuffix(p.PRF.Algorithm, "hmac-sha256") {
			d.key, err = pbkdf2.Key(sha256.New, d.cred.Password, salt, p.Iterations, p.KeyLength)
		} else {
			d.key, err = pbkdf2.Key(sha1.New, d.cred.Password, salt, p.Iterations, p.KeyLength)
		}
		return d.key, err
	default:
		if d.cred.PSK == nil {
			return nil, fmt.Errorf("the file is encrypted with a pre-shared key (%q): give --key HEX", strings.TrimSpace(ek.KeyName))
		}
		d.key = d.cred.PSK
		return d.key, nil
	}
}

// macKey is the MAC key of the container, which the encryption key protects.
func (d *decrypter) macKey() ([]byte, error) {
	if d.mac != nil {
		return d.mac, nil
	}
	mm := d.c.MACMethod
	if mm == nil {
		return nil, errors.New("encrypted values without a MACMethod cannot be checked; refused")
	}
	if _, err := d.macHash(); err != nil {
		return nil, err
	}
	ct, err := cipherValue(&mm.MACKey)
	if err != nil {
		return nil, fmt.Errorf("MAC key: %w", err)
	}
	key, err := d.encryptionKey()
	if err != nil {
		return nil, err
	}
	// A wrong key garbles the padding here first: decryptCBC says ErrMAC.
	mk, err := decryptCBC(key, mm.MACKey.Method.Algorithm, ct)
	if err != nil {
		return nil, err
	}
	d.mac = mk
	return mk, nil
}

// macHashes are the ValueMAC algorithms (RFC 6030 §6.1.1, and RFC 6931's
// names for the SHA-2 HMACs).
var macHashes = map[string]func() hash.Hash{
	nsHMAC: sha1.New,
	"http://www.w3.org/2001/04/xmldsig-more#hmac-sha224": sha256.New224,
	"http://www.w3.org/2001/04/xmldsig-more#hmac-sha256": sha256.New,
	"http://www.w3.org/2001/04/xmldsig-more#hmac-sha384": sha512.New384,
	"http://www.w3.org/2001/04/xmldsig-more#hmac-sha512": sha512.New,
}

// macHash is the hash of the container's MACMethod.
func (d *decrypter) macHash() (func() hash.Hash, error) {
	mm := d.c.MACMethod
	if mm == nil {
		return nil, errors.New("encrypted values without a MACMethod cannot be checked; refused")
	}
	h, ok := macHashes[strings.TrimSpace(mm.Algorithm)]
	if !ok {
		return nil, fmt.Errorf("unsupported MAC %q (want HMAC-SHA1, SHA224, SHA256, SHA384 or SHA512)", mm.Algorithm)
	}
	return h, nil
}

func cipherValue(e *encrypted) ([]byte, error) {
	ct, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(e.CipherValue), ""))
	if err != nil {
		return nil, errors.New("the cipher value is not base64")
	}
	if len(ct) < 2*aes.BlockSize || len(ct)%aes.BlockSize != 0 {
		return nil, errors.New("the cipher value is not an IV and whole AES blocks")
	}
	return ct, nil
}

// decryptCBC decrypts IV || ciphertext and removes the PKCS#7 padding.
func decryptCBC(key []byte, alg string, ct []byte) ([]byte, error) {
	want := map[string]int{nsAES128: 16, nsAES192: 24, nsAES256: 32}[alg]
	if want == 0 {
		return nil, fmt.Errorf("unsupported encryption %q (want AES-CBC)", alg)
	}
	if len(key) != want {
		return nil, fmt.Errorf("the key has %d bytes; %s needs %d", len(key), alg, want)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	pt := make([]byte, len(ct)-aes.BlockSize)
	cipher.NewCBCDecrypter(block, ct[:aes.BlockSize]).CryptBlocks(pt, ct[aes.BlockSize:])
	n := int(pt[len(pt)-1])
	if n < 1 || n > aes.BlockSize || !bytes.Equal(pt[len(pt)-n:], bytes.Repeat([]byte{byte(n)}, n)) {
		return nil, ErrMAC
	}
	return pt[:len(pt)-n], nil
}

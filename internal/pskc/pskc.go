// SPDX-License-Identifier: Apache-2.0

// Package pskc reads key packages of the Portable Symmetric Key Container
// (RFC 6030), the file hardware token vendors ship with their tokens:
// plaintext secrets, and secrets encrypted (AES-CBC, AES key wrap, 3DES)
// under a pre-shared key or a key derived from a password with PBKDF2. An
// encrypted secret is used only after its ValueMAC, or its key wrap's own
// integrity check, matched. A key whose policy pam_totp cannot honour is
// refused by name, never imported without it.
package pskc

import (
	"bytes"
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
	"time"
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
	// User is whose token the file says it is (the key's UserId, else the
	// device's), "" if it does not say.
	User string
	// ValidFrom and ValidUntil are the policy's StartDate and ExpiryDate,
	// zero if none.
	ValidFrom, ValidUntil time.Time
	// Drift is the TimeDrift: steps the token's clock is ahead (+) or
	// behind (-).
	Drift int64
}

// File is what ParseAll read.
type File struct {
	Keys []Key
	// Bad holds one *PackageError per key package that cannot be used.
	Bad []error
	// Signed says the file carries an XML signature. It is not checked.
	Signed bool
}

// PackageError says why a key package cannot be used, and which it is.
type PackageError struct {
	Package    int // its place in the file, from 1
	ID, Serial string
	Err        error
}

func (e *PackageError) Error() string {
	return fmt.Sprintf("key package %d (Id %q, serial %q): %v", e.Package, e.ID, e.Serial, e.Err)
}

func (e *PackageError) Unwrap() error { return e.Err }

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

type encryptionKey struct {
	KeyName    string      `xml:"KeyName"`
	X509Data   *struct{}   `xml:"X509Data"`
	KeyValue   *struct{}   `xml:"KeyValue"`
	DerivedKey *derivedKey `xml:"DerivedKey"`
}

type derivedKey struct {
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
}

type macMethod struct {
	Algorithm string     `xml:"Algorithm,attr"`
	MACKey    *encrypted `xml:"MACKey"`
}

type container struct {
	XMLName       xml.Name       `xml:"KeyContainer"`
	Version       string         `xml:"Version,attr"`
	Signature     *struct{}      `xml:"http://www.w3.org/2000/09/xmldsig# Signature"`
	EncryptionKey *encryptionKey `xml:"EncryptionKey"`
	MACMethod     *macMethod     `xml:"MACMethod"`
	Packages      []keyPackage   `xml:"KeyPackage"`
	// draft-ietf-keyprov-pskc-02, which vendors wrote before RFC 6030:
	// <Device> for <KeyPackage>, and <MACAlgorithm> for a MACMethod
	// whose key is the encryption key.
	Devices      []keyPackage `xml:"Device"`
	MACAlgorithm string       `xml:"MACAlgorithm"`
}

type responseFormat struct {
	Length      int    `xml:"Length,attr"`
	Encoding    string `xml:"Encoding,attr"`
	CheckDigits string `xml:"CheckDigits,attr"`
	Format      string `xml:"Format,attr"` // the draft's name for Encoding
}

// element is any element, to find those a key's policy has that
// pam_totp does not know.
type element struct {
	XMLName xml.Name
}

type policy struct {
	StartDate    string   `xml:"StartDate"`
	ExpiryDate   string   `xml:"ExpiryDate"`
	KeyUsage     []string `xml:"KeyUsage"`
	Transactions *string  `xml:"NumberOfTransactions"`
	// The PIN policy's attributes RFC 6030 defines are named, so that
	// OtherAttrs holds only those pam_totp does not know.
	PINPolicy *struct {
		PINKeyID   string     `xml:"PINKeyId,attr"`
		Mode       string     `xml:"PINUsageMode,attr"`
		MinLength  string     `xml:"MinLength,attr"`
		MaxLength  string     `xml:"MaxLength,attr"`
		Format     string     `xml:"PINEncoding,attr"`
		MaxFailed  string     `xml:"MaxFailedAttempts,attr"`
		OtherAttrs []xml.Attr `xml:",any,attr"`
		Other      []element  `xml:",any"`
	} `xml:"PINPolicy"`
	Other []element `xml:",any"`
}

// keyPackage is a <KeyPackage>, which holds one key, or a draft's
// <Device>, which may hold several; ParseAll gives each key its own.
type keyPackage struct {
	Serial     string    `xml:"DeviceInfo>SerialNo"`
	DeviceUser string    `xml:"DeviceInfo>UserId"`
	Keys       []keyElem `xml:"Key"`
	Key        *keyElem  `xml:"-"`
}

type keyElem struct {
	ID           string         `xml:"Id,attr"`
	Algorithm    string         `xml:"Algorithm,attr"`
	DraftID      string         `xml:"KeyId,attr"`
	DraftAlg     string         `xml:"KeyAlgorithm,attr"`
	Issuer       string         `xml:"Issuer"`
	User         string         `xml:"UserId"`
	Policy       *policy        `xml:"Policy"`
	Suite        string         `xml:"AlgorithmParameters>Suite"`
	Format       responseFormat `xml:"AlgorithmParameters>ResponseFormat"`
	Usage        responseFormat `xml:"Usage>ResponseFormat"` // the draft's place
	Secret       value          `xml:"Data>Secret"`
	Counter      *value         `xml:"Data>Counter"`
	Time         *value         `xml:"Data>Time"`
	TimeInterval *value         `xml:"Data>TimeInterval"`
	TimeDrift    *value         `xml:"Data>TimeDrift"`
}

// Parse reads every key package; any problem refuses the whole file.
func Parse(data []byte, cred Credentials) ([]Key, error) {
	f, err := ParseAll(data, cred)
	if err == nil && len(f.Bad) > 0 {
		err = f.Bad[0]
	}
	if err != nil {
		return nil, err
	}
	return f.Keys, nil
}

// ParseAll reads every key package. A package that cannot be used (an
// OCRA or PIN key, an unknown suite, a policy pam_totp cannot honour) is
// one error in Bad, naming its serial, and the others are read; a file
// that is not a PSKC file at all, or that no key or password opens, is err.
func ParseAll(data []byte, cred Credentials) (*File, error) {
	if len(data) > MaxSize {
		return nil, fmt.Errorf("file larger than %d bytes", MaxSize)
	}
	root, err := rootElement(data)
	if err != nil {
		return nil, fmt.Errorf("not a PSKC file: %w", err)
	}
	var c container
	if isHoyer(root) {
		var h hoyerContainer
		if err := decodeXML(data, &h); err != nil {
			return nil, fmt.Errorf("not a PSKC file: %w", err)
		}
		cp, err := fromHoyer(&h)
		if err != nil {
			return nil, err
		}
		c = *cp
	} else if err := decodeXML(data, &c); err != nil {
		return nil, fmt.Errorf("not a PSKC file: %w", err)
	}
	draft := len(c.Packages) == 0 && len(c.Devices) > 0
	if draft {
		fromDraft(&c)
	}
	for i := range c.Packages {
		if p := &c.Packages[i]; len(p.Keys) == 1 {
			p.Key = &p.Keys[0]
		}
	}
	if c.Version != "1.0" && !(draft && c.Version == "1") {
		return nil, fmt.Errorf("PSKC version %q, want 1.0", c.Version)
	}
	if len(c.Packages) == 0 {
		return nil, errors.New("no key package")
	}
	f := &File{Signed: c.Signature != nil}
	dec := &decrypter{c: &c, cred: cred}
	macs := 0
	for i, p := range c.Packages {
		k, err := dec.readKey(&c.Packages[i])
		if err != nil {
			if errors.Is(err, ErrMAC) {
				macs++
			}
			pe := &PackageError{Package: i + 1, Serial: strings.TrimSpace(p.Serial), Err: err}
			if p.Key != nil {
				pe.ID = p.Key.ID
			}
			f.Bad = append(f.Bad, pe)
			continue
		}
		k.Package = i + 1
		f.Keys = append(f.Keys, k)
	}
	if macs > 0 && len(f.Keys) == 0 {
		// Not one secret opened: the key or the password is wrong.
		return nil, ErrMAC
	}
	return f, nil
}

func newDecoder(data []byte) *xml.Decoder {
	d := xml.NewDecoder(bytes.NewReader(data))
	d.Strict = true
	d.Entity = map[string]string{} // no entity expansion beyond XML's own
	return d
}

func decodeXML(data []byte, v any) error { return newDecoder(data).Decode(v) }

// rootElement is the name of the document's first element.
func rootElement(data []byte) (xml.Name, error) {
	d := newDecoder(data)
	for {
		t, err := d.Token()
		if err != nil {
			return xml.Name{}, err
		}
		if se, ok := t.(xml.StartElement); ok {
			return se.Name, nil
		}
	}
}

// fromDraft moves what draft-ietf-keyprov-pskc-02 files say into RFC
// 6030's places; the rest of the format is the same.
func fromDraft(c *container) {
	for _, d := range c.Devices {
		for _, k := range d.Keys {
			k.ID, k.Algorithm, k.Format = k.DraftID, k.DraftAlg, k.Usage
			if k.Format.Encoding == "" {
				k.Format.Encoding = k.Format.Format
			}
			c.Packages = append(c.Packages, keyPackage{Serial: d.Serial, DeviceUser: d.DeviceUser, Keys: []keyElem{k}})
		}
	}
	c.Devices = nil
	if a := strings.TrimSpace(c.MACAlgorithm); a != "" && c.MACMethod == nil {
		c.MACMethod = &macMethod{Algorithm: a}
	}
}

// readKey reads one key package.
func (dec *decrypter) readKey(p *keyPackage) (Key, error) {
	if p.Key == nil {
		return Key{}, fmt.Errorf("a key package holds one key, not %d", len(p.Keys))
	}
	if err := checkTypes(p.Key); err != nil {
		return Key{}, err
	}
	k := Key{ID: p.Key.ID, Serial: strings.TrimSpace(p.Serial), Issuer: strings.TrimSpace(p.Key.Issuer), Digits: 6, Hash: "SHA1",
		User: strings.TrimSpace(p.Key.User)}
	if k.User == "" {
		k.User = strings.TrimSpace(p.DeviceUser)
	}
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
		if f.Encoding != "DECIMAL" || f.Length < 6 || f.Length > 8 {
			return Key{}, fmt.Errorf("response format %d %s: want 6 to 8 DECIMAL digits", f.Length, f.Encoding)
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
	t0, err := dec.number(p.Key.Time, 0)
	switch {
	case err != nil:
		return Key{}, fmt.Errorf("time: %w", err)
	case t0 != 0 && !k.HOTP:
		// RFC 6030's <Time> is T0, where the token starts counting steps.
		return Key{}, fmt.Errorf("Time (T0) is %d, not 0: the token counts steps from another start than 1970, which pam_totp does not support", t0)
	}
	if k.Drift, err = dec.signed(p.Key.TimeDrift); err != nil {
		return Key{}, fmt.Errorf("time drift: %w", err)
	}
	if err := readPolicy(p.Key.Policy, &k); err != nil {
		return Key{}, err
	}
	return k, nil
}

// checkTypes refuses values that are not of their schema type, so that
// a broken file is named as such and not by what it then lacks.
func checkTypes(k *keyElem) error {
	if c := strings.TrimSpace(k.Format.CheckDigits); c != "" {
		b, err := strconv.ParseBool(c)
		switch {
		case err != nil:
			return fmt.Errorf("ResponseFormat CheckDigits %q is not a boolean", c)
		case b:
			return errors.New("the codes end in a Luhn check digit (CheckDigits), which pam_totp does not support")
		}
	}
	if p := k.Policy; p != nil {
		if n := p.Transactions; n != nil {
			if _, err := strconv.ParseUint(strings.TrimSpace(*n), 10, 63); err != nil {
				return fmt.Errorf("NumberOfTransactions %q is not a whole number", strings.TrimSpace(*n))
			}
		}
		if pin := p.PINPolicy; pin != nil {
			for name, v := range map[string]string{"MinLength": pin.MinLength, "MaxLength": pin.MaxLength, "MaxFailedAttempts": pin.MaxFailed} {
				if _, err := strconv.ParseUint(strings.TrimSpace(v), 10, 31); v != "" && err != nil {
					return fmt.Errorf("PINPolicy %s %q is not a whole number", name, v)
				}
			}
		}
	}
	if strings.TrimSpace(k.Algorithm) == "" {
		return errors.New("the key names no Algorithm")
	}
	return nil
}

// readPolicy takes a key's validity dates, and refuses a policy that
// pam_totp cannot honour: RFC 6030 section 5 says a key whose policy has an
// element the recipient does not understand must not be used.
func readPolicy(p *policy, k *Key) error {
	if p == nil {
		return nil
	}
	for _, e := range p.Other {
		return fmt.Errorf("policy element <%s> is not understood, so the key must not be used (RFC 6030 section 5)", e.XMLName.Local)
	}
	if p.Transactions != nil {
		return fmt.Errorf("the policy limits the key to %s uses (NumberOfTransactions), which pam_totp does not enforce", strings.TrimSpace(*p.Transactions))
	}
	if len(p.KeyUsage) > 0 {
		otp := false
		for _, u := range p.KeyUsage {
			otp = otp || strings.TrimSpace(u) == "OTP"
		}
		if !otp {
			return fmt.Errorf("the key's usage is %s, not OTP", strings.Join(p.KeyUsage, ", "))
		}
	}
	if pin := p.PINPolicy; pin != nil {
		switch {
		case len(pin.Other) > 0:
			return fmt.Errorf("PIN policy element <%s> is not understood, so the key must not be used (RFC 6030 section 5)", pin.Other[0].XMLName.Local)
		case len(pin.OtherAttrs) > 0:
			return fmt.Errorf("PIN policy attribute %s is not understood, so the key must not be used (RFC 6030 section 5)", pin.OtherAttrs[0].Name.Local)
		case pin.Mode != "Local":
			// Prepend, Append and Algorithmic mean the server checks a PIN.
			return fmt.Errorf("the PIN is to be checked by the server (PINUsageMode %q); pam_totp checks codes only, so use the device's own PIN (Local)", pin.Mode)
		}
	}
	var err error
	if k.ValidFrom, err = date(p.StartDate); err != nil {
		return fmt.Errorf("start date: %w", err)
	}
	if k.ValidUntil, err = date(p.ExpiryDate); err != nil {
		return fmt.Errorf("expiry date: %w", err)
	}
	if !k.ValidFrom.IsZero() && !k.ValidUntil.IsZero() && !k.ValidUntil.After(k.ValidFrom) {
		return errors.New("the expiry date is not after the start date")
	}
	return nil
}

// date reads an xs:dateTime, which may leave out the time zone (then UTC).
func date(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999"} {
		if t, err := time.Parse(layout, s); err == nil && t.Unix() > 0 {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not a date and time", s)
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

// signed reads a number that may be negative, such as a drift.
func (d *decrypter) signed(v *value) (int64, error) {
	if v != nil && v.PlainValue != nil {
		if n, err := strconv.ParseInt(strings.TrimSpace(*v.PlainValue), 10, 64); err == nil {
			return n, nil
		}
	}
	return d.number(v, 0)
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
	ct, err := cipherValue(v.EncryptedValue)
	if err != nil {
		return nil, err
	}
	alg := strings.TrimSpace(v.EncryptedValue.Method.Algorithm)
	c, err := cipherFor(alg)
	if err != nil {
		return nil, err
	}
	mac := strings.TrimSpace(v.ValueMAC)
	if c.wrap && mac == "" {
		// A key wrap carries its own integrity check.
		return decrypt(key, alg, ct)
	}
	want, err := base64.StdEncoding.Strict().DecodeString(mac)
	if err != nil || len(want) == 0 {
		return nil, errors.New("an encrypted value needs a ValueMAC")
	}
	h, macKey, err := d.macKey()
	if err != nil {
		return nil, err
	}
	if macOK(h, macKey, ct, want) {
		return decrypt(key, alg, ct)
	}
	// Files before RFC 6030 took the MAC over the plaintext. A changed
	// ciphertext matches neither.
	pt, err := decrypt(key, alg, ct)
	if err != nil || !macOK(h, macKey, pt, want) {
		return nil, ErrMAC
	}
	return pt, nil
}

func macOK(h func() hash.Hash, key, data, want []byte) bool {
	m := hmac.New(h, key)
	m.Write(data)
	return hmac.Equal(m.Sum(nil), want)
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
	case ek.X509Data != nil || ek.KeyValue != nil:
		return nil, errors.New("the secrets are encrypted to the public key of a certificate (RFC 6030 section 6.3), which pam_totp does not read: ask the vendor for a file protected with a pre-shared key or a password")
	default:
		if d.cred.PSK == nil {
			return nil, fmt.Errorf("the file is encrypted with a pre-shared key (%q): give --key HEX", strings.TrimSpace(ek.KeyName))
		}
		d.key = d.cred.PSK
		return d.key, nil
	}
}

// macKey is the container's MAC hash and key. The key is encrypted with
// the encryption key, or, in files written before RFC 6030, is the
// encryption key itself.
func (d *decrypter) macKey() (func() hash.Hash, []byte, error) {
	h, err := d.macHash()
	if err != nil {
		return nil, nil, err
	}
	if d.mac != nil {
		return h, d.mac, nil
	}
	key, err := d.encryptionKey()
	if err != nil {
		return nil, nil, err
	}
	mk := d.c.MACMethod.MACKey
	if mk == nil {
		d.mac = key
		return h, key, nil
	}
	ct, err := cipherValue(mk)
	if err != nil {
		return nil, nil, fmt.Errorf("MAC key: %w", err)
	}
	// A wrong key garbles the padding here first: decrypt says ErrMAC.
	if d.mac, err = decrypt(key, mk.Method.Algorithm, ct); err != nil {
		return nil, nil, err
	}
	return h, d.mac, nil
}

// macHashes are the ValueMAC algorithms (RFC 6030 §6.1.1, and RFC 6931's
// names for the SHA-2 HMACs).
var macHashes = map[string]func() hash.Hash{
	nsHMAC: sha1.New,
	"http://www.w3.org/2001/04/xmldsig-more#hmac-sha1":   sha1.New, // a name some files use
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
	if err != nil || len(ct) == 0 {
		return nil, errors.New("the cipher value is not base64")
	}
	return ct, nil
}

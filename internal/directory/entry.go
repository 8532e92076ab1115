// SPDX-License-Identifier: Apache-2.0

package directory

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"github.com/go-ldap/ldap/v3"

	"pamtotp/internal/secret"
)

// The schema (packaging/ldap/pam-totp.schema): an auxiliary class on the
// user's own entry, with three single-valued octet strings.
const (
	attrSecret  = "pamTOTPSecret"  // the secret file, in pam_totp's format
	attrState   = "pamTOTPState"   // the state file, as text
	attrPending = "pamTOTPPending" // an enrollment made at login, not yet active
	classUser   = "pamTOTPUser"
)

// entry is what a user's entry holds for us, as read. The raw values are
// kept: every write deletes exactly the value read.
type entry struct {
	dn                  string
	hasClass            bool
	secretRaw, stateRaw string // "" when absent
	pendingRaw          string
	file                *secret.File // nil when not enrolled
	// base is pamTOTPState as read; state is it with the records folded
	// in (records.go), what the login decides on.
	base, state *secret.State
	records     []record
}

// decodeEntry checks and parses what the directory returned for a user.
// Everything in it is bounded and parsed as strictly as a secret file: it
// comes from the network.
func decodeEntry(dn string, classes []string, secretVals, stateVals, pendingVals [][]byte) (*entry, error) {
	e := &entry{dn: dn}
	for _, c := range classes {
		e.hasClass = e.hasClass || strings.EqualFold(c, classUser)
	}
	one := func(name string, vals [][]byte) (string, error) {
		switch {
		case len(vals) > 1:
			return "", fmt.Errorf("%s has %d values, want one (is the schema's SINGLE-VALUE missing?)", name, len(vals))
		case len(vals) == 0:
			return "", nil
		case len(vals[0]) == 0:
			return "", fmt.Errorf("%s is empty", name)
		case len(vals[0]) > secret.MaxFileSize:
			return "", fmt.Errorf("%s is larger than %d bytes", name, secret.MaxFileSize)
		}
		return string(vals[0]), nil
	}
	var err error
	if e.secretRaw, err = one(attrSecret, secretVals); err != nil {
		return nil, err
	}
	if e.stateRaw, err = one(attrState, stateVals); err != nil {
		return nil, err
	}
	if e.pendingRaw, err = one(attrPending, pendingVals); err != nil {
		return nil, err
	}
	if e.secretRaw != "" {
		if e.file, err = secret.ParseFile([]byte(e.secretRaw)); err != nil {
			return nil, fmt.Errorf("%s: %w", attrSecret, err)
		}
	}
	e.state = secret.NewState()
	if e.stateRaw != "" {
		if e.state, err = secret.ParseState([]byte(e.stateRaw)); err != nil {
			return nil, fmt.Errorf("%s: %w", attrState, err)
		}
	}
	e.base = e.state
	if (e.secretRaw != "" || e.stateRaw != "" || e.pendingRaw != "") && !e.hasClass {
		return nil, fmt.Errorf("the entry has pam_totp's attributes but not the object class %s", classUser)
	}
	return e, nil
}

// A pending enrollment is one value: its name, then the secret file and
// the state, each in base64, on three lines.
func encodePending(name string, f *secret.File, st *secret.State) string {
	enc := base64.StdEncoding.EncodeToString
	return name + "\n" + enc(f.Marshal()) + "\n" + enc(st.Marshal(f))
}

func decodePending(v string) (name string, f *secret.File, st *secret.State, err error) {
	parts := strings.Split(v, "\n")
	if len(parts) != 3 || parts[0] == "" {
		return "", nil, nil, fmt.Errorf("%s: want three lines", attrPending)
	}
	var data [2][]byte
	for i, p := range parts[1:] {
		if data[i], err = base64.StdEncoding.DecodeString(p); err != nil {
			return "", nil, nil, fmt.Errorf("%s: %w", attrPending, err)
		}
	}
	if f, err = secret.ParseFile(data[0]); err != nil {
		return "", nil, nil, fmt.Errorf("%s: %w", attrPending, err)
	}
	if st, err = secret.ParseState(data[1]); err != nil {
		return "", nil, nil, fmt.Errorf("%s: %w", attrPending, err)
	}
	return parts[0], f, st, nil
}

// marshalFile is the secret as stored, refused if it would not parse back.
func marshalFile(f *secret.File) (string, error) {
	data := f.Marshal()
	if _, err := secret.ParseFile(data); err != nil {
		return "", fmt.Errorf("refusing to write an invalid enrollment: %w", err)
	}
	if len(data) > secret.MaxFileSize {
		return "", errors.New("refusing to write an enrollment larger than 64 KiB")
	}
	return string(data), nil
}

// addRecords checks the records read under the entry and folds them into
// its state. Without an enrollment there is nothing to fold them into:
// removing an enrollment removes them (admin.go).
func (e *entry) addRecords(entries []*ldap.Entry) error {
	for _, en := range entries {
		dn, err := ldap.ParseDN(en.DN)
		if err != nil || len(dn.RDNs) < 2 || len(dn.RDNs[0].Attributes) != 1 || !strings.EqualFold(dn.RDNs[0].Attributes[0].Type, "cn") {
			return fmt.Errorf("record %q: not named cn=NAME under the entry", en.DN)
		}
		data := en.GetRawAttributeValues(attrRecord)
		csn := en.GetAttributeValues("entryCSN")
		if len(data) > 1 || len(csn) != 1 {
			return fmt.Errorf("record %s: want at most one %s and one entryCSN", en.DN, attrRecord)
		}
		r, err := parseRecord(en.DN, dn.RDNs[0].Attributes[0].Value, string(bytes.Join(data, nil)), csn[0])
		if err != nil {
			return err
		}
		e.records = append(e.records, r)
	}
	if e.file != nil {
		e.state = fold(e.base, e.records, e.file)
	}
	return nil
}

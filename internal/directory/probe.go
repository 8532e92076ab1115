// SPDX-License-Identifier: Apache-2.0

package directory

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/go-ldap/ldap/v3"
)

// What totp-enroll doctor --directory asks of each server.

// Only is the configuration with one server of its uri list.
func (c *Config) Only(u *url.URL) *Config {
	n := *c
	n.URIs = []*url.URL{u}
	return &n
}

// Probe connects to the (first reachable) server with the host's
// identity and says whether pam_totp's schema is loaded there.
func Probe(c *Config) (schema bool, err error) {
	s, err := dial(c)
	if err != nil {
		return false, err
	}
	defer s.Close()
	var res *ldap.SearchResult
	err = s.op(func(l *ldap.Conn) (err error) {
		req := ldap.NewSearchRequest("", ldap.ScopeBaseObject, ldap.NeverDerefAliases, 1, 0, false,
			"(objectClass=*)", []string{"subschemaSubentry"}, nil)
		if res, err = l.Search(req); err != nil || len(res.Entries) == 0 {
			return err
		}
		sub := res.Entries[0].GetAttributeValue("subschemaSubentry")
		if sub == "" {
			sub = "cn=Subschema"
		}
		req = ldap.NewSearchRequest(sub, ldap.ScopeBaseObject, ldap.NeverDerefAliases, 1, 0, false,
			"(objectClass=subschema)", []string{"attributeTypes", "objectClasses"}, nil)
		res, err = l.Search(req)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("reading the schema: %w", err)
	}
	if len(res.Entries) == 0 {
		return false, errors.New("the server shows no schema")
	}
	e := res.Entries[0]
	has := func(attr, name string) bool {
		for _, v := range e.GetAttributeValues(attr) {
			if strings.Contains(v, "'"+name+"'") {
				return true
			}
		}
		return false
	}
	return has("attributeTypes", attrSecret) && has("attributeTypes", attrState) &&
		has("attributeTypes", attrPending) && has("objectClasses", classUser), nil
}

// AnonymousSecrets counts the entries under base whose secret an
// anonymous client can read (or find by searching for it): any is a leak.
func AnonymousSecrets(c *Config) (int, error) {
	anon := *c
	anon.CertFile, anon.KeyFile, anon.BindDN, anon.Password = "", "", "", ""
	anon.anonymous = true
	s, err := dial(&anon)
	if err != nil {
		return 0, err
	}
	defer s.Close()
	base := c.Base
	if base == "" {
		base = c.UserDN[strings.Index(c.UserDN, ",")+1:]
	}
	req := ldap.NewSearchRequest(base, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 10, 0, false,
		"(|("+attrSecret+"=*)("+attrState+"=*))", []string{attrSecret, attrState}, nil)
	var res *ldap.SearchResult
	err = s.op(func(l *ldap.Conn) (err error) { res, err = l.Search(req); return err })
	if ldap.IsErrorWithCode(err, ldap.LDAPResultSizeLimitExceeded) && res != nil {
		err = nil
	}
	if err != nil && !ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject) {
		return 0, err
	}
	if res == nil {
		return 0, nil
	}
	return len(res.Entries), nil
}

// CheckAccess reads the user's entry as the host does and writes its
// state back unchanged, with the same compare-and-swap a login uses: it
// proves that this host may read the secret and write the state.
func (a *Account) CheckAccess() error {
	if err := a.read(); err != nil {
		return err
	}
	if a.e.file == nil {
		return fmt.Errorf("%s is not enrolled: the read works, the write is not tried", a.user)
	}
	st := a.e.state
	data := string(st.Marshal(a.e.file))
	req := ldap.NewModifyRequest(a.e.dn, []ldap.Control{unchanged(attrSecret, a.e.secretRaw)})
	swap(req, attrState, a.e.stateRaw, data) // the same value: a delete and an add that change nothing
	if err := a.modify(req); err != nil {
		return fmt.Errorf("writing the state as a login does: %w", err)
	}
	return nil
}

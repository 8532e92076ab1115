// SPDX-License-Identifier: Apache-2.0

package directory

import (
	"errors"
	"fmt"
	"strings"

	"github.com/go-ldap/ldap/v3"

	"pamtotp/internal/secret"
)

// Locked counts the users under base whose lock holds at now (Unix time),
// for pam-totp-verifier's locked-users gauge. A lock is in the state of
// the server that locked and, once replicated, in a lock record; an
// admin's unlock clears both. So a user is locked when either holds a lock
// that has not expired, and two subtree searches count them all, however
// many users there are.
func (a *Account) Locked(now int64) (int, error) {
	if a.conf.Base == "" {
		return 0, errors.New("counting locked users needs base")
	}
	if err := a.connect(); err != nil {
		return 0, err
	}
	locked := map[string]bool{}
	err := a.searchAll("(&(objectClass="+classUser+")("+attrState+"=*))", []string{attrState}, func(e *ldap.Entry) error {
		v := e.GetRawAttributeValue(attrState)
		if len(v) > secret.MaxFileSize {
			return fmt.Errorf("%s of %s is larger than %d bytes", attrState, e.DN, secret.MaxFileSize)
		}
		st, err := secret.ParseState(v)
		if err != nil {
			return fmt.Errorf("%s of %s: %w", attrState, e.DN, err)
		}
		if st.LockedUntil > now {
			locked[strings.ToLower(e.DN)] = true
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	err = a.searchAll("(&(objectClass="+classRecord+")(cn=lock-*))", []string{"cn", attrRecord, "entryCSN"}, func(e *ldap.Entry) error {
		r, err := parseRecord(e.DN, e.GetAttributeValue("cn"), e.GetAttributeValue(attrRecord), e.GetAttributeValue("entryCSN"))
		if err != nil {
			return err
		}
		// The record's own RDN, checked by parseRecord to hold no comma,
		// ends at the first one: the rest is the user's entry.
		_, user, ok := strings.Cut(e.DN, ",")
		if r.kind == recLock && r.until > now && ok {
			locked[strings.ToLower(user)] = true
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return len(locked), nil
}

// searchAll runs a paged subtree search under base and calls each with
// every entry found.
func (a *Account) searchAll(filter string, attrs []string, each func(*ldap.Entry) error) error {
	req := ldap.NewSearchRequest(a.conf.Base, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false, filter, attrs, nil)
	var res *ldap.SearchResult
	err := a.s.op(func(l *ldap.Conn) (err error) { res, err = l.SearchWithPaging(req, 500); return err })
	if err != nil {
		return fmt.Errorf("searching %s under %s: %w", filter, a.conf.Base, err)
	}
	for _, e := range res.Entries {
		if err := each(e); err != nil {
			return err
		}
	}
	return nil
}

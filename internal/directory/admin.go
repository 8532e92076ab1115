// SPDX-License-Identifier: Apache-2.0

package directory

import (
	"errors"
	"fmt"
	"slices"

	"github.com/go-ldap/ldap/v3"

	"pamtotp/internal/secret"
	"pamtotp/internal/store"
)

// WithBind is the configuration with an admin's own simple bind in place
// of the host's identity (totp-enroll --bind-dn).
func (c *Config) WithBind(dn, password string) *Config {
	n := *c
	n.CertFile, n.KeyFile, n.BindDN, n.Password = "", "", dn, password
	return &n
}

// Enrollment returns the secret and the state as they are now, or
// secret.ErrNotEnrolled.
func (a *Account) Enrollment() (*secret.File, *secret.State, error) {
	err := a.read()
	if errors.Is(err, errNoEntry) && a.conf.CreateIn != "" {
		return nil, nil, secret.ErrNotEnrolled // Create makes the entry
	}
	if err != nil {
		return nil, nil, err
	}
	if a.e.file == nil {
		return nil, nil, secret.ErrNotEnrolled
	}
	return a.e.file, a.e.state, nil
}

// Create enrolls the user, or with force replaces the enrollment. A nil
// st keeps the state there (it may hold a lockout), or starts an empty
// one. Like every write, it is one modify against what was read.
func (a *Account) Create(f *secret.File, st *secret.State, force bool) error {
	return a.retry(func() error {
		err := a.read()
		if errors.Is(err, errNoEntry) && a.conf.CreateIn != "" {
			return a.createEntry(f, st)
		}
		if err != nil {
			return err
		}
		if a.e.file != nil && !force {
			return fmt.Errorf("%s is enrolled in the directory (use --force to replace)", a.user)
		}
		data, err := marshalFile(f)
		if err != nil {
			return err
		}
		if st == nil {
			st = a.e.state
		}
		req := ldap.NewModifyRequest(a.e.dn, nil)
		a.addClass(req)
		swap(req, attrSecret, a.e.secretRaw, data)
		swap(req, attrState, a.e.stateRaw, string(st.Marshal(f)))
		swap(req, attrPending, a.e.pendingRaw, "")
		if err := a.modify(req); err != nil {
			return err
		}
		return a.settle(st, f)
	})
}

// settle deletes, after an admin's write, the records that would undo it
// (an unlock's locks and charges) or that no longer count (the tokens and
// codes of a replaced enrollment): the state written holds every other
// fact they held.
func (a *Account) settle(st *secret.State, f *secret.File) error {
	recs := contradicted(a.e.records, st, f)
	for _, r := range obsolete(a.e.records, f, 0) {
		if !slices.ContainsFunc(recs, func(c record) bool { return c.dn == r.dn }) {
			recs = append(recs, r)
		}
	}
	if err := a.deleteRecords(recs); err != nil {
		return fmt.Errorf("the enrollment is written, but records that would undo it are left (run the command again): %w", err)
	}
	return nil
}

// createEntry makes the user's entry in create_in, enrolled, in one add:
// uid is the account's name as the login will look for it. An entry made
// meanwhile by another admin is a conflict, and the change is tried again
// against it.
func (a *Account) createEntry(f *secret.File, st *secret.State) error {
	data, err := marshalFile(f)
	if err != nil {
		return err
	}
	if st == nil {
		st = secret.NewState()
	}
	dn := "uid=" + ldap.EscapeDN(a.user) + "," + a.conf.CreateIn
	req := ldap.NewAddRequest(dn, nil)
	req.Attribute("objectClass", []string{"pamTOTPAccount", classUser})
	req.Attribute("uid", []string{a.user})
	req.Attribute(attrSecret, []string{data})
	req.Attribute(attrState, []string{string(st.Marshal(f))})
	err = a.s.op(func(c *ldap.Conn) error { return c.Add(req) })
	switch {
	case ldap.IsErrorWithCode(err, ldap.LDAPResultEntryAlreadyExists):
		return fmt.Errorf("%w (%v)", store.ErrConflict, err)
	case ldap.IsErrorWithCode(err, ldap.LDAPResultInsufficientAccessRights):
		return fmt.Errorf("creating %s: the directory refused it to %s (insufficient access, LDAP 50): creating entries needs the admins' identity and the ACL of docs/fleet.md (--bind-dn)", dn, a.conf.Identity())
	case err != nil:
		return fmt.Errorf("creating %s: %w", dn, err)
	}
	return nil
}

// Update changes the enrollment in one modify that the server refuses whole
// if a login wrote meanwhile, so the change never overwrites one: the
// state is swapped (also when unchanged: the delete of the value read is
// what fails), and the secret too if the change touched it, else an
// assertion holds it. So unlock, sync and a state reset write the state
// only, which a host's identity may (the example ACL lets hosts read the
// secret, never rewrite it).
func (a *Account) Update(change func(*secret.File, *secret.State) error) error {
	return a.retry(func() error {
		f, st, err := a.Enrollment()
		if err != nil {
			return err
		}
		if err := change(f, st); err != nil {
			return err
		}
		data, err := marshalFile(f)
		if err != nil {
			return err
		}
		req := ldap.NewModifyRequest(a.e.dn, nil)
		if data == a.e.secretRaw {
			req.Controls = append(req.Controls, unchanged(attrSecret, a.e.secretRaw))
		} else {
			swap(req, attrSecret, a.e.secretRaw, data)
		}
		swap(req, attrState, a.e.stateRaw, string(st.Marshal(f)))
		if err := a.modify(req); err != nil {
			return err
		}
		return a.settle(st, f)
	})
}

// Remove deletes the enrollment, its state and any pending enrollment.
func (a *Account) Remove() error {
	return a.retry(func() error {
		if err := a.read(); err != nil {
			return err
		}
		if a.e.file == nil {
			if len(a.e.records) > 0 { // what an earlier remove left
				return a.deleteRecords(a.e.records)
			}
			return secret.ErrNotEnrolled
		}
		req := ldap.NewModifyRequest(a.e.dn, nil)
		swap(req, attrSecret, a.e.secretRaw, "")
		swap(req, attrState, a.e.stateRaw, "")
		swap(req, attrPending, a.e.pendingRaw, "")
		if err := a.modify(req); err != nil {
			return err
		}
		if err := a.deleteRecords(a.e.records); err != nil {
			return fmt.Errorf("the enrollment is removed, but not all its state records (run the command again): %w", err)
		}
		return nil
	})
}

// retry runs an admin's change again when a login overtook it.
func (a *Account) retry(f func() error) error {
	var err error
	for range 8 {
		if err = f(); !errors.Is(err, store.ErrConflict) {
			return err
		}
	}
	return fmt.Errorf("%s: the enrollment kept changing: %w", a.user, err)
}

// Users lists the enrolled users under base, by the attribute that
// user_filter names ((uid=%u) gives uid).
func (a *Account) Users() ([]string, error) {
	attr := a.conf.listAttr()
	if attr == "" || a.conf.Base == "" {
		return nil, errors.New("listing users needs base and a user_filter of the form (ATTR=%u)")
	}
	if err := a.connect(); err != nil {
		return nil, err
	}
	var out []string
	err := a.searchAll("("+attrSecret+"=*)", []string{attr}, func(e *ldap.Entry) error {
		if v := e.GetAttributeValue(attr); v != "" {
			out = append(out, v)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing enrolled users: %w", err)
	}
	return out, nil
}

// Other is another user's account on the same connection; closing it
// leaves the connection to a.
func (a *Account) Other(user string) *Account {
	return &Account{conf: a.conf, user: user, s: a.s, shared: true, records: a.records}
}

// listAttr is the attribute by which Users lists the enrolled: NameAttr
// where user_filter is just (ATTR=%u), else "" (a filter that says more
// than the name, or user_dn, cannot be listed by that attribute alone).
func (c *Config) listAttr() string {
	if c.UserDN != "" || c.UserFilter != "("+c.NameAttr+"=%u)" {
		return ""
	}
	return c.NameAttr
}

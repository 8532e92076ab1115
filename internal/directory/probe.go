// SPDX-License-Identifier: Apache-2.0

package directory

import (
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/go-ldap/ldap/v3"

	"pamtotp/internal/secret"
	"pamtotp/internal/store"
)

// What totp-enroll doctor --directory asks of each server.

// Only is the configuration with one server of its uri list.
func (c *Config) Only(u *url.URL) *Config {
	n := *c
	n.URIs = []*url.URL{u}
	return &n
}

// schemaLoaded says whether pam_totp's schema is loaded on s's server,
// and whether it has the state records (records.go) of this version.
func schemaLoaded(s *session) (loaded, records bool, err error) {
	var res *ldap.SearchResult
	err = s.op(func(l *ldap.Conn) (err error) {
		req := ldap.NewSearchRequest("", ldap.ScopeBaseObject, ldap.NeverDerefAliases, 1, 0, false,
			"(objectClass=*)", []string{"subschemaSubentry"}, nil)
		if res, err = searchFew(l, req, 1); err != nil || len(res.Entries) == 0 {
			return err
		}
		sub := res.Entries[0].GetAttributeValue("subschemaSubentry")
		if sub == "" {
			sub = "cn=Subschema"
		}
		req = ldap.NewSearchRequest(sub, ldap.ScopeBaseObject, ldap.NeverDerefAliases, 1, 0, false,
			"(objectClass=subschema)", []string{"attributeTypes", "objectClasses"}, nil)
		res, err = searchFew(l, req, 1)
		return err
	})
	if err != nil {
		return false, false, fmt.Errorf("reading the schema: %w", err)
	}
	if len(res.Entries) == 0 {
		return false, false, errors.New("the server shows no schema")
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
			has("attributeTypes", attrPending) && has("objectClasses", classUser),
		has("objectClasses", classRecord) && has("attributeTypes", attrRecord), nil
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
	req := ldap.NewSearchRequest(c.searchBase(), ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 10, 0, false,
		"(|("+attrSecret+"=*)("+attrState+"=*))", []string{attrSecret, attrState}, nil)
	var res *ldap.SearchResult
	err = s.op(func(l *ldap.Conn) (err error) { res, err = searchFew(l, req, 10); return err })
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
		return fmt.Errorf("%s: the read works, the write is not tried: %w", a.user, secret.ErrNotEnrolled)
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

// Server is what doctor reports of one server of uri.
type Server struct {
	URI string `json:"uri"`
	// Reachable: it answered, and TLS and the bind as this host worked.
	Reachable bool   `json:"reachable"`
	Error     string `json:"error,omitempty"`
	// Silent: the error is that the server could not be reached at all
	// (what fallback=local bypasses), not that TLS or the bind failed.
	Silent bool `json:"unreachable,omitempty"`
	// BoundAs is the identity the server gives this host (Who am I?), and
	// Groups the groups under the naming context that list it as a member.
	BoundAs string   `json:"bound_as,omitempty"`
	Groups  []string `json:"groups,omitempty"`
	// Writes says whether it takes writes itself; Referral is where a
	// read-only replica sends them.
	Writes   bool   `json:"takes_writes"`
	Referral string `json:"referral,omitempty"`
	// ContextCSN are the database's contextCSN values, one per serverID
	// that changed it: how far its replication has come.
	ContextCSN []string `json:"context_csn,omitempty"`
	// Schema says whether pam_totp's schema is loaded; SchemaError why
	// that could not be read.
	Schema      bool   `json:"schema_loaded"`
	SchemaError string `json:"schema_error,omitempty"`
	// Records says whether the schema has the state records.
	Records bool `json:"schema_records"`
}

// searchBase is the subtree of the users: base, or the parent of user_dn.
func (c *Config) searchBase() string {
	if c.Base != "" {
		return c.Base
	}
	return c.UserDN[strings.Index(c.UserDN, ",")+1:]
}

// Describe probes one server, c naming one (Only), with the host's
// identity: reachable, schema, writes, contextCSN.
func Describe(c *Config) Server {
	srv := Server{URI: c.URIs[0].String()}
	s, err := dial(c)
	if err != nil {
		srv.Error = err.Error()
		srv.Silent = errors.Is(err, store.ErrUnreachable)
		return srv
	}
	defer s.Close()
	srv.Reachable = true
	var who *ldap.WhoAmIResult
	if err := s.op(func(l *ldap.Conn) (err error) { who, err = l.WhoAmI(nil); return err }); err == nil {
		srv.BoundAs = strings.TrimPrefix(who.AuthzID, "dn:")
	}
	if srv.Schema, srv.Records, err = schemaLoaded(s); err != nil {
		srv.SchemaError = err.Error()
	}
	base := c.searchBase()
	// A modify of an entry that is not there: a server that takes writes
	// says there is no such entry (or that this host may not); a replica
	// refers the write, or is unwilling.
	req := ldap.NewModifyRequest("cn=pam-totp-doctor-write-probe,"+base, nil)
	req.Add("description", []string{"doctor"})
	var res *ldap.ModifyResult
	err = s.op(func(l *ldap.Conn) (err error) { res, err = l.ModifyWithResult(req); return err })
	switch {
	case ldap.IsErrorWithCode(err, ldap.LDAPResultReferral):
		if res != nil {
			srv.Referral = res.Referral
			if r, err := url.Parse(res.Referral); err == nil {
				srv.Referral = r.Scheme + "://" + r.Host // the server, not the probe's DN
			}
		}
	case ldap.IsErrorWithCode(err, ldap.LDAPResultUnwillingToPerform):
	default:
		srv.Writes = true
	}
	// The contextCSN is on the database's suffix: the naming context
	// that holds base.
	var root *ldap.SearchResult
	err = s.op(func(l *ldap.Conn) (err error) {
		root, err = searchFew(l, ldap.NewSearchRequest("", ldap.ScopeBaseObject, ldap.NeverDerefAliases, 1, 0, false,
			"(objectClass=*)", []string{"namingContexts"}, nil), 1)
		return err
	})
	if err != nil || len(root.Entries) == 0 {
		return srv
	}
	for _, nc := range root.Entries[0].GetAttributeValues("namingContexts") {
		if !strings.HasSuffix(strings.ToLower(base), strings.ToLower(nc)) {
			continue
		}
		var r *ldap.SearchResult
		err = s.op(func(l *ldap.Conn) (err error) {
			r, err = searchFew(l, ldap.NewSearchRequest(nc, ldap.ScopeBaseObject, ldap.NeverDerefAliases, 1, 0, false,
				"(objectClass=*)", []string{"contextCSN"}, nil), 1)
			return err
		})
		if err == nil && len(r.Entries) == 1 {
			srv.ContextCSN = r.Entries[0].GetAttributeValues("contextCSN")
		}
		if srv.BoundAs != "" {
			srv.Groups = groupsOf(s, nc, srv.BoundAs)
		}
		break
	}
	return srv
}

// groupsOf lists the groups under nc that name dn as a member (at most
// 20), as far as this identity may see them.
func groupsOf(s *session, nc, dn string) []string {
	filter := "(|(member=" + ldap.EscapeFilter(dn) + ")(uniqueMember=" + ldap.EscapeFilter(dn) + "))"
	var r *ldap.SearchResult
	err := s.op(func(l *ldap.Conn) (err error) {
		r, err = searchFew(l, ldap.NewSearchRequest(nc, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 20, int(s.conf.Timeout.Seconds())+1, false,
			filter, []string{"1.1"}, nil), 20)
		return err
	})
	if err != nil && !ldap.IsErrorWithCode(err, ldap.LDAPResultSizeLimitExceeded) {
		return nil
	}
	var out []string
	for _, e := range r.Entries {
		out = append(out, e.DN)
	}
	return out
}

// Behind says, for servers that all answered, which one lacks a change
// another has had for longer than grace: for each serverID, the newest
// change any server has, against what each has. The answer names the
// server, the one ahead and how long the newest change it lacks is old.
func Behind(servers []Server, now time.Time, grace time.Duration) []string {
	newest := map[string]time.Time{} // serverID -> newest change any server has
	from := map[string]string{}
	have := make([]map[string]time.Time, len(servers))
	for i, s := range servers {
		have[i] = map[string]time.Time{}
		for _, v := range s.ContextCSN {
			at, sid, ok := parseCSN(v)
			if !ok {
				continue
			}
			have[i][sid] = at
			if at.After(newest[sid]) {
				newest[sid], from[sid] = at, s.URI
			}
		}
	}
	var out []string
	for i, s := range servers {
		if !s.Reachable || len(s.ContextCSN) == 0 {
			continue
		}
		for sid, at := range newest {
			if have[i][sid].Before(at) && now.Sub(at) > grace {
				out = append(out, fmt.Sprintf("%s lacks a change that %s has had for %s (serverID %s)", s.URI, from[sid], now.Sub(at).Round(time.Second), sid))
			}
		}
	}
	sort.Strings(out)
	return out
}

// parseCSN reads a CSN: 20261201120000.123456Z#000000#001#000000.
func parseCSN(v string) (time.Time, string, bool) {
	f := strings.Split(v, "#")
	if len(f) != 4 {
		return time.Time{}, "", false
	}
	at, err := time.Parse("20060102150405.999999Z", f[0])
	return at, f[2], err == nil
}

// IsMember says whether the server, asked as c's identity, finds member
// among the members of group (a groupOfNames). pam-totp-verifier asks it
// of each host that connects: the hosts group decides who may relay
// logins, as it decides who may bind with directory=.
func IsMember(c *Config, group, member string, connectBy time.Time) (bool, error) {
	cc := *c
	cc.connectBy = connectBy
	s, err := dial(&cc)
	if err != nil {
		return false, err
	}
	defer s.Close()
	var ok bool
	err = s.op(func(l *ldap.Conn) error {
		var err error
		ok, err = l.Compare(group, "member", member)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("comparing the members of %s: %w", group, err)
	}
	return ok, nil
}

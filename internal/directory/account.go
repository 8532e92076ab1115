// SPDX-License-Identifier: Apache-2.0

package directory

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"

	"pamtotp/internal/gafile"
	"pamtotp/internal/secret"
	"pamtotp/internal/store"
)

// Account is one user's place in the directory. It implements
// store.Account for logins, and the admin's operations for totp-enroll.
type Account struct {
	conf  *Config
	user  string
	s     *session
	e     *entry // as last read
	fresh bool   // e was read by Read and not yet held
	// shared: the connection is another Account's, which closes it.
	shared bool
	// degraded: why the records were not written (Degraded).
	degraded string
	// records: how many state records a read takes before it refuses.
	records int
	// release takes the connection back into a Pool at Close, or is nil.
	release func(*session)
	// spoiled: an operation of this login failed other than by a refusal
	// (a lost connection, an abandoned search, a server that broke the
	// rules): its connection is closed, never kept for the next login.
	spoiled bool
}

// Once is the directory of a process that makes one login (the exec'd
// checker): the configuration read once, for the relay's question (does
// it name verifiers?) and the login both; the account connects at its
// first read, and no connection is kept.
type Once struct {
	mu    sync.Mutex
	confs map[string]*Config
}

// NewOnce is an empty Once.
func NewOnce() *Once { return &Once{confs: map[string]*Config{}} }

// Config is the configuration at path, read at the first call.
func (o *Once) Config(path string) (*Config, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if c := o.confs[path]; c != nil {
		return c, nil
	}
	c, err := Load(path)
	if err == nil {
		o.confs[path] = c
	}
	return c, err
}

// Open is the login path's store.Opener.
func (o *Once) Open(conf, user string, connectBy time.Time) (store.Account, error) {
	c, err := o.Config(conf)
	if err != nil {
		return nil, err
	}
	return open(*c, user, connectBy)
}

// open is a login's account of user under its own copy c of a loaded
// configuration.
func open(c Config, user string, connectBy time.Time) (store.Account, error) {
	if err := c.fits(connectBy); err != nil {
		return nil, err
	}
	c.connectBy = connectBy
	a := New(&c, user)
	a.records = maxRecords
	return a, nil
}

// fits refuses a configuration whose timeout does not fit before
// connectBy. Whole seconds, as the module's timeout= is given: the time
// the checker took to start must not turn a fitting timeout into a
// refusal.
func (c *Config) fits(connectBy time.Time) error {
	if len(c.Verifiers) > 0 {
		// A host of verifiers never reaches the directory itself.
		return fmt.Errorf("%s names verifiers: it is a login host's, and the directory is reached through them", c.Path)
	}
	if budget := time.Until(connectBy).Round(time.Second); c.Timeout > budget {
		return fmt.Errorf("%s: timeout %s does not fit in the module's timeout= with room for fallback=local (%s left for connecting): lower timeout, or raise the module's timeout=",
			c.Path, c.Timeout, budget.Round(100*time.Millisecond))
	}
	return nil
}

// New is the account of user in the directory c describes, for an admin's
// command; a login's is Once's or Pool's.
func New(c *Config, user string) *Account {
	return &Account{conf: c, user: user, records: maxAdminRecords}
}

// Where names the account for messages: the server and the user.
func (a *Account) Where() string {
	if a.e != nil && a.s != nil {
		return a.s.uri.String() + " " + a.e.dn
	}
	return a.conf.Path + " user " + a.user
}

func (a *Account) Close() error {
	switch {
	case a.s == nil || a.shared:
		return nil
	case a.release != nil && !a.spoiled:
		a.release(a.s)
		a.s = nil
		return nil
	}
	return a.s.Close()
}

// Read reads the user's entry. A user without an entry, or an entry the
// host may not read, is an error, never "not enrolled": nullok and
// enroll=login must not apply to a directory that did not answer for them.
func (a *Account) Read() (*secret.File, error) {
	if err := a.read(); err != nil {
		return nil, err
	}
	a.fresh = true
	if a.e.file == nil {
		return nil, secret.ErrNotEnrolled
	}
	return a.e.file, nil
}

// connect connects and binds at the first use.
func (a *Account) connect() error {
	if a.s == nil {
		s, err := dial(a.conf)
		if err != nil {
			return err
		}
		a.s = s
	}
	return nil
}

// read reads the user's entry and records; a read that failed spoils the
// connection for a pool (a search abandoned part way, say).
func (a *Account) read() error {
	err := a.readEntry()
	a.spoil(err)
	return err
}

// spoil marks the connection as not to be kept after err, unless err is
// a refusal that leaves the connection as sound as before (a conflict).
func (a *Account) spoil(err error) {
	if err != nil && !errors.Is(err, store.ErrConflict) {
		a.spoiled = true
	}
}

func (a *Account) readEntry() error {
	if err := a.connect(); err != nil {
		return err
	}
	base, scope := a.conf.Base, ldap.ScopeWholeSubtree
	filter := strings.Replace(a.conf.UserFilter, "%u", ldap.EscapeFilter(a.user), 1)
	if a.conf.UserDN != "" {
		base, scope, filter = strings.Replace(a.conf.UserDN, "%u", ldap.EscapeDN(a.user), 1), ldap.ScopeBaseObject, "(objectClass=*)"
	}
	// The second half is always true where the schema is loaded and the
	// host may search pamTOTPSecret, and undefined (no entry) where not:
	// a directory without our schema must not look like "not enrolled".
	filter = "(&" + filter + "(|(" + attrSecret + "=*)(!(" + attrSecret + "=*))))"
	req := ldap.NewSearchRequest(base, scope, ldap.NeverDerefAliases, 2, int(a.conf.Timeout.Seconds())+1, false,
		filter, []string{"objectClass", a.conf.NameAttr, attrSecret, attrState, attrPending}, nil)
	var res *ldap.SearchResult
	var recs []*ldap.Entry
	search := func(c *ldap.Conn) (err error) {
		if res, err = searchFew(c, req, 2); err != nil || len(res.Entries) != 1 {
			return err
		}
		recs, err = searchRecords(c, res.Entries[0].DN, a.records)
		return err
	}
	err := a.s.op(search)
	var le *lostError
	if errors.As(err, &le) {
		// A read changes nothing: it is made again on the next server.
		if ferr := a.s.failover(); ferr != nil {
			return fmt.Errorf("%v; then: %w", err, ferr)
		}
		err = a.s.op(search)
	}
	switch {
	case ldap.IsErrorWithCode(err, ldap.LDAPResultSizeLimitExceeded) || err == nil && len(res.Entries) > 1:
		return fmt.Errorf("%s: more than one entry for %q matches %s", a.conf.Path, a.user, filter)
	case ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject) || err == nil && len(res.Entries) == 0:
		return fmt.Errorf("%s: no entry for %q that this host may read (missing, outside base, the ACL, or the pam-totp schema not loaded): %w", a.conf.Path, a.user, errNoEntry)
	case err != nil:
		return fmt.Errorf("searching for %q: %w", a.user, err)
	}
	en := res.Entries[0]
	for _, at := range en.Attributes {
		// A value with options (pamTOTPSecret;lang-x) gets around
		// SINGLE-VALUE and "add only where there is none", and the ACL
		// cannot tell it apart: an entry that has one is refused whole.
		base, _, tagged := strings.Cut(at.Name, ";")
		if tagged && (strings.EqualFold(base, attrSecret) || strings.EqualFold(base, attrState) || strings.EqualFold(base, attrPending)) {
			return fmt.Errorf("entry %s: it has %s, one of pam_totp's attributes with options: refused (remove it)", en.DN, at.Name)
		}
	}
	if !slices.Contains(en.GetEqualFoldAttributeValues(a.conf.NameAttr), a.user) {
		return fmt.Errorf("entry %s: its %s is not %q byte for byte (the directory matched it without regard to case): refused, accounts whose names differ only in case share no enrollment",
			en.DN, a.conf.NameAttr, a.user)
	}
	e, err := decodeEntry(en.DN, en.GetAttributeValues("objectClass"),
		en.GetRawAttributeValues(attrSecret), en.GetRawAttributeValues(attrState), en.GetRawAttributeValues(attrPending))
	if err != nil {
		return fmt.Errorf("entry %s: %w", en.DN, err)
	}
	if err := e.addRecords(recs); err != nil {
		return fmt.Errorf("entry %s: %w", en.DN, err)
	}
	a.e = e
	return nil
}

// searchRecords reads the records under the user's entry dn, at most
// maxRecords of them. A server without the record class (an older
// schema) has none to give, and the login goes on with pamTOTPState alone.
func searchRecords(c *ldap.Conn, dn string, max int) ([]*ldap.Entry, error) {
	req := ldap.NewSearchRequest(dn, ldap.ScopeSingleLevel, ldap.NeverDerefAliases, max+1, 0, false,
		"(objectClass="+classRecord+")", []string{"cn", attrRecord, "entryCSN"}, nil)
	res, err := searchFew(c, req, max)
	switch {
	case ldap.IsErrorWithCode(err, ldap.LDAPResultSizeLimitExceeded) || err == nil && len(res.Entries) > max:
		return nil, fmt.Errorf("more than %d state records under %s: refused (a broken or attacked directory; totp-enroll unlock removes them)", max, dn)
	case err != nil:
		return nil, fmt.Errorf("reading the state records under %s: %w", dn, err)
	}
	return res.Entries, nil
}

// maxSearchBytes bounds what one search of the login path keeps: two
// entries of the largest size an entry can have (a secret and a state of
// 64 KiB, a pending enrollment), with room to spare.
const maxSearchBytes = 1 << 20

// searchFew is Search for at most max entries. It stops reading after
// max+1 (enough to tell that there are too many) or maxSearchBytes, and
// abandons the operation: a server that ignores the size limit and sends
// entries without end (a compromised server, a rogue replica) cannot make
// the checker keep them.
func searchFew(c *ldap.Conn, req *ldap.SearchRequest, max int) (*ldap.SearchResult, error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel() // abandons the search if it is still running
	r := c.SearchAsync(ctx, req, max+1)
	res, size := &ldap.SearchResult{}, 0
	for r.Next() {
		e := r.Entry()
		if e == nil {
			continue // a referral or a control
		}
		res.Entries = append(res.Entries, e)
		for _, a := range e.Attributes {
			for _, v := range a.ByteValues {
				size += len(v)
			}
		}
		if len(res.Entries) > max {
			return res, nil // the caller says there are too many
		}
		if size > maxSearchBytes {
			return nil, fmt.Errorf("the server sent more than %d bytes for one user: refused", maxSearchBytes)
		}
	}
	return res, r.Err()
}

// errNoEntry is a search that found no entry for the user.
var errNoEntry = errors.New("no entry")

// Hold takes what Read just read, or reads again: there is no lock, and
// every write is checked against what was read.
func (a *Account) Hold() (store.Enrollment, error) {
	if !a.fresh {
		if err := a.read(); err != nil {
			return nil, err
		}
	}
	a.fresh = false
	if a.e.file == nil {
		return nil, secret.ErrNotEnrolled
	}
	return &held{a: a, e: a.e}, nil
}

// held is an enrollment read for one decision.
type held struct {
	a *Account
	e *entry
	// charge: the records of the published charge (a charge, a lock),
	// added by Save unless the decision was a success.
	charge []record
}

func (h *held) Secret() *secret.File { return h.e.file }
func (h *held) State() *secret.State { return h.e.state }
func (h *held) Google() *gafile.File { return nil }
func (h *held) Close() error         { return nil }

// Publish swaps in the charged state, before any code is compared: on
// this server every later login sees the attempt. Its records wait for
// Save, so that the window in which another login's charge overtakes this
// one's success is no longer than the swap's (a success makes them moot).
func (h *held) Publish(st *secret.State) error {
	recs := newRecords(h.e.state, st, h.e.file)
	if err := h.swapState(st); err != nil {
		return err
	}
	h.charge = recs
	return nil
}

// Save swaps in the state the decision leaves, then adds the records of
// what it changed (records.go), which no healing of replication can
// erase: a used code or scratch code, or else the charge and any lock. It
// returns only once both are written.
func (h *held) Save(st *secret.State) error {
	recs := newRecords(h.e.state, st, h.e.file)
	if err := h.swapState(st); err != nil {
		return err
	}
	if !slices.ContainsFunc(recs, func(r record) bool { return r.kind == recOK || r.kind == recScratch }) {
		recs = append(h.charge, recs...)
	}
	h.charge = nil
	if err := h.a.addRecords(h.e.dn, recs); err != nil {
		return err
	}
	h.a.prune(obsolete(h.e.records, h.e.file, time.Now().Unix()))
	return nil
}

// swapState swaps the state read for st in one modify, which the server
// refuses whole if the state or the secret changed since: another host
// used a code or counted a failure, or an admin changed the enrollment.
// That swap puts the logins of one server in order.
func (h *held) swapState(st *secret.State) error {
	data := string(st.Marshal(h.e.file))
	if data != h.e.stateRaw {
		req := ldap.NewModifyRequest(h.e.dn, []ldap.Control{unchanged(attrSecret, h.e.secretRaw)})
		swap(req, attrState, h.e.stateRaw, data)
		if err := h.a.modify(req); err != nil {
			return err
		}
		h.e.stateRaw = data
	}
	h.e.state = st.Clone()
	return nil
}

// addRecords adds records under the entry dn. An ok or scratch record
// that is there already is a code used meanwhile (on this server, or on
// another and replicated): a conflict, and the login decides again. A
// directory without the record class or the ACL for it (an older
// pam_totp's, not yet upgraded) leaves the login with what pamTOTPState
// gives, as before, and says so (Degraded).
func (a *Account) addRecords(dn string, recs []record) (err error) {
	defer func() { a.spoil(err) }()
	for _, r := range recs {
		rdn := "cn=" + ldap.EscapeDN(r.name) + "," + dn
		req := ldap.NewAddRequest(rdn, nil)
		req.Attribute("objectClass", []string{classRecord})
		req.Attribute("cn", []string{r.name})
		if d := r.data(); d != "" {
			req.Attribute(attrRecord, []string{d})
		}
		err := a.s.op(func(c *ldap.Conn) error { return c.Add(req) })
		var le *lostError
		switch {
		case err == nil:
		case ldap.IsErrorWithCode(err, ldap.LDAPResultEntryAlreadyExists):
			return fmt.Errorf("%w (%s is there already)", store.ErrConflict, r.name)
		case errors.As(err, &le):
			// Applied or not, the next server decides again from what it
			// holds, charging the attempt there before any compare.
			if ferr := a.s.failover(); ferr != nil {
				return fmt.Errorf("writing %s: %v; then: %w", rdn, err, ferr)
			}
			return fmt.Errorf("%w (%v)", store.ErrConflict, err)
		case ldap.IsErrorWithCode(err, ldap.LDAPResultUndefinedAttributeType),
			ldap.IsErrorWithCode(err, ldap.LDAPResultInvalidAttributeSyntax),
			ldap.IsErrorWithCode(err, ldap.LDAPResultObjectClassViolation),
			ldap.IsErrorWithCode(err, ldap.LDAPResultInsufficientAccessRights):
			a.degraded = fmt.Sprintf("%s refused the state records (%v): load the schema and ACL of this version (docs/fleet.md, Upgrading); until then a healed partition can erase this state", a.s.uri, err)
			return nil
		default:
			return fmt.Errorf("writing %s: %w", rdn, err)
		}
	}
	return nil
}

// prune deletes records that no longer count, once there are pruneAt of
// them. It changes no decision, so what fails is left for a later login.
func (a *Account) prune(obs []record) {
	if len(obs) >= pruneAt {
		a.deleteRecords(obs[:min(len(obs), pruneMax)])
	}
}

// deleteRecords deletes records all at once on the one connection. One
// already gone (pruned by another login) is no error.
func (a *Account) deleteRecords(recs []record) error {
	errs := make([]error, len(recs))
	err := a.s.op(func(c *ldap.Conn) error {
		var wg sync.WaitGroup
		for i, r := range recs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := c.Del(ldap.NewDelRequest(r.dn, nil)); err != nil && !ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject) {
					errs[i] = fmt.Errorf("deleting %s: %w", r.dn, err)
				}
			}()
		}
		wg.Wait()
		return errors.Join(errs...)
	})
	return err
}

// Degraded says why this login's state went without records, or "".
func (a *Account) Degraded() string { return a.degraded }

// swap replaces old with new by a delete of the old value and an add:
// never a replace, which would succeed over a value someone else wrote.
func swap(req *ldap.ModifyRequest, attr, old, new string) {
	if old != "" {
		req.Delete(attr, []string{old})
	}
	if new != "" {
		req.Add(attr, []string{new})
	}
}

// modify sends one modify. The refusals that mean "changed meanwhile"
// are store.ErrConflict.
func (a *Account) modify(req *ldap.ModifyRequest) (err error) {
	defer func() { a.spoil(err) }()
	var res *ldap.ModifyResult
	err = a.s.op(func(c *ldap.Conn) (err error) { res, err = c.ModifyWithResult(req); return err })
	if ldap.IsErrorWithCode(err, ldap.LDAPResultReferral) {
		err = a.followReferral(req, res)
	}
	var le *lostError
	if errors.As(err, &le) {
		return a.recover(req, err)
	}
	if ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchAttribute) ||
		ldap.IsErrorWithCode(err, ldap.LDAPResultAttributeOrValueExists) ||
		ldap.IsErrorWithCode(err, ldap.LDAPResultConstraintViolation) ||
		ldap.IsErrorWithCode(err, ldap.LDAPResultAssertionFailed) {
		return fmt.Errorf("%w (%v)", store.ErrConflict, err)
	}
	if ldap.IsErrorWithCode(err, ldap.LDAPResultInsufficientAccessRights) {
		return fmt.Errorf("writing %s: the directory refused it to %s (insufficient access, LDAP 50): admin commands need an identity of the admins' group (--bind-dn DN --bind-password-file FILE)",
			req.DN, a.conf.Identity())
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", req.DN, err)
	}
	return nil
}

// recover finds out, on the next server, what became of a write whose
// connection died after it was sent. If the entry there already holds
// what the write wrote (it was applied, and replicated), it stands: the
// attempt it charged is not charged twice. Otherwise it is a conflict, and
// the login decides again from what that server holds, charging its
// attempt there before any code is compared: never uncounted.
func (a *Account) recover(req *ldap.ModifyRequest, lost error) error {
	if err := a.s.failover(); err != nil {
		return fmt.Errorf("writing %s: %v; then: %w", req.DN, lost, err)
	}
	if err := a.read(); err != nil {
		return fmt.Errorf("writing %s: %v; then: %w", req.DN, lost, err)
	}
	now := map[string]string{attrSecret: a.e.secretRaw, attrState: a.e.stateRaw, attrPending: a.e.pendingRaw}
	want := map[string]string{}
	for _, c := range req.Changes {
		attr := c.Modification.Type
		if _, ours := now[attr]; !ours {
			continue // objectClass
		}
		switch {
		case c.Operation == ldap.AddAttribute && len(c.Modification.Vals) == 1:
			want[attr] = c.Modification.Vals[0]
		case c.Operation == ldap.DeleteAttribute:
			if _, added := want[attr]; !added {
				want[attr] = ""
			}
		}
	}
	for attr, v := range want {
		if now[attr] != v {
			return fmt.Errorf("%w (%v; %s differs on %s)", store.ErrConflict, lost, attr, a.s.uri)
		}
	}
	return nil
}

// followReferral sends a write that a read-only replica referred
// elsewhere (updateref) once more, to the server the referral names if
// it is one of uri, with the same TLS and identity, and stays there for
// the rest of the login: what it read next must come from where it
// writes. Anything else fails closed.
func (a *Account) followReferral(req *ldap.ModifyRequest, res *ldap.ModifyResult) error {
	ref := ""
	if res != nil {
		ref = res.Referral
	}
	u, err := a.conf.referred(ref)
	if err != nil {
		return fmt.Errorf("writing %s through %s: %w", req.DN, a.s.uri, err)
	}
	n, err := dialOne(a.conf, a.s.tc, u)
	if err != nil {
		return fmt.Errorf("writing %s: following the referral of %s: %w", req.DN, a.s.uri, err)
	}
	if a.shared {
		// Another Account owns the old connection and closes it.
		a.shared = false
	} else {
		a.s.Close()
	}
	a.s = n
	err = a.s.op(func(c *ldap.Conn) error { return c.Modify(req) })
	if ldap.IsErrorWithCode(err, ldap.LDAPResultReferral) {
		return fmt.Errorf("writing %s: %s referred the write again: a referral is followed once", req.DN, u)
	}
	return err
}

// CreatePending writes an enrollment made at login into the entry's
// pending attribute, which no login reads as an enrollment.
func (a *Account) CreatePending(f *secret.File, st *secret.State, name string, still func() error) error {
	if err := still(); err != nil { // reads the entry again
		return err
	}
	if _, err := marshalFile(f); err != nil {
		return err
	}
	req := ldap.NewModifyRequest(a.e.dn, nil)
	a.addClass(req)
	swap(req, attrPending, a.e.pendingRaw, encodePending(name, f, st))
	return a.modify(req)
}

// Activate makes the pending enrollment name the user's in one modify,
// which adds the secret: the server refuses it if a secret is there, so
// of two first logins on two hosts one enrolls and the other fails.
func (a *Account) Activate(name string, still func() error) error {
	if err := still(); err != nil { // reads the entry again
		return err
	}
	if a.e.pendingRaw == "" {
		return fmt.Errorf("no pending enrollment in %s", a.e.dn)
	}
	pname, f, st, err := decodePending(a.e.pendingRaw)
	if err != nil {
		return err
	}
	if pname != name {
		return errors.New("the pending enrollment is another login's")
	}
	data, err := marshalFile(f)
	if err != nil {
		return err
	}
	req := ldap.NewModifyRequest(a.e.dn, nil)
	a.addClass(req)
	swap(req, attrPending, a.e.pendingRaw, "")
	req.Add(attrSecret, []string{data})
	swap(req, attrState, a.e.stateRaw, string(st.Marshal(f)))
	if err := a.modify(req); errors.Is(err, store.ErrConflict) {
		return fmt.Errorf("the user was enrolled meanwhile: %w", err)
	} else if err != nil {
		return err
	}
	return nil
}

func (a *Account) addClass(req *ldap.ModifyRequest) {
	if !a.e.hasClass {
		// Refused if someone added it meanwhile: the caller reads again.
		req.Add("objectClass", []string{classUser})
	}
}

// unchanged is the LDAP Assertion control (RFC 4528) that the value of
// attr is still v: a login's state write is refused if an admin changed
// the secret meanwhile (removed a lost token, say), even where the state
// itself is the same.
func unchanged(attr, v string) ldap.Control {
	return assertion{filter: "(" + attr + "=" + ldap.EscapeFilter(v) + ")"}
}

type assertion struct{ filter string }

const oidAssertion = "1.3.6.1.1.12"

func (c assertion) GetControlType() string { return oidAssertion }
func (c assertion) String() string         { return "Assertion " + c.filter }

func (c assertion) Encode() *ber.Packet {
	p := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "Control")
	p.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, oidAssertion, "Control Type"))
	p.AppendChild(ber.NewBoolean(ber.ClassUniversal, ber.TypePrimitive, ber.TagBoolean, true, "Criticality"))
	v := ber.Encode(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, nil, "Control Value")
	if f, err := ldap.CompileFilter(c.filter); err == nil {
		v.AppendChild(f)
	}
	// A filter that did not compile leaves the value empty, which the
	// server refuses as a protocol error: the write fails, never passes.
	p.AppendChild(v)
	return p
}

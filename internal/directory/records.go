// SPDX-License-Identifier: Apache-2.0

package directory

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"pamtotp/internal/secret"
)

// State records: what replication must not erase.
//
// Syncrepl applies a replicated change as the whole later entry, so two
// servers that both took writes during a partition keep only one side's
// pamTOTPState once healed: a used code, a lock or wrong codes of the other
// side are gone (docs/fleet.md, "State that replication cannot erase").
// Separate entries do merge: an entry added on each side is on both once
// healed, and one added on both sides under the same name is one entry.
// So every fact a login must never lose is also written as a record, a
// child entry of the user's entry that is added once and never modified:
//
//	cn=ok-FP-STEP       a token's code of STEP was accepted (data: at, drift)
//	cn=scratch-HASH     a scratch code or passcode was used (data: at)
//	cn=fail-TIME-RAND   a charged attempt did not succeed
//	cn=lock-TIME-RAND   the user was locked (data: until, lockouts)
//
// An ok or scratch record has the same name wherever it is written, so its
// add is a compare-and-swap on each server, and the same code used on two
// sides of a partition is one record once healed. A fail or lock record
// has a name of its own, so the charges of all sides add up. A login reads
// the records with the entry and folds them into its state: the highest
// step and its drift, every used scratch code, the latest lock, and the
// charges since the last success or lock, in the order of the server's
// entryCSN. The pamTOTPState swap stays the point where the logins of one
// server are put in order, and the charge is swapped in there before any
// compare, as before; the records, added when the decision is saved, make
// its facts survive any number of partitions.
const (
	classRecord = "pamTOTPRecord"
	attrRecord  = "pamTOTPRecordData"
	// maxRecords bounds the records a login reads: each write prunes what
	// no longer counts, so a user has a few dozen at most; many more is a
	// directory that is broken or attacked, and the login fails closed.
	// An admin's command reads up to maxAdminRecords, so that its unlock
	// or remove can clear them.
	maxRecords, maxAdminRecords = 256, 4096
	// maxCharges is how many charges since the last success or lock are
	// kept as records: enough for any deny= in use, while with deny=0 (no
	// lock) an endless stream of wrong codes keeps a bounded set. The
	// count goes on in pamTOTPState past it.
	maxCharges = 64
	// pruneAt is how many obsolete records a login lets stand before it
	// deletes them, all at once; pruneMax bounds what one login deletes.
	pruneAt, pruneMax = 8, 32
)

type recordKind int

const (
	recOK recordKind = iota + 1
	recScratch
	recFail
	recLock
)

// record is one record as read (dn and csn set) or to be added.
type record struct {
	kind recordKind
	name string // the cn
	dn   string
	csn  string // entryCSN: the server's order of records
	// ok: the token and its step; scratch: the code's hash.
	fp, hash  string
	step      int64
	at, drift int64
	// lock
	until    int64
	lockouts int
}

// data is the record's pamTOTPRecordData, "" for none.
func (r *record) data() string {
	switch r.kind {
	case recOK:
		return fmt.Sprintf("at=%d drift=%d", r.at, r.drift)
	case recScratch:
		return fmt.Sprintf("at=%d", r.at)
	case recLock:
		return fmt.Sprintf("until=%d lockouts=%d", r.until, r.lockouts)
	}
	return ""
}

// scratchHash names a used scratch code or passcode without writing the
// code itself into a DN, which slapd logs.
func scratchHash(code string) string {
	h := sha256.Sum256([]byte("pam_totp used code\x00" + code))
	return hex.EncodeToString(h[:8])
}

// unique is a name no other login writes: the time and 32 random bits.
func unique(prefix string) string {
	var b [4]byte
	rand.Read(b[:])
	return fmt.Sprintf("%s-%d-%s", prefix, time.Now().UnixNano(), hex.EncodeToString(b[:]))
}

// parseRecord checks a record read from the directory. Anything not of
// the forms above is refused: it comes from the network, and a record this
// version does not know could be one it must not ignore.
func parseRecord(dn, name, data, csn string) (record, error) {
	r := record{dn: dn, name: name, csn: csn}
	if !validCSN(csn) {
		return r, fmt.Errorf("record %s: entryCSN %q is not slapd's", dn, csn)
	}
	fields := map[string]int64{}
	for _, kv := range strings.Fields(data) {
		k, v, ok := strings.Cut(kv, "=")
		n, err := strconv.ParseInt(v, 10, 64)
		if _, dup := fields[k]; !ok || err != nil || dup {
			return r, fmt.Errorf("record %s: bad data %q", dn, data)
		}
		fields[k] = n
	}
	want := func(keys ...string) bool {
		if len(fields) != len(keys) {
			return false
		}
		for _, k := range keys {
			if _, ok := fields[k]; !ok {
				return false
			}
		}
		return true
	}
	parts := strings.Split(name, "-")
	var err error
	switch {
	case len(parts) == 3 && parts[0] == "ok" && isHex(parts[1], 16) && want("at", "drift"):
		r.kind, r.fp, r.at, r.drift = recOK, parts[1], fields["at"], fields["drift"]
		r.step, err = strconv.ParseInt(parts[2], 10, 64)
		if err == nil && (r.step < 0 || strconv.FormatInt(r.step, 10) != parts[2]) {
			err = errors.New("bad step")
		}
	case len(parts) == 2 && parts[0] == "scratch" && isHex(parts[1], 16) && want("at"):
		r.kind, r.hash, r.at = recScratch, parts[1], fields["at"]
	case len(parts) == 3 && parts[0] == "fail" && isDigits(parts[1]) && isHex(parts[2], 8) && want():
		r.kind = recFail
	case len(parts) == 3 && parts[0] == "lock" && isDigits(parts[1]) && isHex(parts[2], 8) && want("until", "lockouts"):
		r.kind, r.until = recLock, fields["until"]
		if l := fields["lockouts"]; l >= 0 && l < 1<<20 {
			r.lockouts = int(l)
		} else {
			err = errors.New("bad lockouts")
		}
	default:
		err = errors.New("not a pam_totp record of this version")
	}
	if err != nil {
		return r, fmt.Errorf("record %s: %v", dn, err)
	}
	return r, nil
}

func isHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil && strings.ToLower(s) == s
}

func isDigits(s string) bool {
	if s == "" || len(s) > 20 {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// validCSN is slapd's entryCSN: YYYYmmddHHMMSS.ffffffZ#count#sid#mod, of
// fixed width, so that comparing two as strings orders them.
func validCSN(c string) bool {
	p := strings.Split(c, "#")
	return len(p) == 4 && len(p[0]) == 22 && p[0][14] == '.' && p[0][21] == 'Z' &&
		isDigits(p[0][:14]) && isDigits(p[0][15:21]) &&
		len(p[1]) == 6 && len(p[2]) == 3 && len(p[3]) == 6 &&
		isHexAny(p[1]) && isHexAny(p[2]) && isHexAny(p[3])
}

func isHexAny(s string) bool {
	return strings.Trim(s, "0123456789abcdef") == ""
}

// folded is what the records say, beside the state they fold into.
type folded struct {
	best     map[string]*record // the highest ok record of each token
	lastOK   string             // the CSN of the latest success
	lastLock string             // the CSN of the latest lock
	newest   *record            // the latest lock
}

func foldOf(recs []record) folded {
	f := folded{best: map[string]*record{}}
	for i := range recs {
		r := &recs[i]
		switch r.kind {
		case recOK:
			if b := f.best[r.fp]; b == nil || r.step > b.step {
				f.best[r.fp] = r
			}
			f.lastOK = max(f.lastOK, r.csn)
		case recScratch:
			f.lastOK = max(f.lastOK, r.csn)
		case recLock:
			if r.csn > f.lastLock {
				f.lastLock, f.newest = r.csn, r
			}
		}
	}
	return f
}

// fold returns base with what the records add: no fact of a record is
// lost, whichever side's pamTOTPState replication kept. Every rule takes
// the larger of the two, so a fact in both is not counted twice.
func fold(base *secret.State, recs []record, file *secret.File) *secret.State {
	st := base.Clone()
	f := foldOf(recs)
	for fp, r := range f.best {
		ts := st.Tokens[fp]
		if ts == nil {
			ts = &secret.TokenState{}
			st.Tokens[fp] = ts
		}
		if !ts.Used || r.step > ts.LastStep {
			ts.Used, ts.LastStep, ts.At, ts.Drift = true, r.step, r.at, r.drift
			if ts.Pending && ts.PendingStep <= r.step {
				ts.Pending, ts.PendingStep, ts.PendingOffset = false, 0, 0
			}
		}
	}
	used := map[string]bool{}
	for _, r := range recs {
		if r.kind == recScratch {
			used[r.hash] = true
		}
	}
	for _, code := range slices.Concat(file.Scratch, file.Passcodes) {
		if used[scratchHash(code)] && !st.ScratchIsUsed(code) {
			st.ScratchUsed = append(st.ScratchUsed, code)
		}
	}
	fails, lockouts := 0, 0
	for _, r := range recs {
		switch {
		case r.kind == recLock:
			// A lock holds on every side until it expires or an admin
			// lifts it; its doubling counts until the next success.
			st.LockedUntil = max(st.LockedUntil, r.until)
			if r.csn > f.lastOK {
				lockouts = max(lockouts, r.lockouts)
			}
		case r.kind == recFail && r.csn > f.lastOK && r.csn > f.lastLock:
			fails++
		}
	}
	st.Lockouts = max(st.Lockouts, lockouts)
	st.Failures = max(st.Failures, fails)
	st.Missed = max(st.Missed, fails)
	return st
}

// newRecords are the records for what a login changed from old to st:
// an accepted code, a used scratch code, a lock, charged attempts.
func newRecords(old, st *secret.State, file *secret.File) []record {
	var out []record
	for _, t := range file.Tokens {
		fp := t.Fingerprint()
		n, o := st.Tokens[fp], old.Tokens[fp]
		if n != nil && n.Used && (o == nil || !o.Used || n.LastStep > o.LastStep) && !slices.ContainsFunc(out, func(r record) bool { return r.fp == fp }) {
			out = append(out, record{kind: recOK, name: fmt.Sprintf("ok-%s-%d", fp, n.LastStep), fp: fp, step: n.LastStep, at: n.At, drift: n.Drift})
		}
	}
	for _, code := range st.ScratchUsed {
		if !old.ScratchIsUsed(code) {
			h := scratchHash(code)
			out = append(out, record{kind: recScratch, name: "scratch-" + h, hash: h, at: time.Now().Unix()})
		}
	}
	if st.LockedUntil > old.LockedUntil {
		out = append(out, record{kind: recLock, name: unique("lock"), until: st.LockedUntil, lockouts: st.Lockouts})
	}
	for i := old.Failures; i < st.Failures; i++ {
		out = append(out, record{kind: recFail, name: unique("fail")})
	}
	return out
}

// obsolete are the records that no longer change what the fold says: an
// ok record below its token's highest, or of a token no longer enrolled;
// a scratch record of a code no longer there; a charge before the latest
// success or lock, or past the newest maxCharges; an expired lock other
// than the latest.
func obsolete(recs []record, file *secret.File, now int64) []record {
	f := foldOf(recs)
	var charges []string
	for _, r := range recs {
		if r.kind == recFail && r.csn > f.lastOK && r.csn > f.lastLock {
			charges = append(charges, r.csn)
		}
	}
	slices.Sort(charges)
	oldestKept := ""
	if len(charges) > maxCharges {
		oldestKept = charges[len(charges)-maxCharges]
	}
	tokens := map[string]bool{}
	for _, t := range file.Tokens {
		tokens[t.Fingerprint()] = true
	}
	codes := map[string]bool{}
	for _, c := range slices.Concat(file.Scratch, file.Passcodes) {
		codes[scratchHash(c)] = true
	}
	var out []record
	for _, r := range recs {
		var old bool
		switch r.kind {
		case recOK:
			old = !tokens[r.fp] || r.step < f.best[r.fp].step
		case recScratch:
			old = !codes[r.hash]
		case recFail:
			old = r.csn <= f.lastOK || r.csn <= f.lastLock || r.csn < oldestKept
		case recLock:
			old = r.until <= now && r.csn != f.lastLock
		}
		if old {
			out = append(out, r)
		}
	}
	return out
}

// contradicted are the records that would undo an admin's change: after
// an unlock, the locks and charges; after a reset, what it reset. The
// admin's state already holds every other fact the records hold.
func contradicted(recs []record, st *secret.State, file *secret.File) []record {
	want := string(st.Marshal(file))
	var out []record
	for _, r := range recs {
		if string(fold(st, []record{r}, file).Marshal(file)) != want {
			out = append(out, r)
		}
	}
	return out
}

// SPDX-License-Identifier: Apache-2.0

package test

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// The state that replication cannot erase (docs/fleet.md): a mirror pair
// whose replication is cut and healed again and again, host A reaching
// only server 1 and host B only server 2 while it is cut. Without the
// state records, each healing kept one side's pamTOTPState whole, and the
// other side's used code, lock or wrong codes were gone.

// partitioned is a mirror pair with a host on each side.
type partitioned struct {
	*mirrorPair
	toS1, toS2 *tcpGate // B's way to server 1, A's way to server 2
	confA      string   // lists server 1, then server 2
	confB      string   // lists server 2, then server 1
}

func startPartitioned(t *testing.T) *partitioned {
	t.Helper()
	p := &partitioned{mirrorPair: startMirrorPair(t)}
	p.toS2 = newTCPGate(t, strings.TrimPrefix(p.s2.ldaps, "ldaps://"))
	p.toS1 = newTCPGate(t, strings.TrimPrefix(p.s1.ldaps, "ldaps://"))
	p.confA = p.hostConf(t, "a", p.s1.ldaps, "ldaps://"+p.toS2.addr)
	p.confB = p.hostConf(t, "b", "ldaps://"+p.toS1.addr, p.s2.ldaps)
	return p
}

// cut stops replication and each host's way to the far server.
func (p *partitioned) cut() {
	for _, g := range []*tcpGate{p.rep12, p.rep21, p.toS1, p.toS2} {
		g.cut()
	}
}

// heal opens every way again and waits until both servers hold the same
// state and the same records for each of users.
func (p *partitioned) heal(t *testing.T, users ...*user) {
	t.Helper()
	for _, g := range []*tcpGate{p.rep12, p.rep21, p.toS1, p.toS2} {
		g.open(t)
	}
	for _, u := range users {
		p.agree(t, u)
	}
}

// agree waits until both servers hold the same pamTOTPState and the same
// state records for u.
func (p *mirrorPair) agree(t *testing.T, u *user) {
	t.Helper()
	p.waitFor(t, "the servers to agree on "+u.name, func() bool {
		a, b := stateOn(p.s1, u), stateOn(p.s2, u)
		ra, erra := p.s1.records(u)
		rb, errb := p.s2.records(u)
		return a != "" && a == b && erra == nil && errb == nil && slices.Equal(ra, rb)
	})
}

// records are the names of u's state records on s, sorted.
func (s *slapd) records(u *user) ([]string, error) {
	out, err := s.toolAs("", "ldapsearch", ldapRoot, ldapRootPW, "-LLL", "-o", "ldif-wrap=no", "-b", userDN(u), "-s", "one", "(objectClass=pamTOTPRecord)", "cn")
	if err != nil {
		return nil, fmt.Errorf("%v: %s", err, out)
	}
	var names []string
	for _, l := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(l, "cn: "); ok {
			names = append(names, v)
		}
	}
	slices.Sort(names)
	return names, nil
}

// decisions counts u's decision lines since m by reason, once there are
// n of them (one per login made): syslog delivers them a little later.
func decisions(t *testing.T, m int, u *user, n int) map[string]int {
	t.Helper()
	re := regexp.MustCompile(`user=` + u.name + ` .*outcome=(ok|fail) reason=("[^"]*"|\S+)`)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		count, total := map[string]int{}, 0
		for _, l := range syslogs.since(m) {
			if s := re.FindStringSubmatch(l); s != nil {
				count[strings.Trim(s[2], `"`)]++
				total++
			}
		}
		if total >= n {
			return count
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d decision lines for %s, want %d:\n%s", total, u.name, n, strings.Join(syslogs.since(m), "\n"))
		}
	}
}

// TestPartitionsCodeOnce: six rounds of cut, a code used through server
// 1, a wrong code through server 2, healed. The code is accepted in the
// first round only: once on each side at most, and never after the first
// healing, whichever side's pamTOTPState the healing kept.
func TestPartitionsCodeOnce(t *testing.T) {
	p := startPartitioned(t)
	u := newUser(t)
	p.enroll(t, u)
	svcA := service(t, module("required", "deny=0", "directory="+p.confA))
	svcB := service(t, module("required", "deny=0", "directory="+p.confB))
	waitForFreshStep(30, 12) // the code stays within the window for the rounds
	c, wrong := code(t, u.secret, 0), wrongCode(t, u)
	successes, first := 0, syslogs.mark()
	for round := 1; round <= 6; round++ {
		p.cut()
		m := syslogs.mark()
		if loginWith(t, svcA, u, c) == nil {
			successes++
			if round > 1 {
				t.Fatalf("round %d: the code was accepted again through server 1 after %d healings\n%s", round, round-1, strings.Join(syslogs.since(m), "\n"))
			}
		}
		if loginWith(t, svcB, u, wrong) == nil {
			t.Fatalf("round %d: a wrong code was accepted through server 2", round)
		}
		p.heal(t, u)
		t.Logf("round %d: decisions %v; healed state %q", round, decisions(t, m, u, 2), stateOn(p.s1, u))
	}
	if successes != 1 {
		t.Fatalf("the code was accepted %d times in all, want once (the first round)", successes)
	}
	throughRunAgent(t, first)
	// Every round's wrong code and refused replay still count, from both
	// sides: 1 wrong code + 5 replays + 5 wrong codes since the success.
	for _, s := range []*slapd{p.s1, p.s2} {
		if n := failuresOn(t, p.mirrorPair, s, u); n != 11 {
			t.Fatalf("after six healings, %s counts %d wrong codes since the success, want the 11 of both sides", s.ldaps, n)
		}
	}
}

// failuresOn is u's count of wrong codes since the last success as
// totp-enroll status reads it through s: pamTOTPState with the records.
func failuresOn(t *testing.T, p *mirrorPair, s *slapd, u *user) int {
	t.Helper()
	out, err := enrollCmd(t, "status", "--json", "--user", u.name, "--directory", p.hostConf(t, "admin", s.ldaps),
		"--bind-dn", ldapAdmin, "--bind-password-file", p.s1.adminPass)
	m := regexp.MustCompile(`"failures":\s*(\d+)`).FindStringSubmatch(out)
	if err != nil || m == nil {
		t.Fatalf("totp-enroll status --json: %v\n%s", err, out)
	}
	n := 0
	fmt.Sscan(m[1], &n)
	return n
}

// TestPartitionsLockHolds: five rounds of cut, wrong codes through server
// 1 until the user is locked, one wrong code through server 2, healed.
// The lock reached through server 1 holds through server 2 after each
// healing, and no side compares more than deny wrong codes a round.
func TestPartitionsLockHolds(t *testing.T) {
	p := startPartitioned(t)
	u := newUser(t)
	p.enroll(t, u)
	const deny = 3
	// Locks long enough to outlast any healing; an admin lifts each.
	opts := []string{fmt.Sprintf("deny=%d", deny), "unlock_time=600"}
	svcA := service(t, module("required", append(opts, "directory="+p.confA)...))
	svcB := service(t, module("required", append(opts, "directory="+p.confB)...))
	wrong := wrongCode(t, u)
	for round := 1; round <= 5; round++ {
		p.cut()
		m := syslogs.mark()
		logins := 0
		for i := 0; ; i++ {
			loginWith(t, svcA, u, wrong)
			logins++
			if decisions(t, m, u, logins)["bad code; user locked for 600 s"] > 0 {
				break
			}
			if i > 2*deny {
				t.Fatalf("round %d: %d wrong codes through server 1 did not lock at deny=%d\n%s", round, i+1, deny, strings.Join(syslogs.since(m), "\n"))
			}
		}
		loginWith(t, svcB, u, wrong)
		p.heal(t, u)
		// The lock of server 1 holds through server 2: a right code there
		// is not even compared.
		waitForFreshStep(30, 3)
		mb := syslogs.mark()
		if err := loginWith(t, svcB, u, code(t, u.secret, 0)); err == nil {
			t.Fatalf("round %d: after healing, server 2 let the user in: server 1's lock is gone\n%s", round, stateOn(p.s2, u))
		}
		if d := decisions(t, mb, u, 1); d["locked"] != 1 {
			t.Fatalf("round %d: a right code through server 2 after healing: decisions %v, want it refused as locked", round, d)
		}
		d := decisions(t, m, u, logins+2)
		compared := 0
		for reason, n := range d {
			if strings.HasPrefix(reason, "bad code") {
				compared += n
			}
		}
		t.Logf("round %d: decisions %v", round, d)
		if compared > 2*deny {
			t.Fatalf("round %d: %d wrong codes compared, more than deny=%d on each side", round, compared, deny)
		}
		// The admin lifts the lock for the next round, on both sides.
		if out, err := enrollCmd(t, "unlock", "--user", u.name, "--directory", p.hostConf(t, "admin", p.s1.ldaps),
			"--bind-dn", ldapAdmin, "--bind-password-file", p.s1.adminPass); err != nil {
			t.Fatalf("totp-enroll unlock: %v\n%s", err, out)
		}
		p.agree(t, u)
	}
	// Unlocked, the owner gets in through either side.
	waitForFreshStep(30, 3)
	if err := loginWith(t, svcB, u, code(t, u.secret, 0)); err != nil {
		t.Fatalf("after the last unlock, the right code was refused through server 2: %v", err)
	}
	if err := loginWith(t, svcA, u, code(t, u.secret, 1)); err != nil {
		t.Fatalf("after the last unlock, the next code was refused through server 1: %v", err)
	}
}

// TestPartitionsScratchOncePerSide: scratch codes used on both sides of a
// partition work at most once on each side, and never after healing,
// through either server, in this partition or the next.
func TestPartitionsScratchOncePerSide(t *testing.T) {
	p := startPartitioned(t)
	u := newUser(t)
	p.s1.addUser(t, u)
	u.secret = newSecret(t)
	out, err := enrollCmd(t, "--user", u.name, "--secret", u.secret, "--no-confirm", "--qr", "none", "--scratch-codes", "2",
		"--directory", p.hostConf(t, "enroll", p.s1.ldaps), "--bind-dn", ldapAdmin, "--bind-password-file", p.s1.adminPass)
	if err != nil {
		t.Fatalf("totp-enroll --directory: %v\n%s", err, out)
	}
	s := regexp.MustCompile(`(?m)^  (\d{8})$`).FindAllStringSubmatch(out, -1)
	if len(s) != 2 {
		t.Fatalf("totp-enroll printed %d scratch codes, want 2:\n%s", len(s), out)
	}
	s1, s2 := s[0][1], s[1][1]
	p.sameState(t, u)
	svcA := service(t, module("required", "deny=0", "directory="+p.confA))
	svcB := service(t, module("required", "deny=0", "directory="+p.confB))
	type try struct {
		side, code string
		ok         bool
	}
	run := func(what string, tries []try) {
		t.Helper()
		for _, tr := range tries {
			svc := svcA
			if tr.side == "B" {
				svc = svcB
			}
			err := loginWith(t, svc, u, tr.code)
			if (err == nil) != tr.ok {
				t.Fatalf("%s: scratch code %d on %s: error %v, want ok=%v\nserver 1: %q\nserver 2: %q", what,
					map[string]int{s1: 1, s2: 2}[tr.code], tr.side, err, tr.ok, stateOn(p.s1, u), stateOn(p.s2, u))
			}
		}
	}
	p.cut()
	// B uses both, A one of them: once per side. A writes last, so its
	// state, without the second code, is what the healing keeps.
	run("partition", []try{{"B", s1, true}, {"B", s2, true}, {"B", s1, false}, {"A", s1, true}, {"A", s1, false}})
	p.heal(t, u)
	run("healed", []try{{"A", s1, false}, {"A", s2, false}, {"B", s1, false}, {"B", s2, false}})
	p.cut()
	run("next partition", []try{{"A", s2, false}, {"B", s1, false}})
	p.heal(t, u)
}

// TestPartitionsOneWriter: both hosts list server 1 first, so it takes
// every write while it answers, and replication is cut and healed five
// times: a code works exactly once, and wrong codes from both hosts lock
// at exactly deny, as with one server.
func TestPartitionsOneWriter(t *testing.T) {
	p := startPartitioned(t)
	u := newUser(t)
	p.enroll(t, u)
	confB := p.hostConf(t, "b", p.s1.ldaps, p.s2.ldaps)
	const deny = 4
	svcA := service(t, module("required", fmt.Sprintf("deny=%d", deny), "directory="+p.confA))
	svcB := service(t, module("required", fmt.Sprintf("deny=%d", deny), "directory="+confB))
	waitForFreshStep(30, 12)
	c := code(t, u.secret, 0)
	successes := 0
	for round := 1; round <= 5; round++ {
		p.rep12.cut()
		p.rep21.cut()
		for _, svc := range []string{svcA, svcB} {
			if loginWith(t, svc, u, c) == nil {
				successes++
			}
		}
		p.rep12.open(t)
		p.rep21.open(t)
		p.agree(t, u)
	}
	if successes != 1 {
		t.Fatalf("with one server taking writes, the code was accepted %d times, want exactly once", successes)
	}
	// The refused attempts above were charged (10 in all, less the
	// success, at deny=4): lift that with an admin's unlock, then count.
	if out, err := enrollCmd(t, "unlock", "--user", u.name, "--directory", p.hostConf(t, "admin", p.s1.ldaps),
		"--bind-dn", ldapAdmin, "--bind-password-file", p.s1.adminPass); err != nil {
		t.Fatalf("totp-enroll unlock: %v\n%s", err, out)
	}
	p.agree(t, u)
	m := syslogs.mark()
	wrong := wrongCode(t, u)
	for i := range 2 * deny {
		svc := svcA
		if i%2 == 1 {
			svc = svcB
		}
		if i == deny {
			p.rep12.cut()
			p.rep21.cut()
		}
		loginWith(t, svc, u, wrong)
	}
	p.rep12.open(t)
	p.rep21.open(t)
	d := decisions(t, m, u, 2*deny)
	compared := 0
	for reason, n := range d {
		if strings.HasPrefix(reason, "bad code") {
			compared += n
		}
	}
	if compared != deny || d["locked"] != deny {
		t.Fatalf("one writer, deny=%d: decisions %v; want exactly %d compared, then locked", deny, d, deny)
	}
}

// TestRecordsUpgrade: a directory set up by a pam_totp before state
// records keeps working with this one. Its logins decide on pamTOTPState
// as before and warn that a healed partition can erase it; once the
// server has today's schema and ACL (docs/fleet.md, "Upgrading"), the
// same enrollment gets records, and what the logins wrote before counts.
func TestRecordsUpgrade(t *testing.T) {
	d := startSlapdOpts(t, slapdOpts{before: true})
	conf := d.hostConf(t, "host-a")
	svc := service(t, module("required", "directory="+conf))
	u := newUser(t)
	d.addUser(t, u)
	u.secret = newSecret(t)
	if out, err := enrollCmd(t, "--user", u.name, "--secret", u.secret, "--no-confirm", "--qr", "none", "--scratch-codes", "0",
		"--directory", conf, "--bind-dn", ldapAdmin, "--bind-password-file", d.adminPass); err != nil {
		t.Fatalf("totp-enroll --directory with the older schema: %v\n%s", err, out)
	}
	waitForFreshStep(30, 8)
	c := code(t, u.secret, 0)
	m := syslogs.mark()
	if err := loginWith(t, svc, u, c); err != nil {
		t.Fatalf("a login against the older schema: %v", err)
	}
	expectLog(t, m, `user=`+u.name+` directory=.*refused the state records.*docs/fleet.md, Upgrading`)
	if err := loginWith(t, svc, u, c); err == nil {
		t.Fatal("against the older schema, a used code was accepted again")
	}
	if r, err := d.records(u); err != nil || len(r) != 0 {
		t.Fatalf("records against the older schema: %v %v", r, err)
	}
	const older = "schema is of an older version, without state records"
	if out, _ := enrollCmd(t, "doctor", "--directory", conf); !strings.Contains(out, older) {
		t.Fatalf("doctor does not say the schema is older:\n%s", out)
	}

	d.upgrade(t)
	if out, _ := enrollCmd(t, "doctor", "--directory", conf); strings.Contains(out, older) || !strings.Contains(out, "reachable, TLS and bind") {
		t.Fatalf("doctor after the upgrade:\n%s", out)
	}
	m = syslogs.mark()
	if err := loginWith(t, svc, u, c); err == nil {
		t.Fatal("after the upgrade, the code used before it was accepted again")
	}
	if err := loginWith(t, svc, u, code(t, u.secret, 1)); err != nil {
		t.Fatalf("after the upgrade, the next code was refused: %v", err)
	}
	for _, l := range syslogs.since(m) {
		if strings.Contains(l, "refused the state records") {
			t.Fatalf("after the upgrade, a login still warns: %s", l)
		}
	}
	r, err := d.records(u)
	if err != nil || !slices.ContainsFunc(r, func(n string) bool { return strings.HasPrefix(n, "ok-") }) {
		t.Fatalf("after the upgrade, the login wrote no ok record: %v %v", r, err)
	}
}

// TestRecordsACL: the example ACL lets a host add and delete state
// records under an enrolled user's entry, and nothing else there: root on
// one host cannot make a record an account that sssd would find on every
// host, nor put records under an entry that is no enrolled user's.
func TestRecordsACL(t *testing.T) {
	f := newFleet(t)
	u, v := newUser(t), newUser(t)
	f.enrollDir(t, u)
	f.d.addUser(t, v) // in the directory, not enrolled
	record := func(parent, name, extra string) string {
		return fmt.Sprintf("dn: cn=%s,%s\nobjectClass: pamTOTPRecord\ncn: %s\n%s", name, parent, name, extra)
	}
	cases := []struct {
		what, ldif string
		ok         bool
	}{
		{"a record", record(userDN(u), "fail-1-0a0b0c0d", ""), true},
		{"a record with data", record(userDN(u), "lock-2-0a0b0c0d", "pamTOTPRecordData: until=1 lockouts=1\n"), true},
		{"a record that is also an account", record(userDN(u), "fail-3-0a0b0c0d",
			"objectClass: posixAccount\nuid: evil\nuidNumber: 0\ngidNumber: 0\nhomeDirectory: /root\n"), false},
		{"a record with another attribute", record(userDN(u), "fail-4-0a0b0c0d", "description: x\n"), false},
		{"an account under the user", fmt.Sprintf("dn: uid=evil,%s\nobjectClass: account\nuid: evil\n", userDN(u)), false},
		{"a record under a user who is not enrolled", record(userDN(v), "fail-5-0a0b0c0d", ""), false},
		{"a record under ou=people", record("ou=people,"+ldapSuffix, "fail-6-0a0b0c0d", ""), false},
	}
	for _, c := range cases {
		out, err := f.d.asHost("host-a", c.ldif, "ldapadd")
		if (err == nil) != c.ok {
			t.Errorf("%s: a host's ldapadd: error %v (%s), want ok=%v", c.what, err, strings.TrimSpace(out), c.ok)
		}
	}
	if out, err := f.d.asHost("host-a", "", "ldapdelete", "cn=fail-1-0a0b0c0d,"+userDN(u)); err != nil {
		t.Errorf("a host cannot delete a record: %v %s", err, out)
	}
	f.d.add(t, fmt.Sprintf("dn: cn=other,%s\nobjectClass: organizationalRole\ncn: other\n", userDN(u)))
	if out, err := f.d.asHost("host-a", "", "ldapdelete", "cn=other,"+userDN(u)); err == nil {
		t.Errorf("a host deleted an entry under the user that is no record: %s", out)
	}
	// Nobody but hosts and admins sees records: a user cannot tell from
	// them who logs in or fails.
	out, err := f.d.toolAs("", "ldapsearch", userDN(v), v.password, "-LLL", "-b", ldapSuffix, "(objectClass=pamTOTPRecord)", "1.1")
	if err != nil || strings.Contains(out, "dn: ") {
		t.Errorf("a user's search for records: %v\n%s", err, out)
	}
}

// TestRecordsStayFew: with deny=0 (no lock) a stream of wrong codes
// leaves a bounded set of records, and the owner still gets in. A
// directory that holds more records than any login leaves (a broken or
// attacked one) fails the login closed, and an admin's unlock clears them.
func TestRecordsStayFew(t *testing.T) {
	f := newFleet(t, "deny=0")
	u := newUser(t)
	f.enrollDir(t, u)
	wrong := wrongCode(t, u)
	for range 90 {
		loginWith(t, f.svcA, u, wrong)
	}
	r, err := f.d.records(u)
	if err != nil || len(r) > 64+8 || len(r) < 64 {
		t.Fatalf("after 90 wrong codes at deny=0: %d records (%v), want the newest 64 charges and at most 8 more", len(r), err)
	}
	waitForFreshStep(30, 5)
	if err := loginWith(t, f.svcA, u, code(t, u.secret, 0)); err != nil {
		t.Fatalf("after 90 wrong codes at deny=0, the owner's code: %v", err)
	}

	var ldif strings.Builder
	for i := range 300 {
		fmt.Fprintf(&ldif, "dn: cn=fail-%d-0a0b0c0d,%s\nobjectClass: pamTOTPRecord\ncn: fail-%[1]d-0a0b0c0d\n\n", i, userDN(u))
	}
	f.d.add(t, ldif.String())
	m := syslogs.mark()
	if err := loginWith(t, f.svcB, u, code(t, u.secret, 1)); err == nil {
		t.Fatal("a login succeeded with 300 more records under the entry")
	}
	expectLog(t, m, `user=`+u.name+` .*outcome=fail reason=".*more than 256 state records`)
	if out, err := enrollCmd(t, "unlock", "--user", u.name, "--directory", f.confA, "--bind-dn", ldapAdmin, "--bind-password-file", f.d.adminPass); err != nil {
		t.Fatalf("totp-enroll unlock: %v\n%s", err, out)
	}
	if r, _ := f.d.records(u); len(r) > 2 {
		t.Fatalf("after the unlock, %d records are left", len(r))
	}
	if err := loginWith(t, f.svcB, u, code(t, u.secret, 1)); err != nil {
		t.Fatalf("after the unlock, the owner's next code: %v", err)
	}
}

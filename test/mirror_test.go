// SPDX-License-Identifier: Apache-2.0

package test

import (
	"encoding/json"
	"fmt"
	"github.com/msteinert/pam/v2"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// A mirror-mode pair of the test's own (docs/fleet.md, "Two servers"):
// two slapd, serverID 1 and 2, each a syncrepl consumer of the other
// through a tcpGate, so that a test can cut replication and the hosts'
// ways to either server, on 127.0.0.1 only.
type mirrorPair struct {
	s1, s2 *slapd
	// rep12 carries server 2's replication from server 1, rep21 the other way.
	rep12, rep21 *tcpGate
}

// providerLines make a server a syncrepl provider.
const providerLines = "index entryCSN,entryUUID eq\noverlay syncprov\nsyncprov-checkpoint 100 1\n"

// syncrepl is the line that makes a server a consumer of provider
// (StartTLS with the test CA, as the directory's root).
func syncrepl(rid int, provider, ca string) string {
	return fmt.Sprintf(`syncrepl rid=%03d provider=%s bindmethod=simple binddn="%s" credentials=%s searchbase="%s" type=refreshAndPersist retry="1 +" timeout=3 network-timeout=2 starttls=critical tls_cacert=%s tls_reqcert=demand
`, rid, provider, ldapRoot, ldapRootPW, ldapSuffix, ca)
}

// syncLines make a server a mirror-mode provider and a consumer of
// provider (through its gate).
func syncLines(rid int, provider, ca string) string {
	return providerLines + syncrepl(rid, provider, ca) + "mirrormode on\n"
}

// startReplica starts a read-only consumer of provider that refers
// writes to it (updateref).
func startReplica(t testing.TB, provider *slapd, rid int) *slapd {
	t.Helper()
	return startSlapdOpts(t, slapdOpts{sameCA: provider, empty: true,
		dbTail: syncrepl(rid, provider.ldap, provider.ca) + "updateref " + provider.ldaps + "\n"})
}

func needSyncprov(t testing.TB) {
	t.Helper()
	if _, err := os.Stat("/usr/lib/ldap/syncprov.so"); err != nil {
		needRoot(t)
		t.Skip("needs slapd's syncprov overlay (Debian's slapd package)")
	}
}

func startMirrorPair(t testing.TB) *mirrorPair { return startMirrorPairACL(t, "") }

// startMirrorPairACL is startMirrorPair with the example ACL of
// packaging/ldap named acl on both servers.
func startMirrorPairACL(t testing.TB, acl string) *mirrorPair {
	t.Helper()
	needSyncprov(t)
	p := &mirrorPair{}
	// Server 2's ports are known before it starts, so that server 1's
	// syncrepl can name its gate.
	ports2 := [2]int{freePort(t), freePort(t)}
	p.rep21 = newTCPGate(t, fmt.Sprintf("127.0.0.1:%d", ports2[1]))
	// Server 1 first, with the entries; its consumer waits for server 2.
	p.s1 = startSlapdOpts(t, slapdOpts{global: "moduleload syncprov\nserverID 1", acl: acl,
		dbTail: syncLines(1, "ldap://"+p.rep21.addr, "%CA%")})
	p.rep12 = newTCPGate(t, strings.TrimPrefix(p.s1.ldap, "ldap://"))
	p.s2 = startSlapdOpts(t, slapdOpts{global: "moduleload syncprov\nserverID 2", sameCA: p.s1, empty: true, ports: ports2, acl: acl,
		dbTail: syncLines(2, "ldap://"+p.rep12.addr, p.s1.ca)})
	p.s2.adminPass = p.s1.adminPass
	// Server 2 has every entry once its first refresh is done.
	p.waitFor(t, "server 2's first copy", func() bool {
		out, err := p.s2.toolAs("", "ldapsearch", ldapRoot, ldapRootPW, "-LLL", "-b", "cn=pam-totp-admins,ou=groups,"+ldapSuffix, "-s", "base", "cn")
		return err == nil && strings.Contains(out, "cn: pam-totp-admins")
	})
	return p
}

// waitFor polls ok until it holds, for at most 20 s: replication is
// asynchronous, and a test waits for it rather than for a fixed time.
func (p *mirrorPair) waitFor(t testing.TB, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !ok(); {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not happen within 20 s\nserver 1:\n%s\nserver 2:\n%s", what, p.s1.log.String(), p.s2.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// sameState waits until both servers hold the same state for u.
func (p *mirrorPair) sameState(t testing.TB, u *user) {
	t.Helper()
	p.waitFor(t, "replication of "+u.name+"'s state", func() bool {
		a, b := stateOn(p.s1, u), stateOn(p.s2, u)
		return a != "" && a == b
	})
}

// stateOn is u's state on s, "" if s has none (yet), or is down.
func stateOn(s *slapd, u *user) string {
	vals, err := s.values(u, "pamTOTPState")
	if err != nil || len(vals) != 1 {
		return ""
	}
	return vals[0]
}

// hostConf is a host's configuration naming the servers' URIs in order.
func (p *mirrorPair) hostConf(t testing.TB, host string, uris ...string) string {
	t.Helper()
	return p.s1.hostConfLines(t, host, []string{
		"uri " + strings.Join(uris, " "),
		"base ou=people," + ldapSuffix,
		"ca_file " + p.s1.ca,
		"cert_file " + filepath.Join(p.s1.certs, hostCert(host)+".pem"),
		"key_file " + filepath.Join(p.s1.certs, hostCert(host)+".key"),
		"timeout 2",
		"connect_timeout 1",
		"down_for 2",
	})
}

// hostCert is the certificate a test host uses: host-a for A, host-b
// for the others.
func hostCert(host string) string {
	if strings.HasPrefix(host, "a") {
		return "host-a"
	}
	return "host-b"
}

// tcpGate forwards connections to a server until it is cut: then it
// refuses new connections and ends the open ones, as a partition or a
// dead link would, until it is opened again on the same address.
type tcpGate struct {
	addr, target string
	mu           sync.Mutex
	ln           net.Listener
	conns        map[net.Conn]bool
}

func newTCPGate(t testing.TB, target string) *tcpGate {
	t.Helper()
	g := &tcpGate{addr: fmt.Sprintf("127.0.0.1:%d", freePort(t)), target: target, conns: map[net.Conn]bool{}}
	g.open(t)
	t.Cleanup(g.cut)
	return g
}

func (g *tcpGate) open(t testing.TB) {
	t.Helper()
	ln, err := net.Listen("tcp", g.addr)
	if err != nil {
		t.Fatal(err)
	}
	g.mu.Lock()
	g.ln = ln
	g.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go g.pipe(c)
		}
	}()
}

func (g *tcpGate) pipe(c net.Conn) {
	s, err := net.Dial("tcp", g.target)
	if err != nil {
		c.Close()
		return
	}
	g.mu.Lock()
	if g.ln == nil {
		g.mu.Unlock()
		c.Close()
		s.Close()
		return
	}
	g.conns[c], g.conns[s] = true, true
	g.mu.Unlock()
	done := make(chan struct{}, 2)
	go func() { io.Copy(s, c); done <- struct{}{} }()
	go func() { io.Copy(c, s); done <- struct{}{} }()
	<-done
	c.Close()
	s.Close()
}

func (g *tcpGate) cut() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ln != nil {
		g.ln.Close()
		g.ln = nil
	}
	for c := range g.conns {
		c.Close()
		delete(g.conns, c)
	}
}

// enroll gives u an entry on server 1 and enrolls it there with
// totp-enroll, bound as the admin identity.
func (p *mirrorPair) enroll(t *testing.T, u *user) { p.enrollScratch(t, u, 0) }

// enrollScratch is enroll with n scratch codes, kept in u.scratch.
func (p *mirrorPair) enrollScratch(t *testing.T, u *user, n int) {
	t.Helper()
	p.s1.addUser(t, u)
	u.secret = newSecret(t)
	conf := p.hostConf(t, "enroll", p.s1.ldaps)
	out, err := enrollCmd(t, "--user", u.name, "--secret", u.secret, "--no-confirm", "--qr", "none", "--scratch-codes", strconv.Itoa(n),
		"--directory", conf, "--bind-dn", ldapAdmin, "--bind-password-file", p.s1.adminPass)
	if err != nil {
		t.Fatalf("totp-enroll --directory: %v\n%s", err, out)
	}
	for _, c := range regexp.MustCompile(`(?m)^  (\d{8})$`).FindAllStringSubmatch(out, -1) {
		u.scratch = append(u.scratch, c[1])
	}
	if len(u.scratch) != n {
		t.Fatalf("totp-enroll printed %d scratch codes, want %d:\n%s", len(u.scratch), n, out)
	}
	p.sameState(t, u)
}

// marks are the failover marks in a host's cache directory.
func marks(t *testing.T, p *mirrorPair, host string) []string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(p.s1.dir, "cache-"+host, "down-*"))
	return m
}

// TestMirrorPairFailover: two servers in mirror mode, hosts listing both.
// A code used through server 1 is refused through server 2 once
// replicated; with server 1 killed during a stream of logins the logins
// go on through server 2 and no code works twice; restarted, server 1
// catches up and the hosts use it again.
func TestMirrorPairFailover(t *testing.T) {
	p := startMirrorPair(t)
	users := make([]*user, 9)
	for i := range users {
		users[i] = newUser(t)
		p.enroll(t, users[i])
	}
	confA := p.hostConf(t, "a", p.s1.ldaps, p.s2.ldaps)
	confB2 := p.hostConf(t, "b2", p.s2.ldaps) // a host that reaches server 2 only
	svcA := service(t, module("required", "directory="+confA))
	svcB2 := service(t, module("required", "directory="+confB2))
	waitForFreshStep(30, 20) // the codes of this step and the next, below

	u0 := users[0]
	c := code(t, u0.secret, 0)
	if err := loginWith(t, svcA, u0, c); err != nil {
		t.Fatalf("login through server 1: %v", err)
	}
	p.sameState(t, u0)
	if err := loginWith(t, svcB2, u0, c); err == nil {
		t.Fatal("a code used through server 1 was accepted through server 2 after replication")
	}

	// A stream of logins, one user each; server 1 is killed after four.
	// The logins before the kill are waited for on server 2 (what the
	// replication lag means for them is TestMirrorPartition's and
	// docs/fleet.md's), so that this test is about failover alone.
	stream := users[1:]
	for i, u := range stream {
		if i == 4 {
			p.s1.kill(t)
		}
		m := syslogs.mark()
		if err := loginWith(t, svcA, u, code(t, u.secret, 0)); err != nil {
			t.Fatalf("login %d of the stream (server 1 killed before login 4): %v\n%s", i, err, strings.Join(syslogs.since(m), "\n"))
		}
		if i < 4 {
			p.sameState(t, u)
		}
	}
	if len(marks(t, p, "a")) != 1 {
		t.Fatalf("host A does not remember that server 1 is down: marks %v", marks(t, p, "a"))
	}
	for i, u := range stream {
		if err := loginWith(t, svcA, u, code(t, u.secret, 0)); err == nil {
			t.Fatalf("the code of stream login %d worked twice", i)
		}
	}

	// Server 1 again: it catches up with what server 2 took meanwhile.
	p.s1.start(t)
	for _, u := range stream[4:] {
		p.sameState(t, u)
	}
	// Once the mark is older than down_for (2 s), host A tries server 1
	// first again, and forgets the mark when it answers.
	mark := marks(t, p, "a")[0]
	p.waitFor(t, "the mark to age past down_for", func() bool {
		data, _ := os.ReadFile(mark)
		var at int64
		fmt.Sscan(string(data), &at)
		return time.Now().Unix() > at+2
	})
	u := stream[len(stream)-1]
	if err := loginWith(t, svcA, u, code(t, u.secret, 1)); err != nil {
		t.Fatalf("login after server 1 came back: %v", err)
	}
	if m := marks(t, p, "a"); len(m) != 0 {
		t.Fatalf("host A still skips server 1 after it answered: %v", m)
	}
	if st := p.s1.attr(t, u, "pamTOTPState"); len(st) != 1 || !strings.Contains(st[0], "last=") {
		t.Fatalf("server 1's state after the login: %q", st)
	}
	// The code used through server 2 while server 1 was down is refused
	// through server 1 now.
	if err := loginWith(t, svcA, stream[5], code(t, stream[5].secret, 0)); err == nil {
		t.Fatal("after catching up, server 1 accepted a code server 2 had taken")
	}
}

// TestMirrorPartition: replication cut, host A reaching only server 1 and
// host B only server 2. 50 logins at once with one code, 25 through each
// host, give at most 2 successes, one per server taking writes; wrong
// codes are counted on each side apart. Healed, the servers agree again
// and the code is refused through both.
func TestMirrorPartition(t *testing.T) {
	p := startMirrorPair(t)
	u, v := newUser(t), newUser(t)
	p.enroll(t, u)
	p.enroll(t, v)
	toS2 := newTCPGate(t, strings.TrimPrefix(p.s2.ldaps, "ldaps://")) // A's way to server 2
	toS1 := newTCPGate(t, strings.TrimPrefix(p.s1.ldaps, "ldaps://")) // B's way to server 1
	confA := p.hostConf(t, "a", p.s1.ldaps, "ldaps://"+toS2.addr)
	confB := p.hostConf(t, "b", "ldaps://"+toS1.addr, p.s2.ldaps)
	svcA := service(t, module("required", "deny=4", "directory="+confA))
	svcB := service(t, module("required", "deny=4", "directory="+confB))

	// Whole, the two hosts count one user's wrong codes together: 2 on A
	// and 2 on B lock at deny=4.
	wrong := code(t, newSecret(t), 0)
	for i, svc := range []string{svcA, svcA, svcB, svcB} {
		loginWith(t, svc, v, wrong)
		if i == 1 {
			p.sameState(t, v)
		}
	}
	p.sameState(t, v)
	if st := p.s2.attr(t, v, "pamTOTPState"); len(st) != 1 || !strings.Contains(st[0], "locked-until") {
		t.Fatalf("whole: 2 + 2 wrong codes did not lock at deny=4: %q", st)
	}

	p.rep12.cut()
	p.rep21.cut()
	toS2.cut()
	toS1.cut()
	waitForFreshStep(30, 8)
	c := code(t, u.secret, 0)
	var wg sync.WaitGroup
	var mu sync.Mutex
	perHost := map[string]int{}
	start := make(chan struct{})
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			host, svc := "A", svcA
			if i%2 == 1 {
				host, svc = "B", svcB
			}
			<-start
			if loginWith(t, svc, u, c) == nil {
				mu.Lock()
				perHost[host]++
				mu.Unlock()
			}
		}()
	}
	close(start)
	wg.Wait()
	ok := perHost["A"] + perHost["B"]
	t.Logf("partition: 50 logins with one code, 25 per side: %d successes (A %d, B %d)", ok, perHost["A"], perHost["B"])
	if ok < 1 || ok > 2 || perHost["A"] > 1 || perHost["B"] > 1 {
		t.Fatalf("partition: %d successes (A %d, B %d); want at most one per server taking writes", ok, perHost["A"], perHost["B"])
	}

	// Under the partition each side counts its own wrong codes.
	w := newUser(t)
	p.rep12.open(t)
	p.rep21.open(t)
	p.enroll(t, w)
	p.rep12.cut()
	p.rep21.cut()
	for _, svc := range []string{svcA, svcA, svcB, svcB} {
		loginWith(t, svc, w, wrong)
	}
	s1, s2 := p.s1.attr(t, w, "pamTOTPState"), p.s2.attr(t, w, "pamTOTPState")
	if len(s1) != 1 || len(s2) != 1 || !strings.Contains(s1[0], "failures 2") || !strings.Contains(s2[0], "failures 2") {
		t.Fatalf("partition: 2 wrong codes on each side; server 1 %q, server 2 %q", s1, s2)
	}

	// Healed: the servers agree again, and the code is refused through both.
	p.rep12.open(t)
	p.rep21.open(t)
	toS2.open(t)
	toS1.open(t)
	p.sameState(t, u)
	p.sameState(t, w)
	t.Logf("healed: %s's state on both servers: %q", w.name, p.s1.attr(t, w, "pamTOTPState"))
	for _, svc := range []string{svcA, svcB} {
		if err := loginWith(t, svc, u, c); err == nil {
			t.Fatal("after healing, the code used during the partition was accepted again")
		}
	}
}

// TestConsumerReferral: a read-only replica answers writes with a
// referral to its provider (updateref). A host that lists the provider in
// uri follows it once, with the same TLS and certificate, and the login
// works once; a host that does not list it fails closed and says why.
func TestConsumerReferral(t *testing.T) {
	needSyncprov(t)
	prov := startSlapdOpts(t, slapdOpts{global: "moduleload syncprov", dbTail: providerLines})
	cons := startReplica(t, prov, 3)
	p := &mirrorPair{s1: prov, s2: cons}
	u := newUser(t)
	p.enroll(t, u)
	follows := p.hostConf(t, "b-follows", cons.ldaps, prov.ldaps)
	strays := p.hostConf(t, "b-strays", cons.ldaps)
	svcFollows := service(t, module("required", "directory="+follows))
	svcStrays := service(t, module("required", "directory="+strays))
	waitForFreshStep(30, 8)

	m := syslogs.mark()
	if err := loginWith(t, svcStrays, u, code(t, u.secret, 0)); err == nil {
		t.Fatal("a host whose uri lacks the provider logged in through a read-only replica")
	}
	expectLog(t, m, `outcome=fail .*referred the write to 127\.0\.0\.1:\d+, which is not in uri: not followed`)
	if st := stateOn(prov, u); strings.Contains(st, "last=") || strings.Contains(st, "failures") {
		t.Fatalf("the refused login wrote to the provider: %q", st)
	}

	c := code(t, u.secret, 0)
	if err := loginWith(t, svcFollows, u, c); err != nil {
		t.Fatalf("login through the replica, its write referred to the provider: %v", err)
	}
	if st := stateOn(prov, u); !strings.Contains(st, "last=") {
		t.Fatalf("the provider's state after the login: %q", st)
	}
	p.sameState(t, u)
	if err := loginWith(t, svcFollows, u, c); err == nil {
		t.Fatal("the code worked twice through the replica")
	}
}

// doctorServers runs doctor --directory conf --json and returns what it
// said of each server, and its warnings.
func doctorServers(t *testing.T, conf string) (map[string]directoryServer, []string) {
	t.Helper()
	out, _ := enrollCmd(t, "doctor", "--directory", conf, "--json")
	var findings []struct {
		Level, Finding string
		Server         *directoryServer
	}
	if err := json.Unmarshal([]byte(out), &findings); err != nil {
		t.Fatalf("doctor --json: %v\n%s", err, out)
	}
	servers := map[string]directoryServer{}
	var warnings []string
	for _, f := range findings {
		if f.Server != nil {
			servers[f.Server.URI] = *f.Server
		}
		if f.Level != "note" {
			warnings = append(warnings, f.Finding)
		}
	}
	return servers, warnings
}

type directoryServer struct {
	URI        string   `json:"uri"`
	Reachable  bool     `json:"reachable"`
	Writes     bool     `json:"takes_writes"`
	Referral   string   `json:"referral"`
	ContextCSN []string `json:"context_csn"`
}

// TestDoctorReplicas: doctor --directory reports each server of uri (it
// answers, takes writes or refers them, its contextCSN), and warns when
// the servers have disagreed for more than a few seconds.
func TestDoctorReplicas(t *testing.T) {
	p := startMirrorPair(t)
	u := newUser(t)
	p.enroll(t, u)
	conf := p.hostConf(t, "a", p.s1.ldaps, p.s2.ldaps)
	servers, warnings := doctorServers(t, conf)
	for _, s := range []*slapd{p.s1, p.s2} {
		got := servers[s.ldaps]
		if !got.Reachable || !got.Writes || len(got.ContextCSN) == 0 {
			t.Fatalf("doctor on %s: %+v", s.ldaps, got)
		}
	}
	if len(warnings) != 0 {
		t.Fatalf("doctor warns about a pair in step: %q", warnings)
	}

	// Replication cut and a login through server 1: once the change
	// server 2 lacks is more than 5 s old, doctor says so.
	p.rep12.cut()
	p.rep21.cut()
	svc := service(t, module("required", "directory="+conf))
	waitForFreshStep(30, 8)
	if err := loginWith(t, svc, u, code(t, u.secret, 0)); err != nil {
		t.Fatal(err)
	}
	var last []string
	p.waitFor(t, "doctor's warning that the servers disagree", func() bool {
		_, last = doctorServers(t, conf)
		return len(last) == 1 && strings.Contains(last[0], p.s2.ldaps+" lacks a change that "+p.s1.ldaps+" has had for")
	})
	p.rep12.open(t)
	p.rep21.open(t)
	p.sameState(t, u)
	p.waitFor(t, "the pair in step again", func() bool {
		_, last = doctorServers(t, conf)
		return len(last) == 0
	})

	// A read-only replica: doctor says where it refers writes.
	cons := startReplica(t, p.s1, 4)
	servers, _ = doctorServers(t, p.hostConf(t, "b-replica", cons.ldaps))
	if r := servers[cons.ldaps]; !r.Reachable || r.Writes || r.Referral != p.s1.ldaps {
		t.Fatalf("doctor on a read-only replica: %+v", r)
	}
	_, warnings = doctorServers(t, p.hostConf(t, "b-replica", cons.ldaps))
	if !slices.ContainsFunc(warnings, func(w string) bool { return strings.Contains(w, "no reachable server takes writes") }) {
		t.Fatalf("doctor with a read-only replica alone: %q", warnings)
	}
}

// atPrompt answers the code prompt, after running before once.
type atPrompt struct {
	before func()
	answer string
	done   bool
}

func (a *atPrompt) RespondPAM(s pam.Style, msg string) (string, error) {
	if s != pam.PromptEchoOff && s != pam.PromptEchoOn {
		return "", nil
	}
	if !a.done {
		a.done = true
		a.before()
	}
	return a.answer, nil
}

// TestMirrorServerDiesDuringLogin: server 1 is killed while the user sits
// at the code prompt, its entry already read. The login goes on through
// server 2, which charges the attempt before any compare: a right code
// gets in (and is used up), a wrong one is counted exactly once.
func TestMirrorServerDiesDuringLogin(t *testing.T) {
	p := startMirrorPair(t)
	right, wrong := newUser(t), newUser(t)
	p.enroll(t, right)
	p.enroll(t, wrong)
	waitForFreshStep(30, 15)
	for _, c := range []struct {
		u    *user
		host string
		code string
		ok   bool
	}{{right, "a", code(t, right.secret, 0), true}, {wrong, "c", wrongCode(t, wrong), false}} {
		if p.s1.cmd == nil {
			p.s1.start(t)
			p.sameState(t, c.u)
		}
		conf := p.hostConf(t, c.host, p.s1.ldaps, p.s2.ldaps)
		svc := service(t, module("required", "directory="+conf, "deny=5"))
		m := syslogs.mark()
		err := authenticateFrom(t, svc, c.u.name, &atPrompt{before: func() { p.s1.kill(t) }, answer: c.code}, nil)
		if (err == nil) != c.ok {
			t.Fatalf("%s with server 1 killed at the prompt: %v, want success %v\n%s", c.u.name, err, c.ok, strings.Join(syslogs.since(m), "\n"))
		}
		st := stateOn(p.s2, c.u)
		if c.ok && !strings.Contains(st, "last=") {
			t.Fatalf("the success is not in server 2's state: %q", st)
		}
		if !c.ok && !strings.Contains(st, "failures 1") {
			t.Fatalf("the wrong code is not counted exactly once on server 2: %q", st)
		}
	}
	only2 := service(t, module("required", "directory="+p.hostConf(t, "b2", p.s2.ldaps)))
	if err := loginWith(t, only2, right, code(t, right.secret, 0)); err == nil {
		t.Fatal("the code used during the failover worked again")
	}

	// Ten logins at once, all at the code prompt with their entries read
	// through server 1, which is then killed: every one completes through
	// server 2, and each code works once.
	p.s1.start(t)
	users := make([]*user, 10)
	for i := range users {
		users[i] = newUser(t)
		p.enroll(t, users[i])
	}
	waitForFreshStep(30, 15)
	conf := p.hostConf(t, "d", p.s1.ldaps, p.s2.ldaps)
	svc := service(t, module("required", "directory="+conf))
	var atPromptWG, release sync.WaitGroup
	atPromptWG.Add(len(users))
	release.Add(1)
	errs := make([]error, len(users))
	var done sync.WaitGroup
	for i, u := range users {
		done.Add(1)
		go func() {
			defer done.Done()
			errs[i] = authenticateFrom(t, svc, u.name, &atPrompt{before: func() { atPromptWG.Done(); release.Wait() }, answer: code(t, u.secret, 0)}, nil)
		}()
	}
	atPromptWG.Wait()
	p.s1.kill(t)
	release.Done()
	done.Wait()
	ok := 0
	for i, err := range errs {
		if err != nil {
			t.Errorf("login %d with server 1 killed under it: %v", i, err)
			continue
		}
		ok++
		if err := loginWith(t, only2, users[i], code(t, users[i].secret, 0)); err == nil {
			t.Errorf("login %d's code worked again through server 2", i)
		}
	}
	t.Logf("server 1 killed under 10 logins at the code prompt: %d of 10 completed through server 2", ok)
}

// cutAfter is a proxy to target for one connection that looks at the
// directory (cut) before it passes on each chunk the server sends, and
// closes both sides instead once cut says so. slapd applies a write
// before it answers, so the answer to the write that made cut true is
// never delivered: the client's connection dies after its request went
// out and was applied. Later connections are refused.
func cutAfter(t *testing.T, target string, cut func() bool) string {
	t.Helper()
	return proxyOnce(t, target, nil, func() bool { return !cut() }, nil)
}

// TestMirrorWriteLostAfterApplied: the connection to server 1 dies right
// after server 1 applied the charge, before its answer arrives. The login
// moves to server 2, finds out what became of the charge there, and goes
// on: the right code gets in, is used once, and the attempt is counted
// neither twice nor not at all (no failure left once it succeeded).
func TestMirrorWriteLostAfterApplied(t *testing.T) {
	p := startMirrorPair(t)
	u := newUser(t)
	p.enroll(t, u)
	if st := stateOn(p.s1, u); strings.Contains(st, "failures") {
		t.Fatalf("the state before the test has failures: %q", st)
	}
	var cutMu sync.Mutex
	cutDone := false
	gate := cutAfter(t, strings.TrimPrefix(p.s1.ldaps, "ldaps://"), func() bool {
		if !strings.Contains(stateOn(p.s1, u), "failures 1") {
			return false
		}
		cutMu.Lock()
		cutDone = true
		cutMu.Unlock()
		return true
	})
	conf := p.hostConf(t, "e", "ldaps://"+gate, p.s2.ldaps)
	// The gate's name is 127.0.0.1, as the server certificate says.
	svc := service(t, module("required", "directory="+conf))
	waitForFreshStep(30, 10)
	c := code(t, u.secret, 0)
	m := syslogs.mark()
	if err := loginWith(t, svc, u, c); err != nil {
		t.Fatalf("the login whose charge's answer was lost: %v\n%s", err, strings.Join(syslogs.since(m), "\n"))
	}
	cutMu.Lock()
	cut := cutDone
	cutMu.Unlock()
	if !cut {
		t.Fatalf("the gate never cut after the charge (server 1's state %q)", stateOn(p.s1, u))
	}
	expectLog(t, m, `user=`+u.name+` .*store="`+regexp.QuoteMeta(p.s2.ldaps)+` .*outcome=ok`)
	p.sameState(t, u)
	if st := stateOn(p.s2, u); strings.Contains(st, "failures") || !strings.Contains(st, "last=") {
		t.Fatalf("after healing, the state is %q: want the code used and no failure left", st)
	}
	only2 := service(t, module("required", "directory="+p.hostConf(t, "e2", p.s2.ldaps)))
	if err := loginWith(t, only2, u, c); err == nil {
		t.Fatal("the code worked again through server 2")
	}
}

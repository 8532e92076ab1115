// SPDX-License-Identifier: Apache-2.0

package test

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"pamtotp/internal/protocol"
)

// BenchmarkAgent is part of `make bench`: logins through pam-totp-agent
// against the same logins with agent=off (a checker per login) and
// against pam_google_authenticator, in one run: the system store and
// directory= through libpam (a fresh process per login, interleaved),
// the system store through sshd, 200 directory logins at once through one
// host, and the agent's memory after 1,000 and after 100,000 logins. It
// writes docs/benchmarks-agent.md. A benchmark, not a test: it asserts
// nothing about time.
func BenchmarkAgent(b *testing.B) {
	needRoot(b, "oathtool", "openssl", "/usr/sbin/sshd", "ssh-keygen", "systemd-socket-activate")
	if _, err := os.Stat("/lib/x86_64-linux-gnu/security/pam_google_authenticator.so"); err != nil {
		b.Skip("needs pam_google_authenticator.so (scripts/deps --with-reference --bench installs it)")
	}
	if _, err := os.Stat(filepath.Join(buildDir, "pamlogin")); err != nil {
		b.Skip("needs build/pamlogin: run make bench")
	}
	a := startAgent(b)
	store := filepath.Join(workDir, "agent-bench-store")
	if err := os.MkdirAll(store, 0o700); err != nil {
		b.Fatal(err)
	}
	d := startSlapd(b)
	conf := d.hostConf(b, "host-a")
	const nUsers, runs, sshdUsers = 200, 5, 50
	users := make([]*user, nUsers)
	enrolled := make([][]byte, nUsers)
	for i := range users {
		u := newUser(b)
		enroll(b, u, "--secret-file", store+"/%u")
		sec, err := os.ReadFile(filepath.Join(store, u.name))
		if err == nil {
			enrolled[i], err = os.ReadFile(filepath.Join(store, u.name+".state"))
		}
		if err != nil {
			b.Fatal(err)
		}
		d.addUser(b, u)
		d.setSecret(b, u, string(sec))
		users[i] = u
	}
	lines := map[string]string{
		"ga":          "auth required pam_google_authenticator.so",
		"checker":     module("required", "secret="+store+"/%u", "agent=off"),
		"agent":       module("required", "secret="+store+"/%u", "agent="+a.socket),
		"dir-checker": module("required", "directory="+conf, "agent=off"),
		"dir-agent":   module("required", "directory="+conf, "agent="+a.socket),
	}
	svc := service(b)
	for name, line := range lines {
		if err := os.WriteFile(filepath.Join(svc, name), []byte(line+"\n"), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	// Every run starts from the enrolled, unused state: the store's state
	// files as totp-enroll wrote them (rewritten in place and synced),
	// pam_google_authenticator's files, the directory's states without
	// records.
	reset := func() {
		for i, u := range users {
			rewriteSynced(b, filepath.Join(store, u.name+".state"), enrolled[i])
			writeGoogleAuthenticator(b, u)
		}
		d.resetStates(b, users)
	}
	login := func(name string, u *user, c string) error {
		out, err := exec.Command(filepath.Join(buildDir, "pamlogin"), svc, name, u.name, c).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s login of %s: %v %s", name, u.name, err, out)
		}
		return nil
	}

	// 1. libpam, a fresh process per login, the services interleaved and
	// their order rotated from run to run.
	order := []string{"ga", "checker", "agent", "dir-checker", "dir-agent"}
	times := map[string][]time.Duration{}
	interleave(b, times, "libpam/", order, runs, reset, users, login)

	// 2. sshd, one login at a time, as a person waits for it.
	sshds := map[string]*sshd{}
	for _, name := range []string{"ga", "checker", "agent"} {
		sshds[name] = startSSHD(b, false, "auth required pam_unix.so nodelay", lines[name])
	}
	for run := 0; run < 3; run++ {
		for i := range 3 {
			name := []string{"ga", "checker", "agent"}[(i+run)%3]
			reset()
			start := time.Now()
			for _, u := range users[:sshdUsers] {
				if err := authOnly(sshds[name].addr, u.name, u.password, code(b, u.secret, 0)); err != nil {
					b.Fatalf("sshd %s login of %s: %v", name, u.name, err)
				}
			}
			times["sshd/"+name] = append(times["sshd/"+name], time.Since(start)/sshdUsers)
		}
	}

	// 3. 200 directory logins at once through one host.
	bursts := map[string]burstFigures{}
	for _, name := range []string{"dir-checker", "dir-agent"} {
		reset()
		logins := make([]func() error, len(users))
		for i, u := range users {
			c := code(b, u.secret, 0)
			logins[i] = func() error { return login(name, u, c) }
		}
		bursts[name] = burstOf(logins)
	}

	// 4. The agent's memory: logins straight over its socket (wrong codes
	// at deny=0, each charged, compared and saved), 1,000 then 100,000.
	opts := []string{"secret=" + store + "/%u", "deny=0"}
	rss := map[int]string{}
	done := 0
	for _, n := range []int{1000, 100000} {
		for ; done < n; done++ {
			if err := rawLogin(a.socket, users[done%nUsers], opts, "000000"); err != nil {
				b.Fatalf("login %d over the agent's socket: %v", done, err)
			}
		}
		rss[n] = vmRSS(b, a.cmd.Process.Pid)
	}
	// 5. The floor of a login of ours: one 8 KiB state written in place and
	// made durable (fdatasync), in the store's file system.
	floor := syncFloor(b, filepath.Join(store, "floor"))
	writeAgentReport(b, times, bursts, rss, floor, nUsers, runs, sshdUsers)
}

// interleave runs each of the logins named in order over all users,
// runs times, the order rotated from run to run and reset before each,
// and adds the time per login to times[prefix+name]. The codes are made
// before the clock starts.
func interleave(b testing.TB, times map[string][]time.Duration, prefix string, order []string, runs int, reset func(), users []*user, login func(name string, u *user, code string) error) {
	for run := 0; run < runs; run++ {
		for i := range order {
			name := order[(i+run)%len(order)]
			reset()
			cs := make([]string, len(users))
			for j, u := range users {
				cs[j] = code(b, u.secret, 0)
			}
			start := time.Now()
			for j, u := range users {
				if err := login(name, u, cs[j]); err != nil {
					b.Fatal(err)
				}
			}
			times[prefix+name] = append(times[prefix+name], time.Since(start)/time.Duration(len(users)))
		}
	}
}

// syncFloor is the median time of 200 in-place writes of 8 KiB, each
// followed by fdatasync, to one file at path.
func syncFloor(b testing.TB, path string) time.Duration {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 8192)
	if _, err := f.WriteAt(buf, 0); err != nil {
		b.Fatal(err)
	}
	f.Sync()
	var ds []time.Duration
	for i := range 200 {
		buf[0] = byte(i)
		start := time.Now()
		if _, err := f.WriteAt(buf, 0); err != nil {
			b.Fatal(err)
		}
		if err := unix.Fdatasync(int(f.Fd())); err != nil {
			b.Fatal(err)
		}
		ds = append(ds, time.Since(start))
	}
	return medianDuration(ds)
}

// rawLogin is one login over the agent's socket, as pam_totp.so sends it:
// the request, the answer to the prompt, the verdict.
func rawLogin(socket string, u *user, opts []string, answer string) error {
	c, err := net.Dial("unix", socket)
	if err != nil {
		return err
	}
	defer c.Close()
	req := fmt.Sprintf("v=1\x00user=%s\x00uid=%d\x00gid=%d\x00home=%s\x00service=pamtotp-bench\x00rhost=\x00tty=\x00ruser=\x00", u.name, u.uid, u.gid, u.home)
	for _, o := range opts {
		req += "opt=" + o + "\x00"
	}
	if err := protocol.WriteFrame(c, protocol.Request, []byte(req)); err != nil {
		return err
	}
	for {
		typ, _, err := protocol.ReadFrame(c)
		switch {
		case err != nil:
			return err
		case typ == protocol.PromptEchoOff || typ == protocol.PromptEchoOn:
			if err := protocol.WriteFrame(c, protocol.Answer, []byte(answer)); err != nil {
				return err
			}
		case typ == protocol.Verdict:
			return nil
		case typ == protocol.Decline:
			return fmt.Errorf("declined")
		}
	}
}

// vmRSS is a process's resident memory, as /proc reports it.
func vmRSS(b testing.TB, pid int) string {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}

// burstFigures are the logins of a burst that failed, and the median and
// 99th percentile of their times.
type burstFigures struct {
	failed   int
	p50, p99 time.Duration
}

// burstOf starts every login at the same moment and times each.
func burstOf(logins []func() error) burstFigures {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var ds []time.Duration
	failed := 0
	start := make(chan struct{})
	for _, login := range logins {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			t0 := time.Now()
			err := login()
			mu.Lock()
			ds = append(ds, time.Since(t0))
			if err != nil {
				failed++
			}
			mu.Unlock()
		}()
	}
	close(start)
	wg.Wait()
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return burstFigures{failed: failed, p50: ds[len(ds)/2], p99: ds[len(ds)*99/100]}
}

func writeAgentReport(b testing.TB, times map[string][]time.Duration, bursts map[string]burstFigures, rss map[int]string, floor time.Duration, users, runs, sshdUsers int) {
	sp := func(k string) spread { return spreadOf(times[k]) }
	row := func(path, name, what string) string {
		s := sp(path + "/" + name)
		return fmt.Sprintf("| %s | %s | %s | %s | %s |", path, what, s, ratio(s.med, sp(path+"/ga").med), ratio(s.med, sp(path+"/checker").med))
	}
	report := fmt.Sprintf(`# Benchmarks: pam-totp-agent

Written by `+"`make bench`"+` (test/agent_bench_test.go) on %s.
%s

The agent is socket-activated as its systemd unit is (systemd-socket-activate);
"checker" is the same module line with `+"`agent=off`"+`, a pam-totp-check per
login. The system store is root's (`+"`secret=/…/%%u`"+`); the directory is a slapd of
the run's own on loopback, TLS with the host's certificate. Each figure is the
median per-login time (smallest–largest) of %d runs in which %d users each log in
once with a right code; the services' runs alternate, their order rotated.
pam_google_authenticator reads and rewrites ~/.google_authenticator without
any fsync; pam_totp makes one durable write per login, whose floor here (8 KiB
written in place, then fdatasync, median of 200) is %s, and a libpam login
through the agent takes %s beyond it (process start, libpam, the exchange).

| path | login | per login | / pam_google_authenticator | / checker |
|---|---|---|---|---|
%s
%s
%s
%s
%s
%s
%s
%s

"libpam" is build/pamlogin, a fresh process per login; "sshd" is the SSH
handshake and keyboard-interactive authentication (pam_unix, then the
module), one login at a time, %d users a run, 3 runs.

## 200 directory logins at once through one host

Every user's login started at the same moment, each a fresh process:

| login | failed | median | 99th percentile |
|---|---|---|---|
| directory=, checker per login | %d of %d | %s | %s |
| directory=, through the agent | %d of %d | %s | %s |

## The agent's memory

Resident memory (VmRSS) after logins straight over its socket (wrong codes at
deny=0: each charged, compared and saved): %s after 1,000, %s after 100,000.

Reproduce: `+"`make bench`"+` as root, or only this page:
`+"`go test -run '^$' -bench Agent -benchtime 1x ./test/`"+` (as root, after `+"`make all build/pamlogin`"+`).
`, time.Now().UTC().Format("2006-01-02"), strings.TrimSpace(benchMachine()), runs, users, ms(floor),
		ms(sp("libpam/agent").med-floor),
		row("libpam", "ga", "pam_google_authenticator"), row("libpam", "checker", "system store, checker"),
		row("libpam", "agent", "system store, agent"), row("libpam", "dir-checker", "directory=, checker"),
		row("libpam", "dir-agent", "directory=, agent"),
		row("sshd", "ga", "pam_google_authenticator"), row("sshd", "checker", "system store, checker"), row("sshd", "agent", "system store, agent"),
		sshdUsers,
		bursts["dir-checker"].failed, users, ms(bursts["dir-checker"].p50), ms(bursts["dir-checker"].p99),
		bursts["dir-agent"].failed, users, ms(bursts["dir-agent"].p50), ms(bursts["dir-agent"].p99),
		rss[1000], rss[100000])
	if err := os.WriteFile("../docs/benchmarks-agent.md", []byte(report), 0o644); err != nil {
		b.Fatal(err)
	}
	b.Log("\n" + report)
}

// SPDX-License-Identifier: Apache-2.0

package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"pamtotp/internal/directory"
	"pamtotp/internal/options"
	"pamtotp/internal/pamconf"
	"pamtotp/internal/privilege"
	"pamtotp/internal/secret"
)

const doctorUsage = `Usage: totp-enroll doctor [--pam-dir DIR] [--sshd-config FILE] [--sshd-service NAME] [--json]
       totp-enroll doctor --directory FILE [--user NAME] [--json]
       totp-enroll doctor --verifier FILE [--user NAME]

Checks, before you restart anything, whether a login can skip pam_totp or
will be locked out: every service in the PAM directory that loads
pam_totp.so (includes followed), sshd's effective settings (sshd -T), the
accounts without an enrollment, the groups and the checker the module
needs, and the clock. One line per finding: its level, what it means for a
login, and the fix. Point it at staged copies to check a change first.

Options:
  --pam-dir DIR          the PAM services (default /etc/pam.d)
  --sshd-config FILE     sshd's configuration (default /etc/ssh/sshd_config;
                         checked if it exists)
  --sshd-service NAME    sshd's PAM service (default sshd; OpenSSH uses the
                         name it was started under)
  --json                 the findings as a JSON array
  --directory FILE       check only this directory configuration (the
                         module's directory=): the file; for each server
                         of uri its connection, TLS, bind, schema, whether
                         it takes writes and its contextCSN; servers that
                         disagree for more than 5 s; and that an
                         anonymous client can read no secret
  --user NAME            with --directory: also read NAME's entry and write
                         its state back unchanged, as a login does; where
                         FILE names verifiers, ask each whether it takes
                         this host and reads NAME's entry
  --verifier FILE        on a directory server: pam-totp-verifier's own
                         check of its configuration FILE and of its way to
                         the directory, as its user (pam-totp-verifier(8));
                         --user NAME: also read NAME's entry

Exit status: 0 nothing at the error level, 1 an error, 2 what doctor needs
could not be read.
`

// finding is one thing doctor has to say.
type finding struct {
	Level string `json:"level"` // error, warning or note
	Where string `json:"where"`
	What  string `json:"finding"`
	Fix   string `json:"fix,omitempty"`
	// Server is, for doctor --directory, what one server of uri said.
	Server *directory.Server `json:"server,omitempty"`
}

type doctor struct {
	pamDir, sshdConfig string
	sshdService        string // the PAM service sshd uses
	findings           []finding
	drifts             map[int64]int                // learned TOTP drift (steps) -> tokens
	rootEnrolled       map[string]bool              // service -> root has an enrollment or is exempt
	enrolled           map[string]int               // service -> accounts with an enrollment
	nullOK             map[string]bool              // service -> its pam_totp line has nullok
	sshd               map[string]string            // sshd -T's settings, when there is an sshd stack
	directories        map[string]*directory.Config // the directory configurations checked (nil: refused)
	directory, user    string                       // --directory and --user: check that configuration alone
}

func (d *doctor) add(level, where, what, fix string) {
	d.findings = append(d.findings, finding{Level: level, Where: where, What: what, Fix: fix})
}

func runDoctor(args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("doctor", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	d := &doctor{}
	fs.StringVar(&d.pamDir, "pam-dir", "/etc/pam.d", "")
	fs.StringVar(&d.sshdConfig, "sshd-config", "/etc/ssh/sshd_config", "")
	fs.StringVar(&d.sshdService, "sshd-service", "sshd", "")
	asJSON := fs.Bool("json", false, "")
	fs.StringVar(&d.directory, "directory", "", "")
	fs.StringVar(&d.user, "user", "", "")
	verifierConf := fs.String("verifier", "", "")
	pos, err := parseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, doctorUsage)
		return exitOK
	}
	if err == nil && len(pos) > 0 {
		err = fmt.Errorf("unexpected argument %q", pos[0])
	}
	if err != nil {
		fmt.Fprintf(stderr, "totp-enroll doctor: %v (see doctor --help)\n", err)
		return exitUsage
	}
	if err == nil && *verifierConf != "" && d.directory != "" {
		err = fmt.Errorf("--verifier and --directory: one at a time")
	}
	if err == nil && *verifierConf != "" {
		return verifierCheck(*verifierConf, d.user, stdout, stderr)
	}
	if err == nil && d.user != "" && d.directory == "" {
		err = fmt.Errorf("--user goes with --directory or --verifier")
	}
	if err == nil && d.directory != "" && os.Geteuid() != 0 {
		err = fmt.Errorf("--directory: the directory's configuration is root's; run as root")
	}
	if err != nil {
		fmt.Fprintf(stderr, "totp-enroll doctor: %v (see doctor --help)\n", err)
		return exitUsage
	}
	if d.directory != "" {
		d.rootEnrolled = map[string]bool{}
		d.checkDirectory(d.directory, d.user)
	} else if err := d.run(); err != nil {
		fmt.Fprintf(stderr, "totp-enroll doctor: %v\n", err)
		return 2
	}
	sort.SliceStable(d.findings, func(i, j int) bool { return rank(d.findings[i].Level) < rank(d.findings[j].Level) })
	d.sanitize()
	if *asJSON {
		if d.findings == nil {
			d.findings = []finding{}
		}
		writeJSON(stdout, d.findings)
	} else {
		for _, f := range d.findings {
			fmt.Fprintf(stdout, "%-7s %s: %s", strings.ToUpper(f.Level), f.Where, f.What)
			if f.Fix != "" {
				fmt.Fprintf(stdout, " Fix: %s", f.Fix)
			}
			fmt.Fprintln(stdout)
		}
		if len(d.findings) == 0 {
			fmt.Fprintln(stdout, "no findings")
		}
	}
	for _, f := range d.findings {
		if f.Level == "error" {
			return exitError
		}
	}
	return exitOK
}

// sanitize passes every text a finding carries through printable, once,
// where it is written: much of it comes from the network (a server's
// diagnostic message, an error of a TLS handshake) or from files users
// write, and a terminal must not act on it (a forged line, an erased
// warning). JSON gets the same text, for the terminal that shows it.
func (d *doctor) sanitize() {
	for i := range d.findings {
		f := &d.findings[i]
		f.Where, f.What, f.Fix = printable(f.Where), printable(f.What), printable(f.Fix)
		if s := f.Server; s != nil {
			c := *s
			c.URI, c.Error, c.Referral, c.SchemaError, c.BoundAs = printable(c.URI), printable(c.Error), printable(c.Referral), printable(c.SchemaError), printable(c.BoundAs)
			c.ContextCSN, c.Groups = printableAll(c.ContextCSN), printableAll(c.Groups)
			f.Server = &c
		}
	}
}

func printableAll(list []string) []string {
	out := make([]string, len(list))
	for i, s := range list {
		out[i] = printable(s)
	}
	return out
}

func rank(level string) int {
	return map[string]int{"error": 0, "warning": 1, "note": 2}[level]
}

// run checks everything; an error means something doctor needs could not
// be read.
func (d *doctor) run() error {
	entries, err := os.ReadDir(d.pamDir)
	if err != nil {
		return fmt.Errorf("reading %s: %w", d.pamDir, err)
	}
	d.drifts, d.rootEnrolled, d.enrolled, d.nullOK = map[int64]int{}, map[string]bool{}, map[string]int{}, map[string]bool{}
	stacks := map[string][]pamconf.Line{}
	var names []string
	included := map[string]bool{} // files that other files include
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || strings.HasPrefix(name, ".") || strings.HasSuffix(name, "~") || strings.Contains(name, ".dpkg-") || strings.HasSuffix(name, ".pam-old") {
			continue
		}
		lines, err := pamconf.Auth(d.pamDir, name)
		if err != nil {
			d.add("error", name, fmt.Sprintf("cannot be read as libpam reads it: %v.", err), "correct the file; libpam fails such a service closed or skips lines")
			continue
		}
		for _, l := range lines {
			if base := filepath.Base(l.File); base != name {
				included[base] = true
			}
		}
		stacks[name] = lines
		names = append(names, name)
	}
	if _, ok := stacks[d.sshdService]; ok {
		if err := d.readSSHD(); err != nil {
			return err
		}
	} else if _, err := os.Stat(d.sshdConfig); err == nil && d.sshdConfig != "/etc/ssh/sshd_config" {
		d.add("note", d.sshdConfig, fmt.Sprintf("not checked: %s has no service %s, which sshd would use.", d.pamDir, d.sshdService),
			"name sshd's PAM service with --sshd-service")
	}
	found := false
	for _, name := range names {
		lines := stacks[name]
		at, err := pamconf.Index(lines, "pam_totp.so")
		if err != nil {
			continue
		}
		found = true
		if included[name] && strings.HasPrefix(name, "common-") {
			continue // Debian's building blocks: checked in each service that includes them
		}
		d.checkStack(name, lines, at)
		if name == d.sshdService {
			d.checkSSHD()
		}
	}
	d.mergeFindings()
	if !found {
		d.add("note", d.pamDir, "no service loads pam_totp.so: nobody is asked for a code.", "")
	}
	d.checkClock()
	return nil
}

// checkStack looks at one service's auth lines; at is pam_totp's.
func (d *doctor) checkStack(service string, lines []pamconf.Line, at int) {
	me := lines[at]
	where := fmt.Sprintf("%s (%s:%d)", service, me.File, me.No)
	for i := 0; i < at; i++ {
		l := lines[i]
		if l.Depth != me.Depth {
			continue // a substack's done or jump ends in the substack
		}
		lw := fmt.Sprintf("%s (%s:%d)", service, l.File, l.No)
		// pam_rootok succeeds only when the caller is root already (root
		// running su or chsh): that skips the code for nobody else.
		if l.Action("success") == "done" && filepath.Base(l.Module) != "pam_rootok.so" {
			d.add("error", lw, fmt.Sprintf("%s %s comes before pam_totp: when it succeeds, the login succeeds without a code.", l.Control, l.Module),
				"move pam_totp before it, or make it required")
		}
		for value, action := range l.Actions {
			if n, err := strconv.Atoi(action); err == nil && i+n >= at {
				d.add("error", lw, fmt.Sprintf("%s=%d on %s jumps over pam_totp: that path asks for no code.", value, n, l.Module),
					"correct the jump so that it lands before pam_totp")
			}
		}
	}
	if a := me.Action("auth_err"); a != "bad" && a != "die" {
		d.add("error", where, fmt.Sprintf("pam_totp's control %s ignores its failure: a wrong code does not stop the login.", me.Control),
			"use required or requisite")
	}
	opts, err := options.Parse(me.Args)
	if err != nil {
		d.add("error", where, fmt.Sprintf("the module refuses its options (%v): every login through %s fails.", err, service), "correct the option")
		return
	}
	d.checkEnrollAtLogin(service, lines, at, opts)
	d.checkPasswordPaths(where, lines, at, opts)
	d.checkGroups(where, me.Args)
	d.checkChecker(where, me.Args)
	d.checkAgent(where, me.Args, opts)
	d.checkAccounts(service, where, opts)
}

// agentPath is where the package's socket unit puts the agent.
const agentPath = "/run/pam-totp/agent.sock"

// checkAgent says which way the service's authentications take (its text
// names no service: mergeFindings would take a service's name for it), to pam-totp-agent
// or to a checker started per login, by the module's rule (agent_serves):
// the agent is used for the system store and the directory, from root
// hosts, where its socket is root's and root listens on it.
func (d *doctor) checkAgent(where string, args []string, opts *options.Options) {
	path := agentPath
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "agent="); ok {
			path = v
		}
	}
	switch {
	case path == "off":
		d.add("note", where, "agent=off: each authentication starts the checker.", "")
		return
	case !opts.Agent():
		d.add("note", where, "its enrollments are files the users own: each authentication starts the checker, running as the user (the agent never opens a user's file).", "")
		return
	}
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		d.add("note", where, fmt.Sprintf("no agent at %s: each authentication starts the checker, which decides the same, only slower.", path),
			"systemctl enable --now pam-totp-agent.socket (where systemd runs)")
		return
	}
	if st.Mode&unix.S_IFMT != unix.S_IFSOCK || st.Uid != 0 || st.Mode&0o022 != 0 {
		d.add("warning", where, fmt.Sprintf("%s is not a socket that only root can use (owner uid %d, mode %04o): the module does not use it, and each authentication starts the checker.", path, st.Uid, st.Mode&0o7777),
			"remove it and restart pam-totp-agent.socket; find out who made it")
		return
	}
	c, err := net.DialTimeout("unix", path, 2*time.Second)
	if err != nil {
		d.add("note", where, fmt.Sprintf("nothing answers at %s (%v): each authentication starts the checker.", path, err),
			"systemctl restart pam-totp-agent.socket")
		return
	}
	defer c.Close()
	var cred *unix.Ucred
	if raw, err := c.(*net.UnixConn).SyscallConn(); err == nil {
		raw.Control(func(fd uintptr) { cred, _ = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED) })
	}
	if cred == nil || cred.Uid != 0 {
		d.add("warning", where, fmt.Sprintf("the process listening at %s is not root's: the module does not use it, and each authentication starts the checker.", path),
			"stop that process; find out who started it")
		return
	}
	d.add("note", where, fmt.Sprintf("authentications go to pam-totp-agent at %s (root's, answering) from root hosts; when it is full or gone, to the checker.", path), "")
}

// remotePassword are the modules that check passwords the local files do
// not hold: pam_unix refuses those accounts, and one of these accepts them.
var remotePassword = map[string]bool{"pam_sss.so": true, "pam_ldap.so": true, "pam_winbind.so": true, "pam_krb5.so": true}

// checkPasswordPaths follows a stack with a directory's password module
// (pam-auth-update's sssd block) for a local account, a directory account
// and a wrong password, and says what each meets. pam_totp cannot tell a
// wrong directory password from a right one (pam_unix's verdict counts for
// local accounts only), so a wrong one must end the stack before it.
func (d *doctor) checkPasswordPaths(where string, lines []pamconf.Line, at int, opts *options.Options) {
	remote := ""
	for _, l := range lines[:at] {
		if remotePassword[l.Module] && remote == "" {
			remote = l.Module
		}
	}
	if remote == "" {
		return
	}
	meets := func(unix, other string) (string, bool) {
		reached, failed := pamconf.Reaches(lines, at, func(l pamconf.Line) string {
			switch {
			case l.Module == "pam_unix.so":
				return unix
			case remotePassword[l.Module]:
				return other
			case l.Module == "pam_deny.so":
				return "auth_err"
			}
			return "success"
		})
		switch {
		case !reached && !failed:
			return "gets in without a code", false
		case !reached:
			return "is refused before the code prompt (nothing counted)", false
		case failed:
			return "is shown the code prompt, then refused", true
		}
		return "is asked for the code", false
	}
	local, _ := meets("success", "user_unknown")
	dir, _ := meets("auth_err", "success")
	wrong, reaches := meets("auth_err", "auth_err")
	unenrolled := "is refused (no nullok)"
	switch {
	case opts.EnrollAtLogin:
		unenrolled = "is enrolled at the login (enroll=login)"
	case opts.NullOK:
		unenrolled = "gets in with the password alone (nullok)"
	}
	d.add("note", where, fmt.Sprintf("passwords are checked by pam_unix and %s. A local user with the right password %s; a %s user with the right password %s; a wrong password %s; a user without an enrollment %s.",
		remote, local, strings.TrimSuffix(remote, ".so"), dir, wrong, unenrolled), "")
	if reaches {
		d.add("warning", where, fmt.Sprintf("a wrong %s password reaches pam_totp: pam_unix's refusal counts only for local accounts, so the checker runs, and the wrong codes typed after a wrong password count against the owner, up to a lock.", strings.TrimSuffix(remote, ".so")),
			"end the password modules with requisite pam_deny.so, as pam-auth-update writes them, or make "+remote+" requisite")
	}
}

// checkEnrollAtLogin: a wrong password must not reach the enrollment.
func (d *doctor) checkEnrollAtLogin(service string, lines []pamconf.Line, at int, opts *options.Options) {
	if !opts.EnrollAtLogin {
		return
	}
	where := fmt.Sprintf("%s (%s:%d)", service, lines[at].File, lines[at].No)
	if service == "sudo" || service == "sudo-i" {
		d.add("warning", where, "enroll=login under sudo: sudo shows no PAM messages, so the QR code and the secret never reach the user, who cannot enroll here.",
			"enroll with totp-enroll, or through ssh or the console, where enroll=login can show the code")
	}
	unix := false
	for _, l := range lines[:at] {
		if l.Action("auth_err") == "die" {
			return // a refused password stops the stack here
		}
		unix = unix || l.Module == "pam_unix.so"
	}
	if unix {
		d.add("warning", where, "enroll=login after a pam_unix that does not stop the stack: pam_totp reads pam_unix's verdict and refuses, but another module in between could let a wrong password reach the enrollment.",
			"make the password module requisite")
		return
	}
	d.add("error", where, "enroll=login where a wrong password can reach it: no module before it stops the stack when the password is wrong.",
		"make the password module requisite")
}

func (d *doctor) checkGroups(where string, args []string) {
	for _, a := range args {
		k, v, _ := strings.Cut(a, "=")
		if k != "exempt_group" && k != "require_group" {
			continue
		}
		if _, err := user.LookupGroup(v); err != nil {
			d.add("error", where, fmt.Sprintf("%s names group %q, which does not exist: the module fails every login.", k, v), "create the group or correct the name")
		}
	}
}

// checkChecker applies the module's own rule for the checker's path.
func (d *doctor) checkChecker(where string, args []string) {
	path, dir := checkerPath, false
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "checker="); ok {
			path = v
		}
		dir = dir || strings.HasPrefix(a, "directory=")
	}
	if dir {
		path += "-directory" // the module's rule: the checker with the directory's code
	}
	if err := safeChecker(path); err != nil {
		d.add("error", where, fmt.Sprintf("the module would refuse the checker %s (%v): every login fails.", path, err),
			"install the package, or use a root-owned checker in root-owned directories")
	}
}

// checkerPath is where the package installs the checker.
const checkerPath = "/usr/libexec/pam-totp/pam-totp-check"

func safeChecker(path string) error {
	if !filepath.IsAbs(path) {
		return errors.New("not an absolute path")
	}
	p, err := filepath.EvalSymlinks(path)
	if err != nil {
		return err
	}
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Uid != 0 || st.Mode&0o022 != 0 || st.Mode&0o100 == 0 {
		return errors.New("not an executable root-owned file that only root can write")
	}
	for dir := filepath.Dir(p); ; dir = filepath.Dir(dir) {
		if err := unix.Stat(dir, &st); err != nil {
			return err
		}
		if st.Uid != 0 || (st.Mode&0o022 != 0 && st.Mode&unix.S_ISVTX == 0) {
			return fmt.Errorf("%s is writable by someone other than root", dir)
		}
		if dir == "/" {
			return nil
		}
	}
}

// checkAccounts lists accounts with a login shell and no enrollment.
func (d *doctor) checkAccounts(service, where string, opts *options.Options) {
	if opts.Directory != "" {
		d.checkDirectoryStack(service, where, opts)
		return
	}
	accounts, err := localAccounts()
	if err != nil {
		d.add("warning", where, fmt.Sprintf("accounts not checked: %v.", err), "run doctor as root")
		return
	}
	if !opts.AsUser() {
		d.checkStore(where, opts)
	}
	d.nullOK[service] = opts.NullOK
	var missing []string
	rootMissing, shells := false, 0
	for _, a := range accounts {
		if !loginShell(a.shell) || service == d.sshdService && !d.sshdLetsIn(a) {
			continue
		}
		// Root running sudo is never asked to authenticate.
		if a.uid == 0 && (service == "sudo" || service == "sudo-i") {
			continue
		}
		shells++
		path, f, st, found, err := enrollmentOf(a, opts)
		switch {
		case found && err != nil:
			level := "warning"
			if a.uid == 0 {
				level = "error"
			}
			fix := "correct the file as the error says, or re-enroll with totp-enroll --user " + a.name + " --force"
			if strings.Contains(err.Error(), "symbolic link") {
				fix = "put the file itself there instead of the link (the module never follows one), or re-enroll with totp-enroll --user " + a.name + " --force"
			}
			d.add(level, where, fmt.Sprintf("%s's enrollment %s is refused by the module (%v): %s cannot log in through %s.",
				a.name, path, err, a.name, service), fix)
		case found:
			d.noteDrifts(f, st)
			d.enrolled[service]++
		}
		if a.uid == 0 {
			d.rootEnrolled[service] = (found && err == nil) || inGroup(a.name, opts.ExemptGroup)
		}
		if !found {
			missing = append(missing, a.name)
			rootMissing = rootMissing || a.uid == 0
		}
	}
	if len(missing) == 0 {
		return
	}
	list := nameList(missing)
	switch {
	case opts.NullOK:
		d.add("warning", where, fmt.Sprintf("with nullok, these accounts log in through %s without a code: %s.", service, list),
			"enroll them (totp-enroll --user NAME), then remove nullok")
	case opts.EnrollAtLogin:
		d.add("note", where, fmt.Sprintf("these accounts will be asked to enroll at their next login through %s: %s.", service, list), "")
	case rootMissing || len(missing) == shells:
		d.add("error", where, fmt.Sprintf("these accounts cannot log in through %s, having no enrollment: %s.", service, list),
			"enroll them first, or add nullok while you roll out")
	default:
		d.add("warning", where, fmt.Sprintf("these accounts cannot log in through %s, having no enrollment: %s.", service, list),
			"enroll them, or add nullok while you roll out")
	}
}

// nameList names the first few accounts, and then how many more.
func nameList(names []string) string {
	const shown = 8
	if len(names) <= shown {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:shown], ", "), len(names)-shown)
}

// mergeFindings makes one finding of those that differ only in the
// service they were found through (a line of common-auth that every
// service includes), naming the services.
func (d *doctor) mergeFindings() {
	whereRe := regexp.MustCompile(`^(\S+) (\(.*\))$`)
	type group struct {
		at       int
		services []string
	}
	groups := map[string]*group{}
	var out []finding
	for _, f := range d.findings {
		m := whereRe.FindStringSubmatch(f.Where)
		if m == nil {
			out = append(out, f)
			continue
		}
		service := m[1]
		svcRe := regexp.MustCompile(`\b` + regexp.QuoteMeta(service) + `\b`)
		key := f.Level + "\x00" + m[2] + "\x00" + svcRe.ReplaceAllString(f.What, "\x01") + "\x00" + f.Fix
		if g, ok := groups[key]; ok {
			g.services = append(g.services, service)
			continue
		}
		groups[key] = &group{at: len(out), services: []string{service}}
		f.What = svcRe.ReplaceAllString(f.What, "\x01")
		f.Where = "\x01 " + m[2]
		out = append(out, f)
	}
	for _, g := range groups {
		f := &out[g.at]
		names := strings.Join(g.services, ", ")
		if len(g.services) > 1 {
			names = fmt.Sprintf("%s (%d services)", strings.Join(g.services, ", "), len(g.services))
		}
		where := g.services[0]
		if len(g.services) > 1 {
			where = fmt.Sprintf("%d services", len(g.services))
		}
		f.Where = strings.ReplaceAll(f.Where, "\x01", where)
		f.What = strings.ReplaceAll(f.What, "\x01", names)
	}
	d.findings = out
}

// enrollmentOf reads a's enrollment as a login would: the module's files
// in its order, with its owner and mode rules, and with the rights
// its checker has. A file in the home is read as the user, so a link
// there can never make doctor read as root what the user cannot. found
// says a file exists; err is then why the module would refuse it.
func enrollmentOf(a *account, opts *options.Options) (path string, f *secret.File, st *secret.State, found bool, err error) {
	acc, err := opts.Access(a.uid)
	if err != nil {
		return "", nil, nil, true, err
	}
	read := func() error {
		for _, tmpl := range opts.Secrets() {
			p, err := options.Expand(tmpl, a.name, a.home)
			if err != nil {
				return err
			}
			path = p
			// The store's directory is checkStore's, reported once.
			if f, err = secret.Read(p, acc); errors.Is(err, secret.ErrNotEnrolled) {
				continue
			}
			found = true
			if err != nil {
				return err
			}
			st, err = secret.ReadState(p, acc)
			return err
		}
		return nil
	}
	if opts.AsUser() {
		err = privilege.As(a.uid, a.gid, read)
	} else {
		err = read()
	}
	if !found {
		err = nil
	}
	return path, f, st, found, err
}

// noteDrifts counts each used TOTP token's learned drift for the clock check.
func (d *doctor) noteDrifts(f *secret.File, st *secret.State) {
	for i := range f.Tokens {
		if t := &f.Tokens[i]; t.Type == secret.TOTP {
			if ts := st.Tokens[t.Fingerprint()]; ts != nil && ts.Used {
				d.drifts[ts.Drift*int64(t.Params.Period)]++
			}
		}
	}
}

// inGroup reports whether name is a member of group (primary or not).
func inGroup(name, group string) bool {
	if group == "" {
		return false
	}
	u, err := user.Lookup(name)
	g, gerr := user.LookupGroup(group)
	if err != nil || gerr != nil {
		return false
	}
	ids, err := u.GroupIds()
	if err != nil {
		return false
	}
	for _, id := range append(ids, u.Gid) {
		if id == g.Gid {
			return true
		}
	}
	return false
}

// checkStore: a root-owned store that others can write lets them plant files.
func (d *doctor) checkStore(where string, opts *options.Options) {
	dir := filepath.Dir(opts.Secret)
	if strings.Contains(dir, "%") {
		return
	}
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		d.add("warning", where, fmt.Sprintf("the store %s: %v.", dir, err), "create it, owned by root, mode 0700")
		return
	}
	if st.Mode&0o022 != 0 {
		d.add("error", where, fmt.Sprintf("the store %s is writable by group or others: the module refuses it, and every login fails.", dir),
			"chmod 0700 "+dir)
	}
}

// loginShell reports whether an account with this shell can log in.
func loginShell(shell string) bool {
	sh := filepath.Base(shell)
	return shell != "" && sh != "nologin" && sh != "false" && sh != "sync"
}

// readSSHD reads sshd's effective settings with the real sshd -T.
func (d *doctor) readSSHD() error {
	if _, err := os.Stat(d.sshdConfig); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	out, err := exec.Command("/usr/sbin/sshd", "-T", "-f", d.sshdConfig).CombinedOutput()
	if err != nil {
		return fmt.Errorf("sshd -T -f %s: %v: %s", d.sshdConfig, err, strings.TrimSpace(string(out)))
	}
	d.sshd = map[string]string{}
	for _, l := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(l, " "); ok {
			// allowusers and denyusers come one line a value.
			if old, seen := d.sshd[k]; seen {
				v = old + " " + v
			}
			d.sshd[k] = v
		}
	}
	return nil
}

// sshdLetsIn reports whether sshd's AllowUsers, DenyUsers and
// PermitRootLogin let a through to keyboard-interactive at all.
func (d *doctor) sshdLetsIn(a *account) bool {
	if d.sshd == nil {
		return true
	}
	if a.uid == 0 && d.sshd["permitrootlogin"] != "yes" {
		return false // no, or a key only: root never reaches PAM's prompts
	}
	match := func(list string) bool {
		for _, p := range strings.Fields(list) {
			p, _, _ = strings.Cut(p, "@") // USER@HOST: the host part is the client's
			if ok, _ := filepath.Match(p, a.name); ok {
				return true
			}
		}
		return false
	}
	if match(d.sshd["denyusers"]) {
		return false
	}
	return d.sshd["allowusers"] == "" || match(d.sshd["allowusers"])
}

// checkSSHD checks sshd's settings against its stack.
func (d *doctor) checkSSHD() {
	set := d.sshd
	if set == nil {
		return
	}
	where := d.sshdConfig
	if set["usepam"] != "yes" {
		d.add("error", where, "UsePAM is no: sshd never asks pam_totp, and its stack with pam_totp is dead.", "UsePAM yes")
	}
	switch {
	case set["kbdinteractiveauthentication"] != "no":
	case d.nullOK[d.sshdService] && d.enrolled[d.sshdService] == 0:
		// Debian's default: harmless until the first user enrolls.
		d.add("warning", where, "KbdInteractiveAuthentication is no: the code can never be typed, so a user who enrolls can no longer log in through sshd (without an enrollment, nullok lets them in).", "KbdInteractiveAuthentication yes")
	default:
		d.add("error", where, "KbdInteractiveAuthentication is no: the code can never be typed, so logins through PAM fail.", "KbdInteractiveAuthentication yes")
	}
	if set["permitrootlogin"] == "yes" && !d.rootEnrolled[d.sshdService] {
		d.add("warning", where, "PermitRootLogin yes while root has no enrollment and is not exempt: root cannot log in with a password and code (or, with nullok, logs in without a code).",
			"enroll root (totp-enroll --user root), or PermitRootLogin prohibit-password")
	}
	if set["passwordauthentication"] == "yes" && (set["authenticationmethods"] == "" || set["authenticationmethods"] == "any") {
		d.add("warning", where, "PasswordAuthentication yes without AuthenticationMethods: a client that tries the password method first is refused after a good code (pam_setcred replays that failed attempt; docs/sshd.md).",
			"PasswordAuthentication no, or AuthenticationMethods publickey,keyboard-interactive")
	}
	if set["pubkeyauthentication"] == "yes" && keyAlone(set["authenticationmethods"]) {
		d.add("note", where, "PubkeyAuthentication yes, and AuthenticationMethods lets a key alone in: sshd runs no PAM authentication for a key, so such a login is asked for no code.",
			"if a key should need a code too: AuthenticationMethods publickey,keyboard-interactive")
	}
}

// keyAlone reports whether sshd's AuthenticationMethods (as sshd -T
// prints it) has a list that a public key satisfies without a method that
// runs the PAM stack (keyboard-interactive, or password with UsePAM).
func keyAlone(methods string) bool {
	if methods == "" || methods == "any" {
		return true
	}
	for _, list := range strings.Fields(methods) {
		key, pam := false, false
		for _, m := range strings.Split(list, ",") {
			name, _, _ := strings.Cut(m, ":")
			key = key || name == "publickey"
			pam = pam || name == "keyboard-interactive" || name == "password"
		}
		if key && !pam {
			return true
		}
	}
	return false
}

// checkClock: codes are time-based.
func (d *doctor) checkClock() {
	var tx unix.Timex
	state, err := unix.Adjtimex(&tx)
	if err != nil {
		return
	}
	if state == unix.TIME_ERROR || tx.Status&unix.STA_UNSYNC != 0 {
		d.add("warning", "clock", "the system clock is not synchronised: time-based codes fail when it drifts.", "run an NTP client (systemd-timesyncd, chrony)")
	}
	d.checkDrifts()
}

// checkDrifts: when most used tokens learned the same non-zero drift, the
// phones agree with each other and the server is the one that is off.
func (d *doctor) checkDrifts() {
	total, best, most := 0, int64(0), 0
	for drift, n := range d.drifts {
		total += n
		if n > most || (n == most && drift < best) {
			best, most = drift, n
		}
	}
	if total >= 3 && best != 0 && 2*most > total {
		d.add("warning", "clock", fmt.Sprintf("%d of %d used tokens learned the same drift of %+d s: the server's clock is probably that far off.", most, total, best),
			"set the server's clock right (NTP); the tokens then drift back within their resync window")
	}
}

// verifierCheck is doctor --verifier: the installed pam-totp-verifier's
// own check, which reads the files as the verifier's user does and asks
// the directory as the verifier's identity. Its lines and exit status are
// doctor's.
func verifierCheck(conf, user string, stdout, stderr io.Writer) int {
	path, err := exec.LookPath("pam-totp-verifier")
	if err != nil {
		path = "/usr/sbin/pam-totp-verifier"
	}
	if _, err := os.Stat(path); err != nil {
		fmt.Fprintln(stderr, "totp-enroll doctor --verifier: pam-totp-verifier is not installed here (its package is pam-totp-verifier)")
		return 2
	}
	args := []string{"--check", "--config", conf}
	if user != "" {
		args = append(args, "--user", user)
	}
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	err = cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ee):
		return 1
	}
	fmt.Fprintf(stderr, "totp-enroll doctor --verifier: %v\n", err)
	return 2
}

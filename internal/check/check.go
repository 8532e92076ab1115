// SPDX-License-Identifier: Apache-2.0

// Package check runs one authentication inside pam-totp-check: it reads the
// module's request, finds and opens the user's enrollment with the right
// privileges, asks for the code through the module, decides under the
// enrollment's lock, saves the state, logs one line and sends the verdict.
package check

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"pamtotp/internal/options"
	"pamtotp/internal/otp"
	"pamtotp/internal/protocol"
	"pamtotp/internal/secret"
	"pamtotp/internal/store"
	"pamtotp/internal/verify"
)

// Logger is the part of *syslog.Writer a check uses.
type Logger interface {
	Info(string) error
	Warning(string) error
	Debug(string) error
}

// Env is what a check needs from the process around it.
type Env struct {
	Conn io.ReadWriter // the socket to pam_totp.so
	Log  Logger
	Now  func() time.Time
	// LoginSession returns the kernel's audit session of the login we run
	// in (inherited from the host), or "" if none was set. Only
	// grace_period asks for it; nil is no session.
	LoginSession func() string
	// Directory opens a user's enrollment in the directory of directory=;
	// nil refuses that option.
	Directory store.Opener
	// Serves, in a host other than the exec'd checker (pam-totp-agent),
	// says whether it takes a login with these options; one it does not
	// take is declined before anything else is sent, and the module
	// starts the checker. nil takes every login.
	Serves func(*options.Options) bool
	// Relay, on a login host, hands a directory= login to a
	// pam-totp-verifier when the configuration names verifiers, and
	// returns its verdict; ErrNotRelayed when it names none, an error
	// wrapping store.ErrUnreachable when no verifier could be reached
	// before anything was relayed (fallback=local may then be taken). nil:
	// this host relays nothing.
	Relay Relay
	// Remote is set where the engine runs inside pam-totp-verifier, for
	// a login host that relays the module's frames: nil elsewhere.
	Remote *Remote
}

// Relay is Env.Relay: it runs a login through a verifier, and returns the
// verdict and the verifier that gave it.
type Relay func(conf string, req *protocol.Req, opts *options.Options, module io.ReadWriter, connectBy time.Time) (byte, string, error)

// Remote is what pam-totp-verifier adds to a check: the host it serves,
// the policy it imposes, and what it counts.
type Remote struct {
	// Host is the login host's identity (its certificate's name), logged
	// with every decision.
	Host string
	// Options are the module options to decide with, from those the
	// host's module line gave: the verifier's policy, not the host's.
	Options func(host []string) []string
	// Admit refuses a login before anything else (the host's rate).
	Admit func() error
	// Decided is told of every decision line: its outcome, whether it
	// locked the user, and whether the directory could not be reached.
	Decided func(outcome string, locked, unreachable bool)
}

// ErrNotRelayed is Relay's answer for a configuration without verifiers.
var ErrNotRelayed = errors.New("the configuration names no verifier")

// Run handles one request and always tries to send a verdict.
func Run(e *Env) {
	verdict := protocol.Fail
	defer func() {
		if r := recover(); r != nil {
			e.Log.Warning(fmt.Sprintf("internal error: %v", r))
			verdict = protocol.Fail
		}
		if verdict == declined {
			protocol.WriteFrame(e.Conn, protocol.Decline, nil)
			return
		}
		protocol.WriteFrame(e.Conn, protocol.Verdict, []byte{verdict})
	}()
	typ, payload, err := protocol.ReadFrame(e.Conn)
	// The module's timeout= runs from its request: the first prompt must
	// come before it ends, and connecting to a directory is most of that
	// wait. From the request, not from Run: a verifier's connection waits
	// for a host's next request for minutes.
	started := time.Now()
	if errors.Is(err, io.EOF) {
		// Hung up before a request (doctor's probe of the agent): no
		// login, nothing to log.
		return
	}
	if err == nil && typ != protocol.Request {
		err = fmt.Errorf("first frame is %q, not a request", typ)
	}
	var req *protocol.Req
	if err == nil {
		req, err = protocol.ParseReq(payload)
	}
	if err != nil {
		e.Log.Warning("outcome=fail reason=" + quote("bad request from module: "+err.Error()))
		return
	}
	s := &session{env: e, req: req, started: started}
	defer s.closeAccount()
	verdict = s.run()
}

// declined is run's answer for a login that this host of the engine does
// not take (Env.Serves): a Decline frame instead of a verdict.
const declined byte = 0

func (s *session) closeAccount() {
	if s.dir != nil {
		s.dir.Close()
	}
}

type session struct {
	env  *Env
	req  *protocol.Req
	opts *options.Options
	acct store.Account // where the user's enrollment is, once open has found it
	dir  store.Account // the user's account in the directory, opened once
	// fallback is why the directory was bypassed (fallback=local), or nil.
	fallback error
	authtok  bool // SetAuthtok sent
	// locked and err are the decision logResult logs, for Remote.Decided.
	locked  bool
	err     error
	started time.Time // when the module started this checker (real time)
}

// saveFailedMessage is shown when a login cannot be recorded.
const saveFailedMessage = "pam_totp: cannot record this login (is the disk full or read-only?); ask an administrator"

// A candidate is one way of reading what the user typed: the code, and
// with forward_pass or use_first_pass the password in front of it.
type candidate struct {
	code     string
	password string
	index    int // its place among the readings, which a verifier names to its host; -1: typed at the code prompt
}

func (s *session) run() byte {
	args := s.req.Options
	if s.env.Remote != nil {
		args = s.env.Remote.Options(args)
	}
	opts, err := options.Parse(args)
	if err != nil {
		s.logf(s.env.Log.Warning, "", "fail", "configuration: %v", err)
		return protocol.Fail
	}
	s.opts = opts
	if s.env.Serves != nil && !s.env.Serves(opts) {
		return declined
	}
	if r := s.env.Remote; r != nil && r.Admit != nil {
		if err := r.Admit(); err != nil {
			s.logf(s.env.Log.Warning, "", "fail", "%v", err)
			return protocol.Fail
		}
	}
	if s.env.Remote != nil && s.req.Probe {
		return s.probe()
	}
	if v, relayed := s.relay(); relayed {
		return v
	}

	if s.req.Activate != "" {
		return s.activate()
	}

	// Everything that can be wrong with the user or the file is found out
	// before the prompt but only reported after it: a prompt must not tell
	// who exists or who is enrolled.
	file, problem := s.open()
	if problem != nil && !errors.Is(problem, secret.ErrNotEnrolled) && opts.Debug {
		s.env.Log.Debug("user=" + quote(s.req.User) + " problem=" + quote(problem.Error()))
	}
	if errors.Is(problem, secret.ErrNotEnrolled) && s.mayEnroll() {
		return s.enrollAtLogin()
	}
	if errors.Is(problem, secret.ErrNotEnrolled) && opts.NullOK {
		s.logf(s.env.Log.Info, "", "ignore", "no secret file (nullok)")
		return protocol.Ignore
	}
	lengths := codeLengths(file)
	if problem == nil && s.inGrace() {
		s.logf(s.env.Log.Info, "", "ok", "grace period: a code was accepted from %s less than %d s ago", s.place(), s.opts.GracePeriod)
		return protocol.Success
	}

	if opts.UseFirstPass || opts.TryFirstPass {
		held := s.heldAuthtok()
		if !held && opts.UseFirstPass {
			s.logf(s.env.Log.Warning, "", "fail", "use_first_pass: no password from an earlier module")
			return protocol.Fail
		}
		var tried []candidate
		if held {
			if tried, err = s.readings("", lengths); err != nil {
				s.logf(s.env.Log.Info, "", "fail", "conversation failed: %v", err)
				return protocol.Fail
			}
		}
		hasCode := len(tried) > 0 && tried[0].code != ""
		switch {
		case opts.UseFirstPass && (problem != nil || !hasCode):
			if problem == nil {
				problem = errors.New("use_first_pass: the password does not end in a code")
			}
			return s.finish(verify.Result{Outcome: verify.BadCode}, tried[0], problem)
		case opts.UseFirstPass:
			r, c, err := s.decide(tried)
			return s.finish(r, c, err)
		case hasCode && problem == nil:
			// try_first_pass: a code in front is used if it opens; else ask.
			r, c, err := s.decide(tried)
			if err == nil && r.Outcome == verify.OK {
				return s.finish(r, c, err)
			}
			s.logResult(r, err)
		}
	}

	var candidates []candidate
	if opts.ForwardPass {
		candidates, err = s.readings("Password & verification code: ", lengths)
	} else {
		var answer string
		answer, err = s.prompt(opts.Prompt, opts.EchoCode)
		candidates = []candidate{{code: answer, index: -1}}
	}
	if err != nil {
		s.logf(s.env.Log.Info, "", "fail", "conversation failed: %v", err)
		return protocol.Fail
	}
	if problem != nil {
		return s.finish(verify.Result{Outcome: verify.BadCode}, candidates[0], problem)
	}
	r, c, err := s.decide(candidates)
	return s.finish(r, c, err)
}

// open finds the user's enrollment and reads it. The enrollment is read
// again when the decision is made.
func (s *session) open() (*secret.File, error) {
	if !s.req.Known {
		return nil, errors.New("unknown user")
	}
	if s.opts.Directory == "" {
		return s.openFiles()
	}
	// s.fallback is set already when no verifier could be reached.
	file, err := (*secret.File)(nil), s.fallback
	if err == nil {
		file, err = s.openDirectory()
	}
	s.fallback = nil
	if errors.Is(err, store.ErrUnreachable) && s.opts.FallbackLocal {
		// Only a directory that cannot be reached at all is bypassed, and
		// only for a user with a local enrollment (root's break-glass
		// token): everyone else fails closed.
		local, lerr := s.openFiles()
		if lerr == nil {
			s.fallback = err
			return local, nil
		}
		if !errors.Is(lerr, secret.ErrNotEnrolled) {
			err = fmt.Errorf("%w; fallback=local: %v", err, lerr)
		}
		// Not enrolled locally either: the login fails as the directory's,
		// never as "not enrolled", which nullok or enroll=login would take.
		s.acct = s.dir
	}
	return file, err
}

// probe answers doctor on a login host, inside pam-totp-verifier: whether
// the user's entry can be read (enrolled or not, Ignore), or why not (an
// Error frame, and Fail). Nothing is asked, compared or written.
func (s *session) probe() byte {
	if _, problem := s.open(); problem != nil && !errors.Is(problem, secret.ErrNotEnrolled) {
		s.logf(s.env.Log.Info, "", "fail", "doctor's probe: %v", problem)
		protocol.WriteFrame(s.env.Conn, protocol.Error, []byte(problem.Error()))
		return protocol.Fail
	}
	s.logf(s.env.Log.Info, "", "ignore", "doctor's probe: the user's entry was read")
	return protocol.Ignore
}

// relay hands the login to a pam-totp-verifier when directory= names
// verifiers; relayed is false when it is decided here: the configuration
// names none, or none could be reached and fallback=local lets a local
// enrollment decide (s.fallback is then set).
func (s *session) relay() (verdict byte, relayed bool) {
	if s.opts.Directory == "" || s.env.Relay == nil {
		return 0, false
	}
	v, where, err := s.env.Relay(s.opts.Directory, s.req, s.opts, s.env.Conn, s.started.Add(s.opts.ConnectBudget()))
	switch {
	case errors.Is(err, ErrNotRelayed):
		return 0, false
	case errors.Is(err, store.ErrUnreachable) && s.opts.FallbackLocal && s.req.Activate == "":
		s.fallback = err
		return 0, false
	case err != nil:
		s.logf(s.env.Log.Warning, "", "fail", "%v", err)
		return protocol.Fail, true
	}
	outcome := map[byte]string{protocol.Success: "ok", protocol.Ignore: "ignore"}[v]
	if outcome == "" {
		outcome = "fail"
	}
	s.logf(s.env.Log.Info, "", outcome, "decided by the verifier %s", where)
	return v, true
}

// openDirectory reads the user's enrollment in the directory.
func (s *session) openDirectory() (*secret.File, error) {
	if s.env.Directory == nil {
		return nil, errors.New("directory= needs pam-totp-check-directory; this checker has no directory code")
	}
	if os.Geteuid() != 0 && s.env.Remote == nil {
		return nil, fmt.Errorf("directory=: the checker runs as uid %d, not as root", os.Geteuid())
	}
	if s.dir == nil {
		acct, err := s.env.Directory(s.opts.Directory, s.req.User, s.started.Add(s.opts.ConnectBudget()))
		if err != nil {
			return nil, err
		}
		s.dir = acct
		if s.opts.Debug {
			s.env.Log.Debug("user=" + quote(s.req.User) + " directory=" + quote(acct.Where()))
		}
	}
	s.acct = s.dir
	return s.dir.Read()
}

// openFiles finds the user's secret file, checks that the checker runs as
// the identity that file needs, and parses it. Without secret=, pam_totp's
// file is looked for first and then pam_google_authenticator's.
func (s *session) openFiles() (*secret.File, error) {
	acc, err := s.opts.Access(s.req.UID)
	if err != nil {
		return nil, err
	}
	// pam_totp.so started us as the account that owns the files; anything
	// else is a mistake we refuse to work with.
	if os.Getuid() != acc.Owner || os.Geteuid() != acc.Owner {
		return nil, fmt.Errorf("checker runs as uid %d, not as the owner of the secret files (uid %d)", os.Geteuid(), acc.Owner)
	}
	first := ""
	for _, tmpl := range s.opts.Secrets() {
		path, err := options.Expand(tmpl, s.req.User, s.req.Home)
		if err != nil {
			return nil, err
		}
		if first == "" {
			first = path
		}
		if !s.opts.AsUser() {
			if err := secret.CheckStoreDir(path, acc.Owner); err != nil {
				return nil, err
			}
		}
		s.acct = store.Files{Path: path, Acc: acc}
		if s.opts.Debug {
			s.env.Log.Debug("user=" + quote(s.req.User) + " secret=" + quote(path))
		}
		if file, err := secret.Read(path, acc); !errors.Is(err, secret.ErrNotEnrolled) {
			return file, err
		}
	}
	// Not enrolled: a new enrollment goes into the first place looked at.
	s.acct = store.Files{Path: first, Acc: acc}
	return nil, secret.ErrNotEnrolled
}

// policy is the module's policy, adjusted for a pam_google_authenticator
// file to that file's own settings (docs/migrating.md).
func (s *session) policy(a store.Enrollment) verify.Policy {
	p := s.opts.Policy
	if g := a.Google(); g != nil {
		behind, ahead, hotp := (g.Window-1)/2, g.Window/2, g.Window
		if s.opts.AsUser() && !s.opts.TrustFileSettings {
			// The user can write this file: its WINDOW_SIZE may narrow
			// what the module line allows, never widen it.
			behind, ahead, hotp = min(behind, p.Behind), min(ahead, p.Ahead), min(hotp, p.HOTPWindow)
		}
		p.Behind, p.Ahead = behind, ahead
		p.InitialWindow = 0
		p.FixedDrift = true
		p.HOTPWindow, p.HOTPResync, p.HOTPAdvance = hotp, 0, !s.opts.NoHOTPAdvance
		if g.RateLimit {
			p.RateLimit, p.RateSeconds = g.RateN, g.RateSeconds
		}
	}
	return p
}

// place is where a login comes from, for grace_period: the remote host,
// or the terminal of a local login within its login session. A terminal
// name alone outlives the session: a later, unrelated login can get the
// same /dev/pts/N. Without a login session (no pam_loginuid), local logins
// get no grace.
func (s *session) place() string {
	switch {
	case s.req.RHost != "":
		return s.req.RHost
	case s.req.TTY != "" && s.env.LoginSession != nil:
		if id := s.env.LoginSession(); id != "" {
			return "tty:" + s.req.TTY + "@" + id
		}
	}
	return ""
}

// inGrace reports whether the user logged in with a code from the same
// place within grace_period seconds.
func (s *session) inGrace() bool {
	if s.opts.GracePeriod == 0 || s.opts.ForwardPass || s.opts.UseFirstPass {
		return false
	}
	place := s.place()
	if !secret.ValidPlace(place) {
		return false
	}
	e, err := s.acct.Hold()
	if err != nil {
		return false
	}
	defer e.Close()
	now := s.env.Now().Unix()
	t := e.State().GraceFor(place)
	return t > 0 && t <= now && now-t < s.opts.GracePeriod && e.State().LockedUntil <= now
}

// maxConflicts bounds how often a decision is made again because the
// enrollment changed under it (the directory has no locks). Each round one
// of the logins that raced gets through, so a bounded few cannot starve
// the rest for long; past the bound the login fails closed.
const maxConflicts = 8

// decide checks the candidates and saves the state before returning. It
// decides again, from what the store holds then, when another login or an
// admin changed the enrollment meanwhile.
func (s *session) decide(candidates []candidate) (verify.Result, candidate, error) {
	for range maxConflicts {
		r, c, err := s.decideOnce(candidates)
		if !errors.Is(err, store.ErrConflict) {
			return r, c, err
		}
	}
	return verify.Result{Outcome: verify.BadCode}, candidates[0], fmt.Errorf("the enrollment kept changing: %d decisions in a row were overtaken", maxConflicts)
}

// decideOnce checks the candidates with the enrollment held. One attempt
// is one failure, however many candidates were tried, and it is counted
// before any code is compared: the charged state is published where the
// next login sees it, so a checker killed or stopped at any later moment
// cannot leave a wrong code uncounted while a right one would have gone
// through. If the charge cannot be written, no code is compared
// (docs/security.md).
func (s *session) decideOnce(candidates []candidate) (verify.Result, candidate, error) {
	e, err := s.acct.Hold()
	if err != nil {
		return verify.Result{Outcome: verify.BadCode}, candidates[0], err
	}
	defer e.Close()
	now := s.env.Now().Unix()
	policy := s.policy(e)
	file, orig := e.Secret(), e.State()
	charged := false
	for _, c := range candidates {
		if _, ok := verify.Admit(file, orig, c.code, now, policy); ok {
			st := orig.Clone()
			verify.Charge(st, now, policy)
			if err := e.Publish(st); errors.Is(err, store.ErrConflict) {
				return verify.Result{}, candidates[0], err
			} else if err != nil {
				s.saveFailed()
				return verify.Result{Outcome: verify.BadCode}, candidates[0], fmt.Errorf("cannot record the attempt, so no code was compared: %w", err)
			}
			charged = true
			break
		}
	}
	var r verify.Result
	var final *secret.State
	chosen := candidates[0]
	for i, c := range candidates {
		// Each reading is tried on its own copy; the one kept is saved.
		st := orig.Clone()
		res := verify.Check(file, st, c.code, now, policy)
		if i == 0 || res.Outcome == verify.OK {
			r, chosen, final = res, c, st
		}
		if res.Outcome == verify.OK {
			break
		}
	}
	if r.Outcome == verify.OK && s.opts.GracePeriod > 0 {
		final.Remember(s.place(), now)
	}
	if r.Outcome == verify.OK && !s.req.Silent {
		// Told below. Under PAM_SILENT (sudo's default) no message reaches
		// the user, so the next login that can show the count does.
		final.Missed = 0
	}
	if err := e.Save(final); errors.Is(err, store.ErrConflict) && (r.Outcome == verify.OK || !charged) {
		// A success must be decided again from what overtook it (the same
		// code used elsewhere, an unlock); a failure already counted by
		// its charge stays counted once.
		return verify.Result{}, chosen, err
	} else if errors.Is(err, store.ErrConflict) {
		return r, chosen, nil
	} else if err != nil {
		// Without the saved state a code could be used again: refuse.
		s.saveFailed()
		if s.opts.AllowReadonly {
			err = fmt.Errorf("%w (allow_readonly is not honoured: it would allow replay)", err)
		}
		return verify.Result{Outcome: verify.BadCode, Token: r.Token}, chosen, fmt.Errorf("cannot save state: %w", err)
	}
	if r.Outcome == verify.OK && r.Missed > 0 {
		// As sshd reports failed logins: the owner learns of guessing.
		protocol.WriteFrame(s.env.Conn, protocol.Info, []byte(fmt.Sprintf(
			"pam_totp: %d wrong verification code(s) were entered for your account since your last login.", r.Missed)))
	}
	if r.Outcome == verify.OK && r.Token == "scratch" {
		protocol.WriteFrame(s.env.Conn, protocol.Info, []byte(scratchLeftMessage(file, final)))
	}
	return r, chosen, nil
}

// scratchLeftMessage tells a user who just used a scratch code how many
// are left, and warns before they run out: the last one used without a
// phone is a lock-out.
func scratchLeftMessage(f *secret.File, st *secret.State) string {
	left := 0
	for _, c := range f.Scratch {
		if !st.ScratchIsUsed(c) {
			left++
		}
	}
	msg := fmt.Sprintf("pam_totp: scratch code accepted; %d left.", left)
	if left <= 2 {
		msg += " Make new ones soon: totp-enroll scratch --regenerate (as root), before the last is gone."
	}
	return msg
}

// saveFailed tells the user that a login cannot be recorded. It is shown
// for a right code and a wrong one alike, so it reveals nothing.
func (s *session) saveFailed() {
	protocol.WriteFrame(s.env.Conn, protocol.Error, []byte(saveFailedMessage))
}

// finish forwards the password part when asked, logs and returns the verdict.
func (s *session) finish(r verify.Result, c candidate, err error) byte {
	// A code typed at the code prompt is no reading of a password: it
	// sets nothing (index -1). Inside pam-totp-verifier the host holds
	// the passwords, and sets the one of the reading named.
	reading := c.index >= 0 && (c.password != "" || s.env.Remote != nil)
	if (s.opts.ForwardPass || s.opts.UseFirstPass || (s.opts.TryFirstPass && r.Outcome == verify.OK && reading)) && !s.authtok {
		payload := []byte(c.password)
		if s.env.Remote != nil {
			payload = []byte(strconv.Itoa(c.index))
		}
		if (s.env.Remote == nil || c.index >= 0) && protocol.WriteFrame(s.env.Conn, protocol.SetAuthtok, payload) == nil {
			s.authtok = true
		}
	}
	s.logResult(r, err)
	if err == nil && r.Outcome == verify.OK {
		return protocol.Success
	}
	return protocol.Fail
}

func (s *session) logResult(r verify.Result, err error) {
	s.locked, s.err = r.NowLocked && err == nil, err
	// A directory of an older pam_totp's schema keeps no state records: the
	// decision stands (pamTOTPState orders this server's logins, as it
	// did), and the admin learns that replication can erase it.
	if d, ok := s.acct.(interface{ Degraded() string }); ok && d.Degraded() != "" {
		s.env.Log.Warning("user=" + quote(s.req.User) + " directory=" + quote(d.Degraded()))
	}
	switch {
	case err != nil:
		s.logf(s.env.Log.Warning, r.Token, "fail", "%v", err)
	case r.Outcome == verify.OK:
		reason := "code accepted"
		if r.DriftAdjusted {
			reason = fmt.Sprintf("drift adjusted to %d steps", r.Drift)
		}
		if r.Missed > 0 {
			reason += fmt.Sprintf(" after %d wrong codes", r.Missed)
		}
		s.logf(s.env.Log.Info, r.Token, "ok", "%s", reason)
	case r.NowLocked:
		s.logf(s.env.Log.Warning, r.Token, "fail", "%s; user locked for %d s", r.Outcome, r.LockedFor)
	default:
		s.logf(s.env.Log.Warning, r.Token, "fail", "%s", r.Outcome)
	}
}

func (s *session) prompt(text string, echo bool) (string, error) {
	typ := protocol.PromptEchoOff
	if echo {
		typ = protocol.PromptEchoOn
	}
	return s.ask(typ, []byte(text))
}

// heldAuthtok says whether an earlier module set a password: the request
// carries it, or, inside pam-totp-verifier, the login host says it holds
// one.
func (s *session) heldAuthtok() bool {
	return s.req.Authtok != nil || s.env.Remote != nil && s.req.Held
}

// readings are the ways of reading a password followed by a code: the
// answer to prompt, or with none the PAM_AUTHTOK an earlier module set.
// Inside pam-totp-verifier the login host holds the password: it is asked
// for the codes alone (a Split frame), and keeps the rest.
func (s *session) readings(prompt string, lengths []int) ([]candidate, error) {
	if s.env.Remote != nil {
		answer, err := s.ask(protocol.Split, protocol.SplitPayload(lengths, prompt))
		if err != nil {
			return nil, err
		}
		codes, err := protocol.ParseCodes([]byte(answer))
		if err != nil {
			return nil, err
		}
		out := make([]candidate, len(codes))
		for i, c := range codes {
			out[i] = candidate{code: c, index: i}
		}
		return out, nil
	}
	answer := ""
	if prompt != "" {
		var err error
		if answer, err = s.prompt(prompt, false); err != nil {
			return nil, err
		}
	} else if s.req.Authtok != nil {
		answer = *s.req.Authtok
	}
	return split(answer, lengths), nil
}

// ask sends a frame that wants an answer, and waits for it.
func (s *session) ask(typ protocol.Type, payload []byte) (string, error) {
	if err := protocol.WriteFrame(s.env.Conn, typ, payload); err != nil {
		return "", err
	}
	// Nobody waits for an answer without end: a login parked at the
	// prompt would hold a process of the account (counted against its
	// process limit) and, at enrollment, a decision made long ago.
	if d, ok := s.env.Conn.(interface{ SetReadDeadline(time.Time) error }); ok {
		if err := d.SetReadDeadline(time.Now().Add(time.Duration(s.opts.PromptTimeout) * time.Second)); err != nil {
			return "", fmt.Errorf("setting the prompt time-out: %w", err)
		}
		defer d.SetReadDeadline(time.Time{})
	}
	t, p, err := protocol.ReadFrame(s.env.Conn)
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return "", fmt.Errorf("no answer within prompt_timeout=%d s", s.opts.PromptTimeout)
	case err != nil:
		return "", err
	case t == protocol.ConvFailed:
		return "", errors.New("the application could not ask the user")
	case t != protocol.Answer:
		return "", fmt.Errorf("unexpected frame %q", t)
	}
	return string(p), nil
}

// logf writes the one line of a decision. It never contains a code or a secret.
func (s *session) logf(level func(string) error, token, outcome, format string, args ...any) {
	var b strings.Builder
	fmt.Fprintf(&b, "user=%s", quote(s.req.User))
	if s.req.Typed != "" {
		fmt.Fprintf(&b, " typed=%s", quote(s.req.Typed))
	}
	fmt.Fprintf(&b, " service=%s", quote(s.req.Service))
	if s.env.Remote != nil {
		// The verifier's log is the fleet's: every line names the host
		// that asked, as its certificate names it.
		fmt.Fprintf(&b, " host=%s", quote(s.env.Remote.Host))
	}
	if s.req.RHost != "" {
		fmt.Fprintf(&b, " rhost=%s", quote(s.req.RHost))
	}
	if s.req.TTY != "" {
		fmt.Fprintf(&b, " tty=%s", quote(s.req.TTY))
	}
	// A directory decision names the entry it used (server and DN), so
	// that an admin can see whose enrollment decided.
	if s.dir != nil && s.acct == s.dir {
		fmt.Fprintf(&b, " store=%s", quote(s.dir.Where()))
	}
	if token != "" {
		fmt.Fprintf(&b, " token=%s", quote(token))
	}
	if s.fallback != nil {
		fmt.Fprintf(&b, " fallback=local store=%s directory=%s", quote(s.acct.Where()), quote(s.fallback.Error()))
	}
	fmt.Fprintf(&b, " outcome=%s reason=%s", outcome, quote(fmt.Sprintf(format, args...)))
	level(b.String())
	if r := s.env.Remote; r != nil && r.Decided != nil {
		r.Decided(outcome, s.locked, errors.Is(s.err, store.ErrUnreachable))
	}
	s.locked, s.err = false, nil
}

// quote keeps a logged value on one line and unambiguous.
func quote(v string) string {
	for _, r := range v {
		if r <= ' ' || r == '"' || r == '\\' || r >= 0x7f {
			return fmt.Sprintf("%q", v)
		}
	}
	if v == "" {
		return `""`
	}
	return v
}

// codeLengths are the lengths a code may have for this file: the tokens'
// digits and the scratch code length, shortest first.
func codeLengths(f *secret.File) []int {
	set := map[int]bool{otp.DefaultDigit: true, otp.ScratchLen: true}
	if f != nil {
		set = map[int]bool{otp.ScratchLen: len(f.Scratch)+len(f.Passcodes) > 0}
		for _, t := range f.Tokens {
			set[t.Params.Digits] = true
		}
	}
	var out []int
	for n, ok := range set {
		if ok {
			out = append(out, n)
		}
	}
	sort.Ints(out)
	return out
}

// Readings is split for a login host that relays to a verifier: the
// codes it sends and the passwords it keeps, in the same order.
func Readings(answer string, lengths []int) (codes, passwords []string) {
	for _, c := range split(answer, lengths) {
		codes, passwords = append(codes, c.code), append(passwords, c.password)
	}
	return codes, passwords
}

// split reads "password then code" for each code length that fits; if no
// length fits, the whole input is the password and the code is empty.
func split(s string, lengths []int) []candidate {
	var out []candidate
	for _, n := range lengths {
		if len(s) >= n && otp.IsDigits(s[len(s)-n:], n) {
			out = append(out, candidate{code: s[len(s)-n:], password: s[:len(s)-n], index: len(out)})
		}
	}
	if len(out) == 0 {
		out = append(out, candidate{password: s})
	}
	return out
}

// SPDX-License-Identifier: Apache-2.0

package check

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"

	"pamtotp/internal/enroll"
	"pamtotp/internal/otp"
	"pamtotp/internal/protocol"
	"pamtotp/internal/secret"
)

// maxMessage is PAM_MAX_MSG_SIZE: longer messages may be cut by an
// application, so text is sent in pieces of whole lines that fit.
const maxMessage = 512

// mayEnroll reports whether enroll=login applies to a user without a secret.
func (s *session) mayEnroll() bool {
	if !s.opts.EnrollAtLogin {
		return false
	}
	if err := s.enrollAllowed(); err != nil {
		s.logf(s.env.Log.Info, "", "info", "enroll=login: %v; not enrolling", err)
		return false
	}
	if !s.heldAuthtok() {
		// Whoever reaches us first enrolls: never without a password that
		// an earlier module asked for (and, with requisite, checked).
		s.logf(s.env.Log.Warning, "", "info", "enroll=login: no password from an earlier module; not enrolling")
		return false
	}
	return true
}

// enrollAllowed is the policy of enroll=login at this moment. It is asked
// before the prompt, again when the enrollment is written, and again when
// it is made active: a login can sit at a prompt for a long time.
func (s *session) enrollAllowed() error {
	switch {
	case !s.opts.EnrollAtLogin:
		return errors.New("no enroll=login")
	case s.opts.EnrollUntil != 0 && s.env.Now().Unix() >= s.opts.EnrollUntil:
		return errors.New("enroll_until has passed")
	}
	return nil
}

// stillUnenrolled is asked under the enrollment lock, by CreatePending and
// by Activate, before an enrollment made at login is written or made active.
func (s *session) stillUnenrolled() error {
	if err := s.enrollAllowed(); err != nil {
		return err
	}
	_, problem := s.open()
	switch {
	case problem == nil:
		return errors.New("the user was enrolled meanwhile")
	case !errors.Is(problem, secret.ErrNotEnrolled):
		return problem
	}
	return nil
}

// enrollAtLogin shows a new token's QR code and secret, asks for a code
// from it, writes the enrollment and shows the scratch codes once.
func (s *session) enrollAtLogin() byte {
	now := s.env.Now()
	key, err := enroll.NewKey()
	if err != nil {
		s.logf(s.env.Log.Warning, "", "fail", "enroll=login: %v", err)
		return protocol.Fail
	}
	scratch, err := enroll.ScratchCodes(5)
	if err != nil {
		s.logf(s.env.Log.Warning, "", "fail", "enroll=login: %v", err)
		return protocol.Fail
	}
	tok := secret.Token{Name: "default", Type: secret.TOTP, Key: key, Created: now.Unix(),
		Params: otp.DefaultParams}
	host, _ := os.Hostname()
	tok.Issuer, tok.Label = host, s.req.User+"@"+host
	uri := enroll.URI(tok.Issuer, tok.Label, &tok)
	var qr strings.Builder
	if err := enroll.WriteQR(&qr, uri, enroll.QRPlain); err != nil {
		s.logf(s.env.Log.Warning, "", "fail", "enroll=login: %v", err)
		return protocol.Fail
	}
	lines := []string{"You have no second factor yet. Scan this QR code with an authenticator app:", ""}
	lines = append(lines, strings.Split(strings.TrimRight(qr.String(), "\n"), "\n")...)
	lines = append(lines, "", "Or type the secret: "+enroll.Grouped(key), "("+tok.Describe()+")", uri)
	if err := s.info(lines); err != nil {
		s.logf(s.env.Log.Info, "", "fail", "enroll=login: conversation failed: %v", err)
		return protocol.Fail
	}

	file := &secret.File{Tokens: []secret.Token{tok}, Scratch: scratch}
	state := secret.NewState()
	ask := func() (string, error) { return s.prompt("Verification code from the app: ", false) }
	wrong := func(again bool) {
		if again {
			protocol.WriteFrame(s.env.Conn, protocol.Error, []byte("That code is not right; try the next one."))
		}
	}
	confirmed, err := enroll.Confirm(file, state, now.Unix(), s.opts.Policy.InitialWindow, ask, wrong)
	if err != nil {
		s.logf(s.env.Log.Info, "", "fail", "enroll=login: conversation failed: %v", err)
		return protocol.Fail
	}
	if !confirmed {
		s.logf(s.env.Log.Warning, "", "fail", "enroll=login: the code was wrong three times; nothing was written")
		return protocol.Fail
	}
	// The enrollment waits under a random name: a wrong password earlier
	// in the stack may still fail this login, and only a login that
	// succeeds as a whole may make it active. The module keeps the name
	// and sends it back from pam_sm_setcred, which hosts call only then.
	name, err := pendingName()
	if err == nil {
		err = s.acct.CreatePending(file, state, name, s.stillUnenrolled)
	}
	if err == nil {
		err = protocol.WriteFrame(s.env.Conn, protocol.Pending, []byte(name))
	}
	if err != nil {
		protocol.WriteFrame(s.env.Conn, protocol.Error, []byte("pam_totp: the enrollment could not be saved; ask an administrator"))
		s.logf(s.env.Log.Warning, "", "fail", "enroll=login: %v", err)
		return protocol.Fail
	}
	s.logf(s.env.Log.Info, "default", "ok", "enrolled at login, pending until the login succeeds")
	msg := []string{"Enrolled. Emergency scratch codes (each works once; they are not shown again):"}
	for _, c := range scratch {
		msg = append(msg, "  "+c)
	}
	// A prompt makes sshd show the codes now, not after the login.
	if err := s.info(msg); err == nil {
		s.prompt("Press Enter once you have written them down: ", true)
	}
	return protocol.Success
}

// activate makes the enrollment this login's authentication left pending
// active. pam_sm_setcred asks for it: the whole stack has succeeded.
func (s *session) activate() byte {
	// open finds the path and checks our identity; Activate asks again under the lock.
	if _, problem := s.open(); problem != nil && !errors.Is(problem, secret.ErrNotEnrolled) {
		s.logf(s.env.Log.Warning, "", "fail", "enroll=login: not activated: %v", problem)
		return protocol.Fail
	}
	if err := s.acct.Activate(s.req.Activate, s.stillUnenrolled); err != nil {
		s.logf(s.env.Log.Warning, "", "fail", "enroll=login: not activated: %v", err)
		return protocol.Fail
	}
	s.logf(s.env.Log.Info, "default", "ok", "enrolled at login: active now that the login succeeded")
	return protocol.Success
}

// pendingName is a pending enrollment's random name.
func pendingName() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("random name: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// info sends lines as PAM_TEXT_INFO messages of whole lines that each fit
// in maxMessage bytes.
func (s *session) info(lines []string) error {
	for _, m := range pack(lines, maxMessage) {
		if err := protocol.WriteFrame(s.env.Conn, protocol.Info, []byte(m)); err != nil {
			return err
		}
	}
	return nil
}

// pack joins lines into messages of at most max bytes; a longer line is cut.
func pack(lines []string, max int) []string {
	var out []string
	var b strings.Builder
	for _, l := range lines {
		if len(l) > max {
			l = l[:max]
		}
		if b.Len() > 0 && b.Len()+1+len(l) > max {
			out = append(out, b.String())
			b.Reset()
		}
		if b.Len() > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(l)
	}
	if b.Len() > 0 {
		out = append(out, b.String())
	}
	return out
}

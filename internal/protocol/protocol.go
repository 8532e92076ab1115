// SPDX-License-Identifier: Apache-2.0

// Package protocol is the wire format between pam_totp.so (C, in the host
// process) and pam-totp-check (this project's Go checker), over one
// socketpair. docs/protocol.md describes it; pam_totp/pam_totp.c is the
// other implementation and the two must agree.
//
// A frame is one type byte, a 16-bit big-endian payload length, and the
// payload. The module sends one Request, then one Answer or ConvFailed
// for every prompt. The checker sends prompts, messages, at most one
// SetAuthtok, and ends with exactly one Verdict.
package protocol

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Version is the protocol version carried in every Request.
const Version = 1

// Bounds. The module enforces the same ones.
const (
	MaxPayload = 8192 // any frame
	MaxAnswer  = 512  // PAM_MAX_RESP_SIZE; the module sends MaxAnswer+1 bytes of a longer answer
)

// Type is a frame type.
type Type byte

const (
	// module -> checker
	Request    Type = 'Q'
	Answer     Type = 'A'
	ConvFailed Type = 'X'
	// checker -> module
	PromptEchoOff Type = 'P'
	PromptEchoOn  Type = 'E'
	Info          Type = 'I'
	Error         Type = 'R'
	SetAuthtok    Type = 'T'
	Verdict       Type = 'V'
	// Pending carries the name of an enrollment made at this login and
	// not yet active. The module keeps it in the PAM environment and sends
	// it back in an Activate request from pam_sm_setcred, which hosts call
	// only once the whole stack has succeeded.
	Pending Type = 'N'
	// Decline, from pam-totp-agent and only as its first frame: the agent
	// does not take this login (it is full, or the login is one the
	// exec'd checker serves). The module starts the checker and sends it
	// the same request.
	Decline Type = 'D'
	// Split, from pam-totp-verifier to the login host that relays for
	// it, and only there: the answer it asks for holds the password in
	// front of the code (forward_pass, use_first_pass, try_first_pass),
	// and the password never leaves the host. The payload is the code
	// lengths to try ("6,8"), a NUL, and the prompt to show, or nothing
	// to use the PAM_AUTHTOK the host holds. The host answers with an
	// Answer frame of the possible codes, NUL-separated (SplitCodes), and
	// keeps the passwords; a SetAuthtok frame from the verifier then
	// carries the index of the reading that decided, and the host sets
	// that reading's password.
	Split Type = 'W'
)

// MaxPending bounds a Pending payload: hex digits only.
const MaxPending = 64

// Verdict payloads.
const (
	Success byte = 'S'
	Fail    byte = 'F'
	Ignore  byte = 'I'
)

// ErrTooLarge is returned for a frame over MaxPayload.
var ErrTooLarge = errors.New("frame larger than the protocol allows")

// WriteFrame writes one frame.
func WriteFrame(w io.Writer, t Type, payload []byte) error {
	if len(payload) > MaxPayload {
		return ErrTooLarge
	}
	buf := make([]byte, 3+len(payload))
	buf[0] = byte(t)
	binary.BigEndian.PutUint16(buf[1:], uint16(len(payload)))
	copy(buf[3:], payload)
	_, err := w.Write(buf)
	return err
}

// ReadFrame reads one frame, refusing oversized ones before reading them.
func ReadFrame(r io.Reader) (Type, []byte, error) {
	var hdr [3]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, fmt.Errorf("reading frame header: %w", err)
	}
	n := int(binary.BigEndian.Uint16(hdr[1:]))
	if n > MaxPayload {
		return 0, nil, ErrTooLarge
	}
	payload := make([]byte, n)
	if _, err := io.ReadFull(r, payload); err != nil {
		return 0, nil, fmt.Errorf("reading %d-byte frame: %w", n, err)
	}
	return Type(hdr[0]), payload, nil
}

// Req is what the module tells the checker about one authentication.
type Req struct {
	// User is the account's name as the lookup resolved it (pw_name), for
	// a known user; Typed is the name as typed when it differs (NSS that
	// ignores case or takes aliases). Enrollments are found by User only.
	User    string
	Typed   string
	Known   bool // the user exists (the module found it with getpwnam)
	UID     int
	GID     int
	Home    string
	Service string
	RHost   string
	TTY     string
	RUser   string
	Authtok *string  // PAM_AUTHTOK, sent only when an option needs it
	Options []string // the module arguments, in order
	// Activate is set in the request pam_sm_setcred sends: the name of
	// the pending enrollment to make active, as a Pending frame gave it.
	Activate string
	// Silent: the application passed PAM_SILENT, and the module relays no
	// messages (sudo does so by default).
	Silent bool
	// Held, in a request a login host relays to pam-totp-verifier: the
	// host holds a PAM_AUTHTOK that it does not send (Split asks for its
	// codes).
	Held bool
	// Probe, from totp-enroll doctor on a login host to pam-totp-verifier:
	// no login, only whether the verifier takes this host and can read the
	// user's entry.
	Probe bool
}

// Marshal encodes r as NUL-terminated key=value fields, "v" first.
func (r *Req) Marshal() []byte {
	var b bytes.Buffer
	add := func(k, v string) { b.WriteString(k + "=" + v + "\x00") }
	add("v", strconv.Itoa(Version))
	add("user", r.User)
	if r.Typed != "" {
		add("typed", r.Typed)
	}
	if r.Known {
		add("uid", strconv.Itoa(r.UID))
		add("gid", strconv.Itoa(r.GID))
		add("home", r.Home)
	}
	add("service", r.Service)
	add("rhost", r.RHost)
	add("tty", r.TTY)
	add("ruser", r.RUser)
	if r.Authtok != nil {
		add("authtok", *r.Authtok)
	}
	if r.Activate != "" {
		add("activate", r.Activate)
	}
	if r.Silent {
		add("silent", "1")
	}
	if r.Held {
		add("held", "1")
	}
	if r.Probe {
		add("probe", "1")
	}
	for _, o := range r.Options {
		add("opt", o)
	}
	return b.Bytes()
}

// ParseReq decodes a Request payload strictly.
func ParseReq(p []byte) (*Req, error) {
	if len(p) == 0 || p[len(p)-1] != 0 {
		return nil, errors.New("request is not NUL-terminated")
	}
	r := &Req{}
	seen := map[string]bool{}
	for i, field := range bytes.Split(p[:len(p)-1], []byte{0}) {
		k, v, ok := bytes.Cut(field, []byte("="))
		key, val := string(k), string(v)
		if !ok {
			return nil, fmt.Errorf("request field %d has no '='", i)
		}
		if i == 0 {
			if key != "v" || val != strconv.Itoa(Version) {
				return nil, fmt.Errorf("unsupported protocol version %q", val)
			}
			seen["v"] = true
			continue
		}
		if key != "opt" && seen[key] {
			return nil, fmt.Errorf("repeated request field %q", key)
		}
		seen[key] = true
		var err error
		switch key {
		case "user":
			r.User = val
		case "uid":
			r.UID, err = id(val)
		case "gid":
			r.GID, err = id(val)
		case "home":
			r.Home = val
		case "service":
			r.Service = val
		case "rhost":
			r.RHost = val
		case "tty":
			r.TTY = val
		case "ruser":
			r.RUser = val
		case "authtok":
			s := val
			r.Authtok = &s
		case "opt":
			r.Options = append(r.Options, val)
		case "typed":
			r.Typed = val
		case "silent":
			r.Silent = true
			if val != "1" {
				err = errors.New("the only value is 1")
			}
		case "held":
			r.Held = true
			if val != "1" {
				err = errors.New("the only value is 1")
			}
		case "probe":
			r.Probe = true
			if val != "1" {
				err = errors.New("the only value is 1")
			}
		case "activate":
			r.Activate = val
			if !ValidPending(val) {
				err = errors.New("not a pending enrollment's name")
			}
		default:
			err = errors.New("unknown field")
		}
		if err != nil {
			return nil, fmt.Errorf("request field %q: %w", key, err)
		}
	}
	if !seen["v"] || !seen["user"] {
		return nil, errors.New("request lacks version or user")
	}
	r.Known = seen["uid"] && seen["gid"] && seen["home"]
	if !r.Known && (seen["uid"] || seen["gid"] || seen["home"]) {
		return nil, errors.New("request has part of a user's identity")
	}
	return r, nil
}

// ValidPending accepts what the checker sends in a Pending frame: 32 to
// MaxPending lower-case hex digits.
func ValidPending(s string) bool {
	if len(s) < 32 || len(s) > MaxPending {
		return false
	}
	for _, c := range []byte(s) {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func id(s string) (int, error) {
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || n == 1<<32-1 {
		return 0, errors.New("not a uid or gid")
	}
	return int(n), nil
}

// Bounds of a Split exchange: a code is at most MaxCodeLen digits, and an
// answer holds at most MaxCodes readings.
const (
	MaxCodeLen = 16
	MaxCodes   = 8
)

// SplitPayload is a Split frame's payload.
func SplitPayload(lengths []int, prompt string) []byte {
	var b bytes.Buffer
	for i, n := range lengths {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(n))
	}
	b.WriteByte(0)
	b.WriteString(prompt)
	return b.Bytes()
}

// ParseSplit decodes a Split payload strictly.
func ParseSplit(p []byte) (lengths []int, prompt string, err error) {
	ls, text, ok := bytes.Cut(p, []byte{0})
	if !ok || len(ls) == 0 {
		return nil, "", errors.New("split frame without code lengths")
	}
	prompt = string(text)
	for _, f := range bytes.Split(ls, []byte(",")) {
		n, err := strconv.Atoi(string(f))
		if err != nil || n < 1 || n > MaxCodeLen || len(lengths) == MaxCodes {
			return nil, "", fmt.Errorf("split frame: bad code lengths %q", ls)
		}
		lengths = append(lengths, n)
	}
	return lengths, prompt, nil
}

// CodesPayload is the Answer to a Split: the possible codes, NUL-separated;
// an empty code stands for a reading with none.
func CodesPayload(codes []string) []byte {
	return []byte(strings.Join(codes, "\x00"))
}

// ParseCodes decodes the Answer to a Split: 1 to MaxCodes readings, each
// empty or digits only.
func ParseCodes(p []byte) ([]string, error) {
	codes := strings.Split(string(p), "\x00")
	if len(codes) > MaxCodes {
		return nil, fmt.Errorf("%d codes in one answer; at most %d", len(codes), MaxCodes)
	}
	for _, c := range codes {
		if len(c) > MaxCodeLen || strings.Trim(c, "0123456789") != "" {
			return nil, errors.New("a code that is not digits only")
		}
	}
	return codes, nil
}

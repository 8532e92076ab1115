// SPDX-License-Identifier: Apache-2.0

package secret

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"pamtotp/internal/otp"
)

// TokenState is what logins have learned about one token.
type TokenState struct {
	Used     bool  // a code of this token was accepted at least once
	LastStep int64 // the last accepted time step or HOTP counter (valid when Used)
	At       int64 // Unix time of the last accepted code, 0 if unknown
	Drift    int64 // steps the token's clock is ahead (+) or behind (-)
	// A far-off code waiting for the next consecutive one to resynchronise.
	PendingStep   int64
	PendingOffset int64
	Pending       bool
}

// State is the content of a state file.
type State struct {
	Tokens      map[string]*TokenState // by Token.Fingerprint
	ScratchUsed []string               // scratch codes and admin passcodes that were used
	Failures    int                    // wrong codes since the last success or lock
	LockedUntil int64                  // Unix time
	Lockouts    int                    // locks since the last success: each lasts twice as long
	Missed      int                    // wrong codes not yet told to the user; told at the next success that can show a message
	FailedAt    []int64                // Unix times of recent failures, for a rate limit
	Grace       []Grace                // recent successful logins, for grace_period
}

// MaxGrace bounds the remembered logins (pam_google_authenticator keeps 10).
const MaxGrace = 10

// Grace records a successful login from one place: a remote host, or
// "tty:" and a terminal for a local login.
type Grace struct {
	Place string
	Time  int64
}

// ValidPlace reports whether a place can be stored: one word of printable
// ASCII, so that it cannot break a line of the file.
func ValidPlace(p string) bool {
	if p == "" || len(p) > 256 {
		return false
	}
	for i := 0; i < len(p); i++ {
		if p[i] <= ' ' || p[i] >= 0x7f || p[i] == '"' {
			return false
		}
	}
	return true
}

// Remember records a successful login from place at now, keeping only the
// newest MaxGrace places.
func (s *State) Remember(place string, now int64) {
	if !ValidPlace(place) {
		return
	}
	out := []Grace{{place, now}}
	for _, g := range s.Grace {
		if g.Place != place && len(out) < MaxGrace {
			out = append(out, g)
		}
	}
	s.Grace = out
}

// GraceFor returns when place last logged in successfully, or 0.
func (s *State) GraceFor(place string) int64 {
	for _, g := range s.Grace {
		if g.Place == place {
			return g.Time
		}
	}
	return 0
}

// NewState returns an empty state.
func NewState() *State { return &State{Tokens: map[string]*TokenState{}} }

// Clone returns a deep copy of s.
func (s *State) Clone() *State {
	c := *s
	c.Tokens = make(map[string]*TokenState, len(s.Tokens))
	for fp, ts := range s.Tokens {
		t := *ts
		c.Tokens[fp] = &t
	}
	c.ScratchUsed = append([]string(nil), s.ScratchUsed...)
	c.FailedAt = append([]int64(nil), s.FailedAt...)
	c.Grace = append([]Grace(nil), s.Grace...)
	return &c
}

// Token returns the state of t, creating it.
func (s *State) Token(t *Token) *TokenState {
	fp := t.Fingerprint()
	ts := s.Tokens[fp]
	if ts == nil {
		ts = &TokenState{}
		s.Tokens[fp] = ts
	}
	return ts
}

// ScratchIsUsed reports whether code was used.
func (s *State) ScratchIsUsed(code string) bool {
	for _, u := range s.ScratchUsed {
		if u == code {
			return true
		}
	}
	return false
}

// ParseState parses a state file.
func ParseState(data []byte) (*State, error) {
	lines, err := contentLines(data, stateHeader)
	if err != nil {
		return nil, err
	}
	s := NewState()
	for _, l := range lines {
		fields := strings.Fields(l.text)
		if err := s.parseLine(fields); err != nil {
			return nil, fmt.Errorf("line %d: %w", l.no, err)
		}
	}
	return s, nil
}

func (s *State) parseLine(fields []string) error {
	n := func(v string) (int64, error) { return strconv.ParseInt(v, 10, 64) }
	switch {
	case fields[0] == "token" && len(fields) >= 2:
		ts := &TokenState{}
		if _, dup := s.Tokens[fields[1]]; dup {
			return errors.New("duplicate token")
		}
		for _, kv := range fields[2:] {
			k, v, _ := strings.Cut(kv, "=")
			var err error
			switch k {
			case "last":
				ts.LastStep, err = n(v)
				ts.Used = true
			case "drift":
				ts.Drift, err = n(v)
			case "at":
				ts.At, err = n(v)
			case "pending":
				a, b, ok := strings.Cut(v, ":")
				if !ok {
					return errors.New("pending is STEP:OFFSET")
				}
				ts.Pending = true
				if ts.PendingStep, err = n(a); err == nil {
					ts.PendingOffset, err = n(b)
				}
			default:
				err = fmt.Errorf("unknown field %q", k)
			}
			if err != nil {
				return fmt.Errorf("token %s: %w", fields[1], err)
			}
		}
		s.Tokens[fields[1]] = ts
	case fields[0] == "scratch-used" && len(fields) == 2 && otp.IsDigits(fields[1], otp.ScratchLen):
		s.ScratchUsed = append(s.ScratchUsed, fields[1])
	case (fields[0] == "failures" || fields[0] == "lockouts" || fields[0] == "missed") && len(fields) == 2:
		v, err := strconv.Atoi(fields[1])
		if err != nil || v < 0 {
			return fmt.Errorf("bad count in %q", fields[0])
		}
		switch fields[0] {
		case "failures":
			s.Failures = v
		case "lockouts":
			s.Lockouts = v
		default:
			s.Missed = v
		}
	case fields[0] == "failed-at" && len(fields) >= 2:
		for _, f := range fields[1:] {
			v, err := n(f)
			if err != nil {
				return errors.New("bad failure time")
			}
			s.FailedAt = append(s.FailedAt, v)
		}
	case fields[0] == "grace" && len(fields) == 3 && ValidPlace(fields[1]) && len(s.Grace) < MaxGrace:
		v, err := n(fields[2])
		if err != nil {
			return errors.New("bad grace time")
		}
		s.Grace = append(s.Grace, Grace{fields[1], v})
	case fields[0] == "locked-until" && len(fields) == 2:
		v, err := n(fields[1])
		if err != nil {
			return errors.New("bad lock time")
		}
		s.LockedUntil = v
	default:
		return fmt.Errorf("unknown line %q", fields[0])
	}
	return nil
}

// Marshal returns the state file's text, dropping what no longer applies to f.
func (s *State) Marshal(f *File) []byte {
	var b bytes.Buffer
	b.WriteString("# pam_totp login state: written at each login. Do not edit while logins run.\n")
	b.WriteString(stateHeader + "\n")
	var fps []string
	seen := map[string]bool{}
	for _, t := range f.Tokens {
		fp := t.Fingerprint()
		if _, ok := s.Tokens[fp]; ok && !seen[fp] {
			seen[fp] = true
			fps = append(fps, fp)
		}
	}
	sort.Strings(fps)
	for _, fp := range fps {
		ts := s.Tokens[fp]
		fmt.Fprintf(&b, "token %s", fp)
		if ts.Used {
			fmt.Fprintf(&b, " last=%d", ts.LastStep)
		}
		if ts.At != 0 {
			fmt.Fprintf(&b, " at=%d", ts.At)
		}
		fmt.Fprintf(&b, " drift=%d", ts.Drift)
		if ts.Pending {
			fmt.Fprintf(&b, " pending=%d:%d", ts.PendingStep, ts.PendingOffset)
		}
		b.WriteString("\n")
	}
	for _, u := range s.ScratchUsed {
		if slices.Contains(f.Scratch, u) || slices.Contains(f.Passcodes, u) {
			fmt.Fprintf(&b, "scratch-used %s\n", u)
		}
	}
	if s.Failures > 0 {
		fmt.Fprintf(&b, "failures %d\n", s.Failures)
	}
	if s.LockedUntil > 0 {
		fmt.Fprintf(&b, "locked-until %d\n", s.LockedUntil)
	}
	if s.Lockouts > 0 {
		fmt.Fprintf(&b, "lockouts %d\n", s.Lockouts)
	}
	if s.Missed > 0 {
		fmt.Fprintf(&b, "missed %d\n", s.Missed)
	}
	if len(s.FailedAt) > 0 {
		b.WriteString("failed-at")
		for _, t := range s.FailedAt {
			fmt.Fprintf(&b, " %d", t)
		}
		b.WriteString("\n")
	}
	for _, g := range s.Grace {
		fmt.Fprintf(&b, "grace %s %d\n", g.Place, g.Time)
	}
	return b.Bytes()
}

// SPDX-License-Identifier: Apache-2.0

// Package gafile reads and edits pam_google_authenticator's per-user file
// (~/.google_authenticator) in place: a login changes only the lines whose
// meaning changed, and keeps every other line, known or not, where it was,
// so that pam_google_authenticator still works on the file afterwards.
// docs/migrating.md describes the format and how pam_totp reads it.
package gafile

import (
	"bytes"
	"encoding/base32"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// MaxSize is the largest file either module reads.
const MaxSize = 64 << 10

// Defaults of pam_google_authenticator.
const (
	DefaultStep   = 30
	DefaultWindow = 3
)

// Pair is one entry of RESETTING_TIME_SKEW: the server's time step when a
// far-off code came, and how many steps away it was.
type Pair struct {
	Step, Skew int64
}

// Last is one LASTn entry: a place that logged in, and when.
type Last struct {
	Host string
	Time int64
}

// File is a parsed file. The fields are what the file says; Set, Delete and
// RemoveScratch change the text, and Marshal returns it.
type File struct {
	Key           []byte
	HOTP          bool  // HOTP_COUNTER is present (it wins over TOTP_AUTH)
	Counter       int64 // HOTP_COUNTER: the next counter
	Step          int   // STEP_SIZE, seconds
	Window        int   // WINDOW_SIZE
	DisallowReuse bool  // DISALLOW_REUSE is present
	Used          []int64
	RateLimit     bool // RATE_LIMIT is present
	RateN         int
	RateSeconds   int64
	RateTimes     []int64
	Skew          int64
	Resetting     []Pair
	Last          []Last
	Scratch       []string
	// pam_totp's own line, which pam_google_authenticator ignores: the
	// failure lockout of the module options.
	Failures    int
	LockedUntil int64
	Lockouts    int
	Missed      int

	lines    []string
	finalNL  bool
	scratchN map[string]int // scratch code -> line index
}

// Option keys: the words after `" ` on an option line.
const (
	HOTPCounterKey   = "HOTP_COUNTER"
	StepSizeKey      = "STEP_SIZE"
	WindowSizeKey    = "WINDOW_SIZE"
	DisallowReuseKey = "DISALLOW_REUSE"
	RateLimitKey     = "RATE_LIMIT"
	TimeSkewKey      = "TIME_SKEW"
	ResettingKey     = "RESETTING_TIME_SKEW"
	// LockoutKey is the option line pam_totp adds for its failure lockout.
	LockoutKey = "PAM_TOTP_LOCKOUT"
)

// MaxLast is the highest n of the LASTn grace lines.
const MaxLast = 9

// LastKey is the key of grace line n (0 to MaxLast).
func LastKey(n int) string { return fmt.Sprintf("LAST%d", n) }

// Looks reports whether data is a pam_google_authenticator file rather than
// pam_totp's own format: its first line is not a comment or a header.
func Looks(data []byte) bool {
	first, _, _ := bytes.Cut(data, []byte("\n"))
	first = bytes.TrimSpace(first)
	return len(first) > 0 && first[0] != '#' && !bytes.HasPrefix(first, []byte("pam_totp"))
}

// Parse parses a file strictly where pam_google_authenticator is strict and
// leniently where it is lenient, so that every file it accepts is accepted
// and means the same.
func Parse(data []byte) (*File, error) {
	if len(data) > MaxSize {
		return nil, fmt.Errorf("file larger than %d bytes", MaxSize)
	}
	if bytes.IndexByte(data, 0) >= 0 {
		return nil, errors.New("file contains a NUL byte")
	}
	text := string(data)
	f := &File{Step: DefaultStep, Window: DefaultWindow, finalNL: strings.HasSuffix(text, "\n")}
	f.lines = strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	key, err := decodeSecret(f.lines[0])
	if err != nil {
		return nil, fmt.Errorf("line 1: %w", err)
	}
	f.Key = key
	if err := f.parseOptions(); err != nil {
		return nil, err
	}
	f.setLines(f.lines)
	return f, nil
}

// decodeSecret reads line 1: base32, any case; spaces, tabs, CR and '-'
// skipped; no padding.
func decodeSecret(line string) ([]byte, error) {
	s := strings.Map(func(r rune) rune {
		switch r {
		case ' ', '\t', '\r', '-':
			return -1
		}
		return r
	}, strings.ToUpper(line))
	if s == "" || strings.ContainsRune(s, '=') {
		return nil, errors.New("the secret is not unpadded base32")
	}
	key, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(s)
	if err != nil {
		return nil, errors.New("the secret is not valid base32")
	}
	// 80 bits is the least pam_totp accepts for any token.
	if len(key) < 10 || len(key) > 128 {
		return nil, fmt.Errorf("the secret must be 10 to 128 bytes, not %d", len(key))
	}
	return key, nil
}

// option returns the words after " KEY on the first line with that key.
func (f *File) option(key string) ([]string, bool) {
	for _, l := range f.lines[1:] {
		if k, rest, ok := cutOption(l); ok && k == key {
			return strings.Fields(rest), true
		}
	}
	return nil, false
}

func cutOption(l string) (key, rest string, ok bool) {
	l = strings.TrimRight(l, "\r")
	if !strings.HasPrefix(l, "\" ") {
		return "", "", false
	}
	key, rest, _ = strings.Cut(l[2:], " ")
	return key, rest, true
}

func (f *File) parseOptions() error {
	num := func(key string, words []string, i int, min, max int64) (int64, error) {
		if i >= len(words) {
			return 0, fmt.Errorf("%s: value missing", key)
		}
		n, err := strconv.ParseInt(words[i], 10, 64)
		if err != nil || n < min || n > max {
			return 0, fmt.Errorf("%s: %q is not a number from %d to %d", key, words[i], min, max)
		}
		return n, nil
	}
	var err error
	var n int64
	if w, ok := f.option(HOTPCounterKey); ok {
		f.HOTP = true
		if f.Counter, err = num(HOTPCounterKey, w, 0, 1, 1<<62); err != nil {
			return err
		}
	}
	if w, ok := f.option(StepSizeKey); ok {
		if n, err = num(StepSizeKey, w, 0, 1, 60); err != nil {
			return err
		}
		f.Step = int(n)
	}
	if w, ok := f.option(WindowSizeKey); ok {
		if n, err = num(WindowSizeKey, w, 0, 1, 100); err != nil {
			return err
		}
		f.Window = int(n)
	}
	if w, ok := f.option(DisallowReuseKey); ok {
		f.DisallowReuse = true
		for i := range w {
			if n, err = num(DisallowReuseKey, w, i, 0, 1<<62); err != nil {
				return err
			}
			f.Used = append(f.Used, n)
		}
	}
	if w, ok := f.option(RateLimitKey); ok {
		f.RateLimit = true
		if n, err = num(RateLimitKey, w, 0, 1, 100); err != nil {
			return err
		}
		f.RateN = int(n)
		if f.RateSeconds, err = num(RateLimitKey, w, 1, 1, 3600); err != nil {
			return err
		}
		for i := 2; i < len(w); i++ {
			if n, err = num(RateLimitKey, w, i, 0, 1<<62); err != nil {
				return err
			}
			f.RateTimes = append(f.RateTimes, n)
		}
	}
	if w, ok := f.option(TimeSkewKey); ok {
		if f.Skew, err = num(TimeSkewKey, w, 0, -1<<40, 1<<40); err != nil {
			return err
		}
	}
	if w, ok := f.option(ResettingKey); ok {
		for _, p := range w {
			i := strings.LastIndexAny(p, "+-")
			step, err1 := strconv.ParseInt(p[:max(i, 0)], 10, 64)
			skew, err2 := strconv.ParseInt(p[max(i, 0):], 10, 64)
			if i <= 0 || err1 != nil || err2 != nil || step < 0 {
				return fmt.Errorf("RESETTING_TIME_SKEW: %q is not STEP+SKEW", p)
			}
			f.Resetting = append(f.Resetting, Pair{step, skew})
		}
	}
	for i := 0; i <= MaxLast; i++ {
		key := LastKey(i)
		if w, ok := f.option(key); ok {
			if len(w) != 2 {
				return fmt.Errorf("%s: want HOST TIME", key)
			}
			if n, err = num(key, w, 1, 0, 1<<62); err != nil {
				return err
			}
			f.Last = append(f.Last, Last{w[0], n})
		}
	}
	if w, ok := f.option(LockoutKey); ok {
		// FAILURES LOCKED_UNTIL [LOCKOUTS MISSED]
		if len(w) != 2 && len(w) != 4 {
			return fmt.Errorf("%s: want FAILURES LOCKED_UNTIL [LOCKOUTS MISSED]", LockoutKey)
		}
		if f.LockedUntil, err = num(LockoutKey, w, 1, 0, 1<<62); err != nil {
			return err
		}
		counts := []*int{&f.Failures, nil, &f.Lockouts, &f.Missed}
		for i := range w {
			if counts[i] == nil {
				continue
			}
			if n, err = num(LockoutKey, w, i, 0, 1<<31); err != nil {
				return err
			}
			*counts[i] = int(n)
		}
	}
	return nil
}

// Set makes " KEY VALUE the file's only line for key: the first such line is
// replaced, others removed; a new key goes directly after line 1, where
// pam_google_authenticator puts it.
func (f *File) Set(key, value string) {
	line := "\" " + key
	if value != "" {
		line += " " + value
	}
	done := false
	out := f.lines[:1:1]
	for _, l := range f.lines[1:] {
		if k, _, ok := cutOption(l); ok && k == key {
			if !done {
				out, done = append(out, line), true
			}
			continue
		}
		out = append(out, l)
	}
	if !done {
		out = append([]string{f.lines[0], line}, out[1:]...)
	}
	f.setLines(out)
}

// Delete removes every line for key.
func (f *File) Delete(key string) {
	out := f.lines[:1:1]
	for _, l := range f.lines[1:] {
		if k, _, ok := cutOption(l); !ok || k != key {
			out = append(out, l)
		}
	}
	f.setLines(out)
}

// RemoveScratch deletes a used scratch code's line, and any copy of it, so
// that a code listed twice still works only once.
func (f *File) RemoveScratch(code string) {
	for {
		i, ok := f.scratchN[code]
		if !ok {
			return
		}
		f.setLines(append(f.lines[:i:i], f.lines[i+1:]...))
	}
}

// setLines replaces the text and finds the scratch codes again: after
// line 1, blank and option lines are skipped, and the first line that is
// not 8 digits (10000000 to 99999999) ends the list.
func (f *File) setLines(lines []string) {
	f.lines = lines
	f.Scratch, f.scratchN = nil, map[string]int{}
	for i := 1; i < len(lines); i++ {
		l := strings.TrimRight(lines[i], "\r")
		if l == "" || l[0] == '"' {
			continue
		}
		n, err := strconv.Atoi(l)
		if len(l) != 8 || err != nil || n < 10000000 {
			break
		}
		if _, dup := f.scratchN[l]; !dup {
			f.Scratch = append(f.Scratch, l)
		}
		f.scratchN[l] = i // the last copy: removing it leaves the others' indexes

	}
}

// Marshal returns the file's text.
func (f *File) Marshal() []byte {
	s := strings.Join(f.lines, "\n")
	if f.finalNL {
		s += "\n"
	}
	return []byte(s)
}

// Ints formats numbers for an option line.
func Ints(v []int64) string {
	w := make([]string, len(v))
	for i, n := range v {
		w[i] = strconv.FormatInt(n, 10)
	}
	return strings.Join(w, " ")
}

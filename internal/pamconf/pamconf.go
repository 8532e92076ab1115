// SPDX-License-Identifier: Apache-2.0

// Package pamconf reads Linux-PAM service files (/etc/pam.d) the way
// libpam does, far enough to follow a service's auth stack: comments and
// line continuations, "@include", "include" and "substack", simple controls
// (required, requisite, sufficient, optional) and the bracket syntax
// ([success=N default=ignore ...]). totp-enroll doctor uses it to find
// paths through a stack that skip pam_totp.
package pamconf

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Line is one auth line of a service, with includes expanded.
type Line struct {
	File    string            // the file it came from
	No      int               // its line number there
	Control string            // as written: "required" or "[success=1 default=ignore]"
	Actions map[string]string // the control as bracket actions: return value -> action
	Module  string            // the module's file name, e.g. "pam_unix.so"
	Args    []string
	Depth   int // 0 in the service's own file; more inside substacks
}

// Simple controls as bracket actions, as libpam defines them.
var simple = map[string]map[string]string{
	"required":   {"success": "ok", "new_authtok_reqd": "ok", "ignore": "ignore", "default": "bad"},
	"requisite":  {"success": "ok", "new_authtok_reqd": "ok", "ignore": "ignore", "default": "die"},
	"sufficient": {"success": "done", "new_authtok_reqd": "done", "default": "ignore"},
	"optional":   {"success": "ok", "new_authtok_reqd": "ok", "default": "ignore"},
}

// maxDepth bounds include chains (libpam refuses loops too).
const maxDepth = 16

// Auth returns the auth lines of service in dir, includes expanded.
func Auth(dir, service string) ([]Line, error) {
	return read(dir, service, 0, 0)
}

func read(dir, name string, depth, stackDepth int) ([]Line, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("%s: includes nested more than %d deep (a loop?)", name, maxDepth)
	}
	if name == "" || strings.ContainsAny(name, "/\x00") || name == "." || name == ".." {
		return nil, fmt.Errorf("bad service name %q", name)
	}
	path := filepath.Join(dir, name)
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []Line
	for _, raw := range logicalLines(string(data)) {
		fields := fieldsOf(raw.text)
		if len(fields) == 0 {
			continue
		}
		if fields[0] == "@include" {
			if len(fields) != 2 {
				return nil, fmt.Errorf("%s:%d: @include takes one file", path, raw.no)
			}
			sub, err := read(dir, fields[1], depth+1, stackDepth)
			if err != nil {
				return nil, fmt.Errorf("%s:%d: %w", path, raw.no, err)
			}
			out = append(out, sub...)
			continue
		}
		typ := strings.TrimPrefix(fields[0], "-")
		if typ != "auth" {
			continue
		}
		if len(fields) < 3 {
			return nil, fmt.Errorf("%s:%d: want TYPE CONTROL MODULE", path, raw.no)
		}
		control, rest := fields[1], fields[2:]
		if control == "include" || control == "substack" {
			d := stackDepth
			if control == "substack" {
				d++
			}
			sub, err := read(dir, rest[0], depth+1, d)
			if err != nil {
				return nil, fmt.Errorf("%s:%d: %w", path, raw.no, err)
			}
			out = append(out, sub...)
			continue
		}
		actions, err := parseControl(control)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, raw.no, err)
		}
		out = append(out, Line{File: path, No: raw.no, Control: control, Actions: actions,
			Module: filepath.Base(rest[0]), Args: rest[1:], Depth: stackDepth})
	}
	return out, nil
}

type logical struct {
	no   int
	text string
}

// logicalLines joins backslash continuations and drops comments.
func logicalLines(data string) []logical {
	var out []logical
	var cur strings.Builder
	start := 0
	for i, l := range strings.Split(data, "\n") {
		if cur.Len() == 0 {
			start = i + 1
		}
		if j := strings.IndexByte(l, '#'); j >= 0 {
			l = l[:j]
		}
		if strings.HasSuffix(l, "\\") {
			cur.WriteString(strings.TrimSuffix(l, "\\") + " ")
			continue
		}
		cur.WriteString(l)
		out = append(out, logical{start, cur.String()})
		cur.Reset()
	}
	return out
}

// fieldsOf splits a line into words; a [ ... ] group (a bracket control,
// or an argument such as "[prompt=Code: ]") is one word, with "\]" inside.
func fieldsOf(s string) []string {
	var out []string
	for {
		s = strings.TrimLeft(s, " \t\r")
		if s == "" {
			return out
		}
		if s[0] == '[' {
			end := strings.Index(s, "]")
			for end > 0 && s[end-1] == '\\' {
				next := strings.Index(s[end+1:], "]")
				if next < 0 {
					end = -1
					break
				}
				end += next + 1
			}
			if end < 0 {
				return append(out, s)
			}
			out = append(out, s[:end+1])
			s = s[end+1:]
			continue
		}
		end := strings.IndexAny(s, " \t\r")
		if end < 0 {
			return append(out, s)
		}
		out = append(out, s[:end])
		s = s[end:]
	}
}

func parseControl(c string) (map[string]string, error) {
	if a, ok := simple[c]; ok {
		return a, nil
	}
	if !strings.HasPrefix(c, "[") || !strings.HasSuffix(c, "]") {
		return nil, fmt.Errorf("unknown control %q", c)
	}
	out := map[string]string{}
	for _, kv := range strings.Fields(c[1 : len(c)-1]) {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, fmt.Errorf("control %q: %q is not VALUE=ACTION", c, kv)
		}
		if _, err := strconv.Atoi(v); err != nil && v != "ignore" && v != "bad" && v != "die" && v != "ok" && v != "done" && v != "reset" {
			return nil, fmt.Errorf("control %q: unknown action %q", c, v)
		}
		out[k] = v
	}
	return out, nil
}

// Action is what libpam does when a line's module returns value: the
// bracket action for it, else the default.
func (l Line) Action(value string) string {
	if a, ok := l.Actions[value]; ok {
		return a
	}
	if a, ok := l.Actions["default"]; ok {
		return a
	}
	return "bad"
}

// ErrNoModule means the stack does not load the module at all.
var ErrNoModule = errors.New("the stack does not load it")

// Index returns the first auth line that loads module, or ErrNoModule.
func Index(lines []Line, module string) (int, error) {
	for i, l := range lines {
		if l.Module == module {
			return i, nil
		}
	}
	return -1, ErrNoModule
}

// Reaches walks the stack as libpam runs it, up to line at, with result
// giving each earlier module's return value ("success", "auth_err",
// "user_unknown", ...), and says whether line at runs, and whether the
// stack has already failed when it does (a required module that failed:
// the login fails whatever line at says). A done or die inside a substack
// ends that substack only.
func Reaches(lines []Line, at int, result func(Line) string) (reached, failed bool) {
	base := lines[at].Depth
	for i := 0; i < at; i++ {
		l := lines[i]
		value := result(l)
		action := l.Action(value)
		if n, err := strconv.Atoi(action); err == nil {
			if i+n >= at && l.Depth == base {
				return false, failed // jumped over it
			}
			i += n
			continue
		}
		switch action {
		case "ok":
			failed = failed || value != "success"
		case "bad":
			failed = true
		case "reset":
			failed = false
		case "die", "done":
			failed = failed || action == "die" || value != "success"
			if l.Depth == base {
				return false, failed
			}
			for i+1 < at && lines[i+1].Depth > base {
				i++ // the rest of the substack
			}
		}
	}
	return true, failed
}

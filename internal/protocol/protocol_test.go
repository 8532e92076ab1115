// SPDX-License-Identifier: Apache-2.0

package protocol

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"testing"
)

func TestFrameRoundTrip(t *testing.T) {
	var b bytes.Buffer
	frames := []struct {
		t Type
		p []byte
	}{{PromptEchoOff, []byte("Verification code: ")}, {Verdict, []byte{Success}}, {Answer, nil}, {Info, bytes.Repeat([]byte("x"), MaxPayload)}}
	for _, f := range frames {
		if err := WriteFrame(&b, f.t, f.p); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range frames {
		typ, p, err := ReadFrame(&b)
		if err != nil || typ != f.t || !bytes.Equal(p, f.p) {
			t.Fatalf("got %c %q %v, want %c %q", typ, p, err, f.t, f.p)
		}
	}
	if _, _, err := ReadFrame(&b); !errors.Is(err, io.EOF) {
		t.Fatalf("after the last frame: %v", err)
	}
}

func TestReadFrameRejects(t *testing.T) {
	tests := map[string][]byte{
		"empty":             {},
		"short header":      {'P', 0},
		"truncated payload": {'P', 0, 10, 'a', 'b'},
		"oversized":         {'P', 0xff, 0xff},
		"just over the max": {'P', byte((MaxPayload + 1) >> 8), byte((MaxPayload + 1) & 0xff)},
	}
	for name, in := range tests {
		if _, _, err := ReadFrame(bytes.NewReader(in)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if WriteFrame(io.Discard, Info, make([]byte, MaxPayload+1)) != ErrTooLarge {
		t.Error("WriteFrame wrote an oversized frame")
	}
}

func TestRequestRoundTrip(t *testing.T) {
	tok := "hunter2123456"
	for _, r := range []*Req{
		{User: "alice", Known: true, UID: 1000, GID: 1000, Home: "/home/alice", Service: "sshd", RHost: "127.0.0.1",
			TTY: "ssh", Authtok: &tok, Options: []string{"nullok", "prompt=Code: ", "secret=~/.x"}},
		{User: "nobody-here", Service: "sudo"},
	} {
		back, err := ParseReq(r.Marshal())
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(back, r) {
			t.Fatalf("got %+v, want %+v", back, r)
		}
	}
}

func TestParseReqRejects(t *testing.T) {
	tests := map[string]string{
		"empty":           "",
		"no terminator":   "v=1\x00user=a",
		"wrong version":   "v=2\x00user=a\x00",
		"version later":   "user=a\x00v=1\x00",
		"no user":         "v=1\x00service=x\x00",
		"no equals":       "v=1\x00user\x00",
		"unknown field":   "v=1\x00user=a\x00color=red\x00",
		"repeated user":   "v=1\x00user=a\x00user=b\x00",
		"partial id":      "v=1\x00user=a\x00uid=5\x00",
		"negative uid":    "v=1\x00user=a\x00uid=-1\x00gid=1\x00home=/\x00",
		"uid -1 unsigned": "v=1\x00user=a\x00uid=4294967295\x00gid=1\x00home=/\x00",
		"garbage":         "\xff\xfe\x00",
	}
	for name, in := range tests {
		if _, err := ParseReq([]byte(in)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestSplitRoundTrip(t *testing.T) {
	for _, tt := range []struct {
		lengths []int
		prompt  string
	}{{[]int{6, 8}, "Password & verification code: "}, {[]int{6}, ""}, {[]int{7, 8}, "x"}} {
		lengths, prompt, err := ParseSplit(SplitPayload(tt.lengths, tt.prompt))
		if err != nil || !reflect.DeepEqual(lengths, tt.lengths) || prompt != tt.prompt {
			t.Errorf("%v %q: got %v %q %v", tt.lengths, tt.prompt, lengths, prompt, err)
		}
	}
}

func TestParseSplitRejects(t *testing.T) {
	for name, p := range map[string]string{
		"empty":           "",
		"no lengths":      "\x00prompt",
		"no NUL":          "6,8",
		"zero":            "0\x00",
		"too long a code": "17\x00",
		"not a number":    "six\x00",
		"too many":        "6,6,6,6,6,6,6,6,6\x00",
		"empty length":    "6,\x00",
	} {
		if l, p, err := ParseSplit([]byte(p)); err == nil {
			t.Errorf("%s: accepted as %v %q", name, l, p)
		}
	}
}

// TestParseCodes: a host's answer to a Split is digits or nothing, never
// anything that could be a password.
func TestParseCodes(t *testing.T) {
	for _, codes := range [][]string{{"123456"}, {""}, {"123456", "12345678"}} {
		got, err := ParseCodes(CodesPayload(codes))
		if err != nil || !reflect.DeepEqual(got, codes) {
			t.Errorf("%q: got %q %v", codes, got, err)
		}
	}
	for name, p := range map[string]string{
		"a letter":          "12345a",
		"a password":        "hunter2123456",
		"too long":          "12345678901234567",
		"too many":          "1\x002\x003\x004\x005\x006\x007\x008\x009",
		"second not a code": "123456\x00pw",
	} {
		if got, err := ParseCodes([]byte(p)); err == nil {
			t.Errorf("%s: accepted as %q", name, got)
		}
	}
}

func TestHeldRoundTrip(t *testing.T) {
	r := &Req{User: "alice", Held: true}
	got, err := ParseReq(r.Marshal())
	if err != nil || !got.Held || got.Authtok != nil {
		t.Fatalf("got %+v %v", got, err)
	}
	if _, err := ParseReq([]byte("v=1\x00user=a\x00held=2\x00")); err == nil {
		t.Fatal("held=2 accepted")
	}
}

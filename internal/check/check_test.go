// SPDX-License-Identifier: Apache-2.0

package check

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"pamtotp/internal/otp"
	"pamtotp/internal/protocol"
	"pamtotp/internal/secret"
)

type lines struct {
	mu sync.Mutex
	l  []string
}

func (l *lines) add(s string) error     { l.mu.Lock(); l.l = append(l.l, s); l.mu.Unlock(); return nil }
func (l *lines) Info(s string) error    { return l.add(s) }
func (l *lines) Warning(s string) error { return l.add(s) }
func (l *lines) Debug(s string) error   { return l.add(s) }
func (l *lines) all() string            { l.mu.Lock(); defer l.mu.Unlock(); return strings.Join(l.l, "\n") }

var key = []byte("12345678901234567890")

const now = 1_800_000_000

// home makes an enrolled home owned by the user running the test.
func home(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	f := &secret.File{Tokens: []secret.Token{{Name: "phone", Key: key, Params: otp.Params{Algorithm: otp.SHA1, Digits: 6, Period: 30}}}}
	if err := secret.WriteAtomic(filepath.Join(dir, ".pam_totp"), f.Marshal(), false); err != nil {
		t.Fatal(err)
	}
	return dir
}

func request(homeDir string, opts ...string) []byte {
	r := &protocol.Req{User: "alice", Known: true, UID: os.Getuid(), GID: os.Getgid(), Home: homeDir, Service: "test", Options: opts}
	return r.Marshal()
}

// runSession runs Run against a scripted module and returns the verdict it got.
func runSession(t *testing.T, module func(c net.Conn) byte) (byte, *lines) {
	t.Helper()
	// A real socketpair, with kernel buffers, as pam_totp.so gives the checker.
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	a, b := socketConn(t, fds[0]), socketConn(t, fds[1])
	log := &lines{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer a.Close()
		Run(&Env{Conn: a, Log: log, Now: func() time.Time { return time.Unix(now, 0) }})
	}()
	verdict := module(b)
	b.Close()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("checker did not finish")
	}
	return verdict, log
}

func socketConn(t *testing.T, fd int) net.Conn {
	t.Helper()
	f := os.NewFile(uintptr(fd), "socket")
	defer f.Close()
	c, err := net.FileConn(f)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// converse answers every prompt with answer and returns the verdict.
func converse(t *testing.T, c net.Conn, req []byte, answer string) byte {
	t.Helper()
	if err := protocol.WriteFrame(c, protocol.Request, req); err != nil {
		t.Fatal(err)
	}
	for {
		typ, p, err := protocol.ReadFrame(c)
		if err != nil {
			t.Fatalf("reading from checker: %v", err)
		}
		switch typ {
		case protocol.PromptEchoOff, protocol.PromptEchoOn:
			protocol.WriteFrame(c, protocol.Answer, []byte(answer))
		case protocol.Verdict:
			return p[0]
		}
	}
}

func readVerdict(c net.Conn) byte {
	for {
		typ, p, err := protocol.ReadFrame(c)
		if err != nil {
			return 0
		}
		if typ == protocol.Verdict && len(p) == 1 {
			return p[0]
		}
	}
}

func TestRightCodeThenReplay(t *testing.T) {
	h := home(t)
	c, _ := otp.Code(key, now/30, otp.Params{Algorithm: otp.SHA1, Digits: 6, Period: 30})
	v, log := runSession(t, func(m net.Conn) byte { return converse(t, m, request(h), c) })
	if v != protocol.Success {
		t.Fatalf("verdict %c, log %s", v, log.all())
	}
	if strings.Contains(log.all(), c) || strings.Contains(log.all(), otp.EncodeKey(key)) {
		t.Fatalf("log reveals the code or secret: %s", log.all())
	}
	if !strings.Contains(log.all(), "user=alice service=test token=phone outcome=ok") {
		t.Fatalf("log: %s", log.all())
	}
	v, log = runSession(t, func(m net.Conn) byte { return converse(t, m, request(h), c) })
	if v != protocol.Fail || !strings.Contains(log.all(), "reason=replay") {
		t.Fatalf("replay: verdict %c, log %s", v, log.all())
	}
}

func TestGarbageFromTheModule(t *testing.T) {
	h := home(t)
	// Each case plays the whole module side alone (two readers on one pipe
	// would race) and returns the verdict it got, or 0 if none could come.
	cases := map[string]func(m net.Conn) byte{
		"garbage bytes": func(m net.Conn) byte {
			m.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
			return readVerdict(m)
		},
		"wrong first frame": func(m net.Conn) byte {
			protocol.WriteFrame(m, protocol.Answer, []byte("123456"))
			return readVerdict(m)
		},
		"bad request": func(m net.Conn) byte {
			protocol.WriteFrame(m, protocol.Request, []byte("v=9\x00user=a\x00"))
			return readVerdict(m)
		},
		"oversized header": func(m net.Conn) byte {
			m.Write([]byte{'Q', 0xff, 0xff})
			return readVerdict(m)
		},
		"truncated request": func(m net.Conn) byte {
			m.Write([]byte{'Q', 0, 50, 'v'})
			m.Close()
			return 0
		},
		"unknown option": func(m net.Conn) byte {
			protocol.WriteFrame(m, protocol.Request, request(h, "allow_all"))
			return readVerdict(m)
		},
		"answer of wrong type": func(m net.Conn) byte {
			protocol.WriteFrame(m, protocol.Request, request(h))
			protocol.ReadFrame(m)
			protocol.WriteFrame(m, protocol.Info, []byte("x"))
			return readVerdict(m)
		},
		"conversation failed": func(m net.Conn) byte {
			protocol.WriteFrame(m, protocol.Request, request(h))
			protocol.ReadFrame(m)
			protocol.WriteFrame(m, protocol.ConvFailed, nil)
			return readVerdict(m)
		},
		"gone mid-prompt": func(m net.Conn) byte {
			protocol.WriteFrame(m, protocol.Request, request(h))
			protocol.ReadFrame(m)
			m.Close()
			return 0
		},
	}
	for name, module := range cases {
		t.Run(name, func(t *testing.T) {
			// runSession fails the test if the checker does not finish.
			v, log := runSession(t, module)
			if v == protocol.Success || v == protocol.Ignore {
				t.Fatalf("verdict %c, log %s", v, log.all())
			}
		})
	}
	// None of that counted as a failed code.
	acct, err := secret.Lock(filepath.Join(h, ".pam_totp"), secret.Owner(os.Getuid()))
	if err != nil {
		t.Fatal(err)
	}
	defer acct.Close()
	if acct.State.Failures != 0 {
		t.Fatalf("failures %d, want 0", acct.State.Failures)
	}
}

func TestNullokAndMissingFile(t *testing.T) {
	empty := t.TempDir()
	v, _ := runSession(t, func(m net.Conn) byte {
		protocol.WriteFrame(m, protocol.Request, request(empty, "nullok"))
		typ, p, _ := protocol.ReadFrame(m)
		if typ != protocol.Verdict {
			t.Errorf("nullok prompted: %c", typ)
		}
		return p[0]
	})
	if v != protocol.Ignore {
		t.Fatalf("nullok: verdict %c", v)
	}
	v, log := runSession(t, func(m net.Conn) byte { return converse(t, m, request(empty), "123456") })
	if v != protocol.Fail || !strings.Contains(log.all(), "no secret file") {
		t.Fatalf("no nullok: verdict %c, log %s", v, log.all())
	}
}

func TestSplit(t *testing.T) {
	tests := []struct {
		in   string
		want string
	}{
		{"hunter2123456", "{123456 hunter2 0}"},
		{"pw12345678", "{345678 pw12 0} {12345678 pw 1}"},
		{"password", "{ password 0}"},
		{"", "{  0}"},
	}
	for _, tt := range tests {
		got := fmt.Sprint(split(tt.in, []int{6, 8}))
		if got != "["+tt.want+"]" {
			t.Errorf("split(%q) = %s, want [%s]", tt.in, got, tt.want)
		}
	}
}

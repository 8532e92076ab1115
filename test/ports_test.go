// SPDX-License-Identifier: Apache-2.0

package test

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"testing"
)

// The ports handed out by freePort in this test binary, never handed out
// twice.
var (
	portsMu   sync.Mutex
	portsUsed = map[int]bool{}
)

// freePort returns a port on 127.0.0.1 that a server the test starts
// later can listen on.
//
// A port the kernel chose for a listener and then freed is no good: it is
// in the ephemeral range, and before the server binds it, any connection
// the test makes meanwhile (to slapd, to a verifier, between the mirrors)
// may take it as its own local port, and the server's bind fails with
// "address already in use" (it did, once, in CI). So the port is taken
// from below the ephemeral range, which connections never pick, and
// checked free by binding it.
func freePort(t testing.TB) int {
	t.Helper()
	lo, hi := portPool()
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 1000 {
		port := lo
		if hi > lo {
			port = lo + rand.IntN(hi-lo)
		}
		if portsUsed[port] {
			continue
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue // someone else's, or the fallback's port 0 failed
		}
		port = l.Addr().(*net.TCPAddr).Port
		l.Close()
		portsUsed[port] = true
		return port
	}
	t.Fatalf("no free port on 127.0.0.1 in [%d, %d)", lo, hi)
	return 0
}

// portPool is where freePort looks: the ports below the kernel's
// ephemeral range, or, when that range leaves no room below it, the
// kernel's choice (port 0).
func portPool() (lo, hi int) {
	var eLo, eHi int
	data, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err == nil {
		_, err = fmt.Sscan(string(data), &eLo, &eHi)
	}
	if err != nil || eLo-1024 < 2000 {
		return 0, 0
	}
	return max(1024, eLo-20000), eLo
}

// loopback is a listener on 127.0.0.1 at a port the kernel picks, for a
// server inside the test binary: it holds the port from the start, so
// nothing can take it first.
func loopback(t testing.TB) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// acceptEach serves l until the test ends, when it is closed: each
// connection goes to handle, in a goroutine of its own. It returns l's
// address.
func acceptEach(t testing.TB, l net.Listener, handle func(net.Conn)) string {
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go handle(c)
		}
	}()
	return l.Addr().String()
}

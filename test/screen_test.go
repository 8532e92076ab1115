// SPDX-License-Identifier: Apache-2.0

package test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// tmuxScreen runs argv in a tmux window of cols x rows, on a tmux server
// of the test's own (its own socket, ended with the test), waits for it to
// exit and returns what the window showed.
func tmuxScreen(t *testing.T, cols, rows int, argv ...string) string {
	t.Helper()
	needRoot(t, "tmux")
	sock := filepath.Join(t.TempDir(), "tmux.sock")
	tmux := func(args ...string) (string, error) {
		out, err := exec.Command("tmux", append([]string{"-S", sock, "-f", "/dev/null"}, args...)...).CombinedOutput()
		return string(out), err
	}
	done := filepath.Join(t.TempDir(), "done")
	// The command's exit is marked by a file; the pane stays to be read.
	cmd := fmt.Sprintf("%s; touch %s; sleep 60", shellQuote(argv), done)
	if out, err := tmux("new-session", "-d", "-x", fmt.Sprint(cols), "-y", fmt.Sprint(rows), cmd); err != nil {
		t.Fatalf("tmux new-session: %v\n%s", err, out)
	}
	t.Cleanup(func() { tmux("kill-server") }) // our own server, by its socket
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(done); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%v did not finish in tmux within 30 s", argv)
		}
	}
	out, err := tmux("capture-pane", "-p", "-S", "-", "-J")
	if err != nil {
		t.Fatalf("tmux capture-pane: %v\n%s", err, out)
	}
	return out
}

func shellQuote(argv []string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}

// A terminal narrower than the QR code gets a warning instead of a code
// that wraps into garbage; a wide one gets the code.
func TestQRCodeInANarrowTerminal(t *testing.T) {
	needRoot(t, "oathtool", "openssl", "tmux")
	for _, c := range []struct {
		cols   int
		wantQR bool
	}{{40, false}, {120, true}} {
		u := newUser(t)
		screen := tmuxScreen(t, c.cols, 60, filepath.Join(libDir, "totp-enroll"), "--user", u.name, "--no-confirm", "--scratch-codes", "0")
		warned := strings.Contains(screen, "The QR code needs a terminal")
		drawn := strings.Contains(screen, "\u2588\u2588") || strings.Contains(screen, "\u2580") || strings.Contains(screen, "\u2584")
		switch {
		case c.wantQR && (warned || !drawn):
			t.Fatalf("%d columns: a QR code that fits was not drawn:\n%s", c.cols, screen)
		case !c.wantQR && (!warned || drawn):
			t.Fatalf("%d columns: want the warning and no QR code:\n%s", c.cols, screen)
		}
		if !strings.Contains(screen, "Or type the secret:") || !strings.Contains(screen, "Written:") {
			t.Fatalf("%d columns: the secret or the result is missing:\n%s", c.cols, screen)
		}
	}
}

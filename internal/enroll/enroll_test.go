// SPDX-License-Identifier: Apache-2.0

package enroll

import (
	"bytes"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"pamtotp/internal/otp"
	"pamtotp/internal/secret"
)

func TestURI(t *testing.T) {
	key := []byte("12345678901234567890")
	u, err := url.Parse(URI("My Host", "alice@host", &secret.Token{Key: key, Params: otp.Params{Algorithm: otp.SHA256, Digits: 8, Period: 60}}))
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	if u.Scheme != "otpauth" || u.Host != "totp" || u.Path != "/My Host:alice@host" ||
		q.Get("secret") != "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ" || q.Get("issuer") != "My Host" ||
		q.Get("algorithm") != "SHA256" || q.Get("digits") != "8" || q.Get("period") != "60" {
		t.Fatalf("URI %s", u)
	}
}

func TestScratchCodes(t *testing.T) {
	codes, err := ScratchCodes(10)
	if err != nil || len(codes) != 10 {
		t.Fatal(codes, err)
	}
	seen := map[string]bool{}
	for _, c := range codes {
		if !otp.IsDigits(c, 8) || c[0] == '0' || seen[c] {
			t.Fatalf("bad or repeated scratch code %q", c)
		}
		seen[c] = true
	}
}

func TestGrouped(t *testing.T) {
	if g := Grouped([]byte("12345678901234567890")); g != "GEZD GNBV GY3T QOJQ GEZD GNBV GY3T QOJQ" {
		t.Fatal(g)
	}
}

// The terminal QR code, drawn back into pixels, must decode to the URI with
// zbarimg (Debian package zbar-tools), a decoder that is not ours.
func TestQRDecodes(t *testing.T) {
	if _, err := exec.LookPath("zbarimg"); err != nil {
		t.Skip("needs zbarimg (Debian package zbar-tools; scripts/deps installs it as root)")
	}
	uri := URI("host.example", "alice@host.example", &secret.Token{Key: []byte("12345678901234567890"), Params: otp.Params{Algorithm: otp.SHA1, Digits: 6, Period: 30}})
	for _, mode := range []string{QRUTF8, QRANSI, QRPlain} {
		var b bytes.Buffer
		if err := WriteQR(&b, uri, mode); err != nil {
			t.Fatal(err)
		}
		img := rasterize(t, b.String(), mode)
		path := filepath.Join(t.TempDir(), "qr.pgm")
		if err := os.WriteFile(path, img, 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("zbarimg", "-q", "--raw", path).Output()
		if err != nil {
			t.Fatalf("%s: zbarimg could not decode the QR code: %v", mode, err)
		}
		if got := strings.TrimSpace(string(out)); got != uri {
			t.Fatalf("%s: decoded %q, want %q", mode, got, uri)
		}
	}
}

// rasterize turns the terminal output into a PGM image, 4 pixels a module,
// reading colours the way WriteQR sets them.
func rasterize(t *testing.T, text, mode string) []byte {
	t.Helper()
	var rows [][]bool // true = light
	for _, line := range strings.Split(strings.TrimRight(text, "\n"), "\n") {
		switch mode {
		case QRUTF8, QRPlain:
			line = strings.TrimSuffix(strings.TrimPrefix(line, ansiLightOnDark), ansiReset)
			var top, bottom []bool
			for _, r := range line {
				switch r {
				case '█':
					top, bottom = append(top, true), append(bottom, true)
				case '▀':
					top, bottom = append(top, true), append(bottom, false)
				case '▄':
					top, bottom = append(top, false), append(bottom, true)
				case ' ':
					top, bottom = append(top, false), append(bottom, false)
				default:
					t.Fatalf("unexpected character %q", r)
				}
			}
			rows = append(rows, top, bottom)
		case QRANSI:
			var row []bool
			for _, cell := range strings.Split(line, "\x1b[0m") {
				switch cell {
				case "\x1b[47m  ":
					row = append(row, true)
				case "\x1b[40m  ":
					row = append(row, false)
				case "":
				default:
					t.Fatalf("unexpected cell %q", cell)
				}
			}
			rows = append(rows, row)
		}
	}
	const scale = 4
	w := 0
	for _, r := range rows {
		if len(r) > w {
			w = len(r)
		}
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "P5\n%d %d\n255\n", w*scale, len(rows)*scale)
	for _, r := range rows {
		for y := 0; y < scale; y++ {
			for x := 0; x < w; x++ {
				v := byte(255)
				if x < len(r) && !r[x] {
					v = 0
				}
				b.Write(bytes.Repeat([]byte{v}, scale))
			}
		}
	}
	return b.Bytes()
}

// SPDX-License-Identifier: Apache-2.0

package gafile

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func read(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// The files in testdata were written by the google-authenticator command
// (Debian 12), except state.txt, which has every line a login writes.
func TestParse(t *testing.T) {
	tests := []struct {
		file         string
		hotp         bool
		counter      int64
		step, window int
		disallow     bool
		rate         bool
		rateN        int
		rateS        int64
		scratch      int
		skew         int64
		resetting    []Pair
		last         []Last
		failures     int
		usedMax      int64
	}{
		{file: "totp-ratelimit.txt", step: 30, window: 3, disallow: true, rate: true, rateN: 3, rateS: 30, scratch: 5},
		{file: "hotp.txt", hotp: true, counter: 1, step: 30, window: 5, scratch: 3},
		{file: "step60.txt", step: 60, window: 3, scratch: 5},
		{file: "state.txt", step: 30, window: 3, disallow: true, scratch: 2, skew: -2,
			resetting: []Pair{{59846080, 100}, {59846081, -3}},
			last:      []Last{{"10.0.0.1", 1763830000}, {"tty:/dev/pts/1", 1763830001}}, failures: 2, usedMax: 59846081},
	}
	for _, tt := range tests {
		data := read(t, tt.file)
		if !Looks(data) {
			t.Errorf("%s: not recognised", tt.file)
		}
		f, err := Parse(data)
		if err != nil {
			t.Fatalf("%s: %v", tt.file, err)
		}
		if f.HOTP != tt.hotp || f.Counter != tt.counter || f.Step != tt.step || f.Window != tt.window ||
			f.DisallowReuse != tt.disallow || f.RateLimit != tt.rate || f.RateN != tt.rateN || f.RateSeconds != tt.rateS ||
			len(f.Scratch) != tt.scratch || f.Skew != tt.skew || !slices.Equal(f.Resetting, tt.resetting) ||
			!slices.Equal(f.Last, tt.last) || f.Failures != tt.failures || len(f.Key) < 10 {
			t.Errorf("%s: parsed as %+v", tt.file, f)
		}
		if tt.usedMax != 0 && slices.Max(f.Used) != tt.usedMax {
			t.Errorf("%s: used %v", tt.file, f.Used)
		}
		if string(f.Marshal()) != string(data) {
			t.Errorf("%s: an unchanged file is not written back byte for byte", tt.file)
		}
	}
}

func TestScratchListEndsAtFirstOtherLine(t *testing.T) {
	f, err := Parse(read(t, "state.txt"))
	if err != nil {
		t.Fatal(err)
	}
	// 33333333 comes after "0123456", which ends the list.
	if !slices.Equal(f.Scratch, []string{"11111111", "22222222"}) {
		t.Fatalf("scratch %v", f.Scratch)
	}
}

func TestEdit(t *testing.T) {
	f, err := Parse(read(t, "totp-ratelimit.txt"))
	if err != nil {
		t.Fatal(err)
	}
	first := f.Scratch[0]
	f.Set("DISALLOW_REUSE", "59846080")
	f.Set("TIME_SKEW", "1")
	f.RemoveScratch(first)
	f.Set("RATE_LIMIT", "3 30 1763830000")
	out := string(f.Marshal())
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if lines[1] != `" TIME_SKEW 1` {
		t.Errorf("a new key goes after line 1:\n%s", out)
	}
	if !strings.Contains(out, "\" DISALLOW_REUSE 59846080\n\" TOTP_AUTH") || strings.Count(out, "DISALLOW_REUSE") != 1 {
		t.Errorf("an existing key is replaced where it is:\n%s", out)
	}
	if strings.Contains(out, first) || len(f.Scratch) != 4 {
		t.Errorf("scratch code not removed:\n%s", out)
	}
	back, err := Parse([]byte(out))
	if err != nil || back.Skew != 1 || slices.Max(back.Used) != 59846080 || !slices.Equal(back.RateTimes, []int64{1763830000}) {
		t.Fatalf("edited file reads back as %+v, %v", back, err)
	}
	back.Delete("TIME_SKEW")
	back.Set("X", "")
	if strings.Contains(string(back.Marshal()), "TIME_SKEW") || !strings.Contains(string(back.Marshal()), "\n\" X\n") {
		t.Errorf("Delete or Set without value:\n%s", back.Marshal())
	}
}

func TestDuplicateKeysFirstWinsAndSetRemovesOthers(t *testing.T) {
	in := "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP\n\" TIME_SKEW 3\n\" TIME_SKEW 9\n"
	f, err := Parse([]byte(in))
	if err != nil || f.Skew != 3 {
		t.Fatalf("skew %d, %v", f.Skew, err)
	}
	f.Set("TIME_SKEW", "4")
	if got := string(f.Marshal()); got != "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP\n\" TIME_SKEW 4\n" {
		t.Fatalf("got %q", got)
	}
}

func TestParseRejects(t *testing.T) {
	const key = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP\n"
	for name, in := range map[string]string{
		"padding":       "JBSWY3DPEHPK3PXP====\n",
		"not base32":    "JBSWY3DPEHPK3PX1JBSWY3DP\n",
		"short key":     "JBSWY3DP\n",
		"empty":         "",
		"NUL":           key + "\x00",
		"step 0":        key + "\" STEP_SIZE 0\n",
		"step 61":       key + "\" STEP_SIZE 61\n",
		"window 101":    key + "\" WINDOW_SIZE 101\n",
		"counter 0":     key + "\" HOTP_COUNTER 0\n",
		"counter x":     key + "\" HOTP_COUNTER x\n",
		"rate 0":        key + "\" RATE_LIMIT 0 30\n",
		"rate no m":     key + "\" RATE_LIMIT 3\n",
		"rate m 3601":   key + "\" RATE_LIMIT 3 3601\n",
		"reuse garbage": key + "\" DISALLOW_REUSE 1 x\n",
		"skew garbage":  key + "\" TIME_SKEW +x\n",
		"resetting bad": key + "\" RESETTING_TIME_SKEW 12345\n",
		"last one word": key + "\" LAST0 host\n",
		"lockout bad":   key + "\" PAM_TOTP_LOCKOUT -1 0\n",
		"too large":     key + strings.Repeat("\" X\n", MaxSize/4),
	} {
		if _, err := Parse([]byte(in)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestLooks(t *testing.T) {
	for in, want := range map[string]bool{
		"JBSWY3DPEHPK3PXP\n": true, "# pam_totp secret file\n": false, "pam_totp 1\n": false, "\n": false,
	} {
		if Looks([]byte(in)) != want {
			t.Errorf("Looks(%q) != %v", in, want)
		}
	}
}

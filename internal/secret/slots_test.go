// SPDX-License-Identifier: Apache-2.0

package secret

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestSlotsNext(t *testing.T) {
	tests := []struct {
		s    slots
		want int
	}{
		{slots{cur: -1}, 0},
		{slots{cur: 0, durable: true}, 1},
		{slots{cur: 1, durable: true}, 0},
		// A record not followed by fdatasync is overwritten: the other
		// slot holds the last durable one.
		{slots{cur: 0}, 0},
		{slots{cur: 1}, 1},
	}
	for _, tt := range tests {
		if got := tt.s.next(); got != tt.want {
			t.Errorf("%+v: next %d, want %d", tt.s, got, tt.want)
		}
	}
}

// twoRecords is a state file with record a (seq 1) in slot 0 and record b
// (seq 2) in slot 1.
func twoRecords(t *testing.T, a, b string) []byte {
	t.Helper()
	img := image(1, []byte(a))
	copy(img[len(img)/2:], record(2, false, []byte(b)))
	return img
}

func TestDecodeSlots(t *testing.T) {
	img := twoRecords(t, "older", "newer")
	size := len(img) / 2
	tests := map[string]struct {
		mutate  func([]byte) []byte
		want    string
		cur     int
		durable bool
		err     bool
	}{
		"highest sequence wins": {func(b []byte) []byte { return b }, "newer", 1, false, false},
		"torn newer record":     {func(b []byte) []byte { b[size+slotHeader+2] ^= 1; return b }, "older", 0, true, false},
		"torn header":           {func(b []byte) []byte { b[size+9] ^= 1; return b }, "older", 0, true, false},
		"length past the slot":  {func(b []byte) []byte { b[size+16] = 0xff; return b }, "older", 0, true, false},
		"both torn":             {func(b []byte) []byte { b[slotHeader] ^= 1; b[size+slotHeader] ^= 1; return b }, "", 0, false, true},
		"odd size":              {func(b []byte) []byte { return b[:len(b)-1] }, "", 0, false, true},
		"not whole pages":       {func(b []byte) []byte { return b[:len(b)-2] }, "", 0, false, true},
	}
	for name, tt := range tests {
		got, at, err := decodeSlots(tt.mutate(append([]byte(nil), img...)))
		if tt.err {
			if err == nil {
				t.Errorf("%s: no error", name)
			}
			continue
		}
		if err != nil || string(got) != tt.want || at.cur != tt.cur || at.durable != tt.durable || at.size != size {
			t.Errorf("%s: %q %+v %v, want %q in slot %d (durable %v)", name, got, at, err, tt.want, tt.cur, tt.durable)
		}
	}
}

func TestSlotSizeBounds(t *testing.T) {
	if got := slotSize(make([]byte, 10)); got != slotUnit {
		t.Errorf("small state: slot of %d bytes, want %d", got, slotUnit)
	}
	if got := slotSize(make([]byte, maxSlotSize-slotHeader)); got != maxSlotSize {
		t.Errorf("largest state: slot of %d, want %d", got, maxSlotSize)
	}
	if got := image(1, make([]byte, maxSlotSize-slotHeader+1)); got != nil {
		t.Errorf("a state larger than a slot got an image of %d bytes", len(got))
	}
}

// enrolled writes a secret file and its state as totp-enroll does.
func enrolled(t *testing.T) (string, Access) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "good-one.txt"))
	if err != nil {
		t.Fatal(err)
	}
	f, err := ParseFile(data)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "secret")
	if err := Create(path, Owner(os.Getuid()), f, NewState(), false); err != nil {
		t.Fatal(err)
	}
	return path, Owner(os.Getuid())
}

func mustLock(t *testing.T, path string, acc Access) *LockedEnrollment {
	t.Helper()
	a, err := Lock(path, acc)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// login does what a checker does: a charge, then a durable state.
func login(t *testing.T, path string, acc Access, failures int) {
	t.Helper()
	a := mustLock(t, path, acc)
	defer a.Close()
	charged := a.State.Clone()
	charged.Failures = failures
	if err := a.Publish(charged); err != nil {
		t.Fatal(err)
	}
	a.State.Failures = failures
	if err := a.SaveState(); err != nil {
		t.Fatal(err)
	}
}

func TestStateWritesInPlace(t *testing.T) {
	path, acc := enrolled(t)
	before, err := os.Stat(StatePath(path))
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 5; i++ {
		login(t, path, acc, i)
		st, err := ReadState(path, acc)
		if err != nil || st.Failures != i {
			t.Fatalf("login %d: failures %v, %v", i, st, err)
		}
	}
	after, err := os.Stat(StatePath(path))
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(before, after) || before.Size() != after.Size() {
		t.Fatal("the state file was replaced instead of written in place")
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".*")); len(left) != 0 {
		t.Fatalf("files left behind: %v", left)
	}
}

// A charge is never written over the last durable record: if the charge
// is torn (a power cut before it reached the disk), the durable record
// before it is read.
func TestTornChargeFallsBackToDurable(t *testing.T) {
	path, acc := enrolled(t)
	login(t, path, acc, 3) // durable: failures 3
	a := mustLock(t, path, acc)
	durableSlot := a.slots.cur
	charged := a.State.Clone()
	charged.Failures = 4
	if err := a.Publish(charged); err != nil {
		t.Fatal(err)
	}
	if a.slots.cur == durableSlot {
		t.Fatalf("the charge went into slot %d, which held the durable record", durableSlot)
	}
	a.Close()
	data, err := os.ReadFile(StatePath(path))
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := ReadState(path, acc); st.Failures != 4 {
		t.Fatalf("the charge is not what the next login reads: failures %d", st.Failures)
	}
	size := len(data) / 2
	data[(1-durableSlot)*size+slotHeader+5] ^= 0xff // the charge, torn
	if err := os.WriteFile(StatePath(path), data, 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := ReadState(path, acc)
	if err != nil || st.Failures != 3 {
		t.Fatalf("after a torn charge: failures %v, %v; want the durable 3", st, err)
	}
}

// A state file in the old text format is read, and the next login
// replaces it with one in slots.
func TestTextStateIsConverted(t *testing.T) {
	path, acc := enrolled(t)
	a := mustLock(t, path, acc)
	st := a.State.Clone()
	st.Failures = 2
	text := st.Marshal(a.File)
	a.Close()
	if err := os.WriteFile(StatePath(path), text, 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := ReadState(path, acc); err != nil || got.Failures != 2 {
		t.Fatalf("text state: %v, %v", got, err)
	}
	login(t, path, acc, 5)
	data, _ := os.ReadFile(StatePath(path))
	if !isSlotted(data) {
		t.Fatal("the text state was not converted")
	}
	if got, err := ReadState(path, acc); err != nil || got.Failures != 5 {
		t.Fatalf("converted state: %v, %v", got, err)
	}
}

// A state too large for a slot is written as text, and read back.
func TestOversizedStateIsText(t *testing.T) {
	path, acc := enrolled(t)
	a := mustLock(t, path, acc)
	defer a.Close()
	for i := 0; len(a.State.Marshal(a.File)) <= maxSlotSize; i++ {
		a.State.FailedAt = append(a.State.FailedAt, 1700000000+int64(i))
	}
	if err := a.SaveState(); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(StatePath(path))
	if isSlotted(data) || !bytes.HasPrefix(data, []byte("#")) {
		t.Fatalf("an oversized state was not written as text: %q…", data[:16])
	}
	back, err := ReadState(path, acc)
	if err != nil || len(back.FailedAt) != len(a.State.FailedAt) {
		t.Fatalf("reading the oversized state back: %v", err)
	}
}

func TestNoIntactRecordFailsClosed(t *testing.T) {
	path, acc := enrolled(t)
	data, _ := os.ReadFile(StatePath(path))
	for i := range data {
		data[i] = 0
	}
	copy(data, slotMagic)
	os.WriteFile(StatePath(path), data, 0o600)
	if _, err := ReadState(path, acc); !errors.Is(err, errNoRecord) {
		t.Fatalf("a file with no intact record: %v", err)
	}
	if _, err := Lock(path, acc); !errors.Is(err, errNoRecord) {
		t.Fatalf("Lock on a file with no intact record: %v", err)
	}
}

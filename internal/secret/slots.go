// SPDX-License-Identifier: Apache-2.0

package secret

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
)

// A state file holds two records of the state, in two slots of equal size,
// so that a login can make its state durable with one write in place and
// one fdatasync: no new file, no rename, no fsync of the directory
// (docs/security.md, "The state file"). Each record carries a sequence
// number and a checksum. A reader takes the intact record with the highest
// sequence number, so a write torn by a crash or a power cut falls back to
// the other slot.
//
// Which slot the next record goes to keeps the last durable record safe:
// after a durable record, the other slot; after a record written without
// waiting for the disk (the charge made before a code is compared), that
// same slot again. A write that is not followed by fdatasync therefore never
// overwrites the last record that was.
//
// Layout of a slot: magic, sequence number, payload length, flags, SHA-256
// of those and the payload, then the payload (the state's text, as
// Marshal writes it), then zeros.
const (
	slotMagic  = "PTSTATE\x01"
	slotHeader = 8 + 8 + 4 + 4 + sha256.Size
	slotUnit   = 4096
	// Two slots fit in MaxFileSize. A state too large for a slot is written
	// as plain text through a new file and a rename instead.
	maxSlotSize = MaxFileSize / 2

	flagDurable = 1
)

// slots is where a state file's records are, as read under the lock.
type slots struct {
	size    int    // bytes per slot; 0: the file is not in slots (missing, or text)
	cur     int    // slot of the current record, -1 if none
	seq     uint64 // its sequence number
	durable bool   // it was written to be followed by fdatasync
}

// next is the slot the next record goes to.
func (s *slots) next() int {
	switch {
	case s.cur < 0:
		return 0
	case s.durable:
		return 1 - s.cur
	}
	return s.cur
}

// record encodes one record: header and payload, without the padding.
func record(seq uint64, durable bool, payload []byte) []byte {
	b := make([]byte, slotHeader, slotHeader+len(payload))
	copy(b, slotMagic)
	binary.BigEndian.PutUint64(b[8:], seq)
	binary.BigEndian.PutUint32(b[16:], uint32(len(payload)))
	if durable {
		binary.BigEndian.PutUint32(b[20:], flagDurable)
	}
	b = append(b, payload...)
	sum := checksum(b)
	copy(b[24:slotHeader], sum[:])
	return b
}

func checksum(rec []byte) [sha256.Size]byte {
	h := sha256.New()
	h.Write(rec[:24])
	h.Write(rec[slotHeader:])
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum
}

// slotSize is the slot size for a new file holding payload: room to grow
// to twice its size, in whole pages; 0 if it does not fit.
func slotSize(payload []byte) int {
	size := (2*(slotHeader+len(payload)) + slotUnit - 1) / slotUnit * slotUnit
	if slotHeader+len(payload) > maxSlotSize {
		return 0
	}
	return min(size, maxSlotSize)
}

// image is a whole new state file: the record in slot 0, slot 1 empty.
// It is nil when the payload is too large for a slot.
func image(seq uint64, payload []byte) []byte {
	size := slotSize(payload)
	if size == 0 {
		return nil
	}
	b := make([]byte, 2*size)
	copy(b, record(seq, true, payload))
	return b
}

// isSlotted reports whether data is a state file in slots.
func isSlotted(data []byte) bool { return bytes.HasPrefix(data, []byte(slotMagic)) }

// errNoRecord: every slot is torn or empty.
var errNoRecord = errors.New("no intact record in either slot")

// decodeSlots returns the current record's payload and where it is.
func decodeSlots(data []byte) ([]byte, slots, error) {
	if len(data)%2 != 0 || len(data) < 2*slotUnit || len(data)/2%slotUnit != 0 {
		return nil, slots{}, fmt.Errorf("a state file in slots has %d bytes, not two slots of whole pages", len(data))
	}
	s := slots{size: len(data) / 2, cur: -1}
	var payload []byte
	for i := 0; i < 2; i++ {
		slot := data[i*s.size : (i+1)*s.size]
		if !bytes.HasPrefix(slot, []byte(slotMagic)) {
			continue
		}
		n := int(binary.BigEndian.Uint32(slot[16:]))
		if n > s.size-slotHeader {
			continue
		}
		rec := slot[:slotHeader+n]
		if sum := checksum(rec); !bytes.Equal(sum[:], rec[24:slotHeader]) {
			continue
		}
		seq := binary.BigEndian.Uint64(slot[8:])
		if s.cur < 0 || seq > s.seq {
			s.cur, s.seq, payload = i, seq, rec[slotHeader:]
			s.durable = binary.BigEndian.Uint32(slot[20:])&flagDurable != 0
		}
	}
	if s.cur < 0 {
		return nil, slots{}, errNoRecord
	}
	return payload, s, nil
}

// Package keymap is the offset map of key compaction: for each record key
// seen in the dirty part of a log, the offset of its latest record, kept
// under a fixed-size hash of the key so memory per key does not depend on
// the key's size. The local cleaner (ingest/log) and the compaction of
// tiered history (tier) both build one per pass.
//
// It imports only the standard library, does no I/O and is not safe for
// concurrent use: one pass owns a Map.
package keymap

import (
	"encoding/binary"
	"hash/maphash"
)

// Map maps a key's 16-byte hash to its latest offset. Two 64-bit maphash
// values with random seeds per map make a collision (which would drop a
// record of another key) about as likely as with Kafka's MD5 map, at a
// fraction of the cost. A Map holds at most the number of keys it was
// created with (30 to 60 bytes each, with the Go map's growth).
type Map struct {
	s1, s2 maphash.Seed
	m      map[[16]byte]int64
	max    int
}

// New returns an empty Map that holds at most maxEntries keys.
func New(maxEntries int) *Map {
	return &Map{s1: maphash.MakeSeed(), s2: maphash.MakeSeed(), m: map[[16]byte]int64{}, max: maxEntries}
}

func (m *Map) hash(key []byte) [16]byte {
	var k [16]byte
	binary.LittleEndian.PutUint64(k[:], maphash.Bytes(m.s1, key))
	binary.LittleEndian.PutUint64(k[8:], maphash.Bytes(m.s2, key))
	return k
}

// Put records off as key's latest offset. It returns false, changing
// nothing, if key is new and the map is full.
func (m *Map) Put(key []byte, off int64) bool {
	k := m.hash(key)
	if _, ok := m.m[k]; !ok && len(m.m) >= m.max {
		return false
	}
	m.m[k] = off
	return true
}

// Get returns the latest offset recorded for key.
func (m *Map) Get(key []byte) (int64, bool) {
	off, ok := m.m[m.hash(key)]
	return off, ok
}

// Len is the number of keys recorded.
func (m *Map) Len() int { return len(m.m) }

package index

import (
	"encoding/binary"
	"fmt"
	"sort"
)

// OffsetEntrySize is the encoded size of an OffsetEntry.
const OffsetEntrySize = 8

// OffsetEntry maps the batch starting at Base+RelOffset to its byte
// position in the segment file.
type OffsetEntry struct {
	RelOffset uint32
	Position  uint32
}

// OffsetIndex is the sparse offset index of one segment. Entries are strictly
// increasing in both RelOffset and Position. Not safe for concurrent use
// while being appended to; callers synchronise.
type OffsetIndex struct {
	Base    int64
	Entries []OffsetEntry
}

// Append adds an entry. It reports false, and adds nothing, if the entry
// would not keep the index strictly increasing.
func (x *OffsetIndex) Append(rel, pos uint32) bool {
	if n := len(x.Entries); n > 0 && (rel <= x.Entries[n-1].RelOffset || pos <= x.Entries[n-1].Position) {
		return false
	}
	x.Entries = append(x.Entries, OffsetEntry{RelOffset: rel, Position: pos})
	return true
}

// Lookup returns the last entry whose offset is <= offset, and false if
// there is none (the caller then starts at the beginning of the segment).
func (x *OffsetIndex) Lookup(offset int64) (OffsetEntry, bool) {
	rel := offset - x.Base
	if rel < 0 {
		return OffsetEntry{}, false
	}
	i := sort.Search(len(x.Entries), func(i int) bool { return int64(x.Entries[i].RelOffset) > rel })
	if i == 0 {
		return OffsetEntry{}, false
	}
	return x.Entries[i-1], true
}

// LookupPosition returns the last entry whose position is <= pos.
func (x *OffsetIndex) LookupPosition(pos int64) (OffsetEntry, bool) {
	i := sort.Search(len(x.Entries), func(i int) bool { return int64(x.Entries[i].Position) > pos })
	if i == 0 {
		return OffsetEntry{}, false
	}
	return x.Entries[i-1], true
}

// TruncateAfterPosition drops entries at or beyond pos.
func (x *OffsetIndex) TruncateAfterPosition(pos int64) {
	i := sort.Search(len(x.Entries), func(i int) bool { return int64(x.Entries[i].Position) >= pos })
	x.Entries = x.Entries[:i]
}

// AppendEncode appends the file encoding of x to dst.
func (x *OffsetIndex) AppendEncode(dst []byte) []byte {
	start := len(dst)
	dst = appendHeader(dst, offsetMagic, OffsetEntrySize, x.Base, len(x.Entries))
	for _, e := range x.Entries {
		dst = binary.BigEndian.AppendUint32(dst, e.RelOffset)
		dst = binary.BigEndian.AppendUint32(dst, e.Position)
	}
	return appendTrailer(dst, start)
}

// DecodeOffsetIndex decodes an offset index file. It never panics; errors
// wrap ErrCorrupt or are a *VersionError.
func DecodeOffsetIndex(b []byte) (*OffsetIndex, error) {
	base, body, err := decodeFrame(b, offsetMagic, "offset", OffsetEntrySize)
	if err != nil {
		return nil, err
	}
	x := &OffsetIndex{Base: base, Entries: make([]OffsetEntry, 0, len(body)/OffsetEntrySize)}
	for i := 0; i+OffsetEntrySize <= len(body); i += OffsetEntrySize {
		rel := binary.BigEndian.Uint32(body[i:])
		pos := binary.BigEndian.Uint32(body[i+4:])
		if !x.Append(rel, pos) {
			return nil, fmt.Errorf("%w: offset index entry %d (%d, %d) is not increasing", ErrCorrupt, i/OffsetEntrySize, rel, pos)
		}
	}
	return x, nil
}

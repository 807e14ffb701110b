package index

import (
	"encoding/binary"
	"fmt"
	"sort"
)

// TimeEntrySize is the encoded size of a TimeEntry.
const TimeEntrySize = 12

// TimeEntry records that every record in the segment up to and including
// the batch starting at Base+RelOffset has a timestamp <= Timestamp.
type TimeEntry struct {
	Timestamp int64
	RelOffset uint32
}

// TimeIndex is the sparse time index of one segment. Timestamps are
// non-decreasing and offsets strictly increasing. Not safe for concurrent use
// while being appended to.
type TimeIndex struct {
	Base    int64
	Entries []TimeEntry
}

// Append adds an entry; it reports false, adding nothing, if the entry would
// break the ordering or does not raise the timestamp.
func (x *TimeIndex) Append(ts int64, rel uint32) bool {
	if n := len(x.Entries); n > 0 && (ts <= x.Entries[n-1].Timestamp || rel <= x.Entries[n-1].RelOffset) {
		return false
	}
	x.Entries = append(x.Entries, TimeEntry{Timestamp: ts, RelOffset: rel})
	return true
}

// Last returns the last entry, or false if the index is empty.
func (x *TimeIndex) Last() (TimeEntry, bool) {
	if len(x.Entries) == 0 {
		return TimeEntry{}, false
	}
	return x.Entries[len(x.Entries)-1], true
}

// LookupBefore returns the last entry whose Timestamp < ts: every record up
// to and including that entry's batch is older than ts, so a scan for the
// first record at or after ts may start after it. False means scan from the
// start of the segment.
func (x *TimeIndex) LookupBefore(ts int64) (TimeEntry, bool) {
	i := sort.Search(len(x.Entries), func(i int) bool { return x.Entries[i].Timestamp >= ts })
	if i == 0 {
		return TimeEntry{}, false
	}
	return x.Entries[i-1], true
}

// TruncateFromOffset drops entries whose batch starts at or after offset.
func (x *TimeIndex) TruncateFromOffset(offset int64) {
	i := sort.Search(len(x.Entries), func(i int) bool { return x.Base+int64(x.Entries[i].RelOffset) >= offset })
	x.Entries = x.Entries[:i]
}

// AppendEncode appends the file encoding of x to dst.
func (x *TimeIndex) AppendEncode(dst []byte) []byte {
	start := len(dst)
	dst = appendHeader(dst, timeMagic, TimeEntrySize, x.Base, len(x.Entries))
	for _, e := range x.Entries {
		dst = binary.BigEndian.AppendUint64(dst, uint64(e.Timestamp))
		dst = binary.BigEndian.AppendUint32(dst, e.RelOffset)
	}
	return appendTrailer(dst, start)
}

// DecodeTimeIndex decodes a time index file. It never panics; errors wrap
// ErrCorrupt or are a *VersionError.
func DecodeTimeIndex(b []byte) (*TimeIndex, error) {
	base, body, err := decodeFrame(b, timeMagic, "time", TimeEntrySize)
	if err != nil {
		return nil, err
	}
	x := &TimeIndex{Base: base, Entries: make([]TimeEntry, 0, len(body)/TimeEntrySize)}
	for i := 0; i+TimeEntrySize <= len(body); i += TimeEntrySize {
		ts := int64(binary.BigEndian.Uint64(body[i:]))
		rel := binary.BigEndian.Uint32(body[i+8:])
		if !x.Append(ts, rel) {
			return nil, fmt.Errorf("%w: time index entry %d (%d, %d) is not increasing", ErrCorrupt, i/TimeEntrySize, ts, rel)
		}
	}
	return x, nil
}

package batch

import "encoding/binary"

// batches calls fn for each batch in b whose header parses and that b
// holds whole, stopping at the first that does not. b is expected to have
// passed Validate; the stop only keeps bad input from causing a panic.
func batches(b []byte, fn func(batch []byte, h *Header)) {
	for len(b) > 0 {
		h, err := ParseHeader(b)
		if err != nil || h.Size() > len(b) {
			return
		}
		fn(b[:h.Size()], &h)
		b = b[h.Size():]
	}
}

// AssignOffsets patches the base offset and partition leader epoch of every
// batch in b in place, numbering the batches' records consecutively from
// baseOffset, and returns the offset after the last record. Neither field
// is covered by the CRC. b must have passed Validate.
func AssignOffsets(b []byte, baseOffset int64, leaderEpoch int32) (next int64) {
	next = baseOffset
	batches(b, func(batch []byte, h *Header) {
		SetBaseOffset(batch, next)
		SetLeaderEpoch(batch, leaderEpoch)
		next += int64(h.LastOffsetDelta) + 1
	})
	return next
}

// SetLogAppendTime turns every batch in b into a LogAppendTime batch in
// place, as Kafka's DefaultRecordBatch.setMaxTimestamp does: it sets the
// timestamp-type attribute bit, writes nowMs as maxTimestamp, and recomputes
// the CRC. Base timestamp and record deltas are left as they are; readers
// take every record's timestamp from maxTimestamp in such batches. Records
// are not decoded. b must have passed Validate.
func SetLogAppendTime(b []byte, nowMs int64) {
	batches(b, func(batch []byte, h *Header) {
		if h.LogAppendTime() && h.MaxTimestamp == nowMs {
			return
		}
		binary.BigEndian.PutUint16(batch[offAttributes:], uint16(h.Attributes|AttrTimestampType))
		binary.BigEndian.PutUint64(batch[offMaxTimestamp:], uint64(nowMs))
		binary.BigEndian.PutUint32(batch[offCRC:], crcOf(batch))
	})
}

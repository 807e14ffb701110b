package batch

import "fmt"

// AttrDeleteHorizon is the attribute bit (KIP-534) saying that a cleaned
// batch's baseTimestamp holds its delete horizon rather than its first
// record's timestamp. Record timestamps are baseTimestamp + delta either way.
const AttrDeleteHorizon = 0x40

// FilterOptions tune Filter.
type FilterOptions struct {
	// KeepEmpty makes Filter write an empty batch when keep retains no
	// record, instead of dropping the batch. The caller sets it for the
	// last batch of a producer, so that the producer's sequence state
	// survives compaction (Kafka's BatchRetention.RETAIN_EMPTY).
	KeepEmpty bool
	// DecompressLimit bounds the decompressed records section of the
	// input; <= 0 means DefaultDecompressLimit.
	DecompressLimit int
}

// FilterResult says what Filter read and wrote.
type FilterResult struct {
	RecordsIn   int // records in the input batch
	RecordsKept int // records keep retained
	BytesIn     int // size of the input batch
	BytesOut    int // bytes appended to dst
	// Unchanged: every record was kept and the input bytes were appended
	// as they are.
	Unchanged bool
	// Dropped: no record was kept, KeepEmpty was not set, nothing was
	// appended.
	Dropped bool
	// Empty: no record was kept and, with KeepEmpty, an empty batch was
	// appended.
	Empty bool
	// MaxTimestamp is the largest timestamp of the kept records (the
	// batch's maxTimestamp for LogAppendTime), and MaxTimestampOffset the
	// offset of the first kept record carrying it; both -1 if no record
	// was kept.
	MaxTimestamp       int64
	MaxTimestampOffset int64
}

// Filter appends to dst the v2 batch at the start of b with only the
// records keep retains, as Kafka's MemoryRecords.filterTo does for v2
// batches; bytes after the first batch are ignored. dst must not share
// memory with b.
//
// The input's CRC-32C is checked, and its records must decode, match the
// record count and have strictly increasing offset deltas no larger than
// lastOffsetDelta (gaps are allowed: the input may be a cleaned batch). On
// any error nothing is appended; errors wrap ErrCorrupt, ErrInvalidRecord,
// ErrTooLarge (see DecompressLimit) or ErrUnsupportedCompression.
//
// keep is called once per record, in order, with the record's absolute
// offset. The record's TimestampDelta is relative to the input's
// baseTimestamp (in a LogAppendTime batch every record's timestamp is the
// maxTimestamp). The record and its slices are valid only during the call,
// and keep must not modify them. Control batches are filtered like any
// other: the caller decides whether to keep their records.
//
// The output is:
//   - every record kept (and at least one): the input bytes, unchanged;
//   - no record kept (or none present), without KeepEmpty: nothing;
//   - no record kept, with KeepEmpty: an empty batch as Kafka's
//     DefaultRecordBatch.writeEmptyHeader writes it: record count 0, no
//     records section, base offset, lastOffsetDelta, partition leader
//     epoch, producer id, epoch and base sequence of the input; attributes
//     of the input without the codec bits (nothing is compressed, so the
//     batch reads back with any reader) and without the delete-horizon bit;
//     baseTimestamp -1 (no timestamp) and maxTimestamp the input's;
//   - some records kept: a new batch with every header field of the input
//     (attributes, producer fields, leader epoch, base offset and the same
//     lastOffsetDelta, which producer sequences depend on) except those
//     derived from the records. Kept records keep their offset deltas and
//     absolute timestamps: baseTimestamp becomes the first kept record's
//     timestamp (unless the delete-horizon bit keeps it as it is), deltas
//     are recomputed, maxTimestamp is the largest kept timestamp (the
//     input's for LogAppendTime). The records are compressed with the
//     input's codec and the CRC is computed.
func Filter(dst, b []byte, keep func(offset int64, r *Record) bool, opts FilterOptions) (out []byte, res FilterResult, err error) {
	res = FilterResult{MaxTimestamp: -1, MaxTimestampOffset: -1}
	h, in, err := firstBatch(b)
	if err != nil {
		return dst, res, fmt.Errorf("filter: %w", err)
	}
	if got := crcOf(in); got != h.CRC {
		return dst, res, fmt.Errorf("filter: %w: CRC mismatch: header 0x%08x computed 0x%08x", ErrCorrupt, h.CRC, got)
	}
	res.BytesIn = len(in)
	scratch := getScratch()
	defer putScratch(scratch)
	data, err := recordsData(in, &h, opts.DecompressLimit, scratch)
	if err != nil {
		return dst, res, fmt.Errorf("filter: %w", err)
	}
	raw := getScratch()
	defer putScratch(raw)
	kept, newBase, err := filterRecords((*raw)[:0], data, &h, keep, &res)
	*raw = kept
	if err != nil {
		return dst, res, fmt.Errorf("filter: %w", err)
	}

	start := len(dst)
	switch {
	case res.RecordsKept > 0 && res.RecordsKept == res.RecordsIn:
		res.Unchanged = true
		dst = append(dst, in...)
	case res.RecordsKept == 0 && !opts.KeepEmpty:
		res.Dropped = true
		return dst, res, nil
	case res.RecordsKept == 0:
		res.Empty = true
		eh := h
		eh.Attributes &^= AttrCompressionMask | AttrDeleteHorizon
		eh.BaseTimestamp = -1
		eh.RecordCount = 0
		dst, err = appendBatch(dst, &eh, CodecNone, nil)
	default:
		nh := h
		nh.BaseTimestamp = newBase
		nh.MaxTimestamp = res.MaxTimestamp
		nh.RecordCount = int32(res.RecordsKept)
		dst, err = appendBatch(dst, &nh, h.Codec(), kept)
	}
	if err != nil {
		return dst[:start], res, fmt.Errorf("filter: %w", err)
	}
	res.BytesOut = len(dst) - start
	return dst, res, nil
}

// filterRecords walks the records in data (the records section of the
// batch with header h), asks keep about each, appends the kept ones to raw
// re-encoded against the new base timestamp, and counts into res. It
// returns the extended raw and the new base timestamp.
func filterRecords(raw, data []byte, h *Header, keep func(int64, *Record) bool, res *FilterResult) ([]byte, int64, error) {
	lat := h.LogAppendTime()
	horizon := h.Attributes&AttrDeleteHorizon != 0
	newBase := h.BaseTimestamp
	prev := int32(-1)
	err := walkRecords(data, h, true, func(i int, r Record) error {
		if r.OffsetDelta <= prev || r.OffsetDelta > h.LastOffsetDelta {
			return fmt.Errorf("%w: record %d has offset delta %d after %d (lastOffsetDelta %d)", ErrInvalidRecord, i, r.OffsetDelta, prev, h.LastOffsetDelta)
		}
		prev = r.OffsetDelta
		res.RecordsIn++
		offset := h.BaseOffset + int64(r.OffsetDelta)
		ts := h.BaseTimestamp + r.TimestampDelta
		if lat {
			ts = h.MaxTimestamp
		}
		view := r // keep gets its own copy of the fields
		if !keep(offset, &view) {
			return nil
		}
		res.RecordsKept++
		if res.RecordsKept == 1 {
			if !horizon {
				newBase = ts
			}
			res.MaxTimestamp, res.MaxTimestampOffset = ts, offset
		} else if ts > res.MaxTimestamp {
			res.MaxTimestamp, res.MaxTimestampOffset = ts, offset
		}
		r.TimestampDelta = ts - newBase
		raw = appendRecord(raw, &r, r.OffsetDelta)
		return nil
	})
	return raw, newBase, err
}

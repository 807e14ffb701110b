package batch

import (
	"fmt"
	"sync"
)

// firstBatch parses the header of the batch at the start of b and returns
// it with the batch's bytes. It checks that b holds the whole batch but not
// the CRC.
func firstBatch(b []byte) (Header, []byte, error) {
	h, err := ParseHeader(b)
	if err != nil {
		return h, nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	if h.Size() > len(b) {
		return h, nil, fmt.Errorf("%w: %w: batch length %d, %d bytes present", ErrCorrupt, ErrShort, h.BatchLength, len(b)-LogOverhead)
	}
	return h, b[:h.Size()], nil
}

// scratchPool holds buffers for decompressed records. Buffers that grew past
// maxPooledScratch are dropped rather than kept alive by the pool.
var scratchPool = sync.Pool{New: func() any { return new([]byte) }}

const maxPooledScratch = 4 << 20

func getScratch() *[]byte { return scratchPool.Get().(*[]byte) }

func putScratch(p *[]byte) {
	if cap(*p) > maxPooledScratch {
		return
	}
	*p = (*p)[:0]
	scratchPool.Put(p)
}

// recordsData returns the records section of batch, decompressed into
// *scratch if the batch is compressed.
func recordsData(batch []byte, h *Header, limit int, scratch *[]byte) ([]byte, error) {
	data := batch[HeaderSize:]
	if h.Codec() == CodecNone {
		return data, nil
	}
	out, err := Decompress(h.Codec(), data, (*scratch)[:0], limit)
	if err != nil {
		return nil, err
	}
	*scratch = out
	return out, nil
}

// walkRecords decodes the records in data, which must hold exactly
// h.RecordCount of them, calling fn with each record's index. The Record
// is passed by value (so that it stays on the stack); its Headers share one
// backing array, reused from record to record.
func walkRecords(data []byte, h *Header, keepHeaders bool, fn func(i int, r Record) error) error {
	var rec Record
	i := 0
	for ; len(data) > 0; i++ {
		if i >= int(h.RecordCount) {
			return fmt.Errorf("%w: more records than the record count %d", ErrInvalidRecord, h.RecordCount)
		}
		rest, err := decodeRecord(data, &rec, keepHeaders)
		if err != nil {
			return fmt.Errorf("%w: record %d: %w", ErrInvalidRecord, i, err)
		}
		data = rest
		if err := fn(i, rec); err != nil {
			return err
		}
	}
	if i != int(h.RecordCount) {
		return fmt.Errorf("%w: record count %d but %d records present", ErrInvalidRecord, h.RecordCount, i)
	}
	return nil
}

// Records calls fn for every record of the batch at the start of b, in
// order, decompressing the records first if needed (to at most limit bytes;
// limit <= 0 means DefaultDecompressLimit). Bytes after the first batch are
// ignored. It does not check the CRC (Validate does); it does check that the
// records fill the batch exactly and match its record count. fn's error
// stops the walk and is returned as is. The record and the slices in it are
// valid only during the call to fn.
func Records(b []byte, limit int, fn func(r Record) error) error {
	h, batch, err := firstBatch(b)
	if err != nil {
		return err
	}
	scratch := getScratch()
	defer putScratch(scratch)
	data, err := recordsData(batch, &h, limit, scratch)
	if err != nil {
		return err
	}
	return walkRecords(data, &h, true, func(_ int, r Record) error { return fn(r) })
}

// FirstAtOrAfter returns the offset and timestamp of the first record of the
// batch at the start of b whose timestamp is at or after ts, or ok false if
// there is none. In a LogAppendTime batch every record carries the batch's
// max timestamp. A batch whose max timestamp is below ts is answered from
// the header alone.
func FirstAtOrAfter(b []byte, ts int64) (offset, timestamp int64, ok bool, err error) {
	h, batch, err := firstBatch(b)
	if err != nil {
		return 0, 0, false, err
	}
	if h.MaxTimestamp < ts {
		return 0, 0, false, nil
	}
	if h.LogAppendTime() {
		return h.BaseOffset, h.MaxTimestamp, true, nil
	}
	scratch := getScratch()
	defer putScratch(scratch)
	data, err := recordsData(batch, &h, DefaultDecompressLimit, scratch)
	if err != nil {
		return 0, 0, false, err
	}
	err = walkRecords(data, &h, false, func(_ int, r Record) error {
		if t := h.BaseTimestamp + r.TimestampDelta; !ok && t >= ts {
			offset, timestamp, ok = h.BaseOffset+int64(r.OffsetDelta), t, true
		}
		return nil
	})
	if err != nil {
		return 0, 0, false, err
	}
	return offset, timestamp, ok, nil
}

// MaxTimestampRecord returns the offset and timestamp of the record with the
// largest timestamp in the batch at the start of b; the first such record
// on ties. In a LogAppendTime batch that is the first record, carrying the
// batch's max timestamp.
func MaxTimestampRecord(b []byte) (offset, ts int64, err error) {
	h, batch, err := firstBatch(b)
	if err != nil {
		return 0, 0, err
	}
	if h.RecordCount <= 0 {
		return 0, 0, fmt.Errorf("%w: batch holds no records", ErrInvalidRecord)
	}
	if h.LogAppendTime() {
		return h.BaseOffset, h.MaxTimestamp, nil
	}
	scratch := getScratch()
	defer putScratch(scratch)
	data, err := recordsData(batch, &h, DefaultDecompressLimit, scratch)
	if err != nil {
		return 0, 0, err
	}
	err = walkRecords(data, &h, false, func(i int, r Record) error {
		if t := h.BaseTimestamp + r.TimestampDelta; i == 0 || t > ts {
			offset, ts = h.BaseOffset+int64(r.OffsetDelta), t
		}
		return nil
	})
	if err != nil {
		return 0, 0, err
	}
	return offset, ts, nil
}

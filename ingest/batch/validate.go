package batch

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"math"
)

// TimestampType is a topic's message.timestamp.type.
type TimestampType int8

// Timestamp types, numbered as Kafka does.
const (
	CreateTime    TimestampType = 0
	LogAppendTime TimestampType = 1
)

// ValidateOptions are the topic settings and request facts Validate checks
// against. The zero value checks CreateTime timestamps against a window of
// zero width around NowMs 0, so callers start from DefaultValidateOptions.
type ValidateOptions struct {
	// MaxMessageBytes is max.message.bytes, compared to each whole batch
	// (including its first 12 bytes). <= 0 means no limit.
	MaxMessageBytes int
	// TimestampType is message.timestamp.type. With CreateTime, batch and
	// record timestamps must lie within [NowMs-BeforeMaxMs,
	// NowMs+AfterMaxMs]; timestamps of -1 (none) are not checked.
	TimestampType TimestampType
	NowMs         int64
	// BeforeMaxMs and AfterMaxMs are message.timestamp.before.max.ms and
	// message.timestamp.after.max.ms; < 0 or math.MaxInt64 means unlimited.
	BeforeMaxMs int64
	AfterMaxMs  int64
	// RequireKeys refuses records with a null key (compacted topics). It
	// makes Validate decompress compressed batches.
	RequireKeys bool
	// SingleBatch refuses more than one batch, as Kafka does for every
	// Produce v3+ request. Without it, several batches are accepted unless
	// one of them carries a producer id.
	SingleBatch bool
	// DisallowZstd refuses zstd batches, as Kafka does for Produce < v7.
	DisallowZstd bool
	// MaxDecompressedBytes bounds the decompressed records of one batch
	// when Validate must decompress; <= 0 means DefaultDecompressLimit.
	MaxDecompressedBytes int
}

// DefaultValidateOptions returns Kafka 4's topic defaults: max.message.bytes
// 1048588, CreateTime, before.max.ms unlimited, after.max.ms one hour. The
// caller sets NowMs.
func DefaultValidateOptions() ValidateOptions {
	return ValidateOptions{
		MaxMessageBytes: 1048588,
		TimestampType:   CreateTime,
		BeforeMaxMs:     math.MaxInt64,
		AfterMaxMs:      3600000,
	}
}

// Info is what Validate learned, so that callers need not parse again.
type Info struct {
	Batches int   // number of batches
	Records int64 // records in all batches
	Bytes   int   // bytes of all batches (all of the input)
	First   Header
	Last    Header
	// Producer fields of the first batch; with a producer id (>= 0) it is
	// the only batch. ProducerID is -1 for non-idempotent producers.
	ProducerID    int64
	ProducerEpoch int16
	BaseSequence  int32
	LastSequence  int32
	Transactional bool
	MaxTimestamp  int64 // largest header maxTimestamp of all batches
	Codec         int   // codec of the first batch
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// crcOf computes the CRC-32C of a batch, over attributes to the end.
func crcOf(batch []byte) uint32 { return crc32.Checksum(batch[offAttributes:], castagnoli) }

// Validate checks the records field of one partition of a produce request:
// one or more concatenated v2 batches. See the package documentation for
// the checks and the Kafka error each failure maps to; every error is an
// *Error. Validate does not modify b. It walks the records of uncompressed
// batches (cheap, no allocation) and decompresses compressed ones only when
// RequireKeys is set. Safe for concurrent use.
func Validate(b []byte, opts ValidateOptions) (Info, error) {
	var info Info
	if len(b) == 0 {
		return info, batchErr(ErrInvalidRecord, 0, "no record batch")
	}
	for pos, i := 0, 0; pos < len(b); i++ {
		batch, h, err := nextBatch(b[pos:], i, &opts)
		if err != nil {
			return info, err
		}
		if i == 0 {
			info.First = h
			info.ProducerID = h.ProducerID
			info.ProducerEpoch = h.ProducerEpoch
			info.BaseSequence = h.BaseSequence
			info.LastSequence = h.LastSequence()
			info.Transactional = h.IsTransactional()
			info.MaxTimestamp = h.MaxTimestamp
			info.Codec = h.Codec()
		} else {
			if opts.SingleBatch {
				return info, batchErr(ErrInvalidRecord, i, "only one record batch per partition is allowed")
			}
			if info.First.ProducerID >= 0 || h.ProducerID >= 0 {
				return info, batchErr(ErrInvalidRecord, i, "an idempotent or transactional producer may send only one record batch per partition (producer id %d)", max(info.First.ProducerID, h.ProducerID))
			}
			info.MaxTimestamp = max(info.MaxTimestamp, h.MaxTimestamp)
		}
		if err := checkRecords(batch, &h, i, &opts); err != nil {
			return info, err
		}
		info.Last = h
		info.Batches++
		info.Records += int64(h.RecordCount)
		pos += len(batch)
	}
	info.Bytes = len(b)
	return info, nil
}

// nextBatch checks the framing and the header of the batch at the start of
// b: magic, length, size limit, CRC, codec, attributes, counts, producer
// fields and header timestamps.
func nextBatch(b []byte, i int, opts *ValidateOptions) ([]byte, Header, error) {
	var h Header
	if len(b) > offMagic && b[offMagic] != 2 {
		return nil, h, batchErr(ErrInvalidRecord, i, "magic %d: only v2 record batches are accepted", int8(b[offMagic]))
	}
	if len(b) < HeaderSize {
		return nil, h, batchErr(ErrCorrupt, i, "truncated: %d bytes, a batch header needs %d", len(b), HeaderSize)
	}
	length := int32(binary.BigEndian.Uint32(b[offBatchLength:]))
	if length < HeaderSize-LogOverhead {
		return nil, h, batchErr(ErrCorrupt, i, "batch length %d smaller than the header (%d)", length, HeaderSize-LogOverhead)
	}
	size := int64(length) + LogOverhead
	if size > int64(len(b)) {
		return nil, h, batchErr(ErrCorrupt, i, "truncated: batch length %d, %d bytes present", length, len(b)-LogOverhead)
	}
	if opts.MaxMessageBytes > 0 && size > int64(opts.MaxMessageBytes) {
		return nil, h, batchErr(ErrTooLarge, i, "batch of %d bytes exceeds max.message.bytes %d", size, opts.MaxMessageBytes)
	}
	batch := b[:size]
	h, err := ParseHeader(batch)
	if err != nil { // cannot happen after the checks above; kept for safety
		return nil, h, asBatchErr(i, err)
	}
	if got := crcOf(batch); got != h.CRC {
		return nil, h, batchErr(ErrCorrupt, i, "CRC mismatch: header 0x%08x computed 0x%08x", h.CRC, got)
	}
	if err := checkHeader(&h, i, opts); err != nil {
		return nil, h, err
	}
	return batch, h, nil
}

func checkHeader(h *Header, i int, opts *ValidateOptions) error {
	switch c := h.Codec(); {
	case c > CodecZstd:
		return batchErr(ErrUnsupportedCompression, i, "unknown compression codec %d", c)
	case c == CodecZstd && opts.DisallowZstd:
		return batchErr(ErrUnsupportedCompression, i, "zstd compression needs Produce v7 or later")
	}
	if h.IsControl() {
		return batchErr(ErrInvalidRecord, i, "producers may not write control batches")
	}
	if h.RecordCount <= 0 {
		return batchErr(ErrInvalidRecord, i, "invalid record count %d", h.RecordCount)
	}
	if int64(h.LastOffsetDelta) != int64(h.RecordCount)-1 {
		return batchErr(ErrInvalidRecord, i, "lastOffsetDelta %d does not match record count %d", h.LastOffsetDelta, h.RecordCount)
	}
	if h.ProducerID >= 0 && h.BaseSequence < 0 {
		return batchErr(ErrInvalidRecord, i, "invalid sequence number %d for producer id %d", h.BaseSequence, h.ProducerID)
	}
	if h.IsTransactional() && h.ProducerID < 0 {
		return batchErr(ErrInvalidRecord, i, "transactional batch without a producer id")
	}
	if h.LogAppendTime() {
		return batchErr(ErrInvalidTimestamp, i, "producers may not set the LogAppendTime timestamp type")
	}
	if opts.TimestampType == CreateTime {
		for _, ts := range [...]int64{h.BaseTimestamp, h.MaxTimestamp} {
			if lo, hi, ok := opts.timestampOK(ts); !ok {
				return batchErr(ErrInvalidTimestamp, i, "timestamp %d is out of range [%d, %d]", ts, lo, hi)
			}
		}
	}
	return nil
}

// checkRecords walks the records of an uncompressed batch, or of a
// compressed one when keys must be checked: the count, offset deltas,
// keys and, for CreateTime, each record's timestamp.
func checkRecords(batch []byte, h *Header, i int, opts *ValidateOptions) error {
	if h.Codec() != CodecNone && !opts.RequireKeys {
		return nil // the header counts were checked; trust them
	}
	scratch := getScratch()
	defer putScratch(scratch)
	data, err := recordsData(batch, h, opts.MaxDecompressedBytes, scratch)
	if err != nil {
		return asBatchErr(i, err)
	}
	checkTS := opts.TimestampType == CreateTime
	err = walkRecords(data, h, false, func(n int, r Record) error {
		if int(r.OffsetDelta) != n {
			return batchErr(ErrInvalidRecord, i, "record %d has offset delta %d", n, r.OffsetDelta)
		}
		if opts.RequireKeys && r.Key == nil {
			return batchErr(ErrInvalidRecord, i, "record %d has a null key, which a compacted topic does not accept", n)
		}
		if checkTS {
			ts := h.BaseTimestamp + r.TimestampDelta
			if lo, hi, ok := opts.timestampOK(ts); !ok {
				return batchErr(ErrInvalidTimestamp, i, "record %d: timestamp %d is out of range [%d, %d]", n, ts, lo, hi)
			}
		}
		return nil
	})
	if err != nil {
		if e := (*Error)(nil); errors.As(err, &e) {
			return e
		}
		return asBatchErr(i, err)
	}
	return nil
}

// timestampOK reports whether ts lies in the CreateTime window, and the
// window (saturated at the int64 range) for error messages. -1, "no
// timestamp", is always accepted.
func (o *ValidateOptions) timestampOK(ts int64) (lo, hi int64, ok bool) {
	now := o.NowMs
	lo, hi = math.MinInt64, math.MaxInt64
	if o.BeforeMaxMs >= 0 && o.BeforeMaxMs != math.MaxInt64 {
		lo = satSub(now, o.BeforeMaxMs)
	}
	if o.AfterMaxMs >= 0 && o.AfterMaxMs != math.MaxInt64 {
		hi = satAdd(now, o.AfterMaxMs)
	}
	return lo, hi, ts == -1 || (ts >= lo && ts <= hi)
}

func satAdd(a, b int64) int64 { // b >= 0
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

func satSub(a, b int64) int64 { // b >= 0
	if a < math.MinInt64+b {
		return math.MinInt64
	}
	return a - b
}

package batch

import (
	"encoding/binary"
	"fmt"
)

// BuildOptions describe the batch Build makes.
type BuildOptions struct {
	BaseOffset    int64
	LeaderEpoch   int32
	Codec         int   // CodecNone, CodecGzip, …
	BaseTimestamp int64 // records' TimestampDelta count from here
	LogAppendTime bool  // set the timestamp-type bit
	Transactional bool
	Control       bool
	// Idempotent writes ProducerID, ProducerEpoch and BaseSequence;
	// otherwise the batch carries -1 for all three.
	Idempotent    bool
	ProducerID    int64
	ProducerEpoch int16
	BaseSequence  int32
}

// Build returns a v2 batch holding records, for tests in this and other
// packages. Records get offset deltas 0, 1, 2, … whatever their OffsetDelta
// says; maxTimestamp is BaseTimestamp plus the largest TimestampDelta. With
// no records it builds a batch with record count 0 (which Validate refuses).
// It panics on an unknown codec, a programming error.
func Build(opts BuildOptions, records ...Record) []byte {
	b, err := AppendBuild(nil, opts, records...)
	if err != nil {
		panic(fmt.Sprintf("batch.Build: %v", err))
	}
	return b
}

// AppendBuild appends the batch Build would return to dst.
func AppendBuild(dst []byte, opts BuildOptions, records ...Record) ([]byte, error) {
	var raw []byte
	maxDelta := int64(0)
	for i := range records {
		raw = appendRecord(raw, &records[i], int32(i))
		if i == 0 || records[i].TimestampDelta > maxDelta {
			maxDelta = records[i].TimestampDelta
		}
	}
	attrs := int16(opts.Codec & AttrCompressionMask)
	if opts.LogAppendTime {
		attrs |= AttrTimestampType
	}
	if opts.Transactional {
		attrs |= AttrTransactional
	}
	if opts.Control {
		attrs |= AttrControl
	}
	h := Header{
		BaseOffset:           opts.BaseOffset,
		PartitionLeaderEpoch: opts.LeaderEpoch,
		Magic:                2,
		Attributes:           attrs,
		LastOffsetDelta:      int32(len(records)) - 1,
		BaseTimestamp:        opts.BaseTimestamp,
		MaxTimestamp:         opts.BaseTimestamp + maxDelta,
		ProducerID:           -1,
		ProducerEpoch:        -1,
		BaseSequence:         -1,
		RecordCount:          int32(len(records)),
	}
	if opts.Idempotent {
		h.ProducerID, h.ProducerEpoch, h.BaseSequence = opts.ProducerID, opts.ProducerEpoch, opts.BaseSequence
	}
	return appendBatch(dst, &h, opts.Codec, raw)
}

// appendBatch appends a batch with header h (BatchLength and CRC are
// computed) whose records section is raw compressed with codec.
func appendBatch(dst []byte, h *Header, codec int, raw []byte) ([]byte, error) {
	start := len(dst)
	dst = appendHeader(dst, h)
	dst, err := Compress(codec, raw, dst)
	if err != nil {
		return dst[:start], err
	}
	batch := dst[start:]
	binary.BigEndian.PutUint32(batch[offBatchLength:], uint32(len(batch)-LogOverhead))
	binary.BigEndian.PutUint32(batch[offCRC:], crcOf(batch))
	return dst, nil
}

// appendHeader appends h's fixed header fields (BatchLength and CRC as
// given).
func appendHeader(dst []byte, h *Header) []byte {
	be := binary.BigEndian
	dst = be.AppendUint64(dst, uint64(h.BaseOffset))
	dst = be.AppendUint32(dst, uint32(h.BatchLength))
	dst = be.AppendUint32(dst, uint32(h.PartitionLeaderEpoch))
	dst = append(dst, byte(h.Magic))
	dst = be.AppendUint32(dst, h.CRC)
	dst = be.AppendUint16(dst, uint16(h.Attributes))
	dst = be.AppendUint32(dst, uint32(h.LastOffsetDelta))
	dst = be.AppendUint64(dst, uint64(h.BaseTimestamp))
	dst = be.AppendUint64(dst, uint64(h.MaxTimestamp))
	dst = be.AppendUint64(dst, uint64(h.ProducerID))
	dst = be.AppendUint16(dst, uint16(h.ProducerEpoch))
	dst = be.AppendUint32(dst, uint32(h.BaseSequence))
	dst = be.AppendUint32(dst, uint32(h.RecordCount))
	return dst
}

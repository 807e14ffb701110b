package batch

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Offsets of the fields in a v2 record batch header.
const (
	offBaseOffset      = 0
	offBatchLength     = 8
	offLeaderEpoch     = 12
	offMagic           = 16
	offCRC             = 17
	offAttributes      = 21
	offLastOffsetDelta = 23
	offBaseTimestamp   = 27
	offMaxTimestamp    = 35
	offProducerID      = 43
	offProducerEpoch   = 51
	offBaseSequence    = 53
	offRecordCount     = 57

	// HeaderSize is the size of the fixed v2 batch header, up to the records.
	HeaderSize = 61
	// LogOverhead is the size of the baseOffset and batchLength fields, which
	// batchLength does not count.
	LogOverhead = 12
)

// Attribute bits.
const (
	AttrCompressionMask = 0x07
	AttrTimestampType   = 0x08 // set: LogAppendTime
	AttrTransactional   = 0x10
	AttrControl         = 0x20
)

// Compression codecs as stored in the attributes.
const (
	CodecNone   = 0
	CodecGzip   = 1
	CodecSnappy = 2
	CodecLZ4    = 3
	CodecZstd   = 4
)

// ErrShort is returned when the bytes end before the batch does.
var ErrShort = errors.New("record batch truncated")

// Header is the decoded fixed header of a v2 record batch.
type Header struct {
	BaseOffset           int64
	BatchLength          int32 // bytes after the batchLength field
	PartitionLeaderEpoch int32
	Magic                int8
	CRC                  uint32
	Attributes           int16
	LastOffsetDelta      int32
	BaseTimestamp        int64
	MaxTimestamp         int64
	ProducerID           int64
	ProducerEpoch        int16
	BaseSequence         int32
	RecordCount          int32
}

// Size is the whole batch size in bytes, including the first 12 bytes.
func (h *Header) Size() int { return int(h.BatchLength) + LogOverhead }

// LastOffset is the offset of the batch's last record.
func (h *Header) LastOffset() int64 { return h.BaseOffset + int64(h.LastOffsetDelta) }

// Codec is the compression codec of the batch.
func (h *Header) Codec() int { return int(h.Attributes & AttrCompressionMask) }

// IsTransactional reports whether the batch is part of a transaction.
func (h *Header) IsTransactional() bool { return h.Attributes&AttrTransactional != 0 }

// IsControl reports whether the batch is a control batch (transaction marker).
func (h *Header) IsControl() bool { return h.Attributes&AttrControl != 0 }

// LogAppendTime reports whether the batch's timestamps are LogAppendTime.
func (h *Header) LogAppendTime() bool { return h.Attributes&AttrTimestampType != 0 }

// LastSequence is the sequence number of the batch's last record, wrapping
// at MaxInt32 as Kafka does.
func (h *Header) LastSequence() int32 {
	if h.BaseSequence < 0 {
		return h.BaseSequence
	}
	s := int64(h.BaseSequence) + int64(h.LastOffsetDelta)
	if s > 0x7fffffff {
		s -= 0x80000000
	}
	return int32(s)
}

// ParseHeader decodes the fixed header at the start of b. It checks only that
// the header is present and that batchLength is large enough to hold it; use
// Validate for the full checks.
func ParseHeader(b []byte) (Header, error) {
	var h Header
	if len(b) < HeaderSize {
		if len(b) >= offMagic+1 && b[offMagic] != 2 {
			return h, fmt.Errorf("unsupported record batch magic %d", int8(b[offMagic]))
		}
		return h, ErrShort
	}
	be := binary.BigEndian
	h.BaseOffset = int64(be.Uint64(b[offBaseOffset:]))
	h.BatchLength = int32(be.Uint32(b[offBatchLength:]))
	h.PartitionLeaderEpoch = int32(be.Uint32(b[offLeaderEpoch:]))
	h.Magic = int8(b[offMagic])
	h.CRC = be.Uint32(b[offCRC:])
	h.Attributes = int16(be.Uint16(b[offAttributes:]))
	h.LastOffsetDelta = int32(be.Uint32(b[offLastOffsetDelta:]))
	h.BaseTimestamp = int64(be.Uint64(b[offBaseTimestamp:]))
	h.MaxTimestamp = int64(be.Uint64(b[offMaxTimestamp:]))
	h.ProducerID = int64(be.Uint64(b[offProducerID:]))
	h.ProducerEpoch = int16(be.Uint16(b[offProducerEpoch:]))
	h.BaseSequence = int32(be.Uint32(b[offBaseSequence:]))
	h.RecordCount = int32(be.Uint32(b[offRecordCount:]))
	if h.Magic != 2 {
		return h, fmt.Errorf("unsupported record batch magic %d", h.Magic)
	}
	if h.BatchLength < HeaderSize-LogOverhead {
		return h, fmt.Errorf("record batch length %d smaller than the header", h.BatchLength)
	}
	return h, nil
}

// SetBaseOffset patches the batch's base offset in place. The CRC does not
// cover it.
func SetBaseOffset(b []byte, off int64) { binary.BigEndian.PutUint64(b[offBaseOffset:], uint64(off)) }

// SetLeaderEpoch patches the batch's partition leader epoch in place. The CRC
// does not cover it.
func SetLeaderEpoch(b []byte, epoch int32) {
	binary.BigEndian.PutUint32(b[offLeaderEpoch:], uint32(epoch))
}

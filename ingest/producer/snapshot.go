package producer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"slices"
)

// Snapshot format, version 1. All integers are big-endian.
//
//	offset size  field
//	0      4     magic "STPS"
//	4      2     format version (1)
//	6      4     CRC-32C (Castagnoli) of every byte after this field
//	10     8     nextOffset: the log offset the state is as of
//	18     4     producer count
//	22     ...   producers, by strictly increasing producer id:
//	               8  producer id (>= 0)
//	               2  epoch
//	               4  coordinator epoch (-1: none)
//	               8  current transaction first offset (-1: none)
//	               8  last append time, ms (broker clock)
//	               1  batch count (0..5)
//	               then per batch, oldest first, 32 bytes:
//	               4 first sequence, 4 last sequence, 8 first offset,
//	               8 last offset, 8 max timestamp ms
//
// The encoding is canonical: a snapshot that decodes re-encodes to the same
// bytes. A reader refuses versions it does not know.
const (
	snapshotMagic      = "STPS"
	SnapshotVersion    = 1 // the format version AppendSnapshot writes
	snapshotHeaderSize = 22
	snapshotCRCStart   = 10
	producerFixedSize  = 8 + 2 + 4 + 8 + 8 + 1
	batchMetaSize      = 4 + 4 + 8 + 8 + 8
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// Errors returned by DecodeSnapshot, wrapped with details.
var (
	ErrSnapshotCorrupt = errors.New("corrupt producer state snapshot")
	ErrSnapshotVersion = errors.New("unsupported producer state snapshot version")
)

// AppendSnapshot appends to dst the encoding of all state, as of the log
// offset nextOffset (the offset of the next batch to be appended after the
// state), and returns the extended slice. Producers are written in id order so
// equal states encode to equal bytes.
func (s *State) AppendSnapshot(dst []byte, nextOffset int64) []byte {
	ids := make([]int64, 0, len(s.producers))
	for id := range s.producers {
		ids = append(ids, id)
	}
	slices.Sort(ids)

	start := len(dst)
	dst = append(dst, snapshotMagic...)
	dst = binary.BigEndian.AppendUint16(dst, SnapshotVersion)
	dst = binary.BigEndian.AppendUint32(dst, 0) // CRC, patched below
	dst = binary.BigEndian.AppendUint64(dst, uint64(nextOffset))
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(ids)))
	for _, id := range ids {
		e := s.producers[id]
		dst = binary.BigEndian.AppendUint64(dst, uint64(id))
		dst = binary.BigEndian.AppendUint16(dst, uint16(e.epoch))
		dst = binary.BigEndian.AppendUint32(dst, uint32(e.coordinatorEpoch))
		dst = binary.BigEndian.AppendUint64(dst, uint64(e.txnFirstOffset))
		dst = binary.BigEndian.AppendUint64(dst, uint64(e.lastAppendMs))
		dst = append(dst, e.n)
		for _, m := range e.batches[:e.n] {
			dst = binary.BigEndian.AppendUint32(dst, uint32(m.FirstSeq))
			dst = binary.BigEndian.AppendUint32(dst, uint32(m.LastSeq))
			dst = binary.BigEndian.AppendUint64(dst, uint64(m.FirstOffset))
			dst = binary.BigEndian.AppendUint64(dst, uint64(m.LastOffset))
			dst = binary.BigEndian.AppendUint64(dst, uint64(m.TimestampMs))
		}
	}
	snap := dst[start:]
	binary.BigEndian.PutUint32(snap[6:], crc32.Checksum(snap[snapshotCRCStart:], crcTable))
	return dst
}

// DecodeSnapshot decodes a snapshot written by AppendSnapshot and returns the
// state and the nextOffset it was taken at. It never panics: bad magic, a CRC
// mismatch, truncation, trailing bytes or values the encoder cannot produce
// give an error wrapping ErrSnapshotCorrupt, and a version it does not know
// gives an error wrapping ErrSnapshotVersion that names the version.
func DecodeSnapshot(b []byte) (st *State, nextOffset int64, err error) {
	if len(b) < snapshotCRCStart {
		return nil, 0, fmt.Errorf("%w: %d bytes is shorter than the header", ErrSnapshotCorrupt, len(b))
	}
	if string(b[:4]) != snapshotMagic {
		return nil, 0, fmt.Errorf("%w: bad magic %q", ErrSnapshotCorrupt, b[:4])
	}
	if v := binary.BigEndian.Uint16(b[4:]); v != SnapshotVersion {
		return nil, 0, fmt.Errorf("%w %d (this build reads version %d)", ErrSnapshotVersion, v, SnapshotVersion)
	}
	if len(b) < snapshotHeaderSize {
		return nil, 0, fmt.Errorf("%w: %d bytes is shorter than the header", ErrSnapshotCorrupt, len(b))
	}
	if want, got := binary.BigEndian.Uint32(b[6:]), crc32.Checksum(b[snapshotCRCStart:], crcTable); want != got {
		return nil, 0, fmt.Errorf("%w: CRC mismatch (stored %08x, computed %08x)", ErrSnapshotCorrupt, want, got)
	}
	nextOffset = int64(binary.BigEndian.Uint64(b[10:]))
	count := binary.BigEndian.Uint32(b[18:])
	rest := b[snapshotHeaderSize:]
	if uint64(count) > uint64(len(rest)/producerFixedSize) {
		return nil, 0, fmt.Errorf("%w: %d producers cannot fit in %d bytes", ErrSnapshotCorrupt, count, len(rest))
	}
	st = &State{producers: make(map[int64]*entry, count)}
	prev := int64(-1)
	for i := range count {
		if len(rest) < producerFixedSize {
			return nil, 0, fmt.Errorf("%w: producer %d of %d truncated", ErrSnapshotCorrupt, i, count)
		}
		id := int64(binary.BigEndian.Uint64(rest))
		if id <= prev {
			return nil, 0, fmt.Errorf("%w: producer id %d after %d (ids must be non-negative and increasing)",
				ErrSnapshotCorrupt, id, prev)
		}
		prev = id
		e := &entry{
			epoch:            int16(binary.BigEndian.Uint16(rest[8:])),
			coordinatorEpoch: int32(binary.BigEndian.Uint32(rest[10:])),
			txnFirstOffset:   int64(binary.BigEndian.Uint64(rest[14:])),
			lastAppendMs:     int64(binary.BigEndian.Uint64(rest[22:])),
			n:                rest[30],
		}
		rest = rest[producerFixedSize:]
		if e.n > MaxBatches {
			return nil, 0, fmt.Errorf("%w: producer %d has %d batches, at most %d allowed",
				ErrSnapshotCorrupt, id, e.n, MaxBatches)
		}
		if len(rest) < int(e.n)*batchMetaSize {
			return nil, 0, fmt.Errorf("%w: batches of producer %d truncated", ErrSnapshotCorrupt, id)
		}
		for j := range e.n {
			e.batches[j] = BatchMeta{
				FirstSeq:    int32(binary.BigEndian.Uint32(rest)),
				LastSeq:     int32(binary.BigEndian.Uint32(rest[4:])),
				FirstOffset: int64(binary.BigEndian.Uint64(rest[8:])),
				LastOffset:  int64(binary.BigEndian.Uint64(rest[16:])),
				TimestampMs: int64(binary.BigEndian.Uint64(rest[24:])),
			}
			rest = rest[batchMetaSize:]
		}
		st.producers[id] = e
	}
	if len(rest) != 0 {
		return nil, 0, fmt.Errorf("%w: %d trailing bytes", ErrSnapshotCorrupt, len(rest))
	}
	st.txns.rebuild(st.producers)
	return st, nextOffset, nil
}

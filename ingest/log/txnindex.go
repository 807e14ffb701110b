package log

import (
	"encoding/binary"
	"fmt"

	"github.com/strata-io/strata/index"
)

// Aborted-transaction index file of a sealed segment, <base>.txnindex (Kafka's
// .txnindex): the aborted transactions whose abort marker is in the segment,
// in marker order. Every sealed segment has one, empty or not, so that a
// missing file means "lost" (rebuilt by recovery), never "none".
//
// Layout, big-endian, in the small-checkpoint framing (encodeCheckpoint):
// magic "SLTX", version u16 (1), segment base offset i64, entry count u32,
// entries (producer id i64, first offset i64, last offset i64), CRC-32C u32
// of everything before it. The last offset is the marker's offset; entries
// are by strictly increasing last offset, each with 0 <= producer id,
// 0 <= first offset <= last offset and base <= last offset.

var txnIndexMagic = [4]byte{'S', 'L', 'T', 'X'}

const txnEntrySize = 24

func encodeTxnIndex(base int64, entries []index.AbortedTxn) []byte {
	p := make([]byte, 0, 12+len(entries)*txnEntrySize)
	p = binary.BigEndian.AppendUint64(p, uint64(base))
	p = binary.BigEndian.AppendUint32(p, uint32(len(entries)))
	for _, e := range entries {
		p = binary.BigEndian.AppendUint64(p, uint64(e.ProducerID))
		p = binary.BigEndian.AppendUint64(p, uint64(e.FirstOffset))
		p = binary.BigEndian.AppendUint64(p, uint64(e.LastOffset))
	}
	return encodeCheckpoint(txnIndexMagic, p)
}

// decodeTxnIndex decodes a .txnindex file named name. It never panics; bad
// bytes give an error wrapping ErrCorrupt, an unknown version one wrapping
// ErrVersion.
func decodeTxnIndex(b []byte, name string) (base int64, entries []index.AbortedTxn, err error) {
	p, err := decodeCheckpoint(b, txnIndexMagic, name)
	if err != nil {
		return 0, nil, err
	}
	if len(p) < 12 {
		return 0, nil, fmt.Errorf("%s: %w: payload of %d bytes", name, ErrCorrupt, len(p))
	}
	base = int64(binary.BigEndian.Uint64(p))
	n := binary.BigEndian.Uint32(p[8:])
	p = p[12:]
	if base < 0 || uint64(len(p)) != uint64(n)*txnEntrySize {
		return 0, nil, fmt.Errorf("%s: %w: base %d, %d entries in %d bytes", name, ErrCorrupt, base, n, len(p))
	}
	if n > 0 {
		entries = make([]index.AbortedTxn, 0, n)
	}
	for ; len(p) > 0; p = p[txnEntrySize:] {
		e := index.AbortedTxn{
			ProducerID:  int64(binary.BigEndian.Uint64(p)),
			FirstOffset: int64(binary.BigEndian.Uint64(p[8:])),
			LastOffset:  int64(binary.BigEndian.Uint64(p[16:])),
		}
		if e.ProducerID < 0 || e.FirstOffset < 0 || e.FirstOffset > e.LastOffset || e.LastOffset < base ||
			(len(entries) > 0 && e.LastOffset <= entries[len(entries)-1].LastOffset) {
			return 0, nil, fmt.Errorf("%s: %w: bad entry %+v after %d entries", name, ErrCorrupt, e, len(entries))
		}
		entries = append(entries, e)
	}
	return base, entries, nil
}

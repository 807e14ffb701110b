package batch

import "fmt"

// Recompress returns the batch at the start of b with its records section
// re-encoded with codec (CodecNone to store it uncompressed), for a topic
// whose compression.type is not "producer". The records are decompressed
// (at most DefaultDecompressLimit bytes) and checked against the record
// count; their bytes, and every header field other than the codec bits,
// batchLength and CRC, stay as they were. If the batch already uses codec,
// Recompress returns b[:size] itself, not a copy. Control batches are
// recompressed like any other.
func Recompress(b []byte, codec int) ([]byte, error) {
	h, batch, err := firstBatch(b)
	if err != nil {
		return nil, err
	}
	if codec < CodecNone || codec > CodecZstd {
		return nil, fmt.Errorf("recompress: %w: unknown codec %d", ErrUnsupportedCompression, codec)
	}
	if h.Codec() == codec {
		return batch, nil
	}
	scratch := getScratch()
	defer putScratch(scratch)
	data, err := recordsData(batch, &h, DefaultDecompressLimit, scratch)
	if err != nil {
		return nil, fmt.Errorf("recompress: %w", err)
	}
	if err := walkRecords(data, &h, false, func(int, Record) error { return nil }); err != nil {
		return nil, fmt.Errorf("recompress: %w", err)
	}
	h.Attributes = h.Attributes&^AttrCompressionMask | int16(codec)
	out, err := appendBatch(make([]byte, 0, HeaderSize+len(data)/2), &h, codec, data)
	if err != nil {
		return nil, fmt.Errorf("recompress: %w", err)
	}
	return out, nil
}

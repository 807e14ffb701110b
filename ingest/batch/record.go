package batch

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// Record is one record of a v2 batch. A nil Key or Value is null (length
// -1 on the wire); an empty non-nil one is empty. Slices handed out by
// Records alias the batch (or the decompressed records) and are valid only
// during the callback; copy them to keep them.
type Record struct {
	Attributes     int8
	TimestampDelta int64 // from the batch's base timestamp
	OffsetDelta    int32 // from the batch's base offset
	Key            []byte
	Value          []byte
	Headers        []RecordHeader
}

// RecordHeader is one record header. Key is never null; a nil Value is.
type RecordHeader struct {
	Key   []byte
	Value []byte
}

// empty is what an empty, non-null field decodes to.
var empty = []byte{}

var (
	errVarint     = errors.New("bad varint")
	errRecordSize = errors.New("record length exceeds the remaining bytes")
)

// recordReader reads the fields of one record body.
type recordReader struct {
	b   []byte
	err error
}

func (r *recordReader) varlong() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.err = errVarint
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *recordReader) varint() int32 {
	v := r.varlong()
	if v < math.MinInt32 || v > math.MaxInt32 {
		if r.err == nil {
			r.err = errVarint
		}
		return 0
	}
	return int32(v)
}

// bytes reads a varint length and that many bytes; -1 yields nil.
func (r *recordReader) bytes(what string) []byte {
	n := r.varint()
	if r.err != nil {
		return nil
	}
	switch {
	case n == -1:
		return nil
	case n == 0:
		return empty
	case n < -1:
		r.err = fmt.Errorf("invalid %s length %d", what, n)
		return nil
	case int(n) > len(r.b):
		r.err = fmt.Errorf("%s length %d exceeds the remaining %d bytes", what, n, len(r.b))
		return nil
	}
	b := r.b[:n:n]
	r.b = r.b[n:]
	return b
}

// decodeRecord decodes the record at the start of b into rec and returns the
// bytes after it. Headers are appended to rec.Headers[:0] when keepHeaders,
// otherwise only checked. Errors name the field; the caller adds context.
func decodeRecord(b []byte, rec *Record, keepHeaders bool) ([]byte, error) {
	r := recordReader{b: b}
	length := r.varint()
	if r.err != nil {
		return nil, fmt.Errorf("record length: %w", r.err)
	}
	if length < 0 || int(length) > len(r.b) {
		return nil, fmt.Errorf("%w: length %d, %d bytes left", errRecordSize, length, len(r.b))
	}
	rest := r.b[length:]
	r.b = r.b[:length]
	if len(r.b) < 1 {
		return nil, errors.New("record shorter than its attributes")
	}
	rec.Attributes = int8(r.b[0])
	r.b = r.b[1:]
	rec.TimestampDelta = r.varlong()
	rec.OffsetDelta = r.varint()
	rec.Key = r.bytes("key")
	rec.Value = r.bytes("value")
	nh := r.varint()
	if r.err != nil {
		return nil, r.err
	}
	// Each header takes at least two bytes: bound the count before
	// allocating for it.
	if nh < 0 || int(nh) > len(r.b)/2 {
		return nil, fmt.Errorf("invalid header count %d", nh)
	}
	rec.Headers = rec.Headers[:0]
	for range nh {
		k := r.bytes("header key")
		if k == nil && r.err == nil {
			return nil, errors.New("null header key")
		}
		v := r.bytes("header value")
		if r.err != nil {
			return nil, r.err
		}
		if keepHeaders {
			rec.Headers = append(rec.Headers, RecordHeader{Key: k, Value: v})
		}
	}
	if len(r.b) != 0 {
		return nil, fmt.Errorf("record has %d bytes after its headers", len(r.b))
	}
	return rest, nil
}

// appendRecord appends rec encoded with the given offset delta.
func appendRecord(dst []byte, rec *Record, offsetDelta int32) []byte {
	var body [binary.MaxVarintLen64 * 3]byte
	n := copy(body[:], []byte{byte(rec.Attributes)})
	n += binary.PutVarint(body[n:], rec.TimestampDelta)
	n += binary.PutVarint(body[n:], int64(offsetDelta))
	size := n + bytesLen(rec.Key) + bytesLen(rec.Value) + varintLen(int64(len(rec.Headers)))
	for i := range rec.Headers {
		h := &rec.Headers[i]
		size += varintLen(int64(len(h.Key))) + len(h.Key) + bytesLen(h.Value)
	}
	dst = binary.AppendVarint(dst, int64(size))
	dst = append(dst, body[:n]...)
	dst = appendBytes(dst, rec.Key)
	dst = appendBytes(dst, rec.Value)
	dst = binary.AppendVarint(dst, int64(len(rec.Headers)))
	for i := range rec.Headers {
		h := &rec.Headers[i]
		dst = binary.AppendVarint(dst, int64(len(h.Key)))
		dst = append(dst, h.Key...)
		dst = appendBytes(dst, h.Value)
	}
	return dst
}

func varintLen(v int64) int {
	var b [binary.MaxVarintLen64]byte
	return binary.PutVarint(b[:], v)
}

// bytesLen is the encoded size of a length-prefixed field; nil is null.
func bytesLen(b []byte) int {
	if b == nil {
		return 1
	}
	return varintLen(int64(len(b))) + len(b)
}

func appendBytes(dst, b []byte) []byte {
	if b == nil {
		return binary.AppendVarint(dst, -1)
	}
	dst = binary.AppendVarint(dst, int64(len(b)))
	return append(dst, b...)
}

package batch

import (
	"bytes"
	"encoding/binary"
	"errors"
	"slices"

	"github.com/klauspost/compress/s2"
)

// Snappy in Kafka comes in two shapes. The Java client writes xerial
// framing: an 8 byte magic, two big endian int32 versions, then blocks of a
// big endian int32 length and a raw snappy block. Some clients (franz-go's
// non-streaming path, sarama) write one raw snappy block. Java consumers
// read both, so we decode both and write xerial framing.

var xerialMagic = []byte{0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0}

// xerialHeaderLen is the magic plus version and compatible version.
const xerialHeaderLen = 16

// xerialBlockSize is the uncompressed block size the Java client writes.
const xerialBlockSize = 32 << 10

var errXerial = errors.New("malformed xerial snappy framing")

// appendXerial appends src as xerial framed snappy to dst.
func appendXerial(dst, src []byte) []byte {
	dst = append(dst, xerialMagic...)
	dst = binary.BigEndian.AppendUint32(dst, 1) // version
	dst = binary.BigEndian.AppendUint32(dst, 1) // compatible version
	for len(src) > 0 {
		n := min(len(src), xerialBlockSize)
		dst = slices.Grow(dst, 4+s2.MaxEncodedLen(n))
		at := len(dst)
		block := s2.EncodeSnappy(dst[at+4:cap(dst)], src[:n])
		binary.BigEndian.PutUint32(dst[at:at+4], uint32(len(block)))
		dst = dst[:at+4+len(block)]
		src = src[n:]
	}
	return dst
}

// decodeSnappy decodes xerial framed or raw snappy src, appending to dst.
// Declared block lengths are checked against limit before allocating.
func decodeSnappy(src, dst []byte, limit int) ([]byte, error) {
	start := len(dst)
	if len(src) < xerialHeaderLen || !bytes.HasPrefix(src, xerialMagic) {
		out, err := decodeSnappyBlock(src, dst, limit)
		if err != nil {
			return dst[:start], err
		}
		return out, nil
	}
	// Sum the declared sizes first so that dst grows once and a bomb is
	// refused before anything is decoded.
	total := 0
	for rem := src[xerialHeaderLen:]; len(rem) > 0; {
		block, next, err := nextXerialBlock(rem)
		if err != nil {
			return dst, corruptCodec(CodecSnappy, err)
		}
		n, err := s2.DecodedLen(block)
		if err != nil {
			return dst, corruptCodec(CodecSnappy, err)
		}
		if total += n; total > limit {
			return dst, tooLarge(CodecSnappy, limit)
		}
		rem = next
	}
	dst = slices.Grow(dst, total)
	for rem := src[xerialHeaderLen:]; len(rem) > 0; {
		block, next, _ := nextXerialBlock(rem) // checked above
		out, err := decodeSnappyBlock(block, dst, limit)
		if err != nil {
			return dst[:start], err
		}
		dst = out
		rem = next
	}
	return dst, nil
}

func nextXerialBlock(b []byte) (block, rest []byte, err error) {
	if len(b) < 4 {
		return nil, nil, errXerial
	}
	n := binary.BigEndian.Uint32(b)
	b = b[4:]
	if uint64(n) > uint64(len(b)) {
		return nil, nil, errXerial
	}
	return b[:n], b[n:], nil
}

// decodeSnappyBlock appends one raw snappy block to dst.
func decodeSnappyBlock(block, dst []byte, limit int) ([]byte, error) {
	n, err := s2.DecodedLen(block)
	if err != nil {
		return dst, corruptCodec(CodecSnappy, err)
	}
	if n > limit {
		return dst, tooLarge(CodecSnappy, limit)
	}
	dst = slices.Grow(dst, n)
	at := len(dst)
	out, err := s2.Decode(dst[at:at+n], block)
	if err != nil {
		return dst, corruptCodec(CodecSnappy, err)
	}
	if len(out) != n {
		return dst, corruptCodec(CodecSnappy, errors.New("snappy block length mismatch"))
	}
	if n > 0 && &out[0] != &dst[at : at+n][0] {
		copy(dst[at:at+n], out) // s2 decodes in place given the room; be safe if not
	}
	return dst[:at+n], nil
}

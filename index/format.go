package index

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// Version is the index file format version this package writes and reads.
const Version = 1

// File layout (all integers big-endian):
//
//	magic      [4]byte  "SOIX" (offset index) or "STIX" (time index)
//	version    uint16
//	entrySize  uint16   8 (offset) or 12 (time)
//	baseOffset int64    the segment's base offset
//	count      uint32   number of entries
//	entries    count * entrySize
//	crc        uint32   CRC-32C (Castagnoli) of everything before it
const (
	headerSize  = 20
	trailerSize = 4
)

var (
	offsetMagic = [4]byte{'S', 'O', 'I', 'X'}
	timeMagic   = [4]byte{'S', 'T', 'I', 'X'}
	castagnoli  = crc32.MakeTable(crc32.Castagnoli)
)

// ErrCorrupt is wrapped by every decode error other than a VersionError.
var ErrCorrupt = errors.New("corrupt index")

// VersionError reports an index file written in a format version this code
// does not know. Callers add the file name.
type VersionError struct {
	Kind    string // "offset" or "time"
	Version uint16
}

func (e *VersionError) Error() string {
	return fmt.Sprintf("unsupported %s index format version %d (this build reads version %d)", e.Kind, e.Version, Version)
}

func appendHeader(dst []byte, magic [4]byte, entrySize int, base int64, count int) []byte {
	dst = append(dst, magic[:]...)
	dst = binary.BigEndian.AppendUint16(dst, Version)
	dst = binary.BigEndian.AppendUint16(dst, uint16(entrySize))
	dst = binary.BigEndian.AppendUint64(dst, uint64(base))
	return binary.BigEndian.AppendUint32(dst, uint32(count))
}

func appendTrailer(dst []byte, start int) []byte {
	return binary.BigEndian.AppendUint32(dst, crc32.Checksum(dst[start:], castagnoli))
}

// decodeFrame checks magic, version, size and CRC and returns the base offset
// and the entry bytes.
func decodeFrame(b []byte, magic [4]byte, kind string, entrySize int) (int64, []byte, error) {
	if len(b) < 6 {
		return 0, nil, fmt.Errorf("%w: %s index of %d bytes is shorter than its header", ErrCorrupt, kind, len(b))
	}
	if [4]byte(b[:4]) != magic {
		return 0, nil, fmt.Errorf("%w: bad %s index magic %q", ErrCorrupt, kind, b[:4])
	}
	if v := binary.BigEndian.Uint16(b[4:]); v != Version {
		return 0, nil, &VersionError{Kind: kind, Version: v}
	}
	if len(b) < headerSize+trailerSize {
		return 0, nil, fmt.Errorf("%w: %s index of %d bytes is shorter than its header", ErrCorrupt, kind, len(b))
	}
	if es := binary.BigEndian.Uint16(b[6:]); int(es) != entrySize {
		return 0, nil, fmt.Errorf("%w: %s index entry size %d, want %d", ErrCorrupt, kind, es, entrySize)
	}
	base := int64(binary.BigEndian.Uint64(b[8:]))
	count := int64(binary.BigEndian.Uint32(b[16:]))
	if want := headerSize + count*int64(entrySize) + trailerSize; int64(len(b)) != want {
		return 0, nil, fmt.Errorf("%w: %s index is %d bytes, header says %d", ErrCorrupt, kind, len(b), want)
	}
	body := b[:len(b)-trailerSize]
	if got, want := crc32.Checksum(body, castagnoli), binary.BigEndian.Uint32(b[len(body):]); got != want {
		return 0, nil, fmt.Errorf("%w: %s index checksum %08x, want %08x", ErrCorrupt, kind, got, want)
	}
	return base, body[headerSize:], nil
}

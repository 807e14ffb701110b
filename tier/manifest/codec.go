package manifest

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
)

// Format version. A reader refuses another major version. A higher minor
// version only appends fields at the end of length-prefixed records, which
// readers of a lower minor version skip.
//
// 1.0: the first format. 1.1 appends the cleaner point to the header record.
const (
	VersionMajor = 1
	VersionMinor = 1
)

// Encoding (docs/manifests.md has the full table):
//
//	magic   "SMNF"
//	major   uint16 big-endian
//	minor   uint16 big-endian
//	header  record
//	n       uvarint, then n entry records
//	d       uvarint, then d deleted records
//	crc     uint32 big-endian, CRC-32C (Castagnoli) of everything before it
//
// A record is a uvarint byte length followed by its fields. Integers inside
// records are unsigned varints unless noted (timestamps are signed varints).
var (
	magic      = [4]byte{'S', 'M', 'N', 'F'}
	castagnoli = crc32.MakeTable(crc32.Castagnoli)
)

const (
	preambleSize = 8 // magic, major, minor
	crcSize      = 4
)

// ErrCorrupt is wrapped by Decode errors about bytes that are not a
// well-formed manifest encoding (bad magic, checksum, truncation).
var ErrCorrupt = errors.New("corrupt manifest")

// VersionError reports a manifest written in a major format version this
// build cannot read. Callers add the object key.
type VersionError struct {
	Major, Minor uint16
}

func (e *VersionError) Error() string {
	return fmt.Sprintf("unsupported manifest format version %d.%d (this build reads major version %d)", e.Major, e.Minor, VersionMajor)
}

// Encode validates m and returns its encoding.
func Encode(m *Manifest) ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return encode(m, VersionMinor, nil), nil
}

// encode encodes m without validating it, in format 1.minor: the fields a
// minor version added are written from that version on (the cleaner point
// is lost at minor 0). Tests pass an older minor version to write as an
// older build did, or a newer one and extra bytes to append to every
// record, as a newer writer would.
func encode(m *Manifest, minor uint16, extra []byte) []byte {
	b := make([]byte, 0, 64+len(m.Entries)*64+len(m.Deleted)*24)
	b = append(b, magic[:]...)
	b = binary.BigEndian.AppendUint16(b, VersionMajor)
	b = binary.BigEndian.AppendUint16(b, minor)

	var rec []byte
	rec = append(rec, m.Topic[:]...)
	rec = binary.AppendUvarint(rec, uint64(m.Partition))
	rec = binary.AppendUvarint(rec, uint64(m.Epoch))
	rec = binary.AppendUvarint(rec, uint64(m.Seq))
	rec = binary.AppendUvarint(rec, uint64(m.Prev.Epoch))
	rec = binary.AppendUvarint(rec, uint64(m.Prev.Seq))
	rec = binary.AppendVarint(rec, m.CreatedMs)
	rec = binary.AppendUvarint(rec, uint64(m.LogStartOffset))
	if minor >= 1 {
		rec = binary.AppendUvarint(rec, uint64(m.CleanerPoint))
	}
	b = appendRecord(b, append(rec, extra...))

	b = binary.AppendUvarint(b, uint64(len(m.Entries)))
	for _, e := range m.Entries {
		rec = appendName(rec[:0], e.Key)
		rec = binary.AppendUvarint(rec, uint64(e.NextOffset-e.BaseOffset))
		rec = binary.AppendUvarint(rec, uint64(e.RecordCount))
		rec = binary.AppendUvarint(rec, uint64(e.StoredSize))
		rec = binary.AppendUvarint(rec, uint64(e.RawSize))
		rec = binary.AppendVarint(rec, e.FirstTimestamp)
		rec = binary.AppendVarint(rec, e.MaxTimestamp)
		rec = binary.AppendVarint(rec, e.CreatedMs)
		rec = binary.AppendUvarint(rec, uint64(len(e.Epochs)))
		for _, es := range e.Epochs {
			rec = binary.AppendUvarint(rec, uint64(es.Epoch))
			rec = binary.AppendUvarint(rec, uint64(es.StartOffset-e.BaseOffset))
		}
		b = appendRecord(b, append(rec, extra...))
	}

	b = binary.AppendUvarint(b, uint64(len(m.Deleted)))
	for _, d := range m.Deleted {
		rec = appendName(rec[:0], d.Key)
		rec = binary.AppendUvarint(rec, uint64(d.Size))
		rec = binary.AppendVarint(rec, d.RemovedMs)
		b = appendRecord(b, append(rec, extra...))
	}
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

// appendName appends the parts of a segment key that are not implied by the
// manifest: upload epoch, upload id (8 bytes) and base offset. Validate has
// checked that key parses.
func appendName(b []byte, key string) []byte {
	n, _ := ParseSegmentKey(key)
	b = binary.AppendUvarint(b, uint64(n.Epoch))
	var id [uploadIDLen / 2]byte
	_, _ = hex.Decode(id[:], []byte(n.UploadID))
	b = append(b, id[:]...)
	return binary.AppendUvarint(b, uint64(n.BaseOffset))
}

func appendRecord(b, rec []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(rec)))
	return append(b, rec...)
}

// Decode parses and validates an encoded manifest. Errors wrap ErrCorrupt or
// ErrInvalid, or are a *VersionError; callers add the object key.
func Decode(b []byte) (*Manifest, error) { return decode(b, VersionMinor) }

// decode is Decode as a build that knows minor versions up to known reads:
// fields of later minor versions are skipped. Tests use it to play an older
// reader.
func decode(b []byte, known uint16) (*Manifest, error) {
	if len(b) < preambleSize+crcSize {
		return nil, fmt.Errorf("%w: %d bytes is shorter than the smallest manifest", ErrCorrupt, len(b))
	}
	if [4]byte(b[:4]) != magic {
		return nil, fmt.Errorf("%w: bad magic %q", ErrCorrupt, b[:4])
	}
	major, minor := binary.BigEndian.Uint16(b[4:]), binary.BigEndian.Uint16(b[6:])
	if major != VersionMajor {
		return nil, &VersionError{Major: major, Minor: minor}
	}
	body := b[:len(b)-crcSize]
	if got, want := crc32.Checksum(body, castagnoli), binary.BigEndian.Uint32(b[len(body):]); got != want {
		return nil, fmt.Errorf("%w: checksum %08x, want %08x", ErrCorrupt, got, want)
	}
	d := decoder{b: body[preambleSize:], extra: minor > known}
	m := new(Manifest)

	h := d.record()
	copy(m.Topic[:], h.bytes(16))
	m.Partition = h.int32()
	m.Epoch = h.int32()
	m.Seq = h.int64()
	m.Prev = ManifestID{Epoch: h.int32(), Seq: h.int64()}
	m.CreatedMs = h.varint()
	m.LogStartOffset = h.int64()
	if min(minor, known) >= 1 {
		m.CleanerPoint = h.int64()
	}
	d.end(&h)

	if n := d.count(); n > 0 {
		m.Entries = make([]Entry, n)
	}
	for i := range m.Entries {
		r := d.record()
		e := &m.Entries[i]
		e.Key, e.UploadEpoch, e.BaseOffset = r.name(m)
		e.NextOffset = r.offset(e.BaseOffset)
		e.RecordCount = r.int64()
		e.StoredSize = r.int64()
		e.RawSize = r.int64()
		e.FirstTimestamp = r.varint()
		e.MaxTimestamp = r.varint()
		e.CreatedMs = r.varint()
		if n := r.count(); n > 0 {
			e.Epochs = make([]EpochStart, n)
		}
		for j := range e.Epochs {
			e.Epochs[j] = EpochStart{Epoch: r.int32(), StartOffset: r.offset(e.BaseOffset)}
		}
		d.end(&r)
	}

	if n := d.count(); n > 0 {
		m.Deleted = make([]Deleted, n)
	}
	for i := range m.Deleted {
		r := d.record()
		dl := &m.Deleted[i]
		dl.Key, _, _ = r.name(m)
		dl.Size = r.int64()
		dl.RemovedMs = r.varint()
		d.end(&r)
	}
	if d.err == nil && len(d.b) > 0 {
		d.fail("%d trailing bytes", len(d.b))
	}
	if d.err != nil {
		return nil, d.err
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return m, nil
}

// decoder reads varint fields; the first error sticks and later reads return
// zero values.
type decoder struct {
	b     []byte
	err   error
	extra bool // newer minor version: records may hold fields we skip
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, args...))
	}
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("truncated or overlong varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("truncated or overlong varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) int64() int64 {
	v := d.uvarint()
	if v > 1<<63-1 {
		d.fail("value %d out of range", v)
		return 0
	}
	return int64(v)
}

func (d *decoder) int32() int32 {
	v := d.uvarint()
	if v > 1<<31-1 {
		d.fail("value %d out of range", v)
		return 0
	}
	return int32(v)
}

// offset reads a delta from base.
func (d *decoder) offset(base int64) int64 {
	v := d.int64()
	if v > 1<<63-1-base {
		d.fail("offset overflows")
		return 0
	}
	return base + v
}

func (d *decoder) bytes(n int) []byte {
	if d.err != nil {
		return make([]byte, n)
	}
	if len(d.b) < n {
		d.fail("truncated")
		return make([]byte, n)
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

// count reads an element count; each element takes at least one byte, which
// bounds allocations by the input size.
func (d *decoder) count() int {
	v := d.uvarint()
	if v > uint64(len(d.b)) {
		d.fail("count %d exceeds the remaining %d bytes", v, len(d.b))
		return 0
	}
	return int(v)
}

// record returns a decoder over the next length-prefixed record.
func (d *decoder) record() decoder {
	n := d.count()
	r := decoder{b: d.bytes(n), err: d.err, extra: d.extra}
	return r
}

// end checks that r, a record of d, was consumed (or holds only fields of a
// newer minor version) and carries its error to d.
func (d *decoder) end(r *decoder) {
	switch {
	case r.err != nil:
		if d.err == nil {
			d.err = r.err
		}
	case len(r.b) > 0 && !r.extra:
		d.fail("%d unread bytes in a record", len(r.b))
	}
}

// name reads appendName's fields and returns the segment key of m's
// partition, its upload epoch and base offset.
func (d *decoder) name(m *Manifest) (string, int32, int64) {
	epoch := d.int32()
	id := hex.EncodeToString(d.bytes(uploadIDLen / 2))
	base := d.int64()
	if d.err != nil {
		return "", 0, 0
	}
	return m.SegmentName(epoch, base, id).Key(), epoch, base
}

package index

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
)

// Remote segment objects (format 1.0; docs/object-layout.md is the
// normative description). An object is
//
//	chunk 0 … chunk n-1 | footer | trailer (TrailerSize bytes)
//
// The trailer (all integers big-endian):
//
//	0   4  CRC-32C of trailer bytes 4..24
//	4   4  footer length
//	8   4  CRC-32C of the footer
//	12  2  major format version
//	14  2  minor format version
//	16  8  magic "STRATSEG"
//
// The last 12 bytes (versions and magic) keep their place in every future
// major version, so any reader can name the version it refuses.
//
// The footer is a section directory followed by the sections:
//
//	0   4  section count S
//	4   S × 12: type u16, flags u16 (0), offset u32 (from footer start), length u32
//	…   section payloads
const (
	// FormatMajor is the major version of the segment object format this
	// package writes and the only one it reads. A different major version
	// is refused with a *FormatVersionError.
	FormatMajor = 1
	// FormatMinor is the minor version written. Readers accept any minor
	// version of their major: minor versions only add sections, append
	// fields to sections, or grow entries (every array carries its entry
	// size), all of which older readers skip.
	FormatMinor = 0
	// TrailerSize is the size of the fixed trailer at the end of an object.
	TrailerSize = 24
	// MaxFooterSize bounds the footer length a reader accepts, so that a
	// corrupt trailer cannot make it allocate or fetch gigabytes.
	MaxFooterSize = 256 << 20
)

// TrailerMagic ends every segment object.
const TrailerMagic = "STRATSEG"

// Section types of the footer directory. Numbers are never reused.
const (
	SectionSummary          uint16 = 1 // required
	SectionChunkMap         uint16 = 2 // required
	SectionOffsetIndex      uint16 = 3 // missing: empty
	SectionTimeIndex        uint16 = 4 // missing: empty
	SectionProducerSnapshot uint16 = 5 // missing: no snapshot
	SectionAbortedTxns      uint16 = 6 // missing: empty
	// SectionKeyHashIndex is reserved for the compactor's key-hash index;
	// format 1.0 does not define its payload and readers skip it.
	SectionKeyHashIndex uint16 = 7
)

// Encoded sizes of the array entries format 1.0 writes. Readers accept
// larger entry sizes (later minor versions) and ignore the extra bytes.
const (
	dirEntrySize     = 12
	epochEntrySize   = 12
	chunkEntrySize   = 48
	abortedEntrySize = 24
)

// ErrFooterCorrupt is wrapped by every footer and trailer decode error other
// than a *FormatVersionError.
var ErrFooterCorrupt = errors.New("corrupt segment object footer")

// FormatVersionError reports a segment object written in a major format
// version this code does not read. Callers add the object's name.
type FormatVersionError struct {
	Major, Minor uint16
}

func (e *FormatVersionError) Error() string {
	return fmt.Sprintf("unsupported segment object format version %d.%d (this build reads major version %d)", e.Major, e.Minor, FormatMajor)
}

// Trailer is the fixed-size end of a segment object.
type Trailer struct {
	FooterLen    uint32
	FooterCRC    uint32
	Major, Minor uint16
}

// AppendEncode appends the TrailerSize-byte encoding of t to dst.
func (t Trailer) AppendEncode(dst []byte) []byte {
	start := len(dst)
	dst = binary.BigEndian.AppendUint32(dst, 0) // CRC, patched below
	dst = binary.BigEndian.AppendUint32(dst, t.FooterLen)
	dst = binary.BigEndian.AppendUint32(dst, t.FooterCRC)
	dst = binary.BigEndian.AppendUint16(dst, t.Major)
	dst = binary.BigEndian.AppendUint16(dst, t.Minor)
	dst = append(dst, TrailerMagic...)
	binary.BigEndian.PutUint32(dst[start:], crc32.Checksum(dst[start+4:], castagnoli))
	return dst
}

// DecodeTrailer decodes the trailer at the end of b (normally the last
// bytes of an object; only the last TrailerSize bytes are looked at). It
// checks the magic, then the major version (an unknown one gives a
// *FormatVersionError), then the trailer CRC and the footer length bound.
func DecodeTrailer(b []byte) (Trailer, error) {
	var t Trailer
	if len(b) < TrailerSize {
		return t, fmt.Errorf("%w: %d bytes is shorter than the %d-byte trailer", ErrFooterCorrupt, len(b), TrailerSize)
	}
	b = b[len(b)-TrailerSize:]
	if string(b[16:]) != TrailerMagic {
		return t, fmt.Errorf("%w: bad trailer magic %q (not a segment object?)", ErrFooterCorrupt, b[16:])
	}
	t.Major = binary.BigEndian.Uint16(b[12:])
	t.Minor = binary.BigEndian.Uint16(b[14:])
	if t.Major != FormatMajor {
		return t, &FormatVersionError{Major: t.Major, Minor: t.Minor}
	}
	if got, want := crc32.Checksum(b[4:], castagnoli), binary.BigEndian.Uint32(b); got != want {
		return t, fmt.Errorf("%w: trailer checksum %08x, want %08x", ErrFooterCorrupt, got, want)
	}
	t.FooterLen = binary.BigEndian.Uint32(b[4:])
	t.FooterCRC = binary.BigEndian.Uint32(b[8:])
	if t.FooterLen > MaxFooterSize {
		return t, fmt.Errorf("%w: footer length %d above the limit %d", ErrFooterCorrupt, t.FooterLen, MaxFooterSize)
	}
	return t, nil
}

// CheckFooter verifies that footer has the length and CRC the trailer
// records.
func (t Trailer) CheckFooter(footer []byte) error {
	if uint64(len(footer)) != uint64(t.FooterLen) {
		return fmt.Errorf("%w: footer is %d bytes, trailer says %d", ErrFooterCorrupt, len(footer), t.FooterLen)
	}
	if got := crc32.Checksum(footer, castagnoli); got != t.FooterCRC {
		return fmt.Errorf("%w: footer checksum %08x, want %08x", ErrFooterCorrupt, got, t.FooterCRC)
	}
	return nil
}

// EpochEntry says that leader epoch Epoch starts at StartOffset.
type EpochEntry struct {
	Epoch       int32
	StartOffset int64
}

// Summary is the footer's segment summary section.
type Summary struct {
	TopicID     [16]byte
	Partition   int32
	BaseOffset  int64 // base offset of the first batch
	NextOffset  int64 // last offset of the last batch + 1
	RecordCount int64 // sum of the batches' record counts
	BatchCount  int64
	// FirstTimestamp is the first batch's base timestamp (-1: none).
	FirstTimestamp int64
	// MaxTimestamp is the largest batch max timestamp (-1: none) and
	// MaxTimestampOffset the offset of the first record carrying it.
	MaxTimestamp       int64
	MaxTimestampOffset int64
	RawSize            int64 // bytes of all batches, uncompressed by us
	StoredSize         int64 // bytes of all chunks as stored: the footer's position
	CreatedMs          int64 // wall clock of the builder, ms since the epoch
	UploaderEpoch      int32 // leader epoch of the uploading broker
	// Epochs are the (leader epoch, start offset) pairs the segment spans,
	// both strictly increasing, starts within [BaseOffset, NextOffset).
	Epochs []EpochEntry
}

// Chunk describes one independently stored run of whole batches.
type Chunk struct {
	FirstOffset  int64 // base offset of the first batch
	LastOffset   int64 // last offset of the last batch
	Position     int64 // object position of the stored bytes
	StoredLen    uint32
	RawLen       uint32
	MaxTimestamp int64 // largest batch max timestamp in the chunk (-1: none)
	CRC          uint32
	// Codec is the chunk's compression, numbered as Kafka numbers codecs:
	// 0 none, 4 zstd. Writers of format 1.0 use only these two.
	Codec uint8
}

// AbortedTxn is an aborted transaction's range of one producer's batches.
type AbortedTxn struct {
	ProducerID  int64
	FirstOffset int64
	LastOffset  int64
}

// Footer is the decoded footer of a segment object.
type Footer struct {
	Summary Summary
	Chunks  []Chunk
	// Offsets maps batch offsets to positions in the concatenated raw
	// batches (Offsets.Base is Summary.BaseOffset): an entry every
	// index-interval bytes, on batch boundaries.
	Offsets OffsetIndex
	// Times holds (max timestamp so far, batch holding it) entries, as in
	// the local time index; Times.Base is Summary.BaseOffset.
	Times TimeIndex
	// ProducerSnapshot is the producer-state snapshot as of NextOffset, in
	// the format of ingest/producer (opaque here). Nil if none.
	ProducerSnapshot []byte
	Aborted          []AbortedTxn
}

// ObjectSize is the size of the object f belongs to, given the encoded
// footer length.
func (f *Footer) ObjectSize(footerLen int) int64 {
	return f.Summary.StoredSize + int64(footerLen) + TrailerSize
}

// ChunkRawStart returns the position of chunk i's first byte in the
// concatenated raw batches. It is O(i); readers that need it often cache
// the prefix sums.
func (f *Footer) ChunkRawStart(i int) int64 {
	var n int64
	for _, c := range f.Chunks[:i] {
		n += int64(c.RawLen)
	}
	return n
}

// AppendEncode appends the footer encoding of f (without the trailer) to
// dst. It encodes what it is given; Validate says whether that is a
// consistent footer.
func (f *Footer) AppendEncode(dst []byte) []byte {
	type section struct {
		typ  uint16
		body func([]byte) []byte
	}
	sections := []section{
		{SectionSummary, f.appendSummary},
		{SectionChunkMap, f.appendChunks},
		{SectionOffsetIndex, f.appendOffsets},
		{SectionTimeIndex, f.appendTimes},
		{SectionProducerSnapshot, f.appendSnapshot},
		{SectionAbortedTxns, f.appendAborted},
	}
	start := len(dst)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(sections)))
	dirAt := len(dst)
	dst = append(dst, make([]byte, len(sections)*dirEntrySize)...)
	for i, s := range sections {
		from := len(dst)
		dst = s.body(dst)
		e := dst[dirAt+i*dirEntrySize:]
		binary.BigEndian.PutUint16(e, s.typ)
		binary.BigEndian.PutUint16(e[2:], 0)
		binary.BigEndian.PutUint32(e[4:], uint32(from-start))
		binary.BigEndian.PutUint32(e[8:], uint32(len(dst)-from))
	}
	return dst
}

// AppendTail appends the footer and the trailer (current format version)
// to dst: everything that follows the chunks in an object.
func (f *Footer) AppendTail(dst []byte) []byte {
	start := len(dst)
	dst = f.AppendEncode(dst)
	footer := dst[start:]
	t := Trailer{FooterLen: uint32(len(footer)), FooterCRC: crc32.Checksum(footer, castagnoli), Major: FormatMajor, Minor: FormatMinor}
	return t.AppendEncode(dst)
}

func appendArrayHeader(dst []byte, n, entrySize int) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(n))
	return binary.BigEndian.AppendUint16(dst, uint16(entrySize))
}

func (f *Footer) appendSummary(dst []byte) []byte {
	s := &f.Summary
	be := binary.BigEndian
	dst = append(dst, s.TopicID[:]...)
	dst = be.AppendUint32(dst, uint32(s.Partition))
	for _, v := range []int64{s.BaseOffset, s.NextOffset, s.RecordCount, s.BatchCount, s.FirstTimestamp,
		s.MaxTimestamp, s.MaxTimestampOffset, s.RawSize, s.StoredSize, s.CreatedMs} {
		dst = be.AppendUint64(dst, uint64(v))
	}
	dst = be.AppendUint32(dst, uint32(s.UploaderEpoch))
	dst = be.AppendUint64(dst, 0) // reserved (flags), 0 in 1.0
	dst = appendArrayHeader(dst, len(s.Epochs), epochEntrySize)
	for _, e := range s.Epochs {
		dst = be.AppendUint32(dst, uint32(e.Epoch))
		dst = be.AppendUint64(dst, uint64(e.StartOffset))
	}
	return dst
}

func (f *Footer) appendChunks(dst []byte) []byte {
	be := binary.BigEndian
	dst = appendArrayHeader(dst, len(f.Chunks), chunkEntrySize)
	for _, c := range f.Chunks {
		dst = be.AppendUint64(dst, uint64(c.FirstOffset))
		dst = be.AppendUint64(dst, uint64(c.LastOffset))
		dst = be.AppendUint64(dst, uint64(c.Position))
		dst = be.AppendUint32(dst, c.StoredLen)
		dst = be.AppendUint32(dst, c.RawLen)
		dst = be.AppendUint64(dst, uint64(c.MaxTimestamp))
		dst = be.AppendUint32(dst, c.CRC)
		dst = append(dst, c.Codec, 0, 0, 0)
	}
	return dst
}

func (f *Footer) appendOffsets(dst []byte) []byte {
	dst = appendArrayHeader(dst, len(f.Offsets.Entries), OffsetEntrySize)
	for _, e := range f.Offsets.Entries {
		dst = binary.BigEndian.AppendUint32(dst, e.RelOffset)
		dst = binary.BigEndian.AppendUint32(dst, e.Position)
	}
	return dst
}

func (f *Footer) appendTimes(dst []byte) []byte {
	dst = appendArrayHeader(dst, len(f.Times.Entries), TimeEntrySize)
	for _, e := range f.Times.Entries {
		dst = binary.BigEndian.AppendUint64(dst, uint64(e.Timestamp))
		dst = binary.BigEndian.AppendUint32(dst, e.RelOffset)
	}
	return dst
}

func (f *Footer) appendSnapshot(dst []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(f.ProducerSnapshot)))
	return append(dst, f.ProducerSnapshot...)
}

func (f *Footer) appendAborted(dst []byte) []byte {
	dst = appendArrayHeader(dst, len(f.Aborted), abortedEntrySize)
	for _, a := range f.Aborted {
		dst = binary.BigEndian.AppendUint64(dst, uint64(a.ProducerID))
		dst = binary.BigEndian.AppendUint64(dst, uint64(a.FirstOffset))
		dst = binary.BigEndian.AppendUint64(dst, uint64(a.LastOffset))
	}
	return dst
}

// DecodeFooter decodes footer bytes (as checked by Trailer.CheckFooter). It
// never panics and never allocates more than a small multiple of len(b):
// every count is checked against the bytes present. Unknown section types
// and bytes after the known fields of a section or entry are skipped
// (later minor versions). The decoded footer is validated (see Validate);
// every error wraps ErrFooterCorrupt.
func DecodeFooter(b []byte) (*Footer, error) {
	if len(b) < 4 {
		return nil, fmt.Errorf("%w: %d bytes is shorter than the section directory", ErrFooterCorrupt, len(b))
	}
	n := uint64(binary.BigEndian.Uint32(b))
	if n > uint64(len(b)-4)/dirEntrySize {
		return nil, fmt.Errorf("%w: %d sections cannot fit in %d bytes", ErrFooterCorrupt, n, len(b))
	}
	f := &Footer{}
	seen := make(map[uint16]bool, n)
	for i := range int(n) {
		e := b[4+i*dirEntrySize:]
		typ := binary.BigEndian.Uint16(e)
		off, length := uint64(binary.BigEndian.Uint32(e[4:])), uint64(binary.BigEndian.Uint32(e[8:]))
		if off+length > uint64(len(b)) || off < 4+n*dirEntrySize {
			return nil, fmt.Errorf("%w: section %d (type %d) at [%d, %d) outside the footer's %d bytes", ErrFooterCorrupt, i, typ, off, off+length, len(b))
		}
		if seen[typ] {
			return nil, fmt.Errorf("%w: section type %d appears twice", ErrFooterCorrupt, typ)
		}
		seen[typ] = true
		r := &reader{b: b[off : off+length]}
		switch typ {
		case SectionSummary:
			f.decodeSummary(r)
		case SectionChunkMap:
			f.decodeChunks(r)
		case SectionOffsetIndex:
			f.decodeOffsets(r)
		case SectionTimeIndex:
			f.decodeTimes(r)
		case SectionProducerSnapshot:
			if l := r.u32(); r.err == nil {
				if s := r.bytes(int(l)); len(s) > 0 {
					f.ProducerSnapshot = append([]byte(nil), s...)
				}
			}
		case SectionAbortedTxns:
			f.decodeAborted(r)
		default:
			continue // a later minor version's section
		}
		if r.err != nil {
			return nil, fmt.Errorf("%w: section type %d: %w", ErrFooterCorrupt, typ, r.err)
		}
	}
	for _, typ := range []uint16{SectionSummary, SectionChunkMap} {
		if !seen[typ] {
			return nil, fmt.Errorf("%w: required section type %d missing", ErrFooterCorrupt, typ)
		}
	}
	f.Offsets.Base, f.Times.Base = f.Summary.BaseOffset, f.Summary.BaseOffset
	if err := f.Validate(); err != nil {
		return nil, err
	}
	return f, nil
}

// reader is a bounds-checked cursor; the first short read sets err and
// makes every later read return zeros.
type reader struct {
	b   []byte
	err error
}

func (r *reader) bytes(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > len(r.b) {
		r.err = fmt.Errorf("%d bytes wanted, %d left", n, len(r.b))
		return nil
	}
	s := r.b[:n]
	r.b = r.b[n:]
	return s
}

func (r *reader) u16() uint16 {
	if s := r.bytes(2); s != nil {
		return binary.BigEndian.Uint16(s)
	}
	return 0
}

func (r *reader) u32() uint32 {
	if s := r.bytes(4); s != nil {
		return binary.BigEndian.Uint32(s)
	}
	return 0
}

func (r *reader) i64() int64 {
	if s := r.bytes(8); s != nil {
		return int64(binary.BigEndian.Uint64(s))
	}
	return 0
}

// array reads an array header and returns the entries' bytes (each
// entrySize long, at least min) and the count, checking the count against
// the bytes present.
func (r *reader) array(what string, minSize int) (entries []byte, count, entrySize int) {
	n, es := uint64(r.u32()), int(r.u16())
	if r.err != nil {
		return nil, 0, 0
	}
	if es < minSize {
		r.err = fmt.Errorf("%s entry size %d, at least %d expected", what, es, minSize)
		return nil, 0, 0
	}
	if n > uint64(len(r.b)/es) {
		r.err = fmt.Errorf("%d %s entries of %d bytes cannot fit in %d bytes", n, what, es, len(r.b))
		return nil, 0, 0
	}
	return r.bytes(int(n) * es), int(n), es
}

func (f *Footer) decodeSummary(r *reader) {
	s := &f.Summary
	copy(s.TopicID[:], r.bytes(16))
	s.Partition = int32(r.u32())
	for _, p := range []*int64{&s.BaseOffset, &s.NextOffset, &s.RecordCount, &s.BatchCount, &s.FirstTimestamp,
		&s.MaxTimestamp, &s.MaxTimestampOffset, &s.RawSize, &s.StoredSize, &s.CreatedMs} {
		*p = r.i64()
	}
	s.UploaderEpoch = int32(r.u32())
	r.i64() // reserved
	b, n, es := r.array("epoch", epochEntrySize)
	if n > 0 {
		s.Epochs = make([]EpochEntry, n)
	}
	for i := range n {
		e := b[i*es:]
		s.Epochs[i] = EpochEntry{Epoch: int32(binary.BigEndian.Uint32(e)), StartOffset: int64(binary.BigEndian.Uint64(e[4:]))}
	}
}

func (f *Footer) decodeChunks(r *reader) {
	b, n, es := r.array("chunk", chunkEntrySize)
	if n > 0 {
		f.Chunks = make([]Chunk, n)
	}
	be := binary.BigEndian
	for i := range n {
		e := b[i*es:]
		f.Chunks[i] = Chunk{
			FirstOffset:  int64(be.Uint64(e)),
			LastOffset:   int64(be.Uint64(e[8:])),
			Position:     int64(be.Uint64(e[16:])),
			StoredLen:    be.Uint32(e[24:]),
			RawLen:       be.Uint32(e[28:]),
			MaxTimestamp: int64(be.Uint64(e[32:])),
			CRC:          be.Uint32(e[40:]),
			Codec:        e[44],
		}
	}
}

func (f *Footer) decodeOffsets(r *reader) {
	b, n, es := r.array("offset index", OffsetEntrySize)
	if n > 0 {
		f.Offsets.Entries = make([]OffsetEntry, n)
	}
	for i := range n {
		e := b[i*es:]
		f.Offsets.Entries[i] = OffsetEntry{RelOffset: binary.BigEndian.Uint32(e), Position: binary.BigEndian.Uint32(e[4:])}
	}
}

func (f *Footer) decodeTimes(r *reader) {
	b, n, es := r.array("time index", TimeEntrySize)
	if n > 0 {
		f.Times.Entries = make([]TimeEntry, n)
	}
	for i := range n {
		e := b[i*es:]
		f.Times.Entries[i] = TimeEntry{Timestamp: int64(binary.BigEndian.Uint64(e)), RelOffset: binary.BigEndian.Uint32(e[8:])}
	}
}

func (f *Footer) decodeAborted(r *reader) {
	b, n, es := r.array("aborted transaction", abortedEntrySize)
	if n > 0 {
		f.Aborted = make([]AbortedTxn, n)
	}
	be := binary.BigEndian
	for i := range n {
		e := b[i*es:]
		f.Aborted[i] = AbortedTxn{ProducerID: int64(be.Uint64(e)), FirstOffset: int64(be.Uint64(e[8:])), LastOffset: int64(be.Uint64(e[16:]))}
	}
}

// Validate checks the invariants every reader relies on; DecodeFooter calls
// it, and writers should before uploading. Errors wrap ErrFooterCorrupt.
//
//   - at least one chunk; chunks tile [0, StoredSize) in order; offsets
//     increase strictly within and across chunks; the first chunk starts at
//     BaseOffset and the last ends at NextOffset-1; raw lengths sum to
//     RawSize, which fits in a u32 as do NextOffset-BaseOffset;
//   - index entries strictly increasing, inside the segment; time index
//     timestamps strictly increasing;
//   - epochs strictly increasing in epoch and start, starts inside the
//     segment; aborted ranges inside the segment, first <= last.
func (f *Footer) Validate() error {
	s := &f.Summary
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrFooterCorrupt, fmt.Sprintf(format, args...))
	}
	if len(f.Chunks) == 0 {
		return bad("no chunks")
	}
	if s.BaseOffset < 0 || s.NextOffset <= s.BaseOffset || s.NextOffset-s.BaseOffset > math.MaxUint32 {
		return bad("offsets [%d, %d) out of range", s.BaseOffset, s.NextOffset)
	}
	if s.RawSize <= 0 || s.RawSize > math.MaxUint32 || s.StoredSize <= 0 || s.StoredSize > math.MaxInt64/2 {
		return bad("sizes raw %d, stored %d out of range", s.RawSize, s.StoredSize)
	}
	if s.RecordCount < 0 || s.BatchCount < int64(len(f.Chunks)) {
		return bad("%d records in %d batches for %d chunks", s.RecordCount, s.BatchCount, len(f.Chunks))
	}
	if s.MaxTimestamp >= 0 && (s.MaxTimestampOffset < s.BaseOffset || s.MaxTimestampOffset >= s.NextOffset) {
		return bad("max timestamp offset %d outside the segment", s.MaxTimestampOffset)
	}
	var pos, raw int64
	prev := s.BaseOffset - 1
	for i, c := range f.Chunks {
		if c.Position != pos || c.StoredLen == 0 || c.RawLen == 0 {
			return bad("chunk %d at %d (%d stored, %d raw bytes), expected at %d", i, c.Position, c.StoredLen, c.RawLen, pos)
		}
		if c.FirstOffset <= prev || c.LastOffset < c.FirstOffset || (i == 0 && c.FirstOffset != s.BaseOffset) {
			return bad("chunk %d offsets [%d, %d] after %d", i, c.FirstOffset, c.LastOffset, prev)
		}
		if c.MaxTimestamp > s.MaxTimestamp {
			return bad("chunk %d max timestamp %d above the segment's %d", i, c.MaxTimestamp, s.MaxTimestamp)
		}
		pos += int64(c.StoredLen)
		raw += int64(c.RawLen)
		prev = c.LastOffset
	}
	if prev != s.NextOffset-1 || pos != s.StoredSize || raw != s.RawSize {
		return bad("chunks end at offset %d, %d stored and %d raw bytes; summary says %d, %d, %d",
			prev, pos, raw, s.NextOffset-1, s.StoredSize, s.RawSize)
	}
	span := s.NextOffset - s.BaseOffset
	for i, e := range f.Offsets.Entries {
		if (i > 0 && (e.RelOffset <= f.Offsets.Entries[i-1].RelOffset || e.Position <= f.Offsets.Entries[i-1].Position)) ||
			int64(e.RelOffset) >= span || int64(e.Position) >= s.RawSize {
			return bad("offset index entry %d (%d, %d) out of order or outside the segment", i, e.RelOffset, e.Position)
		}
	}
	for i, e := range f.Times.Entries {
		if (i > 0 && (e.Timestamp <= f.Times.Entries[i-1].Timestamp || e.RelOffset <= f.Times.Entries[i-1].RelOffset)) ||
			int64(e.RelOffset) >= span || e.Timestamp > s.MaxTimestamp {
			return bad("time index entry %d (%d, %d) out of order or outside the segment", i, e.Timestamp, e.RelOffset)
		}
	}
	for i, e := range s.Epochs {
		if e.Epoch < 0 || e.StartOffset < s.BaseOffset || e.StartOffset >= s.NextOffset ||
			(i > 0 && (e.Epoch <= s.Epochs[i-1].Epoch || e.StartOffset <= s.Epochs[i-1].StartOffset)) {
			return bad("epoch entry %d (%d, %d) out of order or outside the segment", i, e.Epoch, e.StartOffset)
		}
	}
	for i, a := range f.Aborted {
		if a.FirstOffset > a.LastOffset || a.FirstOffset < s.BaseOffset || a.LastOffset >= s.NextOffset {
			return bad("aborted transaction %d [%d, %d] outside the segment", i, a.FirstOffset, a.LastOffset)
		}
	}
	return nil
}

package segment

import (
	"bufio"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/strata-io/strata/index"
	"github.com/strata-io/strata/ingest/batch"
	"github.com/strata-io/strata/ingest/producer"
)

// Defaults for BuildOptions.
const (
	DefaultChunkTarget   = 4 << 20
	DefaultIndexInterval = 4096
	// MaxChunkTarget bounds ChunkTarget (chunk lengths are u32 and a reader
	// holds one chunk in memory).
	MaxChunkTarget = 256 << 20
)

// A chunk is stored zstd-compressed only if that saves at least 1/minSavings
// of its raw size (6.25%); otherwise (producer-compressed or random data) it
// is stored raw, so readers do not pay decompression for nothing.
const minSavings = 16

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Errors returned by Build and Reader, wrapped with details.
var (
	// ErrCorrupt: the source segment (Build) or the object (Reader) is not
	// what it must be: bad batch framing or CRC, a chunk CRC mismatch, a
	// truncated object, a footer that does not decode.
	ErrCorrupt = errors.New("corrupt segment")
	// ErrEmpty: Build was given no batches. An empty segment is never
	// uploaded.
	ErrEmpty = errors.New("empty segment")
)

// BuildOptions describe the object Build writes.
type BuildOptions struct {
	TopicID   [16]byte
	Partition int32
	// ChunkTarget is the raw size at which a chunk is closed (default
	// DefaultChunkTarget). Chunks end on batch boundaries; a batch larger
	// than the target is a chunk of its own.
	ChunkTarget int
	// IndexInterval is index.interval.bytes: raw bytes between offset index
	// entries (default DefaultIndexInterval).
	IndexInterval int
	// Epochs is the partition's leader-epoch history (any superset of the
	// segment's range; entries are clamped to it). Nil: derived from the
	// batches' partitionLeaderEpoch fields.
	Epochs []index.EpochEntry
	// Aborted are the partition's aborted transactions (any superset of
	// those overlapping the segment, ordered or not): Build clips each to
	// the segment's offsets [base, next-1], drops those outside it and
	// writes the rest, ordered by first offset, to the footer's
	// aborted-transaction section. A transaction that spans segments thus
	// has a piece in each; readers merge them (tier.Partition.AbortedTxns).
	// LastOffset is the offset of the transaction's abort marker. Nil:
	// none.
	Aborted []index.AbortedTxn
	// ProducerSnapshot is producer.(*State).AppendSnapshot taken at the
	// segment's next offset; Build checks that it decodes and is taken at
	// that offset. Nil: none.
	ProducerSnapshot []byte
	// UploaderEpoch is the leader epoch of the uploading broker.
	UploaderEpoch int32
	// Now is the creation time recorded in the summary (zero: time.Now()).
	Now time.Time
}

// BuildResult is what Build wrote.
type BuildResult struct {
	Footer *index.Footer
	Size   int64 // object size in bytes
}

// bufPool holds chunk and compression buffers between builds. Buffers far
// above the default chunk size are not kept.
var bufPool = sync.Pool{New: func() any { return new([]byte) }}

const maxPooledBuf = 2 * DefaultChunkTarget

func getBuf() *[]byte { return bufPool.Get().(*[]byte) }

func putBuf(p *[]byte) {
	if cap(*p) <= maxPooledBuf {
		*p = (*p)[:0]
		bufPool.Put(p)
	}
}

// Build reads concatenated Kafka v2 record batches from src (a sealed local
// segment's bytes after its file header) until EOF and writes one segment
// object to w. It holds at most one chunk (plus its compressed form) in
// memory. Every batch's framing, magic and CRC-32C are checked and offsets
// must increase strictly from batch to batch; any failure aborts the build
// with an error wrapping ErrCorrupt, and what was written to w so far must
// be discarded. No batches gives ErrEmpty. Errors from w are returned
// wrapped.
func Build(w io.Writer, src io.Reader, opts BuildOptions) (BuildResult, error) {
	if opts.ChunkTarget <= 0 {
		opts.ChunkTarget = DefaultChunkTarget
	}
	if opts.ChunkTarget > MaxChunkTarget {
		return BuildResult{}, fmt.Errorf("build segment: chunk target %d above %d", opts.ChunkTarget, MaxChunkTarget)
	}
	if opts.IndexInterval <= 0 {
		opts.IndexInterval = DefaultIndexInterval
	}
	if opts.Now.IsZero() {
		opts.Now = time.Now()
	}
	chunk, packed := getBuf(), getBuf()
	defer putBuf(chunk)
	defer putBuf(packed)
	b := &builder{
		opts:   opts,
		w:      w,
		src:    bufio.NewReaderSize(src, 64<<10),
		chunk:  chunk,
		packed: packed,
		maxPos: -1,
	}
	b.f.Summary = index.Summary{
		TopicID: opts.TopicID, Partition: opts.Partition, FirstTimestamp: -1, MaxTimestamp: -1,
		MaxTimestampOffset: -1, CreatedMs: opts.Now.UnixMilli(), UploaderEpoch: opts.UploaderEpoch,
	}
	if err := b.run(); err != nil {
		return BuildResult{}, fmt.Errorf("build segment: %w", err)
	}
	return BuildResult{Footer: &b.f, Size: b.written}, nil
}

type builder struct {
	opts    BuildOptions
	w       io.Writer
	src     *bufio.Reader
	chunk   *[]byte // raw batches of the open chunk
	packed  *[]byte // compression output
	written int64
	f       index.Footer

	raw        int64 // raw bytes before the open chunk
	sinceIndex int
	prevLast   int64
	epochs     []index.EpochEntry // derived from the batches
	// maxBatch is the base offset of the batch holding the segment's max
	// timestamp (time index entries name batches); maxPos is its position
	// in the open chunk, -1 once the exact record offset is resolved.
	maxBatch int64
	maxPos   int
	chunkTs  int64
}

func (b *builder) run() error {
	var hdr [batch.LogOverhead]byte
	for n := 0; ; n++ {
		if _, err := io.ReadFull(b.src, hdr[:]); err == io.EOF {
			break
		} else if err != nil {
			return b.readErr(n, err)
		}
		length := int64(int32(binary.BigEndian.Uint32(hdr[8:])))
		if length < batch.HeaderSize-batch.LogOverhead {
			return fmt.Errorf("%w: batch %d: length %d smaller than the batch header", ErrCorrupt, n, length)
		}
		size := batch.LogOverhead + length
		if b.raw+int64(len(*b.chunk))+size > math.MaxUint32 {
			return fmt.Errorf("%w: segment larger than %d bytes, the format's limit", ErrCorrupt, int64(math.MaxUint32))
		}
		if len(*b.chunk) > 0 && len(*b.chunk)+int(size) > b.opts.ChunkTarget {
			if err := b.flush(); err != nil {
				return err
			}
		}
		pos := len(*b.chunk)
		*b.chunk = append(*b.chunk, hdr[:]...)
		if err := readN(b.src, b.chunk, int(length)); err != nil {
			return b.readErr(n, err)
		}
		if err := b.add(n, (*b.chunk)[pos:], pos); err != nil {
			return err
		}
		if len(*b.chunk) >= b.opts.ChunkTarget {
			if err := b.flush(); err != nil {
				return err
			}
		}
	}
	if len(*b.chunk) > 0 {
		if err := b.flush(); err != nil {
			return err
		}
	}
	if b.f.Summary.BatchCount == 0 {
		return ErrEmpty
	}
	return b.finish()
}

func (b *builder) readErr(n int, err error) error {
	if err == io.ErrUnexpectedEOF || err == io.EOF {
		return fmt.Errorf("%w: batch %d truncated", ErrCorrupt, n)
	}
	return fmt.Errorf("read batch %d: %w", n, err)
}

// readN appends exactly n bytes from r to *dst, growing it as data arrives
// so that a corrupt length cannot cause a huge allocation up front.
func readN(r io.Reader, dst *[]byte, n int) error {
	for n > 0 {
		step := min(n, 1<<20)
		b := *dst
		if cap(b)-len(b) < step {
			nb := make([]byte, len(b), max(2*cap(b), len(b)+step))
			copy(nb, b)
			b = nb
		}
		if _, err := io.ReadFull(r, b[len(b):len(b)+step]); err != nil {
			return err
		}
		*dst = b[:len(b)+step]
		n -= step
	}
	return nil
}

// add checks one batch, now at pos in the open chunk, and records it.
func (b *builder) add(n int, bt []byte, pos int) error {
	h, err := batch.ParseHeader(bt)
	if err != nil {
		return fmt.Errorf("%w: batch %d: %w", ErrCorrupt, n, err)
	}
	if got := crc32.Checksum(bt[21:], castagnoli); got != h.CRC {
		return fmt.Errorf("%w: batch %d at offset %d: CRC %08x, header says %08x", ErrCorrupt, n, h.BaseOffset, got, h.CRC)
	}
	if h.LastOffsetDelta < 0 || h.RecordCount < 0 || h.BaseOffset < 0 {
		return fmt.Errorf("%w: batch %d: base offset %d, last offset delta %d, record count %d", ErrCorrupt, n, h.BaseOffset, h.LastOffsetDelta, h.RecordCount)
	}
	s := &b.f.Summary
	if n == 0 {
		s.BaseOffset, s.FirstTimestamp = h.BaseOffset, h.BaseTimestamp
		b.f.Offsets.Base, b.f.Times.Base = h.BaseOffset, h.BaseOffset
	} else if h.BaseOffset <= b.prevLast {
		return fmt.Errorf("%w: batch %d: base offset %d not above the previous last offset %d", ErrCorrupt, n, h.BaseOffset, b.prevLast)
	}
	if h.LastOffset()-s.BaseOffset >= math.MaxUint32 {
		return fmt.Errorf("%w: batch %d: offset %d more than 2^32 above the segment base %d", ErrCorrupt, n, h.LastOffset(), s.BaseOffset)
	}
	if e := h.PartitionLeaderEpoch; e >= 0 && (len(b.epochs) == 0 || e > b.epochs[len(b.epochs)-1].Epoch) {
		b.epochs = append(b.epochs, index.EpochEntry{Epoch: e, StartOffset: h.BaseOffset})
	}
	rel := uint32(h.BaseOffset - s.BaseOffset)
	// An empty batch (compaction keeps a producer's last batch without its
	// records) holds no timestamp a lookup could land on.
	if h.RecordCount > 0 && h.MaxTimestamp > s.MaxTimestamp {
		s.MaxTimestamp, s.MaxTimestampOffset = h.MaxTimestamp, h.BaseOffset
		b.maxBatch, b.maxPos = h.BaseOffset, pos
	}
	if b.sinceIndex >= b.opts.IndexInterval {
		b.f.Offsets.Append(rel, uint32(b.raw+int64(pos)))
		b.f.Times.Append(s.MaxTimestamp, uint32(b.maxBatch-s.BaseOffset))
		b.sinceIndex = 0
	}
	b.sinceIndex += len(bt)
	ts := h.MaxTimestamp
	if h.RecordCount == 0 {
		ts = -1
	}
	if pos == 0 {
		b.chunkTs = ts
		b.f.Chunks = append(b.f.Chunks, index.Chunk{FirstOffset: h.BaseOffset})
	}
	b.chunkTs = max(b.chunkTs, ts)
	s.BatchCount++
	s.RecordCount += int64(h.RecordCount)
	b.prevLast = h.LastOffset()
	return nil
}

// flush compresses and writes the open chunk.
func (b *builder) flush() error {
	raw := *b.chunk
	if b.maxPos >= 0 {
		// The segment's max timestamp so far is in this chunk: find the
		// exact record now, while the batch is in memory.
		off, _, err := batch.MaxTimestampRecord(raw[b.maxPos:])
		if err != nil {
			return fmt.Errorf("%w: batch at offset %d: %w", ErrCorrupt, b.f.Summary.MaxTimestampOffset, err)
		}
		b.f.Summary.MaxTimestampOffset = off
		b.maxPos = -1
	}
	stored, codec := raw, uint8(batch.CodecNone)
	if worthCompressing(raw, b.packed) {
		packed, err := batch.Compress(batch.CodecZstd, raw, (*b.packed)[:0])
		if err != nil {
			return err
		}
		*b.packed = packed
		if len(packed) <= len(raw)-len(raw)/minSavings {
			stored, codec = packed, batch.CodecZstd
		}
	}
	c := &b.f.Chunks[len(b.f.Chunks)-1]
	c.LastOffset = b.prevLast
	c.Position = b.written
	c.StoredLen, c.RawLen = uint32(len(stored)), uint32(len(raw))
	c.MaxTimestamp = b.chunkTs
	c.CRC = crc32.Checksum(stored, castagnoli)
	c.Codec = codec
	if err := b.write(stored); err != nil {
		return err
	}
	b.raw += int64(len(raw))
	*b.chunk = raw[:0]
	return nil
}

func (b *builder) write(p []byte) error {
	n, err := b.w.Write(p)
	b.written += int64(n)
	if err != nil {
		return fmt.Errorf("write object: %w", err)
	}
	return nil
}

// finish completes the summary and writes footer and trailer.
func (b *builder) finish() error {
	s := &b.f.Summary
	s.NextOffset = b.prevLast + 1
	s.RawSize, s.StoredSize = b.raw, b.written
	if s.MaxTimestamp >= 0 {
		b.f.Times.Append(s.MaxTimestamp, uint32(b.maxBatch-s.BaseOffset))
	} else {
		s.MaxTimestampOffset = -1
	}
	s.Epochs = b.epochs
	if b.opts.Epochs != nil {
		s.Epochs = clampEpochs(b.opts.Epochs, s.BaseOffset, s.NextOffset)
	}
	b.f.Aborted = clipAborted(b.opts.Aborted, s.BaseOffset, s.NextOffset)
	if len(b.opts.ProducerSnapshot) > 0 {
		_, next, err := producer.DecodeSnapshot(b.opts.ProducerSnapshot)
		if err != nil {
			return fmt.Errorf("producer snapshot: %w", err)
		}
		if next != s.NextOffset {
			return fmt.Errorf("producer snapshot taken at offset %d, segment ends at %d", next, s.NextOffset)
		}
		b.f.ProducerSnapshot = b.opts.ProducerSnapshot
	}
	if err := b.f.Validate(); err != nil {
		return fmt.Errorf("footer: %w", err) // a bug here, or bad Epochs
	}
	tail := b.f.AppendTail(nil)
	return b.write(tail)
}

// clampEpochs keeps the entries of an epoch history that cover [base,
// next), the first one moved up to start at base.
func clampEpochs(all []index.EpochEntry, base, next int64) []index.EpochEntry {
	var out []index.EpochEntry
	for _, e := range all {
		if e.StartOffset >= next {
			break
		}
		if e.StartOffset <= base {
			out = out[:0]
			e.StartOffset = base
		}
		out = append(out, e)
	}
	return out
}

// clipAborted returns the aborted transactions of all that overlap [base,
// next), each clipped to [base, next-1], ordered by first offset (then
// producer id). Entries with first > last are dropped: they describe no
// transaction.
func clipAborted(all []index.AbortedTxn, base, next int64) []index.AbortedTxn {
	var out []index.AbortedTxn
	for _, a := range all {
		if a.FirstOffset > a.LastOffset || a.LastOffset < base || a.FirstOffset >= next {
			continue
		}
		a.FirstOffset, a.LastOffset = max(a.FirstOffset, base), min(a.LastOffset, next-1)
		out = append(out, a)
	}
	slices.SortStableFunc(out, func(x, y index.AbortedTxn) int {
		return cmp.Or(cmp.Compare(x.FirstOffset, y.FirstOffset), cmp.Compare(x.ProducerID, y.ProducerID))
	})
	return out
}

// probeSize is the sample worthCompressing compresses first.
const probeSize = 128 << 10

// worthCompressing compresses a sample from the middle of a large chunk and
// reports false if it saves less than half of what a compressed chunk must
// save: producer-compressed or random data then costs a sample's
// compression instead of the whole chunk's. Small chunks are always tried.
func worthCompressing(raw []byte, scratch *[]byte) bool {
	if len(raw) < 4*probeSize {
		return true
	}
	mid := len(raw)/2 - probeSize/2
	sample := raw[mid : mid+probeSize]
	p, err := batch.Compress(batch.CodecZstd, sample, (*scratch)[:0])
	if err != nil {
		return true // the full attempt reports it
	}
	*scratch = p
	return len(p) <= len(sample)-len(sample)/(2*minSavings)
}

package segment

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"sort"

	"github.com/strata-io/strata/index"
	"github.com/strata-io/strata/ingest/batch"
)

// DefaultTailSize is how many bytes OpenReader fetches from the end of an
// object on its first try. Objects whose footer and trailer fit in it open
// with one fetch; larger footers cost one more.
const DefaultTailSize = 64 << 10

// FetchFunc reads n bytes of the object starting at off. It must return
// exactly n bytes or an error (never short data silently), and a slice the
// caller may keep: ReadChunk can return it as is.
type FetchFunc func(ctx context.Context, off, n int64) ([]byte, error)

// Option configures OpenReader.
type Option func(*readerConfig)

type readerConfig struct {
	tailSize int64
	name     string
}

// WithTailSize sets the speculative tail fetch size (default
// DefaultTailSize; at least index.TrailerSize). A caller that knows the
// footer length (from a manifest) can pass footer length + TrailerSize to
// fetch exactly the tail.
func WithTailSize(n int64) Option {
	return func(c *readerConfig) { c.tailSize = max(n, index.TrailerSize) }
}

// WithName sets the name (object key) used in error messages.
func WithName(name string) Option { return func(c *readerConfig) { c.name = name } }

// Reader reads one segment object. It holds only the decoded footer and is
// safe for concurrent use; every read is a call to the fetch function.
type Reader struct {
	fetch    FetchFunc
	size     int64
	name     string
	footer   *index.Footer
	trailer  index.Trailer
	rawStart []int64 // raw position of each chunk; one extra entry: RawSize
}

// OpenReader reads and checks the trailer and footer of an object of size
// bytes: one fetch of the tail, and a second only when the footer is larger
// than the tail fetched. A truncated or corrupt object gives an error
// wrapping ErrCorrupt; an unknown major format version a
// *index.FormatVersionError (use errors.As) naming the version.
func OpenReader(ctx context.Context, fetch FetchFunc, size int64, opts ...Option) (*Reader, error) {
	cfg := readerConfig{tailSize: DefaultTailSize, name: "(unnamed)"}
	for _, o := range opts {
		o(&cfg)
	}
	r := &Reader{fetch: fetch, size: size, name: cfg.name}
	if size < index.TrailerSize {
		return nil, r.corrupt(fmt.Errorf("object of %d bytes is shorter than the trailer", size))
	}
	n := min(size, cfg.tailSize)
	tail, err := r.fetchExact(ctx, size-n, n)
	if err != nil {
		return nil, err
	}
	t, err := index.DecodeTrailer(tail)
	var verr *index.FormatVersionError
	if errors.As(err, &verr) {
		return nil, fmt.Errorf("segment object %s: %w", r.name, err)
	}
	if err != nil {
		return nil, r.corrupt(err)
	}
	need := int64(t.FooterLen) + index.TrailerSize
	if need > size {
		return nil, r.corrupt(fmt.Errorf("footer of %d bytes does not fit in a %d-byte object", t.FooterLen, size))
	}
	var footer []byte
	if need <= n {
		footer = tail[n-need : n-index.TrailerSize]
	} else {
		rest, err := r.fetchExact(ctx, size-need, need-n)
		if err != nil {
			return nil, err
		}
		footer = append(rest, tail[:n-index.TrailerSize]...)
	}
	if err := t.CheckFooter(footer); err != nil {
		return nil, r.corrupt(err)
	}
	f, err := index.DecodeFooter(footer)
	if err != nil {
		return nil, r.corrupt(err)
	}
	if want := f.ObjectSize(len(footer)); want != size {
		return nil, r.corrupt(fmt.Errorf("object is %d bytes, its footer describes %d (truncated or padded)", size, want))
	}
	r.footer, r.trailer = f, t
	r.rawStart = make([]int64, len(f.Chunks)+1)
	for i, c := range f.Chunks {
		r.rawStart[i+1] = r.rawStart[i] + int64(c.RawLen)
	}
	return r, nil
}

func (r *Reader) corrupt(err error) error {
	return fmt.Errorf("segment object %s: %w: %w", r.name, ErrCorrupt, err)
}

func (r *Reader) fetchExact(ctx context.Context, off, n int64) ([]byte, error) {
	b, err := r.fetch(ctx, off, n)
	if err != nil {
		return nil, fmt.Errorf("segment object %s: read [%d, %d): %w", r.name, off, off+n, err)
	}
	if int64(len(b)) != n {
		return nil, r.corrupt(fmt.Errorf("read [%d, %d) returned %d bytes", off, off+n, len(b)))
	}
	return b, nil
}

// Footer returns the decoded footer. Callers must not modify it.
func (r *Reader) Footer() *index.Footer { return r.footer }

// Version returns the object's format version.
func (r *Reader) Version() (major, minor uint16) { return r.trailer.Major, r.trailer.Minor }

// Size returns the object size.
func (r *Reader) Size() int64 { return r.size }

// Locate returns the index of the chunk holding offset: the first chunk
// whose last offset is >= offset. It reports false for offsets outside
// [BaseOffset, NextOffset).
func (r *Reader) Locate(offset int64) (int, bool) {
	s := &r.footer.Summary
	if offset < s.BaseOffset || offset >= s.NextOffset {
		return -1, false
	}
	cs := r.footer.Chunks
	return sort.Search(len(cs), func(i int) bool { return cs[i].LastOffset >= offset }), true
}

// ReadChunk fetches chunk i with one ranged fetch, checks its CRC-32C,
// decompresses it (to at most the raw length the chunk map records) and
// checks that it holds whole batches covering the chunk's offsets. It
// returns the raw batches, owned by the caller.
func (r *Reader) ReadChunk(ctx context.Context, i int) ([]byte, error) {
	if i < 0 || i >= len(r.footer.Chunks) {
		return nil, fmt.Errorf("segment object %s: chunk %d of %d", r.name, i, len(r.footer.Chunks))
	}
	c := &r.footer.Chunks[i]
	stored, err := r.fetchExact(ctx, c.Position, int64(c.StoredLen))
	if err != nil {
		return nil, err
	}
	if got := crc32.Checksum(stored, castagnoli); got != c.CRC {
		return nil, r.corrupt(fmt.Errorf("chunk %d: checksum %08x, want %08x", i, got, c.CRC))
	}
	var raw []byte
	switch c.Codec {
	case batch.CodecNone:
		raw = stored
	case batch.CodecZstd:
		raw, err = batch.Decompress(batch.CodecZstd, stored, make([]byte, 0, c.RawLen), int(c.RawLen))
		if err != nil {
			return nil, r.corrupt(fmt.Errorf("chunk %d: %w", i, err))
		}
	default:
		return nil, r.corrupt(fmt.Errorf("chunk %d: unknown codec %d", i, c.Codec))
	}
	if len(raw) != int(c.RawLen) {
		return nil, r.corrupt(fmt.Errorf("chunk %d: %d raw bytes, chunk map says %d", i, len(raw), c.RawLen))
	}
	if err := checkBatches(raw, c); err != nil {
		return nil, r.corrupt(fmt.Errorf("chunk %d: %w", i, err))
	}
	return raw, nil
}

// checkBatches walks the batch headers of a chunk: whole batches, offsets
// increasing, from c.FirstOffset to c.LastOffset.
func checkBatches(raw []byte, c *index.Chunk) error {
	prev := c.FirstOffset - 1
	for pos := 0; pos < len(raw); {
		h, err := batch.ParseHeader(raw[pos:])
		if err != nil || h.Size() > len(raw)-pos {
			return fmt.Errorf("batch at raw position %d does not parse or is cut off (%v)", pos, err)
		}
		if (pos == 0 && h.BaseOffset != c.FirstOffset) || h.BaseOffset <= prev || h.LastOffsetDelta < 0 {
			return fmt.Errorf("batch at raw position %d: offsets [%d, %d] after %d", pos, h.BaseOffset, h.LastOffset(), prev)
		}
		prev = h.LastOffset()
		pos += h.Size()
	}
	if prev != c.LastOffset {
		return fmt.Errorf("batches end at offset %d, chunk map says %d", prev, c.LastOffset)
	}
	return nil
}

// BatchesFrom returns whole batches of raw (one chunk, as ReadChunk
// returned it) starting with the first batch whose last offset is >=
// offset, up to maxBytes but always at least one batch: the semantics of
// the local log's Read. It returns nil if no batch of raw reaches offset.
// The result aliases raw. When raw is chunk data of this object, the
// offset index lets it skip the batches before offset without walking
// them.
func (r *Reader) BatchesFrom(raw []byte, offset int64, maxBytes int) []byte {
	return batchesFrom(raw, r.startHint(raw, offset), offset, maxBytes)
}

// BatchesFrom is Reader.BatchesFrom without the index: it walks raw from
// its first batch.
func BatchesFrom(raw []byte, offset int64, maxBytes int) []byte {
	return batchesFrom(raw, 0, offset, maxBytes)
}

// startHint returns a batch boundary in raw at or before the batch holding
// offset, using the offset index, or 0.
func (r *Reader) startHint(raw []byte, offset int64) int {
	h, err := batch.ParseHeader(raw)
	if err != nil {
		return 0
	}
	i, ok := r.Locate(h.BaseOffset)
	if !ok || r.footer.Chunks[i].FirstOffset != h.BaseOffset || len(raw) != int(r.footer.Chunks[i].RawLen) {
		return 0 // not one of our chunks as stored
	}
	e, ok := r.footer.Offsets.Lookup(offset)
	if !ok {
		return 0
	}
	pos := int64(e.Position) - r.rawStart[i]
	if pos <= 0 || pos >= int64(len(raw)) {
		return 0
	}
	return int(pos)
}

func batchesFrom(raw []byte, pos int, offset int64, maxBytes int) []byte {
	from, to := -1, -1
	for pos < len(raw) {
		h, err := batch.ParseHeader(raw[pos:])
		if err != nil || h.Size() > len(raw)-pos {
			break // ReadChunk checked the framing; raw is not a chunk
		}
		n := h.Size()
		if from < 0 {
			if h.LastOffset() >= offset {
				from, to = pos, pos+n
			}
		} else if to-from+n > maxBytes {
			break
		} else {
			to += n
		}
		pos += n
	}
	if from < 0 {
		return nil
	}
	return raw[from:to:to]
}

// OffsetForTimestamp returns the first record in the segment with a
// timestamp >= ts, with its timestamp; found is false if there is none.
// The chunk map and time index pick the one chunk holding the first batch
// whose max timestamp is >= ts; that chunk is fetched (one fetch) and the
// record found inside the batch.
func (r *Reader) OffsetForTimestamp(ctx context.Context, ts int64) (offset, timestamp int64, found bool, err error) {
	f := r.footer
	if f.Summary.MaxTimestamp < ts {
		return -1, -1, false, nil
	}
	start := 0
	if e, ok := f.Times.LookupBefore(ts); ok {
		// Every record up to and including the batch at e is older than
		// ts, so the answer is in its chunk or a later one.
		if i, ok := r.Locate(f.Summary.BaseOffset + int64(e.RelOffset)); ok {
			start = i
		}
	}
	i := start
	for i < len(f.Chunks) && f.Chunks[i].MaxTimestamp < ts {
		i++
	}
	if i == len(f.Chunks) {
		return -1, -1, false, nil // the chunk map disagrees with the summary
	}
	raw, err := r.ReadChunk(ctx, i)
	if err != nil {
		return 0, 0, false, err
	}
	for pos := 0; pos < len(raw); {
		h, _ := batch.ParseHeader(raw[pos:]) // ReadChunk checked the framing
		if h.MaxTimestamp >= ts {
			off, rts, ok, err := batch.FirstAtOrAfter(raw[pos:], ts)
			if err != nil {
				return 0, 0, false, r.corrupt(fmt.Errorf("time lookup in batch at %d: %w", h.BaseOffset, err))
			}
			if !ok {
				return h.BaseOffset, h.MaxTimestamp, true, nil // a header that lies about its records
			}
			return off, rts, true, nil
		}
		pos += h.Size()
	}
	return -1, -1, false, nil
}

// EndOffsetForEpoch answers OffsetForLeaderEpoch from the segment's epoch
// list: the largest epoch <= epoch present in the segment, and the end
// offset of that epoch within the segment (the start of the next epoch, or
// NextOffset if the epoch runs to the segment's end and perhaps beyond,
// into the next segment). ok is false if epoch is older than every epoch
// in the segment: the answer lies in an earlier segment.
func (r *Reader) EndOffsetForEpoch(epoch int32) (foundEpoch int32, endOffset int64, ok bool) {
	return EndOffsetForEpoch(r.footer.Summary.Epochs, r.footer.Summary.NextOffset, epoch)
}

// EndOffsetForEpoch is Reader.EndOffsetForEpoch over any epoch list.
func EndOffsetForEpoch(epochs []index.EpochEntry, next int64, epoch int32) (int32, int64, bool) {
	i := sort.Search(len(epochs), func(i int) bool { return epochs[i].Epoch > epoch })
	if i == 0 {
		return -1, -1, false
	}
	if i < len(epochs) {
		return epochs[i-1].Epoch, epochs[i].StartOffset, true
	}
	return epochs[i-1].Epoch, next, true
}

package log

import (
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"sync/atomic"
	"time"

	"github.com/strata-io/strata/index"
	"github.com/strata-io/strata/ingest/batch"
	"github.com/strata-io/strata/ingest/log/vfs"
)

// segment is one segment file and its in-memory indexes. All fields are
// guarded by Log.mu; the index slices only grow while the segment is active.
type segment struct {
	base        int64
	path        string // the .log file
	size        int64  // logical bytes, header included
	next        int64  // offset after the last batch
	maxTs       int64  // largest batch MaxTimestamp, -1 if none
	maxTsOffset int64  // base offset of the batch holding maxTs, -1 if none
	offIdx      index.OffsetIndex
	timeIdx     index.TimeIndex
	sinceIndex  int         // bytes appended since the last index entry
	firstAppend time.Time   // broker clock at the first append while active; zero if none
	w           *writer     // the read-write descriptor while active or awaiting its seal
	deleted     bool        // removed from the log (retention); its files are going or gone
	gaps        bool        // the file header has segFlagCompacted: offsets may skip (known for the active segment)
	replaced    bool        // deleted because the cleaner swapped in a segment with the same records (read again)
	cut         atomic.Bool // TruncateTo is cutting or removing the file: a read that saw it set looks again
	txn         segTxns     // aborted transactions whose marker is in the segment (aborted.go)
}

func newSegment(base int64, path string) *segment {
	return &segment{
		base: base, path: path, size: segHeaderSize, next: base, maxTs: -1, maxTsOffset: -1,
		offIdx: index.OffsetIndex{Base: base}, timeIdx: index.TimeIndex{Base: base},
	}
}

// writer is a reference-counted read-write descriptor. The segment holds one
// reference until it is sealed; readers take one under Log.mu while the
// segment still has its writer.
type writer struct {
	f    vfs.File
	refs atomic.Int32
}

func newWriter(f vfs.File) *writer {
	w := &writer{f: f}
	w.refs.Store(1)
	return w
}

func (w *writer) acquire() *writer { w.refs.Add(1); return w }

// release drops a reference and closes the descriptor with the last one.
func (w *writer) release() error {
	if w.refs.Add(-1) == 0 {
		return w.f.Close()
	}
	return nil
}

// indexBatch records a batch appended at pos in the in-memory indexes and
// the segment's bounds.
func (s *segment) indexBatch(h *batch.Header, pos int64, interval int) {
	if s.maxTs < h.MaxTimestamp {
		s.maxTs, s.maxTsOffset = h.MaxTimestamp, h.BaseOffset
	}
	if s.sinceIndex >= interval {
		s.offIdx.Append(uint32(h.BaseOffset-s.base), uint32(pos))
		s.timeIdx.Append(s.maxTs, uint32(s.maxTsOffset-s.base))
		s.sinceIndex = 0
	}
	s.sinceIndex += h.Size()
	s.next = h.LastOffset() + 1
	s.size = pos + int64(h.Size())
}

// finishTimeIndex adds the final time index entry at seal, so that the last
// entry always names the segment's largest timestamp and its batch.
func (s *segment) finishTimeIndex() {
	if s.maxTs >= 0 {
		s.timeIdx.Append(s.maxTs, uint32(s.maxTsOffset-s.base))
	}
}

// fits reports whether a batch range ending at lastOffset, of n bytes, can go
// into the segment without overflowing its u32 relative offsets and
// positions.
func (s *segment) fits(lastOffset int64, n int) bool {
	return lastOffset-s.base <= math.MaxUint32 && s.size+int64(n) <= math.MaxUint32
}

// errTorn marks the point where a segment scan stopped on a torn or corrupt
// batch; everything from there on is not part of the log.
var errTorn = errors.New("torn or corrupt batch")

// scanSegment reads and checks every batch of a segment file from the
// header to size: header, length, offsets contiguous from base, and
// CRC-32C. With gaps (a segment the cleaner wrote, segFlagCompacted),
// offsets must only increase. It returns the segment rebuilt in memory
// (size = the end of the last good batch) and, if it stopped early, an error
// wrapping errTorn that says why. Other errors are I/O errors. fn, if
// non-nil, sees every good batch. It never panics on bad bytes.
func scanSegment(r io.ReaderAt, path string, base, size int64, interval int, gaps bool, fn func(h *batch.Header)) (*segment, error) {
	s := newSegment(base, path)
	s.gaps = gaps
	var hdr [batch.HeaderSize]byte
	var buf []byte
	for pos := int64(segHeaderSize); pos < size; {
		if size-pos < batch.HeaderSize {
			return s, fmt.Errorf("%w: %d trailing bytes at position %d", errTorn, size-pos, pos)
		}
		if n, err := r.ReadAt(hdr[:], pos); n < len(hdr) {
			return s, fmt.Errorf("read %s at %d: %w", path, pos, err)
		}
		h, err := batch.ParseHeader(hdr[:])
		switch {
		case err != nil:
			return s, fmt.Errorf("%w: position %d: %v", errTorn, pos, err)
		case int64(h.Size()) > size-pos:
			return s, fmt.Errorf("%w: batch at position %d claims %d bytes, %d left", errTorn, pos, h.Size(), size-pos)
		case h.BaseOffset != s.next && (!gaps || h.BaseOffset < s.next):
			return s, fmt.Errorf("%w: batch at position %d has base offset %d, want %d", errTorn, pos, h.BaseOffset, s.next)
		case h.LastOffsetDelta < 0 || !s.fits(h.LastOffset(), h.Size()):
			return s, fmt.Errorf("%w: batch at position %d has bad last offset delta %d", errTorn, pos, h.LastOffsetDelta)
		}
		if cap(buf) < h.Size() {
			buf = make([]byte, h.Size())
		}
		buf = buf[:h.Size()]
		if n, err := r.ReadAt(buf, pos); n < len(buf) {
			return s, fmt.Errorf("read %s at %d: %w", path, pos, err)
		}
		if got := crc32.Checksum(buf[21:], castagnoli); got != h.CRC {
			return s, fmt.Errorf("%w: batch at position %d has CRC %08x, computed %08x", errTorn, pos, h.CRC, got)
		}
		s.indexBatch(&h, pos, interval)
		if fn != nil {
			fn(&h)
		}
		pos += int64(h.Size())
	}
	return s, nil
}

// walkHeaders calls fn with the header and position of each batch in
// [from, to) until fn returns false. It trusts the file (it is the log's own,
// already checked data) but never reads past to.
func walkHeaders(r io.ReaderAt, from, to int64, fn func(h *batch.Header, pos int64) bool) error {
	// One header and one buffer for the whole walk: both escape (to fn and
	// to the ReaderAt interface), so per-batch variables would be one heap
	// allocation per batch.
	var h batch.Header
	hdr := make([]byte, batch.HeaderSize)
	for pos := from; pos+batch.HeaderSize <= to; {
		if n, err := r.ReadAt(hdr, pos); n < len(hdr) {
			return fmt.Errorf("read batch header at %d: %w", pos, err)
		}
		var err error
		h, err = batch.ParseHeader(hdr)
		if err != nil {
			return fmt.Errorf("%w: batch header at %d: %v", ErrCorrupt, pos, err)
		}
		if !fn(&h, pos) {
			return nil
		}
		pos += int64(h.Size())
	}
	return nil
}

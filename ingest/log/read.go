package log

import (
	"errors"
	"fmt"
	"io"
	"sort"

	"github.com/strata-io/strata/ingest/batch"
)

// readView is what a read captured under Log.mu: a segment's bounds, a
// starting position and a reference to its descriptor.
type readView struct {
	seg   *segment
	base  int64
	size  int64
	pos   int64 // a batch boundary at or before the wanted offset
	start int64 // log start offset
	w     *writer
	path  string
}

// errSegmentGone is returned by open when retention deleted the segment (or
// the log closed) between the capture of the view and the open.
var errSegmentGone = errors.New("segment deleted")

// errSegmentReplaced is returned by open when the cleaner swapped the
// segment for a compacted one between the capture of the view and the open:
// the records are still there, the caller looks them up again.
var errSegmentReplaced = errors.New("segment replaced by the cleaner")

// open returns a reader and its release function: the segment's own
// descriptor if it still has one, else one from the FileCache.
//
// A sealed segment may be deleted by retention or DeleteLocalBefore, or the
// log closed, once Log.mu is released. The descriptor is therefore checked
// after it is in the cache: if the segment is gone, the cache entry is
// dropped again (else the shared cache would keep a deleted file, and its
// disk space, open) and the read fails with ErrOffsetOutOfRange
// (ErrBelowLocalStart if the segment is still above the log start, i.e. it
// lives on in the remote tier) or ErrClosed, not with an open error. A
// deletion that starts after the check evicts the entry itself. A segment
// the cleaner replaced gives errSegmentReplaced: its records are in the
// new segment, and the caller looks the offset up again.
func (l *Log) open(v *readView) (io.ReaderAt, func(), error) {
	if v.w != nil {
		w := v.w
		return w.f, func() { _ = w.release() }, nil // read-only use; a close error changes nothing
	}
	f, release, err := l.files.acquire(l.fs, v.path)
	l.mu.Lock()
	deleted, replaced, closed, tiered := v.seg.deleted, v.seg.replaced, l.mu.closed, v.seg.next > l.mu.start
	l.mu.Unlock()
	if deleted || closed {
		if err == nil {
			release()
		}
		l.files.evict(l.fs, v.path)
		if closed {
			return nil, nil, ErrClosed
		}
		if replaced {
			return nil, nil, fmt.Errorf("%w: %s", errSegmentReplaced, v.path)
		}
		if tiered {
			return nil, nil, fmt.Errorf("%w: %w: %s was deleted locally", ErrBelowLocalStart, errSegmentGone, v.path)
		}
		return nil, nil, fmt.Errorf("%w: %w: %s is below the log start", ErrOffsetOutOfRange, errSegmentGone, v.path)
	}
	if err != nil {
		return nil, nil, err
	}
	return f, release, nil
}

// viewLocked captures the segment holding offset.
func (l *Log) viewLocked(segIdx int, offset int64) readView {
	s := l.mu.segments[segIdx]
	v := readView{seg: s, base: s.base, size: s.size, pos: segHeaderSize, start: l.mu.start, path: s.path}
	if e, ok := s.offIdx.Lookup(offset); ok {
		v.pos = int64(e.Position)
	}
	if s.w != nil {
		v.w = s.w.acquire()
	}
	return v
}

// segmentForLocked returns the index of the segment holding offset.
func (l *Log) segmentForLocked(offset int64) int {
	segs := l.mu.segments
	return sort.Search(len(segs), func(i int) bool { return segs[i].base > offset }) - 1
}

// Read returns whole batches starting with the one that contains offset, up
// to maxBytes (but always at least one batch) and only batches whose base
// offset is below upTo (e.g. the durable offset). It returns nil at the end
// of the log and ErrOffsetOutOfRange below the log start or past the end.
// An offset at or above the log start but below LocalStartOffset (its
// segment lives only in the remote tier) gives ErrBelowLocalStart, which
// wraps ErrOffsetOutOfRange: callers that route such reads to the remote
// tier must test for it first. Reads come from one segment; the caller
// reads again from the next offset. Reads keep working after a sticky write
// error.
//
// In a compacted segment offsets may be missing: a read at one returns the
// batches from the next offset present (an empty batch, record count 0,
// holds the offsets of a range whose records were all removed).
func (l *Log) Read(offset int64, maxBytes int, upTo int64) ([]byte, error) {
	for {
		b, err := l.read(offset, maxBytes, upTo)
		if !errors.Is(err, errSegmentReplaced) {
			return b, err
		}
	}
}

func (l *Log) read(offset int64, maxBytes int, upTo int64) ([]byte, error) {
	l.mu.Lock()
	if l.mu.closed {
		l.mu.Unlock()
		return nil, ErrClosed
	}
	start, end := l.mu.start, l.activeLocked().next
	if offset < start || offset > end {
		l.mu.Unlock()
		return nil, fmt.Errorf("%w: offset %d, log %s holds [%d, %d)", ErrOffsetOutOfRange, offset, l.dir, start, end)
	}
	if local := l.mu.segments[0].base; offset < local {
		l.mu.Unlock()
		return nil, fmt.Errorf("%w: offset %d, log %s holds [%d, %d) locally, from %d in all", ErrBelowLocalStart, offset, l.dir, local, end, start)
	}
	if offset == end || offset >= upTo {
		l.mu.Unlock()
		return nil, nil
	}
	v := l.viewLocked(l.segmentForLocked(offset), offset)
	l.mu.Unlock()

	r, release, err := l.open(&v)
	if err != nil {
		return nil, err
	}
	defer release()
	from, to := int64(-1), int64(-1)
	err = walkHeaders(r, v.pos, v.size, func(h *batch.Header, pos int64) bool {
		n := int64(h.Size())
		if from < 0 {
			if h.LastOffset() < offset {
				return true
			}
			if h.BaseOffset >= upTo {
				return false
			}
			from, to = pos, pos+n
			return true
		}
		if h.BaseOffset >= upTo || to-from+n > int64(maxBytes) {
			return false
		}
		to += n
		return true
	})
	if v.seg.cut.Load() {
		// TruncateTo cut the file under the read: look again.
		return nil, fmt.Errorf("%w: %s", errSegmentReplaced, v.path)
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", v.path, err)
	}
	if from < 0 {
		return nil, nil
	}
	buf := make([]byte, to-from)
	n, err := r.ReadAt(buf, from)
	if v.seg.cut.Load() {
		return nil, fmt.Errorf("%w: %s", errSegmentReplaced, v.path)
	}
	if n < len(buf) {
		return nil, fmt.Errorf("read %s at %d: %w", v.path, from, err)
	}
	return buf, nil
}

// OffsetForTimestamp returns the first record with a timestamp >= ts at or
// after the log start, with its timestamp; found is false if there is none.
// It searches the local segments only (from LocalStartOffset): a caller with
// a remote tier asks the tier about older offsets first. A segment deleted
// meanwhile is skipped.
//
// The index and header scan find the first batch with records whose max
// timestamp is >= ts (the cleaner's empty batches keep the timestamp of
// records they no longer hold, and are skipped); the record inside it is
// found by decoding that one batch.
func (l *Log) OffsetForTimestamp(ts int64) (offset, timestamp int64, found bool, err error) {
	// Normally the first candidate segment answers; the next ones are
	// tried only when the log start cuts the matching batches off.
	// Segments are tracked by base offset, not by index: retention may drop
	// segments from the front of the list between two iterations.
	var v readView
	for fromBase := int64(-1); !found; {
		l.mu.Lock()
		if l.mu.closed {
			l.mu.Unlock()
			return 0, 0, false, ErrClosed
		}
		idx := -1
		for i := range l.mu.segments {
			if s := l.mu.segments[i]; s.base >= fromBase && s.next > l.mu.start && s.maxTs >= ts {
				idx = i
				break
			}
		}
		if idx < 0 {
			l.mu.Unlock()
			return -1, -1, false, nil
		}
		s := l.mu.segments[idx]
		start := max(s.base, l.mu.start)
		if e, ok := s.timeIdx.LookupBefore(ts); ok {
			start = max(start, s.base+int64(e.RelOffset))
		}
		v = l.viewLocked(idx, start)
		prevFrom := fromBase
		fromBase = s.next // under the lock: the active segment's grows
		l.mu.Unlock()

		r, release, err := l.open(&v)
		if errors.Is(err, errSegmentReplaced) {
			fromBase = prevFrom // the compacted segment covers the same offsets: look again
			continue
		}
		if errors.Is(err, errSegmentGone) {
			continue // the log start moved past it: look again from the next one
		}
		if err != nil {
			return 0, 0, false, err
		}
		err = walkHeaders(r, v.pos, v.size, func(h *batch.Header, _ int64) bool {
			if h.LastOffset() < v.start || h.MaxTimestamp < ts || h.RecordCount == 0 {
				return true
			}
			offset, timestamp, found = max(h.BaseOffset, v.start), h.MaxTimestamp, true
			return false
		})
		release()
		if v.seg.cut.Load() {
			fromBase, found = prevFrom, false // TruncateTo cut the file under the walk: look again
			continue
		}
		if err != nil {
			return 0, 0, false, fmt.Errorf("time lookup in %s: %w", v.path, err)
		}
	}
	if !found {
		return -1, -1, false, nil
	}
	b, err := l.Read(offset, 0, offset+1)
	if errors.Is(err, ErrBelowLocalStart) {
		return l.OffsetForTimestamp(ts) // DeleteLocalBefore took the segment: look again
	}
	if err != nil || len(b) == 0 {
		return 0, 0, false, fmt.Errorf("time lookup: read batch at %d: %w", offset, err)
	}
	off, rts, ok, err := batch.FirstAtOrAfter(b, ts)
	if err != nil {
		return 0, 0, false, fmt.Errorf("time lookup in batch at %d: %w", offset, err)
	}
	if !ok {
		return offset, timestamp, true, nil // cannot happen for a well-formed batch
	}
	return max(off, v.start), rts, true, nil
}

// MaxTimestamp returns the largest timestamp in the local segments (from
// LocalStartOffset; a remote tier may hold older, larger ones) and the offset
// of the first record carrying it, or (-1, -1) if they hold no record.
func (l *Log) MaxTimestamp() (offset, ts int64, err error) {
	l.mu.Lock()
	if l.mu.closed {
		l.mu.Unlock()
		return 0, 0, ErrClosed
	}
	offset, ts = -1, -1
	start := l.mu.start
	for _, s := range l.mu.segments {
		if s.next > start && s.maxTs > ts {
			offset, ts = max(s.maxTsOffset, start), s.maxTs
		}
	}
	l.mu.Unlock()
	if offset < 0 {
		return -1, -1, nil
	}
	b, err := l.Read(offset, 0, offset+1)
	if errors.Is(err, ErrBelowLocalStart) {
		return l.MaxTimestamp() // DeleteLocalBefore took the segment: look again
	}
	if err != nil || len(b) == 0 {
		return 0, 0, fmt.Errorf("max timestamp: read batch at %d: %w", offset, err)
	}
	if h, err := batch.ParseHeader(b); err == nil && h.RecordCount == 0 {
		// The cleaner removed the records; their empty batch keeps the
		// timestamp, as the segment's time index does.
		return max(h.BaseOffset, start), h.MaxTimestamp, nil
	}
	off, rts, err := batch.MaxTimestampRecord(b)
	if err != nil {
		return 0, 0, fmt.Errorf("max timestamp in batch at %d: %w", offset, err)
	}
	return max(off, start), rts, nil
}

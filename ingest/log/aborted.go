package log

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"sort"
	"sync"

	"github.com/strata-io/strata/index"
	"github.com/strata-io/strata/ingest/batch"
	"github.com/strata-io/strata/ingest/log/vfs"
	"github.com/strata-io/strata/ingest/producer"
)

// Transactions in the log (KIP-98).
//
// Producer state (ingest/producer) knows each producer's open transaction
// and orders the open ones by first offset; after every change of it under
// Log.mu the log stores the first unstable offset in an atomic (Log.fuo),
// which FirstUnstableOffset reads without a lock.
//
// When an abort marker of producer P lands at offset M while P has a
// transaction open since F, the segment holding M records the aborted
// transaction {P, F, M} (a commit, or a marker without an open transaction,
// records nothing). The active segment keeps its entries in memory; a
// sealed segment's go to its .txnindex file at seal time (txnindex.go), and
// only a count and the smallest first offset stay in memory, so a query
// reads the files of the segments that can match, through a small per-log
// cache. Recovery rebuilds the active segment's entries, and any sealed
// segment's lost file, by replaying batches over producer state, as it
// rebuilds producer state itself.

// segTxns is what a segment knows of its aborted transactions. Guarded by
// Log.mu.
type segTxns struct {
	// entries are the segment's aborted transactions in marker order while
	// they are in memory: the active segment, and a sealed one until its
	// seal is done. nil otherwise (onDisk).
	entries  []index.AbortedTxn
	n        int   // number of entries, in memory or on disk
	minFirst int64 // smallest FirstOffset of them (when n > 0)
	onDisk   bool  // the entries live in the segment's .txnindex file
}

func (t *segTxns) add(e index.AbortedTxn) {
	if t.n == 0 || e.FirstOffset < t.minFirst {
		t.minFirst = e.FirstOffset
	}
	t.n++
	t.entries = append(t.entries, e)
}

// txnSummary returns a segTxns for entries that live in a file.
func txnSummary(entries []index.AbortedTxn) segTxns {
	var t segTxns
	for _, e := range entries {
		t.add(e)
	}
	t.entries, t.onDisk = nil, true
	return t
}

// txnCacheSize is how many sealed segments' decoded entries the per-log
// cache keeps.
const txnCacheSize = 16

// txnCache holds the decoded entries of recently read sealed segments,
// keyed by segment (a replaced segment is a new *segment). A leaf lock.
type txnCache struct {
	mu    sync.Mutex
	segs  []*segment // most recent first
	lists [][]index.AbortedTxn
}

func (c *txnCache) get(s *segment) ([]index.AbortedTxn, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, k := range c.segs {
		if k == s {
			return c.lists[i], true
		}
	}
	return nil, false
}

func (c *txnCache) put(s *segment, entries []index.AbortedTxn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if i := slices.Index(c.segs, s); i >= 0 {
		c.segs = slices.Delete(c.segs, i, i+1)
		c.lists = slices.Delete(c.lists, i, i+1)
	}
	c.segs = slices.Insert(c.segs, 0, s)
	c.lists = slices.Insert(c.lists, 0, entries)
	if len(c.segs) > txnCacheSize {
		c.segs[txnCacheSize], c.lists[txnCacheSize] = nil, nil
		c.segs, c.lists = c.segs[:txnCacheSize], c.lists[:txnCacheSize]
	}
}

// AbortedTxns returns the aborted transactions whose range overlaps
// [from, upTo): FirstOffset < upTo and LastOffset (the abort marker's
// offset) >= from, ordered by FirstOffset (then by marker). A
// read_committed Fetch answers with them; the tier writes them, clipped,
// into segment footers. Only local segments are searched: entries whose
// marker lies below LocalStartOffset live in the tier's footers.
//
// It holds Log.mu only to pick the segments that can match (from an
// in-memory count and smallest first offset per segment), then reads their
// .txnindex files through a small cache. A segment deleted meanwhile
// (retention, local deletion) is skipped: callers that need the entries of
// offsets that left the local log ask the tier; one the cleaner replaced is
// looked up again. A file that cannot be read is an error (wrapping
// ErrStorage), never a shorter answer: a read_committed reader told too few
// aborted transactions would deliver aborted records.
func (l *Log) AbortedTxns(from, upTo int64) ([]index.AbortedTxn, error) {
	for {
		out, again, err := l.abortedTxns(from, upTo)
		if err != nil {
			return nil, err
		}
		if !again {
			slices.SortStableFunc(out, func(a, b index.AbortedTxn) int {
				switch {
				case a.FirstOffset < b.FirstOffset:
					return -1
				case a.FirstOffset > b.FirstOffset:
					return 1
				}
				return 0
			})
			return out, nil
		}
	}
}

// txnView is a sealed segment whose file AbortedTxns reads.
type txnView struct {
	seg        *segment
	base, next int64
}

func (l *Log) abortedTxns(from, upTo int64) (out []index.AbortedTxn, again bool, err error) {
	l.mu.Lock()
	if l.mu.closed {
		l.mu.Unlock()
		return nil, false, nil
	}
	segs := l.mu.segments
	var disk []txnView
	for i := sort.Search(len(segs), func(i int) bool { return segs[i].next > from }); i < len(segs); i++ {
		s := segs[i]
		if s.txn.n == 0 || s.txn.minFirst >= upTo {
			continue
		}
		if !s.txn.onDisk {
			out = appendOverlapping(out, s.txn.entries, from, upTo, s.base, s.next)
			continue
		}
		disk = append(disk, txnView{seg: s, base: s.base, next: s.next})
	}
	l.mu.Unlock()
	for _, v := range disk {
		entries, err := l.segmentTxns(v.seg, v.base)
		if err != nil {
			l.mu.Lock()
			deleted, replaced := v.seg.deleted, v.seg.replaced
			l.mu.Unlock()
			if replaced {
				return nil, true, nil
			}
			if !deleted {
				l.logger.Error("cannot read aborted transaction index", "dir", l.dir, "segment", v.base, "err", err)
				return nil, false, fmt.Errorf("%w: aborted transactions of segment %d: %w", ErrStorage, v.base, err)
			}
			continue
		}
		out = appendOverlapping(out, entries, from, upTo, v.base, v.next)
	}
	return out, false, nil
}

// appendOverlapping appends the entries overlapping [from, upTo) whose
// marker is in the segment [base, next): a file renamed over by the cleaner
// may hold a merged group's entries.
func appendOverlapping(out, entries []index.AbortedTxn, from, upTo, base, next int64) []index.AbortedTxn {
	for _, e := range entries {
		if e.FirstOffset < upTo && e.LastOffset >= from && e.LastOffset >= base && e.LastOffset < next {
			out = append(out, e)
		}
	}
	return out
}

// segmentTxns returns the entries of sealed segment s (base base) from the
// cache or its file. Not under Log.mu.
func (l *Log) segmentTxns(s *segment, base int64) ([]index.AbortedTxn, error) {
	if e, ok := l.txns.get(s); ok {
		return e, nil
	}
	entries, err := readTxnIndex(l.fs, l.dir, base)
	if err != nil {
		return nil, err
	}
	l.txns.put(s, entries)
	return entries, nil
}

// readTxnIndex reads and decodes the .txnindex file of the segment at base.
func readTxnIndex(fsys vfs.FS, dir string, base int64) ([]index.AbortedTxn, error) {
	name := fileName(base, txnIndexSuffix)
	b, err := readFile(fsys, filepath.Join(dir, name))
	if err != nil {
		return nil, err
	}
	got, entries, err := decodeTxnIndex(b, name)
	if err != nil {
		return nil, err
	}
	if got != base {
		return nil, fmt.Errorf("%s: %w: base offset %d", name, ErrCorrupt, got)
	}
	return entries, nil
}

// loadTxnIndex reads sealed segment s's .txnindex at recovery and sets
// s.txn from it. It reports false if the file is missing or does not match
// the segment (the replay rebuilds it), and errors for an unknown version
// or an I/O error.
func (l *Log) loadTxnIndex(s *segment) (bool, error) {
	entries, err := readTxnIndex(l.fs, l.dir, s.base)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	case errors.Is(err, ErrVersion):
		return false, err
	case errors.Is(err, ErrCorrupt):
		l.logger.Warn("aborted transaction index corrupt; rebuilding", "dir", l.dir, "segment", s.base, "err", err)
		return false, nil
	case err != nil:
		return false, err
	}
	if n := len(entries); n > 0 && entries[n-1].LastOffset >= s.next {
		l.logger.Warn("aborted transaction index points past its segment; rebuilding", "dir", l.dir, "segment", s.base)
		return false, nil
	}
	s.txn = txnSummary(entries)
	return true, nil
}

// FirstUnstableOffset is the first offset of the oldest open transaction
// in the log, at least the log start offset, ok false when none is open.
// The last stable offset is the smaller of it and the high watermark. It
// reads an atomic: no lock, no scan.
func (l *Log) FirstUnstableOffset() (offset int64, ok bool) {
	if v := l.fuo.Load(); v >= 0 {
		return v, true
	}
	return 0, false
}

// noteTxnsLocked publishes the first unstable offset after a change of
// producer state or of the log start.
func (l *Log) noteTxnsLocked() {
	v, ok := l.mu.producers.FirstUnstableOffset()
	if !ok {
		l.fuo.Store(-1)
		return
	}
	l.fuo.Store(max(v, l.mu.start))
}

// txnEnd is a transaction a marker closed: its producer, first offset and
// marker offset (LastOffset), and whether the marker was an abort.
type txnEnd struct {
	index.AbortedTxn
	abort bool
}

// applyBatch records an appended batch in st: m is its transaction marker
// if it is a control batch whose marker parsed, else nil. It reports the
// transaction a marker closed, if any.
func applyBatch(st *producer.State, h *batch.Header, m *batch.Marker, nowMs int64) (txnEnd, bool) {
	if m == nil {
		st.Update(h, nowMs)
		return txnEnd{}, false
	}
	first := st.UpdateMarker(h, *m, nowMs)
	if first < 0 {
		return txnEnd{}, false
	}
	return txnEnd{AbortedTxn: index.AbortedTxn{ProducerID: h.ProducerID, FirstOffset: first, LastOffset: h.BaseOffset}, abort: !m.Commit}, true
}

// maxUnreplicated bounds the completed transactions LastStableOffset
// remembers for a log whose high watermark nobody asks about (a follower):
// the oldest go first, their markers long replicated.
const maxUnreplicated = 1024

// noteEndLocked remembers a transaction completed at e.LastOffset for
// LastStableOffset.
func (l *Log) noteEndLocked(e txnEnd) {
	u := append(l.mu.unreplicated, e.AbortedTxn)
	if len(u) > maxUnreplicated {
		u = slices.Delete(u, 0, len(u)-maxUnreplicated)
	}
	l.mu.unreplicated = u
	l.unreplicated.Store(int64(len(u)))
}

// setUnreplicatedLocked replaces the remembered completed transactions
// (recovery, TruncateTo, ResetTo).
func (l *Log) setUnreplicatedLocked(ends []txnEnd) {
	l.mu.unreplicated = l.mu.unreplicated[:0]
	for _, e := range ends[max(0, len(ends)-maxUnreplicated):] {
		l.mu.unreplicated = append(l.mu.unreplicated, e.AbortedTxn)
	}
	l.unreplicated.Store(int64(len(l.mu.unreplicated)))
}

// LastStableOffset is the last stable offset for high watermark hw, as
// Kafka computes it: the smallest of hw, the first offset of the oldest open
// transaction (FirstUnstableOffset), and the first offset of every
// transaction whose marker is at or above hw (completed, but its marker is
// not replicated yet; Kafka's unreplicated transactions), at least the log
// start. Completed transactions whose marker is below hw are forgotten, so
// pass the partition's current high watermark (it never goes back). Without
// such transactions it reads atomics only; otherwise it takes Log.mu
// briefly.
func (l *Log) LastStableOffset(hw int64) int64 {
	lso := hw
	if f, ok := l.FirstUnstableOffset(); ok {
		lso = min(lso, f)
	}
	if l.unreplicated.Load() == 0 {
		return lso
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	u := l.mu.unreplicated
	k := 0
	for k < len(u) && u[k].LastOffset < hw { // in marker order
		k++
	}
	l.mu.unreplicated = slices.Delete(u, 0, k)
	l.unreplicated.Store(int64(len(l.mu.unreplicated)))
	for _, e := range l.mu.unreplicated {
		lso = min(lso, max(e.FirstOffset, l.mu.start))
	}
	return lso
}

// parseMarkers returns the transaction markers of the control batches in b
// (hdrs are their headers), nil entries for other batches, and nil if b has
// no control batch with a producer id. strict refuses a control batch whose
// marker does not parse (a leader's append: the coordinator writes only
// markers); otherwise it is treated as a control batch of unknown content,
// which closes the producer's transaction and records nothing.
func parseMarkers(b []byte, hdrs []batch.Header, strict bool) ([]*batch.Marker, error) {
	var out []*batch.Marker
	pos := 0
	for i := range hdrs {
		h := &hdrs[i]
		n := h.Size()
		if h.IsControl() && h.ProducerID >= 0 {
			m, err := batch.ParseMarker(b[pos : pos+n])
			switch {
			case err == nil:
				if out == nil {
					out = make([]*batch.Marker, len(hdrs))
				}
				out[i] = &m
			case strict:
				return nil, fmt.Errorf("append: control batch %d of producer %d: %w", i, h.ProducerID, err)
			}
		}
		pos += n
	}
	return out, nil
}

// replayTxn calls fn for every batch of s ending at or after from, with the
// transaction marker of control batches (nil if none or unreadable).
func (l *Log) replayTxn(s *segment, from int64, fn func(h *batch.Header, m *batch.Marker)) error {
	var f vfs.File
	if s.w != nil {
		f = s.w.f
	} else {
		var err error
		if f, err = l.fs.Open(s.path); err != nil {
			return err
		}
		defer f.Close()
	}
	pos := int64(segHeaderSize)
	if e, ok := s.offIdx.Lookup(from); ok {
		pos = int64(e.Position)
	}
	var buf []byte
	var rerr error
	err := walkHeaders(f, pos, s.size, func(h *batch.Header, at int64) bool {
		if h.LastOffset() < from {
			return true
		}
		if !h.IsControl() || h.ProducerID < 0 {
			fn(h, nil)
			return true
		}
		buf = slices.Grow(buf[:0], h.Size())[:h.Size()]
		if n, err := f.ReadAt(buf, at); n < len(buf) {
			rerr = fmt.Errorf("read control batch at %d of %s: %w", at, s.path, err)
			return false
		}
		if m, err := batch.ParseMarker(buf); err == nil {
			fn(h, &m)
		} else {
			fn(h, nil)
		}
		return true
	})
	if err == nil {
		err = rerr
	}
	return err
}

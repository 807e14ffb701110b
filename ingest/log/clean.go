package log

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/strata-io/strata/compactor/keymap"
	"github.com/strata-io/strata/compactor/ratelimit"
	"github.com/strata-io/strata/index"
	"github.com/strata-io/strata/ingest/batch"
	"github.com/strata-io/strata/ingest/log/vfs"
)

// The cleaner: key compaction of sealed segments (cleanup.policy=compact).
//
// A pass (Clean) over a range of sealed, durable segments that the caller
// chose keeps, for every key, only the record with the latest offset:
//
//  1. Offset map: the dirty part of the range, from the cleaner point (the
//     first offset no pass has mapped) to To, is read and the latest offset
//     of each key recorded under a 16-byte hash of the key. The map holds at
//     most MaxMapEntries keys; when it fills, the pass ends at the start of
//     the segment where it filled.
//  2. Rewrite: every segment of the range (normally from the log start: the
//     clean part is cleaned again against the new map) is rewritten batch by
//     batch with batch.Filter: a record stays if no later offset of its key
//     is in the map. Offsets never move; batches may leave gaps.
//  3. Adjacent segments merge into one output segment while their input
//     sizes fit SegmentBytes (Kafka's groupSegmentsBySize); indexes are
//     rebuilt for the output.
//  4. Swap: the output is written to "<name>.cleaned" files and synced; the
//     cleaner checkpoint, naming the groups and the new cleaner point, is
//     then written atomically: that is the commit point. Under the log's
//     locks the .cleaned files are renamed over the first segment of each
//     group and the in-memory segment list changes; then the other segments
//     of the groups are removed and the checkpoint rewritten without groups.
//     Open finishes a committed swap and removes uncommitted .cleaned files
//     (recoverCleaner).
//
// What stays valid: every output segment ends with a batch whose last
// offset is the segment's last offset (kept empty if all its records go),
// so segment bounds, producer snapshots at segment ends and the recovery
// scan's end check hold. The last batch of every producer id in the range
// is kept (empty if need be), so that replaying the range rebuilds the
// producer's sequence state. Control batches are kept as they are, and
// transactional records never supersede others (aborted transactions are
// not known here). Keyless records (written before the topic became
// compacted) are kept.

// ErrCleanMapFull is returned by Clean when the offset map cannot hold the
// distinct keys of even the first dirty segment: raise MaxMapEntries.
var ErrCleanMapFull = errors.New("cleaner offset map too small for one segment")

// ErrCleanRaced is returned by Clean when a segment of the range was
// deleted or cut (retention, DeleteLocalBefore, ResetTo, TruncateTo) while
// the pass ran; nothing changed, and the caller plans again.
var ErrCleanRaced = errors.New("segments changed during the cleaner pass")

const (
	defaultCleanMapEntries = 1 << 20 // 30 to 60 MiB of map, with the Go map's growth
	cleanChunk             = 1 << 20 // read and write unit of a pass
)

// CleanOptions describe one cleaner pass.
type CleanOptions struct {
	// From and To bound the range to rewrite, [From, To). From is the base
	// of a local segment (or an offset inside the first one, such as the log
	// start); To is the end of a sealed, durable segment, at most the active
	// segment's base. From is normally the log start: the clean part below
	// the cleaner point is rewritten too, against the new map.
	From, To int64
	// MaxMapEntries bounds the offset map (distinct keys of the dirty
	// part; 30 to 60 bytes each in a Go map). Default 1 Mi.
	MaxMapEntries int
	// TombstoneHorizon: tombstones (records with a null value) in a segment
	// whose largest record timestamp is before it are removed; the zero
	// time keeps every tombstone. Pass now minus delete.retention.ms. The
	// largest timestamp is the segment's time index (the broker clock for
	// LogAppendTime topics, the producers' clocks for CreateTime ones).
	// Tombstones are removed only when the range starts at the log start:
	// with older data elsewhere (a remote tier), a removed tombstone would
	// bring back the value it deleted.
	TombstoneHorizon time.Time
	// SegmentBytes bounds an output segment that merges several input
	// segments (their input sizes must fit). Default: the log's
	// segment.bytes.
	SegmentBytes int64
	// RateLimit bounds the pass's reads plus writes in bytes per second
	// (a token bucket with 100 ms of burst); 0 is unlimited.
	RateLimit int64
	// Context cancels the pass; nil is context.Background(). Close cancels
	// a running pass too. A cancelled pass changes nothing.
	Context context.Context
}

// CleanResult reports a pass.
type CleanResult struct {
	From, End int64 // the rewritten range [From, End); End < To when the map filled
	// MapFull is set when the dirty part held more distinct keys than
	// MaxMapEntries: the pass stopped at End, the next one goes on.
	MapFull           bool
	MapEntries        int   // distinct keys mapped
	CleanerPoint      int64 // after the pass: the first offset not yet mapped
	BytesRead         int64
	BytesWritten      int64
	RecordsKept       int64
	RecordsRemoved    int64 // superseded records and tombstones
	TombstonesRemoved int64
	SegmentsIn        int // segments in [From, End) before the pass
	SegmentsOut       int // and after it
	Duration          time.Duration
}

// CleanerPoint is the first offset that no cleaner pass has mapped (the
// start of the dirty part), at least LocalStartOffset. It survives a
// restart.
func (l *Log) CleanerPoint() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cleanerPointLocked()
}

func (l *Log) cleanerPointLocked() int64 {
	return min(max(l.cleanPoint.Load(), l.mu.start, l.mu.segments[0].base), l.activeLocked().next)
}

// stopCleaner makes Close cancel a running pass and refuse new ones.
func (l *Log) stopCleaner() {
	l.mu.Lock()
	l.mu.closing = true
	cancel := l.mu.cleanCancel
	l.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

// cleanPass is the state of one Clean call.
type cleanPass struct {
	l        *Log
	ctx      context.Context
	bucket   *ratelimit.Bucket
	interval int
	res      *CleanResult
	// cleanTo is the cleaner point before the pass: segments wholly below
	// it were compacted before (the clean part), and only they may lose
	// tombstones, so that a consumer that read a key's old value sees its
	// delete at least once (Kafka's rule).
	cleanTo int64
	truncs  uint64 // Log.mu.truncations when the pass began
	rbuf    []byte // read buffer, reused from segment to segment
	wbuf    []byte // write buffer, reused from group to group
}

// cleanGroup is a run of source segments that becomes one output segment.
type cleanGroup struct {
	src     []*segment
	base    int64
	next    int64
	seg     *segment // the output with its indexes; path is the final name
	changed bool     // the output differs from the input (else it is discarded)
}

// Clean runs one cleaner pass over [opts.From, opts.To) (see the comment at
// the top of clean.go) and returns what it did. Passes are serialized. It
// changes nothing and returns an error when the range is not sealed and
// durable segments (an error naming the problem), when the map cannot hold
// one segment (ErrCleanMapFull), when retention, DeleteLocalBefore or
// TruncateTo removed or cut a segment of the range meanwhile, even while
// the pass read its files (ErrCleanRaced), on cancellation (the context's
// error; ErrClosed if the log is closing) and on read or write errors
// before the commit point (not sticky). An I/O error after the commit point is sticky
// (ErrStorage); the next Open finishes the swap.
func (l *Log) Clean(opts CleanOptions) (CleanResult, error) {
	began := l.now()
	parent := opts.Context
	if parent == nil {
		parent = context.Background()
	}
	ctx, cancel := context.WithCancel(parent)
	defer cancel()

	l.cleanMu.Lock()
	defer l.cleanMu.Unlock()
	l.mu.Lock()
	if l.mu.closing {
		l.mu.Unlock()
		return CleanResult{}, ErrClosed
	}
	if err := l.usableLocked(); err != nil {
		l.mu.Unlock()
		return CleanResult{}, err
	}
	segs, err := l.cleanRangeLocked(opts.From, opts.To)
	if err != nil {
		l.mu.Unlock()
		return CleanResult{}, fmt.Errorf("clean %s: %w", l.dir, err)
	}
	// Tombstones may go only if nothing older than the range exists.
	tombstonesOK := len(segs) > 0 && segs[0] == l.mu.segments[0] && segs[0].base <= l.mu.start
	point := max(l.cleanPoint.Load(), l.mu.segments[0].base)
	cfg := l.mu.cfg
	truncs := l.mu.truncations
	l.mu.cleanCancel = cancel
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		l.mu.cleanCancel = nil
		l.mu.Unlock()
	}()

	res := CleanResult{From: opts.From, End: opts.From, CleanerPoint: point}
	if len(segs) == 0 {
		return res, nil
	}
	res.From, res.End = segs[0].base, segs[len(segs)-1].next
	if err := l.checkCleanSpace(segs, cfg.MinFreeBytes); err != nil {
		return CleanResult{}, err
	}
	sleep := l.cleanSleep
	if sleep == nil {
		sleep = ratelimit.Sleep
	}
	p := &cleanPass{l: l, ctx: ctx, bucket: ratelimit.New(opts.RateLimit, l.now, sleep),
		interval: cfg.IndexIntervalBytes, res: &res, truncs: truncs}
	err = p.run(segs, point, opts, cfg, tombstonesOK)
	res.Duration = l.now().Sub(began)
	if err != nil {
		l.mu.Lock()
		closing := l.mu.closing
		l.mu.Unlock()
		if closing && ctx.Err() != nil {
			err = ErrClosed
		}
		return CleanResult{}, fmt.Errorf("clean %s: %w", l.dir, err)
	}
	return res, nil
}

// cleanRangeLocked returns the segments to rewrite for [from, to), checking
// that they are sealed and durable and that the bounds fit.
func (l *Log) cleanRangeLocked(from, to int64) ([]*segment, error) {
	segs := l.mu.segments
	act := l.activeLocked()
	switch {
	case from >= to:
		return nil, nil
	case to > act.base:
		return nil, fmt.Errorf("range [%d, %d) reaches into the active segment at %d", from, to, act.base)
	case to > l.durable.Load():
		return nil, fmt.Errorf("range [%d, %d) is not durable (durable offset %d)", from, to, l.durable.Load())
	case from < segs[0].base:
		// Local retention or a tier's local deletion removed segments
		// after the caller planned: a race, not a fault.
		return nil, fmt.Errorf("%w (%w): range [%d, %d) starts below the first local segment at %d", ErrCleanRaced, ErrOffsetOutOfRange, from, to, segs[0].base)
	}
	i := l.segmentForLocked(from)
	if segs[i].base != from && i != 0 {
		return nil, fmt.Errorf("range start %d is not a segment base (segment [%d, %d))", from, segs[i].base, segs[i].next)
	}
	j := i
	for ; j < len(segs)-1 && segs[j].next <= to; j++ {
		if s := segs[j]; s.w != nil {
			return nil, fmt.Errorf("segment [%d, %d) is not sealed and durable yet", s.base, s.next)
		}
	}
	if j == i || segs[j-1].next != to {
		return nil, fmt.Errorf("range end %d is not a segment end", to)
	}
	return slices.Clone(segs[i:j]), nil // the list's array changes under Log.mu
}

// checkCleanSpace refuses a pass that could leave less than minFree bytes
// free: the output of a pass may need as much space as its input.
func (l *Log) checkCleanSpace(segs []*segment, minFree int64) error {
	if minFree <= 0 {
		return nil
	}
	var need int64
	for _, s := range segs {
		need += s.size
	}
	free, err := l.fs.FreeSpace(l.dir)
	if err != nil {
		return nil // not a write error; the writes will tell
	}
	if free < need+minFree {
		return fmt.Errorf("clean %s: %w: %d bytes free, the pass may need %d plus the headroom %d", l.dir, ErrDiskFull, free, need, minFree)
	}
	return nil
}

// run does the pass: map, plan, rewrite, commit.
func (p *cleanPass) run(segs []*segment, point int64, opts CleanOptions, cfg Config, tombstonesOK bool) error {
	// The dirty part: from the cleaner point, or the whole range if the
	// point is below it (then the point cannot move: [point, From) stays
	// dirty).
	dirtyFrom := max(point, segs[0].base)
	var dirty []*segment
	for _, s := range segs {
		if s.next > dirtyFrom {
			dirty = append(dirty, s)
		}
	}
	maxEntries := opts.MaxMapEntries
	if maxEntries <= 0 {
		maxEntries = defaultCleanMapEntries
	}
	m := keymap.New(maxEntries)
	end, full, err := p.buildMap(dirty, m)
	if err != nil {
		return err
	}
	if full && len(dirty) > 0 && end <= dirty[0].base {
		return fmt.Errorf("%w: more than %d distinct keys in segment [%d, %d)", ErrCleanMapFull, maxEntries, dirty[0].base, dirty[0].next)
	}
	n := sort.Search(len(segs), func(i int) bool { return segs[i].next > end })
	segs = segs[:n]
	p.res.End, p.res.MapFull, p.res.MapEntries, p.res.SegmentsIn = end, full, m.Len(), len(segs)
	newPoint := point
	if point >= p.res.From {
		newPoint = max(point, end)
	}
	p.res.CleanerPoint = newPoint
	if len(segs) == 0 {
		return nil
	}

	p.cleanTo = point
	lastOfProducer, err := p.lastBatches(segs)
	if err != nil {
		return err
	}
	segBytes := opts.SegmentBytes
	if segBytes <= 0 {
		segBytes = cfg.SegmentBytes
	}
	spans := make([]segSpan, len(segs))
	for i, s := range segs {
		spans[i] = segSpan{base: s.base, next: s.next, size: s.size}
	}
	var horizon int64 = math.MinInt64
	if !opts.TombstoneHorizon.IsZero() && tombstonesOK {
		horizon = opts.TombstoneHorizon.UnixMilli()
	}
	var groups []*cleanGroup
	for _, r := range groupSegments(spans, min(segBytes, maxSegmentBytes)) {
		g := &cleanGroup{src: segs[r[0]:r[1]], base: segs[r[0]].base, next: segs[r[1]-1].next}
		groups = append(groups, g)
		if err := p.writeGroup(g, m, lastOfProducer, horizon); err != nil {
			p.removeCleaned(groups)
			return err
		}
	}
	p.res.SegmentsOut = len(groups)
	var changed []*cleanGroup
	for _, g := range groups {
		if g.changed {
			changed = append(changed, g)
		} else {
			p.removeCleaned([]*cleanGroup{g})
		}
	}
	if len(changed) == 0 && newPoint == point {
		return nil
	}
	return p.l.commitClean(p.ctx, changed, newPoint, p.truncs)
}

// buildMap reads the dirty segments into m and returns the end of the
// mapped part: the end of the last segment, or the base of the segment
// where the map filled (full). The entries that segment added stay: they
// are offsets past the end, whose records stay, so using them is safe.
func (p *cleanPass) buildMap(dirty []*segment, m *keymap.Map) (end int64, full bool, err error) {
	if len(dirty) == 0 {
		return p.res.End, false, nil
	}
	for _, s := range dirty {
		err := p.scan(s, func(b []byte, h *batch.Header) error {
			if h.IsControl() || h.IsTransactional() || h.RecordCount == 0 {
				return nil
			}
			return batch.Records(b, 0, func(r batch.Record) error {
				if r.Key != nil && !m.Put(r.Key, h.BaseOffset+int64(r.OffsetDelta)) {
					return errMapFull
				}
				return nil
			})
		})
		if errors.Is(err, errMapFull) {
			return s.base, true, nil
		}
		if err != nil {
			return 0, false, err
		}
	}
	return dirty[len(dirty)-1].next, false, nil
}

var errMapFull = errors.New("offset map full")

// lastBatches returns the base offset of the last data batch of every
// producer id in segs, from the batch headers.
func (p *cleanPass) lastBatches(segs []*segment) (map[int64]int64, error) {
	last := map[int64]int64{}
	for _, s := range segs {
		f, err := p.open(s)
		if err != nil {
			return nil, err
		}
		var n int64
		err = walkHeaders(f, segHeaderSize, s.size, func(h *batch.Header, _ int64) bool {
			n += batch.HeaderSize
			if h.ProducerID >= 0 && !h.IsControl() {
				last[h.ProducerID] = h.BaseOffset
			}
			return true
		})
		_ = f.Close() // read-only
		p.res.BytesRead += n
		if err != nil {
			return nil, p.raced(s, fmt.Errorf("read %s: %w", s.path, err))
		}
		if err := p.bucket.Take(p.ctx, n); err != nil {
			return nil, err
		}
	}
	return last, nil
}

// open opens a source segment's file; ErrCleanRaced if retention deleted
// the segment.
func (p *cleanPass) open(s *segment) (vfs.File, error) {
	f, err := p.l.fs.Open(s.path)
	if err != nil {
		return nil, p.raced(s, fmt.Errorf("open %s: %w", s.path, err))
	}
	return f, nil
}

// raced returns err, a failed read of source segment s, as ErrCleanRaced if
// s left the log meanwhile: the pass holds neither adminMu nor Log.mu, so
// retention, DeleteLocalBefore (a tiered log drops uploaded segments at
// once) and TruncateTo may remove its files or cut it while it reads.
// Nothing changed then, and the caller plans again.
func (p *cleanPass) raced(s *segment, err error) error {
	p.l.mu.Lock()
	deleted := s.deleted
	p.l.mu.Unlock()
	if deleted {
		return fmt.Errorf("%w: segment %s was removed: %w", ErrCleanRaced, s.path, err)
	}
	return err
}

// scan calls fn with every batch of s, read in chunks through the rate
// limiter.
func (p *cleanPass) scan(s *segment, fn func(b []byte, h *batch.Header) error) error {
	f, err := p.open(s)
	if err != nil {
		return err
	}
	defer f.Close() // read-only
	sc := segScanner{f: f, pos: segHeaderSize, end: s.size, buf: p.rbuf[:0]}
	defer func() { p.rbuf = sc.buf[:0] }()
	for {
		b, h, err := sc.next(p)
		if err != nil {
			return p.raced(s, fmt.Errorf("read %s: %w", s.path, err))
		}
		if b == nil {
			return nil
		}
		if err := fn(b, &h); err != nil {
			return err
		}
	}
}

// segScanner reads the batches of a segment file in order through a buffer.
type segScanner struct {
	f        vfs.File
	pos, end int64 // file position of the first byte not in buf, end of the batches
	buf      []byte
	off      int // start of the unconsumed bytes in buf
}

// next returns the next batch, valid until the following call, or nil at
// the end.
func (sc *segScanner) next(p *cleanPass) ([]byte, batch.Header, error) {
	if sc.off == len(sc.buf) && sc.pos >= sc.end {
		return nil, batch.Header{}, nil
	}
	if err := sc.fill(p, batch.HeaderSize); err != nil {
		return nil, batch.Header{}, err
	}
	h, err := batch.ParseHeader(sc.buf[sc.off:])
	if err != nil {
		return nil, h, fmt.Errorf("%w: batch header at %d: %v", ErrCorrupt, sc.pos-int64(len(sc.buf)-sc.off), err)
	}
	if err := sc.fill(p, h.Size()); err != nil {
		return nil, h, err
	}
	b := sc.buf[sc.off : sc.off+h.Size()]
	sc.off += h.Size()
	return b, h, nil
}

// fill makes buf[off:] hold at least n bytes.
func (sc *segScanner) fill(p *cleanPass, n int) error {
	have := len(sc.buf) - sc.off
	if have >= n {
		return nil
	}
	if int64(n-have) > sc.end-sc.pos {
		return fmt.Errorf("%w: batch at %d runs past the segment end %d", ErrCorrupt, sc.pos-int64(have), sc.end)
	}
	want := int(min(int64(max(n, cleanChunk)-have), sc.end-sc.pos))
	if cap(sc.buf) < have+want {
		nb := make([]byte, have, have+want)
		copy(nb, sc.buf[sc.off:])
		sc.buf = nb
	} else {
		sc.buf = sc.buf[:copy(sc.buf, sc.buf[sc.off:])]
	}
	sc.off = 0
	buf := sc.buf[have : have+want]
	if k, err := sc.f.ReadAt(buf, sc.pos); k < want {
		return fmt.Errorf("read at %d: %w", sc.pos, err)
	}
	sc.buf = sc.buf[:have+want]
	sc.pos += int64(want)
	p.res.BytesRead += int64(want)
	return p.bucket.Take(p.ctx, int64(want))
}

// writeGroup writes the cleaned form of g's segments to the .cleaned files
// of its first segment's name and syncs them. g.seg is the new segment.
func (p *cleanPass) writeGroup(g *cleanGroup, m *keymap.Map, lastOfProducer map[int64]int64, horizon int64) error {
	l := p.l
	final := filepath.Join(l.dir, fileName(g.base, logSuffix))
	path := final + cleanedSuffix
	f, err := l.fs.Create(path)
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	err = p.writeGroupData(f, g, final, m, lastOfProducer, horizon)
	if err == nil {
		if err = f.Datasync(); err != nil {
			err = fmt.Errorf("sync %s: %w", path, err)
		}
	}
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close %s: %w", path, cerr)
	}
	if err != nil {
		return err
	}
	if !g.changed {
		return nil
	}
	idx := g.seg.offIdx.AppendEncode(nil)
	tidx := g.seg.timeIdx.AppendEncode(nil)
	if err := p.writeSynced(filepath.Join(l.dir, fileName(g.base, indexSuffix)+cleanedSuffix), idx); err != nil {
		return err
	}
	if err := p.writeSynced(filepath.Join(l.dir, fileName(g.base, timeIndexSuffix)+cleanedSuffix), tidx); err != nil {
		return err
	}
	// Offsets do not move and markers stay: the group's aborted
	// transactions are its sources', in order.
	var aborted []index.AbortedTxn
	for _, s := range g.src {
		entries, err := p.sourceTxns(s)
		if err != nil {
			return err
		}
		aborted = appendOverlapping(aborted, entries, s.base, math.MaxInt64, s.base, s.next)
	}
	g.seg.txn = txnSummary(aborted)
	return p.writeSynced(filepath.Join(l.dir, fileName(g.base, txnIndexSuffix)+cleanedSuffix), encodeTxnIndex(g.base, aborted))
}

// sourceTxns returns the aborted transactions of source segment s, in
// marker order. A segment without any reads no file; one whose entries are
// still in memory (its seal is not done) gives those; else its .txnindex
// is read through the cache. A segment removed during the pass, whose
// .txnindex may be gone with it, is ErrCleanRaced (see raced).
func (p *cleanPass) sourceTxns(s *segment) ([]index.AbortedTxn, error) {
	l := p.l
	l.mu.Lock()
	deleted, t := s.deleted, s.txn
	if !t.onDisk {
		t.entries = slices.Clone(t.entries)
	}
	l.mu.Unlock()
	switch {
	case deleted:
		return nil, fmt.Errorf("%w: segment %s was removed", ErrCleanRaced, s.path)
	case t.n == 0:
		return nil, nil
	case !t.onDisk:
		return t.entries, nil
	}
	entries, err := l.segmentTxns(s, s.base)
	if err != nil {
		return nil, p.raced(s, fmt.Errorf("aborted transactions of %s: %w", s.path, err))
	}
	return entries, nil
}

func (p *cleanPass) writeGroupData(f vfs.File, g *cleanGroup, final string, m *keymap.Map, lastOfProducer map[int64]int64, horizon int64) error {
	ns := newSegment(g.base, final)
	out := appendSegmentHeaderFlags(p.wbuf[:0], g.base, segFlagCompacted)
	defer func() { p.wbuf = out[:0] }()
	pos := int64(len(out))
	flush := func() error {
		if len(out) == 0 {
			return nil
		}
		if _, err := f.Write(out); err != nil {
			return fmt.Errorf("write %s%s: %w", final, cleanedSuffix, err)
		}
		p.res.BytesWritten += int64(len(out))
		err := p.bucket.Take(p.ctx, int64(len(out)))
		out = out[:0]
		return err
	}
	var dropTombstones bool
	keep := func(off int64, r *batch.Record) bool {
		if r.Key == nil {
			return true // written before the topic was compacted
		}
		if latest, ok := m.Get(r.Key); ok && off < latest {
			return false
		}
		if r.Value == nil && dropTombstones {
			p.res.TombstonesRemoved++
			return false
		}
		return true
	}
	g.changed = len(g.src) > 1
	for _, s := range g.src {
		// Tombstones go only from the clean part, from segments whose
		// newest record is known and older than the horizon.
		dropTombstones = s.next <= p.cleanTo && s.maxTs >= 0 && s.maxTs <= horizon
		err := p.scan(s, func(b []byte, h *batch.Header) error {
			start := len(out)
			if h.IsControl() {
				out = append(out, b...)
				p.res.RecordsKept += int64(h.RecordCount)
			} else {
				lastOfSeg := h.LastOffset() == g.next-1
				lastOfPID := h.ProducerID >= 0 && lastOfProducer[h.ProducerID] == h.BaseOffset
				var fr batch.FilterResult
				var err error
				out, fr, err = batch.Filter(out, b, keep, batch.FilterOptions{KeepEmpty: lastOfSeg || lastOfPID})
				if err != nil {
					return fmt.Errorf("batch at %d of %s: %w", h.BaseOffset, s.path, err)
				}
				p.res.RecordsKept += int64(fr.RecordsKept)
				p.res.RecordsRemoved += int64(fr.RecordsIn - fr.RecordsKept)
			}
			if !bytes.Equal(out[start:], b) {
				g.changed = true
			}
			if len(out) > start {
				oh, err := batch.ParseHeader(out[start:])
				if err != nil {
					return fmt.Errorf("cleaned batch at %d: %w", h.BaseOffset, err)
				}
				ns.indexBatch(&oh, pos, p.interval)
				pos += int64(oh.Size())
			}
			if len(out) >= cleanChunk {
				return flush()
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	if err := flush(); err != nil {
		return err
	}
	if ns.next != g.next {
		// The last batch is always kept (empty if need be): cannot happen
		// with a well-formed segment.
		return fmt.Errorf("%w: cleaned segment %d ends at %d, want %d", ErrCorrupt, g.base, ns.next, g.next)
	}
	ns.finishTimeIndex()
	g.seg = ns
	return nil
}

// writeSynced writes a whole small file and syncs it.
func (p *cleanPass) writeSynced(path string, data []byte) error {
	f, err := p.l.fs.Create(path)
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	p.res.BytesWritten += int64(len(data))
	return p.bucket.Take(p.ctx, int64(len(data)))
}

// removeCleaned removes the .cleaned files of groups, best effort: Open
// removes what is left.
func (p *cleanPass) removeCleaned(groups []*cleanGroup) {
	for _, g := range groups {
		for _, suffix := range []string{logSuffix, indexSuffix, timeIndexSuffix, txnIndexSuffix} {
			_ = p.l.fs.Remove(filepath.Join(p.l.dir, fileName(g.base, suffix)+cleanedSuffix))
		}
	}
}

// commitClean makes a pass's output the log's: it commits the groups and
// the new cleaner point in the cleaner checkpoint, swaps the files and the
// in-memory segments, then removes the replaced files.
func (l *Log) commitClean(ctx context.Context, groups []*cleanGroup, point int64, truncs uint64) error {
	p := &cleanPass{l: l}
	l.adminMu.Lock()
	defer l.adminMu.Unlock()
	l.mu.Lock()
	err := l.usableLocked()
	if err == nil {
		err = ctx.Err()
	}
	if err == nil && l.mu.truncations != truncs {
		// TruncateTo cut records the pass may have mapped: its point and
		// groups are stale.
		err = fmt.Errorf("%w: the log was truncated", ErrCleanRaced)
	}
	if err == nil {
		for _, g := range groups {
			if l.groupIndexLocked(g) < 0 {
				err = fmt.Errorf("%w: segment [%d, %d)", ErrCleanRaced, g.base, g.next)
				break
			}
		}
	}
	l.mu.Unlock()
	if err != nil {
		p.removeCleaned(groups)
		return err
	}

	// The commit point. On failure the checkpoint may or may not be on disk:
	// the .cleaned files stay for Open to judge, and the log fails.
	ck := make([]cleanedGroup, len(groups))
	for i, g := range groups {
		ck[i] = cleanedGroup{base: g.base, next: g.next, size: g.seg.size}
	}
	if err := writeAtomic(l.fs, l.dir, cleanerCheckpoint, encodeCleanerCheckpoint(point, ck), true); err != nil {
		return l.fail(fmt.Errorf("commit cleaner pass: %w", err))
	}
	l.cleanPoint.Store(point)
	if len(groups) == 0 {
		return nil // only the cleaner point moved
	}

	l.mu.Lock()
	for _, g := range groups {
		if err := l.renameCleaned(g.base); err != nil {
			err = l.failLocked(fmt.Errorf("swap cleaned segment %d: %w", g.base, err))
			l.mu.Unlock()
			return err
		}
		l.swapLocked(g)
	}
	l.mu.Unlock()

	for _, g := range groups {
		for _, s := range g.src[1:] {
			if err := l.removeSegmentFiles(s.base); err != nil {
				return l.fail(fmt.Errorf("delete cleaned-away segment %s: %w", s.path, err))
			}
			// The snapshot at its base was the end of a segment that is
			// now inside the group: nothing asks for it.
			if err := l.fs.Remove(filepath.Join(l.dir, fileName(s.base, snapshotSuffix))); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return l.fail(fmt.Errorf("delete snapshot of %s: %w", s.path, err))
			}
		}
	}
	if err := l.fs.SyncDir(l.dir); err != nil {
		return l.fail(fmt.Errorf("sync dir %s: %w", l.dir, err))
	}
	if err := writeAtomic(l.fs, l.dir, cleanerCheckpoint, encodeCleanerCheckpoint(point, nil), true); err != nil {
		return l.fail(fmt.Errorf("finish cleaner pass: %w", err))
	}
	return nil
}

// groupIndexLocked returns the index in the segment list of g's first
// source segment if all of them are still there, in order, else -1.
func (l *Log) groupIndexLocked(g *cleanGroup) int {
	segs := l.mu.segments
	i := sort.Search(len(segs), func(i int) bool { return segs[i].base >= g.base })
	if i+len(g.src) > len(segs)-1 { // never the active segment
		return -1
	}
	for k, s := range g.src {
		if segs[i+k] != s {
			return -1
		}
	}
	return i
}

// renameCleaned renames the .cleaned files of the group at base over its
// first segment's files: the indexes first, the data last (the file readers
// open). Under Log.mu, so that no reader opens the new file with a view of
// the old one, or the reverse (see swapLocked).
func (l *Log) renameCleaned(base int64) error {
	for _, suffix := range []string{txnIndexSuffix, indexSuffix, timeIndexSuffix, logSuffix} {
		path := filepath.Join(l.dir, fileName(base, suffix))
		if err := l.fs.Rename(path+cleanedSuffix, path); err != nil {
			return err
		}
	}
	return nil
}

// swapLocked replaces g's source segments by its output in the segment
// list. Readers that captured a source segment find it replaced after they
// open its file (open checks under Log.mu) and look the offset up again;
// the descriptors cached for the old paths are evicted, and opens that ran
// across the eviction are not cached (FileCache.acquire), so the new file's
// readers never get the old file.
func (l *Log) swapLocked(g *cleanGroup) {
	i := l.groupIndexLocked(g)
	for _, s := range g.src {
		s.deleted, s.replaced = true, true
		l.files.evict(l.fs, s.path)
	}
	segs := l.mu.segments
	n := len(g.src)
	segs[i] = g.seg
	copy(segs[i+1:], segs[i+n:])
	for k := len(segs) - n + 1; k < len(segs); k++ {
		segs[k] = nil
	}
	l.mu.segments = segs[:len(segs)-n+1]
}

// cleanedGroup is a committed group in the cleaner checkpoint: the segments
// with base in [base, next) are replaced by <base>.log.cleaned, of size
// bytes.
type cleanedGroup struct {
	base, next, size int64
}

// Cleaner checkpoint: magic "SLCP", version u16, cleaner point i64, group
// count u32, groups (base i64, next i64, size i64), CRC-32C.
func encodeCleanerCheckpoint(point int64, groups []cleanedGroup) []byte {
	p := binary.BigEndian.AppendUint64(nil, uint64(point))
	p = binary.BigEndian.AppendUint32(p, uint32(len(groups)))
	for _, g := range groups {
		p = binary.BigEndian.AppendUint64(p, uint64(g.base))
		p = binary.BigEndian.AppendUint64(p, uint64(g.next))
		p = binary.BigEndian.AppendUint64(p, uint64(g.size))
	}
	return encodeCheckpoint(cleanerMagic, p)
}

func decodeCleanerCheckpoint(b []byte) (int64, []cleanedGroup, error) {
	p, err := decodeCheckpoint(b, cleanerMagic, cleanerCheckpoint)
	if err != nil {
		return 0, nil, err
	}
	if len(p) < 12 {
		return 0, nil, fmt.Errorf("%s: %w: payload of %d bytes", cleanerCheckpoint, ErrCorrupt, len(p))
	}
	point := int64(binary.BigEndian.Uint64(p))
	n := binary.BigEndian.Uint32(p[8:])
	p = p[12:]
	if uint64(len(p)) != uint64(n)*24 {
		return 0, nil, fmt.Errorf("%s: %w: %d groups in %d bytes", cleanerCheckpoint, ErrCorrupt, n, len(p))
	}
	var groups []cleanedGroup
	for ; len(p) > 0; p = p[24:] {
		g := cleanedGroup{
			base: int64(binary.BigEndian.Uint64(p)),
			next: int64(binary.BigEndian.Uint64(p[8:])),
			size: int64(binary.BigEndian.Uint64(p[16:])),
		}
		if g.base < 0 || g.next <= g.base || g.size < segHeaderSize || (len(groups) > 0 && g.base < groups[len(groups)-1].next) {
			return 0, nil, fmt.Errorf("%s: %w: bad group [%d, %d) of %d bytes", cleanerCheckpoint, ErrCorrupt, g.base, g.next, g.size)
		}
		groups = append(groups, g)
	}
	if point < -1 {
		return 0, nil, fmt.Errorf("%s: %w: cleaner point %d", cleanerCheckpoint, ErrCorrupt, point)
	}
	return point, groups, nil
}

// recoverCleaner runs first in recovery: it finishes the swap of a
// committed pass (the checkpoint names its groups), removes the .cleaned
// files of uncommitted ones and loads the cleaner point. Finishing is
// idempotent, so a crash while doing it is finished by the next Open.
func (l *Log) recoverCleaner() error {
	l.cleanPoint.Store(-1)
	var point int64 = -1
	var groups []cleanedGroup
	b, err := readFile(l.fs, filepath.Join(l.dir, cleanerCheckpoint))
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return err
	default:
		point, groups, err = decodeCleanerCheckpoint(b)
		if errors.Is(err, ErrVersion) {
			return err
		}
		if err != nil {
			// Never written by the atomic writes: the pass restarts from
			// the beginning of the log.
			l.logger.Warn("ignoring corrupt cleaner checkpoint", "dir", l.dir, "err", err)
			point, groups = -1, nil
		}
	}
	names, err := l.fs.ReadDir(l.dir)
	if err != nil {
		return err
	}
	for _, g := range groups {
		if err := l.finishSwap(g, names); err != nil {
			return fmt.Errorf("finish cleaner swap of segment %d: %w", g.base, err)
		}
	}
	for _, n := range names {
		if !strings.HasSuffix(n, cleanedSuffix) {
			continue
		}
		err := l.fs.Remove(filepath.Join(l.dir, n))
		if err == nil {
			l.logger.Info("removing leftover file of an uncommitted cleaner pass", "dir", l.dir, "file", n)
			l.mu.dirDirty = true
		} else if !errors.Is(err, fs.ErrNotExist) { // renamed by finishSwap
			return err
		}
	}
	if len(groups) > 0 {
		if err := l.fs.SyncDir(l.dir); err != nil {
			return fmt.Errorf("sync dir %s: %w", l.dir, err)
		}
		if err := writeAtomic(l.fs, l.dir, cleanerCheckpoint, encodeCleanerCheckpoint(point, nil), true); err != nil {
			return err
		}
	}
	l.cleanPoint.Store(point)
	return nil
}

// finishSwap completes the swap of a committed group: the segments inside
// it go, then its .cleaned files are renamed over its first segment's. If
// <base>.log.cleaned is gone, it was renamed already.
func (l *Log) finishSwap(g cleanedGroup, names []string) error {
	logPath := filepath.Join(l.dir, fileName(g.base, logSuffix))
	fi, err := l.fs.Stat(logPath + cleanedSuffix)
	pending := err == nil
	switch {
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return err
	case pending && fi.Size() != g.size:
		return fmt.Errorf("%w: %s%s has %d bytes, the committed pass wrote %d", ErrCorrupt, logPath, cleanedSuffix, fi.Size(), g.size)
	}
	for _, n := range names {
		b, ok := parseFileName(n, logSuffix)
		if !ok || b <= g.base || b >= g.next {
			continue
		}
		if err := l.removeSegmentFiles(b); err != nil {
			return err
		}
		if err := l.fs.Remove(filepath.Join(l.dir, fileName(b, snapshotSuffix))); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	if pending {
		// A pass written before .txnindex files existed: the first
		// segment's file does not cover the group; recovery rebuilds it.
		txnPath := filepath.Join(l.dir, fileName(g.base, txnIndexSuffix))
		if _, err := l.fs.Stat(txnPath + cleanedSuffix); errors.Is(err, fs.ErrNotExist) {
			if err := l.fs.Remove(txnPath); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
	}
	for _, suffix := range []string{txnIndexSuffix, indexSuffix, timeIndexSuffix, logSuffix} {
		path := filepath.Join(l.dir, fileName(g.base, suffix))
		if err := l.fs.Rename(path+cleanedSuffix, path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	if pending {
		l.logger.Info("finished an interrupted cleaner swap", "dir", l.dir, "segment", filepath.Base(logPath), "next", g.next)
	}
	return nil
}

// segSpan is what grouping needs to know of a segment.
type segSpan struct {
	base, next int64
	size       int64 // file bytes, header included
}

// groupSegments splits consecutive segments into runs [i, j) that each
// become one output segment, as Kafka's groupSegmentsBySize does: a run
// grows while the input sizes (one header) fit maxBytes and its offsets fit
// the u32 relative offsets of the index. A segment larger than maxBytes is
// a run of its own. Input sizes, not output sizes: what merges in this pass
// stays below the bound whatever the cleaning removes, and segments that
// shrank merge in a later pass.
func groupSegments(segs []segSpan, maxBytes int64) [][2]int {
	var out [][2]int
	for i := 0; i < len(segs); {
		j, size := i+1, segs[i].size
		for j < len(segs) && size+segs[j].size-segHeaderSize <= maxBytes &&
			segs[j].next-1-segs[i].base <= math.MaxUint32 {
			size += segs[j].size - segHeaderSize
			j++
		}
		out = append(out, [2]int{i, j})
		i = j
	}
	return out
}

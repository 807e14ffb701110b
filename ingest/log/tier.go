package log

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/strata-io/strata/ingest/producer"
)

// What the remote tier needs from the local log: a view of the segments,
// their epochs and producer snapshots, raw access to sealed segments,
// forced rolls, deletion of uploaded segments without moving the log start,
// and a reset of a lost directory to a later offset.
//
// The log start offset (StartOffset) is the start of the whole partition,
// both tiers. LocalStartOffset is the first offset held on local disk; the
// offsets in [StartOffset, LocalStartOffset) live only in the remote tier.

// errResetting is returned by Append and Roll while ResetTo runs.
var errResetting = errors.New("log is being reset")

// EpochStart is one leader-epoch entry: leader epoch Epoch starts at offset
// StartOffset.
type EpochStart struct {
	Epoch       int32
	StartOffset int64
}

// SegmentInfo describes one local segment.
type SegmentInfo struct {
	Base, Next   int64 // offsets [Base, Next)
	Size         int64 // bytes of record batches (the file header not included)
	MaxTimestamp int64 // largest batch max timestamp, -1 if none
	// FirstAppend is the broker clock at the segment's first append, zero if
	// unknown: an empty segment, or one sealed before the log was opened. For
	// an active segment holding records from before the last Open it is the
	// time of the Open (as for segment.ms).
	FirstAppend time.Time
	Sealed      bool // false for the active (last) segment
	// Durable is set once every byte of a sealed segment is fdatasync'd and
	// its seal work (index files, producer snapshot at Next) is done and
	// durable: OpenSegment and ProducerSnapshotAt(Next) then succeed.
	Durable bool
}

// Segments describes the local segments, ordered by Base; the last one is
// the active segment. A segment that DeleteLocalBefore or retention removes
// meanwhile is simply absent from the next call.
func (l *Log) Segments() []SegmentInfo {
	l.mu.Lock()
	defer l.mu.Unlock()
	durable := l.durable.Load()
	out := make([]SegmentInfo, len(l.mu.segments))
	for i, s := range l.mu.segments {
		sealed := i < len(l.mu.segments)-1
		out[i] = SegmentInfo{
			Base: s.base, Next: s.next, Size: s.size - segHeaderSize, MaxTimestamp: s.maxTs,
			FirstAppend: s.firstAppend, Sealed: sealed,
			Durable: sealed && s.w == nil && s.next <= durable,
		}
	}
	return out
}

// LocalStartOffset is the first offset held on local disk: the base of the
// first local segment, or the log start if that is higher (DeleteRecords
// inside the first segment). Offsets in [StartOffset(), LocalStartOffset())
// are only in the remote tier; Read gives ErrBelowLocalStart for them.
func (l *Log) LocalStartOffset() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return max(l.mu.start, l.mu.segments[0].base)
}

// EpochsIn returns the leader-epoch entries that cover the offsets
// [base, next): the entry in force at base, with its StartOffset raised to
// base, then every later entry starting below next. Epochs are those of the
// whole log (they survive DeleteLocalBefore and come back from ResetTo). If
// no entry starts at or below base (records written without a leader
// epoch), the result begins with the first entry above base. Nil if none
// applies.
func (l *Log) EpochsIn(base, next int64) []EpochStart {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []EpochStart
	for i, e := range l.mu.epochs.entries {
		if e.Start >= next {
			break
		}
		if i+1 < len(l.mu.epochs.entries) && l.mu.epochs.entries[i+1].Start <= base {
			continue // superseded before base
		}
		out = append(out, EpochStart{Epoch: e.Epoch, StartOffset: max(e.Start, base)})
	}
	return out
}

// segmentReader is the reader OpenSegment returns: a section of a segment
// file from the FileCache, released once by Close.
type segmentReader struct {
	*io.SectionReader
	once    sync.Once
	release func()
}

func (r *segmentReader) Close() error {
	r.once.Do(r.release)
	return nil
}

// OpenSegment returns the record batches of the sealed, durable local
// segment whose base offset is base, exactly as stored (no file header), as
// a reader of exactly size bytes; the reader also implements io.ReaderAt
// and io.Seeker (offsets relative to the first batch). It holds a reference
// to the segment's descriptor in the FileCache, so it stays readable until
// Close even if the segment is deleted meanwhile (DeleteLocalBefore,
// retention) or the log closes; Close it promptly, since it keeps a deleted
// file's disk space. Close is idempotent; Read after Close fails. A reader is
// not safe for concurrent use, except ReadAt.
//
// Errors: ErrNotFound if no local segment has that base (never written, or
// deleted, or merged into an earlier one by the cleaner), ErrNotSealed for
// the active segment or one whose seal is not durable yet, ErrClosed. A
// segment the cleaner replaces meanwhile is looked up again.
func (l *Log) OpenSegment(base int64) (io.ReadCloser, int64, error) {
	for {
		r, n, err := l.openSegment(base)
		if !errors.Is(err, errSegmentReplaced) {
			return r, n, err
		}
	}
}

func (l *Log) openSegment(base int64) (io.ReadCloser, int64, error) {
	l.mu.Lock()
	if l.mu.closed {
		l.mu.Unlock()
		return nil, 0, ErrClosed
	}
	segs := l.mu.segments
	i := sort.Search(len(segs), func(i int) bool { return segs[i].base >= base })
	if i == len(segs) || segs[i].base != base {
		l.mu.Unlock()
		return nil, 0, fmt.Errorf("%w: base %d in %s", ErrNotFound, base, l.dir)
	}
	s := segs[i]
	if i == len(segs)-1 || s.w != nil || s.next > l.durable.Load() {
		l.mu.Unlock()
		return nil, 0, fmt.Errorf("%w: base %d in %s", ErrNotSealed, base, l.dir)
	}
	path, size := s.path, s.size-segHeaderSize
	l.mu.Unlock()

	f, release, err := l.files.acquire(l.fs, path)
	// As in open: a deletion or Close that ran before the descriptor was in
	// the cache would leave it there; one that runs after evicts it and the
	// reference keeps it open.
	l.mu.Lock()
	deleted, replaced, closed := s.deleted, s.replaced, l.mu.closed
	l.mu.Unlock()
	if deleted || closed {
		if err == nil {
			release()
		}
		l.files.evict(l.fs, path)
		if closed {
			return nil, 0, ErrClosed
		}
		if replaced {
			return nil, 0, fmt.Errorf("%w: %s", errSegmentReplaced, path)
		}
		return nil, 0, fmt.Errorf("%w: base %d in %s (deleted)", ErrNotFound, base, l.dir)
	}
	if err != nil {
		return nil, 0, err
	}
	return &segmentReader{SectionReader: io.NewSectionReader(f, segHeaderSize, size), release: release}, size, nil
}

// ProducerSnapshotAt returns the producer-state snapshot (the
// producer.AppendSnapshot format, decodable with producer.DecodeSnapshot) as
// of offset next, where next is the Next of a sealed, durable local segment:
// the snapshot written when that segment was sealed (or rewritten by
// recovery). Errors: ErrNotFound if no local segment ends at next (or the
// file is gone: the segment after it was deleted meanwhile), ErrNotSealed if
// that segment's seal is not durable yet, ErrCorrupt for a file that does
// not decode as a snapshot as of next, ErrClosed.
func (l *Log) ProducerSnapshotAt(next int64) ([]byte, error) {
	l.mu.Lock()
	if l.mu.closed {
		l.mu.Unlock()
		return nil, ErrClosed
	}
	segs := l.mu.segments
	i := sort.Search(len(segs), func(i int) bool { return segs[i].next >= next })
	if i == len(segs) || segs[i].next != next || segs[i].next == segs[i].base {
		l.mu.Unlock()
		return nil, fmt.Errorf("%w: no local segment ends at %d in %s", ErrNotFound, next, l.dir)
	}
	if s := segs[i]; i == len(segs)-1 || s.w != nil || s.next > l.durable.Load() {
		l.mu.Unlock()
		return nil, fmt.Errorf("%w: segment ending at %d in %s", ErrNotSealed, next, l.dir)
	}
	l.mu.Unlock()

	name := fileName(next, snapshotSuffix)
	b, err := readFile(l.fs, filepath.Join(l.dir, name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s in %s", ErrNotFound, name, l.dir)
	}
	if err != nil {
		return nil, err
	}
	if _, off, err := producer.DecodeSnapshot(b); err != nil || off != next {
		return nil, fmt.Errorf("%s in %s: %w: offset %d, %v", name, l.dir, ErrCorrupt, off, err)
	}
	return b, nil
}

// Roll seals the active segment now if it holds at least one record, and
// runs the sync round that makes the seal durable before it returns (so the
// segment is then Durable in Segments, unless the log failed). It reports
// whether it rolled. The uploader uses it so that idle partitions still
// tier within an interval. Errors: ErrDiskFull (not sticky), ErrStorage
// (sticky), ErrClosed.
func (l *Log) Roll() (bool, error) {
	return l.roll(func(*segment, time.Time) bool { return true })
}

// RollIfOlder is Roll, only if the active segment's first append (broker
// clock; after a reopen, the time of the Open) is at least d ago.
func (l *Log) RollIfOlder(d time.Duration) (bool, error) {
	return l.roll(func(s *segment, now time.Time) bool {
		return !s.firstAppend.IsZero() && now.Sub(s.firstAppend) >= d
	})
}

func (l *Log) roll(want func(s *segment, now time.Time) bool) (bool, error) {
	l.mu.Lock()
	if err := l.usableLocked(); err != nil {
		l.mu.Unlock()
		return false, err
	}
	if l.mu.resetting {
		l.mu.Unlock()
		return false, errResetting
	}
	act := l.activeLocked()
	if act.next == act.base || !want(act, l.now()) {
		l.mu.Unlock()
		return false, nil
	}
	if err := l.rollLocked(); errors.Is(err, ErrDiskFull) {
		l.mu.Unlock()
		return false, err
	} else if err != nil {
		err = l.failLocked(err)
		l.mu.Unlock()
		return false, err
	}
	l.mu.Unlock()
	l.syncNow()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.mu.err != nil {
		return true, fmt.Errorf("%w: %s: %w", ErrStorage, l.dir, l.mu.err)
	}
	return true, nil
}

// DeleteLocalBefore deletes the oldest local segments while they are sealed,
// durable and end at or below offset (Next <= offset), without moving the
// log start offset: their data lives on in the remote tier, and Read gives
// ErrBelowLocalStart for it. The active segment is never deleted; producer
// state and leader epochs do not change. It returns the number of segments
// deleted.
//
// Crash safety: the log start checkpoint is made durable first (so that
// recovery keeps the start below the new first segment), then the segments
// go one by one, oldest first, each with a directory sync, so a crash
// leaves a suffix of the segments, never a gap. A crash before a segment's
// removal is durable brings it back at Open; deleting again is harmless.
// Readers that captured a deleted segment get ErrBelowLocalStart; an
// OpenSegment reader keeps reading until closed.
func (l *Log) DeleteLocalBefore(offset int64) (int, error) {
	l.adminMu.Lock()
	defer l.adminMu.Unlock()
	l.mu.Lock()
	if err := l.usableLocked(); err != nil {
		l.mu.Unlock()
		return 0, err
	}
	durable := l.durable.Load()
	n := 0
	segs := l.mu.segments
	for _, s := range segs[:len(segs)-1] {
		if s.w != nil || s.next > durable || s.next > offset {
			break
		}
		n++
	}
	start := l.mu.start
	l.mu.Unlock()
	if n == 0 {
		return 0, nil
	}
	if !l.startSaved {
		if err := writeAtomic(l.fs, l.dir, startCheckpoint, encodeStartOffset(start), true); err != nil {
			return 0, l.fail(err)
		}
		l.startSaved = true
	}
	// Only admin operations (under adminMu, like this one) remove segments
	// from the front, and rolls add at the back: the first n stay as seen.
	for i := range n {
		l.mu.Lock()
		if l.mu.closed {
			l.mu.Unlock()
			return i, ErrClosed
		}
		s := l.mu.segments[0]
		s.deleted = true // readers that captured it before now give up on it
		l.mu.segments[0] = nil
		l.mu.segments = l.mu.segments[1:]
		l.mu.Unlock()
		if err := l.removeSegmentFiles(s.base); err != nil {
			return i, l.fail(fmt.Errorf("delete segment %s: %w", s.path, err))
		}
		// The snapshot at its base belongs to the segment before it; the
		// one at its end serves the new first segment.
		if err := l.fs.Remove(filepath.Join(l.dir, fileName(s.base, snapshotSuffix))); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return i, l.fail(fmt.Errorf("delete snapshot of %s: %w", s.path, err))
		}
		if err := l.fs.SyncDir(l.dir); err != nil {
			return i, l.fail(fmt.Errorf("sync dir %s: %w", l.dir, err))
		}
	}
	l.logger.Info("deleted local segments held by the remote tier", "dir", l.dir, "before", offset, "segments", n)
	return n, nil
}

// ResetTo is for a partition whose local directory was lost while its
// history lives in the remote tier. On a log that holds no local record (one
// empty active segment), it makes the log continue at offset next: the log
// start becomes logStart (the remote tier's start; logStart <= next, and
// logStart == next when nothing older is kept), the active segment is
// re-created at base next (so LocalStartOffset() == EndOffset() == next),
// producer state is restored from snapshot (producer.AppendSnapshot bytes as
// of next; nil for none) and the leader-epoch cache from epochs (strictly
// increasing epochs and start offsets; entries are clamped to logStart and
// those starting at or after next dropped, as recovery would). Producers
// whose last batch ends below logStart are dropped, as at any move of the
// log start: pass the remote tier's log start, not next, to keep duplicate
// detection of the snapshot producers' last batches.
//
// When it returns nil the new state is durable: a crash and Open give the
// same state. A crash during ResetTo leaves either the new state or a log
// without local records (usually StartOffset() == EndOffset(), epochs and
// producer state possibly cleared) on which ResetTo can be called again. It refuses a log that holds local records, a next below
// EndOffset(), a bad snapshot or bad epochs (without changing anything).
// Appends and rolls fail while it runs. An I/O error is sticky (ErrStorage).
func (l *Log) ResetTo(logStart, next int64, snapshot []byte, epochs []EpochStart) error {
	if logStart < 0 || next < logStart {
		return fmt.Errorf("reset %s: log start %d, next %d: want 0 <= log start <= next", l.dir, logStart, next)
	}
	st := producer.NewState()
	if snapshot != nil {
		var off int64
		var err error
		if st, off, err = producer.DecodeSnapshot(snapshot); err != nil {
			return fmt.Errorf("reset %s: %w", l.dir, err)
		}
		if off != next {
			return fmt.Errorf("reset %s: producer snapshot is as of %d, want %d", l.dir, off, next)
		}
	}
	st.RemoveBelow(logStart)
	var ec epochCache
	for i, e := range epochs {
		if e.Epoch < 0 || e.StartOffset < 0 || (i > 0 && (e.Epoch <= epochs[i-1].Epoch || e.StartOffset <= epochs[i-1].StartOffset)) {
			return fmt.Errorf("reset %s: leader epoch entry %d (%d, %d) out of order", l.dir, i, e.Epoch, e.StartOffset)
		}
		ec.entries = append(ec.entries, epochEntry{Epoch: e.Epoch, Start: e.StartOffset})
	}
	ec.truncateFromStart(logStart)
	ec.truncateFromEnd(next)

	l.adminMu.Lock()
	defer l.adminMu.Unlock()
	// syncMu: no sync round is in flight (one could otherwise write an
	// epoch checkpoint it captured earlier over the new one), and later
	// rounds find nothing of theirs to write.
	l.syncMu.Lock()
	l.mu.Lock()
	err := l.usableLocked()
	old := l.activeLocked()
	switch {
	case err != nil:
	case len(l.mu.segments) != 1 || old.next != old.base:
		err = fmt.Errorf("reset %s: the log holds records [%d, %d)", l.dir, l.mu.segments[0].base, old.next)
	case next < old.next:
		err = fmt.Errorf("reset %s: next %d is below the log end %d", l.dir, next, old.next)
	default:
		l.mu.resetting = true
		l.mu.epochsDirty = false // rewritten below
	}
	l.mu.Unlock()
	l.syncMu.Unlock()
	if err != nil {
		return err
	}

	seg, err := l.resetFiles(old, logStart, next, snapshot, ec.entries)
	if err != nil {
		l.mu.Lock()
		l.mu.resetting = false
		err = l.failLocked(err)
		l.mu.Unlock()
		return err
	}
	l.startSaved = true

	l.syncMu.Lock()
	l.mu.Lock()
	if seg != old {
		old.deleted = true
		l.mu.segments[0] = seg
	}
	l.mu.start = logStart
	l.mu.producers = st
	l.noteTxnsLocked()
	l.setUnreplicatedLocked(nil)
	l.mu.epochs.entries = ec.entries
	l.mu.epochsDirty = false
	l.mu.unsynced, l.mu.unsyncedAt = 0, time.Time{}
	l.mu.resetting = false
	l.mu.Unlock()
	l.publish(next)
	l.syncMu.Unlock()
	if seg != old {
		_ = old.w.release() // an empty, removed file; a sync round may still hold a reference
	}
	l.logger.Info("log reset", "dir", l.dir, "start", logStart, "next", next, "producers", st.Len(), "epochs", len(ec.entries))
	return nil
}

// resetFiles does the I/O of ResetTo. The checkpoints and the snapshot go
// first, with a directory sync: a crash then leaves the old empty segment,
// which recovery turns into an empty log at the checkpointed start. Then
// the new segment replaces the old one, with a second directory sync: the
// commit point. Recovery of a crash between the two (both segment files)
// finds the old one empty, so the new one is dropped as a torn roll.
func (l *Log) resetFiles(old *segment, logStart, next int64, snapshot []byte, epochs []epochEntry) (*segment, error) {
	names, err := l.fs.ReadDir(l.dir)
	if err != nil {
		return nil, err
	}
	keep := fileName(next, snapshotSuffix)
	for _, n := range names {
		if strings.HasSuffix(n, snapshotSuffix) && (n != keep || snapshot == nil) {
			if err := l.fs.Remove(filepath.Join(l.dir, n)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return nil, err
			}
		}
	}
	if snapshot != nil {
		if err := writeAtomic(l.fs, l.dir, keep, snapshot, false); err != nil {
			return nil, err
		}
	}
	if err := writeAtomic(l.fs, l.dir, epochCheckpoint, encodeEpochs(epochs), false); err != nil {
		return nil, err
	}
	if err := writeAtomic(l.fs, l.dir, startCheckpoint, encodeStartOffset(logStart), false); err != nil {
		return nil, err
	}
	if err := l.fs.SyncDir(l.dir); err != nil {
		return nil, fmt.Errorf("sync dir %s: %w", l.dir, err)
	}
	if next == old.base {
		return old, nil
	}
	path := filepath.Join(l.dir, fileName(next, logSuffix))
	f, err := l.fs.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("reset: create %s: %w", path, err)
	}
	err = writeAll(f, appendSegmentHeader(nil, next))
	if err == nil {
		err = f.Datasync()
	}
	if err != nil {
		_ = f.Close() // the write or sync error is what counts
		return nil, fmt.Errorf("reset: write %s: %w", path, err)
	}
	if err := l.removeSegmentFiles(old.base); err != nil {
		_ = f.Close()
		return nil, err
	}
	if err := l.fs.SyncDir(l.dir); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("sync dir %s: %w", l.dir, err)
	}
	seg := newSegment(next, path)
	seg.w = newWriter(f)
	return seg, nil
}

package log

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/strata-io/strata/index"
	"github.com/strata-io/strata/ingest/batch"
	"github.com/strata-io/strata/ingest/log/vfs"
	"github.com/strata-io/strata/ingest/producer"
)

// Open opens the log in dir, creating it if needed, and recovers it:
// leftover temporary files are removed; sealed segments reopen from their
// index files without a scan (a missing or corrupt index is rebuilt by
// scanning that segment); the active segment is scanned batch by batch and a
// torn or corrupt tail is truncated; producer state is loaded from the newest
// snapshot and the batches after it are replayed. A file in an unknown
// format version fails Open with an error wrapping ErrVersion.
func Open(dir string, cfg Config, opts Options) (*Log, error) {
	l := &Log{dir: filepath.Clean(dir), fs: opts.FS, files: opts.Files, syncer: opts.Syncer,
		logger: opts.Logger, now: opts.Now, onDurable: opts.OnDurable}
	if l.fs == nil {
		l.fs = vfs.Default
	}
	if l.logger == nil {
		l.logger = slog.Default()
	}
	if l.now == nil {
		l.now = time.Now
	}
	if l.files == nil {
		l.files = NewFileCache(8)
	}
	if l.syncer == nil {
		l.syncer, l.ownsSyncer = NewSyncer(l.logger, 1), true
	}
	l.durMu.ch = make(chan struct{})
	l.mu.cfg = cfg.withDefaults()
	if err := l.recover(); err != nil {
		for _, s := range l.mu.segments {
			if s.w != nil {
				_ = s.w.release() // the open failed; nothing was written through it
			}
		}
		if l.ownsSyncer {
			l.syncer.Close()
		}
		return nil, fmt.Errorf("open log %s: %w", dir, err)
	}
	return l, nil
}

// recover runs before the log is shared, so it touches l.mu's fields without
// the lock.
func (l *Log) recover() error {
	if err := mkdirDurable(l.fs, l.dir); err != nil {
		return err
	}
	// A cleaner swap cut short is finished (or its leftovers removed)
	// before the segments are listed.
	if err := l.recoverCleaner(); err != nil {
		return err
	}
	names, err := l.fs.ReadDir(l.dir)
	if err != nil {
		return err
	}
	var bases, snaps, indexes []int64
	for _, n := range names {
		switch {
		case strings.HasSuffix(n, tmpSuffix):
			l.logger.Info("removing leftover temporary file", "dir", l.dir, "file", n)
			if err := l.fs.Remove(filepath.Join(l.dir, n)); err != nil {
				return err
			}
			l.mu.dirDirty = true
		case strings.HasSuffix(n, logSuffix):
			if b, ok := parseFileName(n, logSuffix); ok {
				bases = append(bases, b)
			}
		case strings.HasSuffix(n, snapshotSuffix):
			if b, ok := parseFileName(n, snapshotSuffix); ok {
				snaps = append(snaps, b)
			}
		case strings.HasSuffix(n, indexSuffix) || strings.HasSuffix(n, timeIndexSuffix) || strings.HasSuffix(n, txnIndexSuffix):
			b, ok := parseFileName(n, indexSuffix)
			if !ok {
				b, ok = parseFileName(n, timeIndexSuffix)
			}
			if !ok {
				b, ok = parseFileName(n, txnIndexSuffix)
			}
			if ok {
				indexes = append(indexes, b)
			}
		}
	}
	slices.Sort(bases)
	slices.Sort(snaps)
	// Index files whose segment is gone: a segment deletion (retention,
	// DeleteLocalBefore) interrupted by a crash after its .log file went.
	for _, b := range indexes {
		if _, ok := slices.BinarySearch(bases, b); ok {
			continue
		}
		for _, suffix := range []string{indexSuffix, timeIndexSuffix, txnIndexSuffix} {
			if err := l.fs.Remove(filepath.Join(l.dir, fileName(b, suffix))); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
		l.mu.dirDirty = true
	}

	start, startKnown, epochs, err := l.readCheckpoints()
	if err != nil {
		return err
	}
	l.mu.epochs.entries = epochs

	if err := l.openSegments(bases); err != nil {
		return err
	}
	if err := l.applyStart(start, startKnown); err != nil {
		return err
	}
	l.startSaved = startKnown && start == l.mu.start
	end := l.activeLocked().next
	if err := l.recoverProducers(snaps, end); err != nil {
		return err
	}
	oldEpochs := slices.Clone(l.mu.epochs.entries)
	l.mu.epochs.truncateFromEnd(end)
	l.mu.epochs.truncateFromStart(l.mu.start)
	if !slices.Equal(oldEpochs, l.mu.epochs.entries) || l.mu.epochsDirty {
		if err := writeAtomic(l.fs, l.dir, epochCheckpoint, encodeEpochs(l.mu.epochs.entries), false); err != nil {
			return err
		}
		l.mu.dirDirty = true
	}
	l.mu.epochsDirty = false
	if l.mu.dirDirty {
		if err := l.fs.SyncDir(l.dir); err != nil {
			return err
		}
		l.mu.dirDirty = false
	}
	l.durable.Store(end)
	return nil
}

// mkdirDurable creates dir and any missing parents and makes their entries
// durable: each new directory's parent is synced, so that a power loss cannot
// take the directory (and every synced file in it) away.
func mkdirDurable(fsys vfs.FS, dir string) error {
	var created []string
	for p := dir; ; p = filepath.Dir(p) {
		_, err := fsys.Stat(p)
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		created = append(created, p)
		if p == filepath.Dir(p) {
			break
		}
	}
	if len(created) == 0 {
		return nil
	}
	if err := fsys.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, p := range created {
		if err := fsys.SyncDir(filepath.Dir(p)); err != nil {
			return fmt.Errorf("sync dir %s: %w", filepath.Dir(p), err)
		}
	}
	return nil
}

// readCheckpoints returns the log start offset and whether it came from a
// valid checkpoint, and the leader epochs.
func (l *Log) readCheckpoints() (int64, bool, []epochEntry, error) {
	var start int64
	known := false
	b, err := readFile(l.fs, filepath.Join(l.dir, startCheckpoint))
	switch {
	case err == nil:
		if start, err = decodeStartOffset(b); errors.Is(err, ErrVersion) {
			return 0, false, nil, err
		} else if err != nil {
			l.logger.Warn("ignoring corrupt log start offset checkpoint", "dir", l.dir, "err", err)
			start = 0
		} else {
			known = true
		}
	case !errors.Is(err, fs.ErrNotExist):
		return 0, false, nil, err
	}
	var epochs []epochEntry
	b, err = readFile(l.fs, filepath.Join(l.dir, epochCheckpoint))
	switch {
	case err == nil:
		if epochs, err = decodeEpochs(b); errors.Is(err, ErrVersion) {
			return 0, false, nil, err
		} else if err != nil {
			// The active segment's scan re-learns recent epochs.
			l.logger.Warn("ignoring corrupt leader epoch checkpoint", "dir", l.dir, "err", err)
			epochs = nil
		}
	case !errors.Is(err, fs.ErrNotExist):
		return 0, false, nil, err
	}
	return start, known, epochs, nil
}

// openSegments opens sealed segments from their indexes and scans the last.
// A sealed segment found torn (its seal never completed) becomes the last:
// later segments cannot hold durable data and are removed.
func (l *Log) openSegments(bases []int64) error {
	for i := 0; i+1 < len(bases); i++ {
		seg, torn, err := l.openSealed(bases[i], bases[i+1])
		if err != nil {
			return err
		}
		if torn {
			l.logger.Warn("sealed segment is torn; dropping the segments after it", "dir", l.dir,
				"segment", fileName(bases[i], logSuffix), "dropped", len(bases)-i-1)
			for _, b := range bases[i+1:] {
				if err := l.removeSegmentFiles(b); err != nil {
					return err
				}
			}
			l.mu.dirDirty = true
			bases = bases[:i+1]
			break
		}
		l.mu.segments = append(l.mu.segments, seg)
	}
	if len(bases) == 0 {
		return l.createActive(0)
	}
	return l.openActive(bases[len(bases)-1])
}

func (l *Log) openSealed(base, nextBase int64) (*segment, bool, error) {
	path := filepath.Join(l.dir, fileName(base, logSuffix))
	f, err := l.fs.Open(path)
	if err != nil {
		return nil, false, err
	}
	defer f.Close()
	size, flags, err := l.checkSegmentHeader(f, path, base)
	if err != nil {
		return nil, false, err
	}
	seg, err := l.loadIndexes(base, nextBase, path, size)
	if err != nil {
		return nil, false, err
	}
	if seg != nil {
		return seg, false, nil
	}
	seg, err = scanSegment(f, path, base, size, l.mu.cfg.IndexIntervalBytes, flags&segFlagCompacted != 0, l.learnEpoch)
	if errors.Is(err, errTorn) || (err == nil && seg.next != nextBase) {
		return nil, true, nil
	}
	if err != nil {
		return nil, false, err
	}
	// What the scan read may sit only in the page cache (a kill right after
	// a roll, before the seal's sync round). Index files make recovery trust
	// the segment without a scan, and the log counts it as durable, so its
	// data must reach the disk before them.
	if err := f.Datasync(); err != nil {
		return nil, false, fmt.Errorf("sync %s: %w", path, err)
	}
	seg.finishTimeIndex()
	l.logger.Info("rebuilt segment indexes", "dir", l.dir, "segment", filepath.Base(path))
	if err := writeAtomic(l.fs, l.dir, fileName(base, indexSuffix), seg.offIdx.AppendEncode(nil), false); err != nil {
		return nil, false, err
	}
	if err := writeAtomic(l.fs, l.dir, fileName(base, timeIndexSuffix), seg.timeIdx.AppendEncode(nil), false); err != nil {
		return nil, false, err
	}
	l.mu.dirDirty = true
	return seg, false, nil
}

// loadIndexes returns a sealed segment from its index files, nil if they are
// missing or do not match the segment, or an error for an unknown version.
func (l *Log) loadIndexes(base, nextBase int64, path string, size int64) (*segment, error) {
	oname, tname := fileName(base, indexSuffix), fileName(base, timeIndexSuffix)
	ob, oerr := readFile(l.fs, filepath.Join(l.dir, oname))
	tb, terr := readFile(l.fs, filepath.Join(l.dir, tname))
	if oerr != nil || terr != nil {
		l.logger.Warn("segment index missing; rebuilding", "dir", l.dir, "segment", filepath.Base(path), "err", errors.Join(oerr, terr))
		return nil, nil
	}
	oi, oerr := index.DecodeOffsetIndex(ob)
	ti, terr := index.DecodeTimeIndex(tb)
	var ve *index.VersionError
	if errors.As(oerr, &ve) {
		return nil, fmt.Errorf("%s: %w: %v", oname, ErrVersion, oerr)
	}
	if errors.As(terr, &ve) {
		return nil, fmt.Errorf("%s: %w: %v", tname, ErrVersion, terr)
	}
	bad := errors.Join(oerr, terr)
	if bad == nil {
		span := nextBase - base
		switch {
		case oi.Base != base || ti.Base != base:
			bad = fmt.Errorf("index base offsets %d/%d, want %d", oi.Base, ti.Base, base)
		case len(oi.Entries) > 0 && (int64(oi.Entries[len(oi.Entries)-1].Position) >= size || int64(oi.Entries[len(oi.Entries)-1].RelOffset) >= span):
			bad = errors.New("offset index points past the segment")
		case len(ti.Entries) > 0 && int64(ti.Entries[len(ti.Entries)-1].RelOffset) >= span:
			bad = errors.New("time index points past the segment")
		case span <= 0 || size <= segHeaderSize:
			bad = errors.New("empty sealed segment")
		}
	}
	if bad != nil {
		l.logger.Warn("segment index corrupt; rebuilding", "dir", l.dir, "segment", filepath.Base(path), "err", bad)
		return nil, nil
	}
	seg := newSegment(base, path)
	seg.offIdx, seg.timeIdx = *oi, *ti
	seg.size, seg.next = size, nextBase
	if last, ok := ti.Last(); ok {
		seg.maxTs, seg.maxTsOffset = last.Timestamp, base+int64(last.RelOffset)
	}
	return seg, nil
}

// checkSegmentHeader returns the file size and the header flags after
// checking the header.
func (l *Log) checkSegmentHeader(f vfs.File, path string, base int64) (int64, uint16, error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, 0, err
	}
	var hdr [segHeaderSize]byte
	if n, _ := f.ReadAt(hdr[:], 0); n < len(hdr) {
		return fi.Size(), 0, fmt.Errorf("%s: %w", path, errShortSegment)
	}
	got, flags, err := decodeSegmentHeader(hdr[:], path)
	if err != nil {
		return 0, 0, err
	}
	if got != base {
		return 0, 0, fmt.Errorf("%s: %w: header base offset %d", path, ErrCorrupt, got)
	}
	return fi.Size(), flags, nil
}

// openActive opens the last segment for appending, scans it and truncates a
// torn tail.
func (l *Log) openActive(base int64) error {
	path := filepath.Join(l.dir, fileName(base, logSuffix))
	f, err := l.fs.OpenFile(path, os.O_RDWR|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	size, flags, err := l.checkSegmentHeader(f, path, base)
	if errors.Is(err, errShortSegment) {
		// Created but its header never reached the disk: start it afresh.
		l.logger.Warn("segment header torn; recreating the segment", "dir", l.dir, "segment", filepath.Base(path), "bytes", size)
		if err := errors.Join(f.Truncate(0), writeAll(f, appendSegmentHeader(nil, base))); err != nil {
			_ = f.Close()
			return fmt.Errorf("reset %s: %w", path, err)
		}
		size, err = segHeaderSize, nil
	}
	if err != nil {
		_ = f.Close()
		return err
	}
	// The last segment may be a compacted one if the segments after it
	// were dropped as torn.
	seg, err := scanSegment(f, path, base, size, l.mu.cfg.IndexIntervalBytes, flags&segFlagCompacted != 0, l.learnEpoch)
	if errors.Is(err, errTorn) {
		l.logger.Warn("truncating torn tail of the active segment", "dir", l.dir, "segment", filepath.Base(path),
			"bytes", size-seg.size, "at", seg.size, "reason", err)
		if terr := f.Truncate(seg.size); terr != nil {
			_ = f.Close()
			return fmt.Errorf("truncate %s: %w", path, terr)
		}
	} else if err != nil {
		_ = f.Close()
		return err
	}
	// What survived a process crash may sit only in the page cache: make it
	// durable before counting it as durable.
	if err := f.Datasync(); err != nil {
		_ = f.Close()
		return fmt.Errorf("sync %s: %w", path, err)
	}
	seg.w = newWriter(f)
	if seg.next > base {
		seg.firstAppend = l.now()
	}
	l.mu.segments = append(l.mu.segments, seg)
	// Index files of the active segment are stale leftovers of a roll that
	// did not complete (or of a truncation); the active segment's indexes
	// live in memory.
	for _, suffix := range []string{indexSuffix, timeIndexSuffix, txnIndexSuffix} {
		if err := l.fs.Remove(filepath.Join(l.dir, fileName(base, suffix))); err == nil {
			l.mu.dirDirty = true
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

// createActive creates an empty active segment at base. The directory entry
// becomes durable with the next SyncDir.
func (l *Log) createActive(base int64) error {
	path := filepath.Join(l.dir, fileName(base, logSuffix))
	f, err := l.fs.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	if err := writeAll(f, appendSegmentHeader(nil, base)); err != nil {
		_ = f.Close()
		return fmt.Errorf("create %s: %w", path, err)
	}
	seg := newSegment(base, path)
	seg.w = newWriter(f)
	l.mu.segments = append(l.mu.segments, seg)
	l.mu.dirDirty = true
	return nil
}

func writeAll(f vfs.File, b []byte) error {
	_, err := f.Write(b)
	return err
}

// learnEpoch feeds a recovered batch's leader epoch to the epoch cache.
func (l *Log) learnEpoch(h *batch.Header) {
	if l.mu.epochs.assign(h.PartitionLeaderEpoch, h.BaseOffset) {
		l.mu.epochsDirty = true
	}
}

// applyStart settles the log start offset after the segments are open.
//
// A checkpointed start below the first segment's base is kept: the offsets
// in between live only in the remote tier (DeleteLocalBefore, ResetTo), and
// LocalStartOffset is the first segment's base. Without a valid checkpoint
// the start is the first segment's base, as before tiering: DeleteLocalBefore
// and ResetTo write the checkpoint before they leave such a gap.
func (l *Log) applyStart(start int64, known bool) error {
	first := l.mu.segments[0]
	if !known {
		start = max(start, first.base)
	}
	act := l.activeLocked()
	if start > act.next {
		l.logger.Warn("log start offset is past the recovered end; starting an empty log there",
			"dir", l.dir, "start", start, "end", act.next)
		for _, s := range l.mu.segments {
			if s.w != nil {
				_ = s.w.release() // the segment is being removed
				s.w = nil
			}
			if err := l.removeSegmentFiles(s.base); err != nil {
				return err
			}
		}
		l.mu.dirDirty = true
		l.mu.segments = nil
		l.mu.epochs.entries = nil
		l.mu.epochsDirty = true
		if err := l.createActive(start); err != nil {
			return err
		}
		if err := l.activeLocked().w.f.Datasync(); err != nil {
			return err
		}
	}
	for len(l.mu.segments) > 1 && l.mu.segments[0].next <= start {
		if err := l.removeSegmentFiles(l.mu.segments[0].base); err != nil {
			return err
		}
		l.mu.dirDirty = true
		l.mu.segments = l.mu.segments[1:]
	}
	l.mu.start = start
	return nil
}

// removeSegmentFiles removes a segment's files, ignoring missing ones. The
// caller syncs the directory.
func (l *Log) removeSegmentFiles(base int64) error {
	for _, suffix := range []string{logSuffix, indexSuffix, timeIndexSuffix, txnIndexSuffix} {
		path := filepath.Join(l.dir, fileName(base, suffix))
		l.files.evict(l.fs, path)
		if err := l.fs.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

// recoverProducers loads the newest usable snapshot at or below end and
// replays the batches after it. Snapshots past the end or below the first
// segment are removed. The replay writes the snapshot at the end of every
// sealed segment it passes whose snapshot is missing or unusable (a crash
// between a roll and its sync round), so that every sealed segment has its
// snapshot for ProducerSnapshotAt.
//
// It also recovers the aborted-transaction index: each sealed segment's
// .txnindex is loaded, and the replay starts at or before the first sealed
// segment whose file is missing or bad, rebuilding (and writing) every such
// file it passes and the active segment's in-memory entries.
func (l *Log) recoverProducers(snaps []int64, end int64) error {
	segs := l.mu.segments
	first := segs[0].base
	act := len(segs) - 1
	need := act // the first segment whose aborted transactions the replay rebuilds
	for i, s := range segs[:act] {
		ok, err := l.loadTxnIndex(s)
		if err != nil {
			return err
		}
		if !ok && need == act {
			need = i
		}
	}
	limit := segs[need].base
	from, loaded := first, false
	l.mu.producers = producer.NewState()
	have := map[int64]bool{}
	for i := len(snaps) - 1; i >= 0; i-- {
		off := snaps[i]
		name := fileName(off, snapshotSuffix)
		if off > end || off < first {
			if err := l.fs.Remove(filepath.Join(l.dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
			l.mu.dirDirty = true
			continue
		}
		have[off] = true
		if loaded || off > limit {
			continue // a newer one is loaded, or the replay must start earlier; keep it
		}
		b, err := readFile(l.fs, filepath.Join(l.dir, name))
		if err != nil {
			return err
		}
		st, next, err := producer.DecodeSnapshot(b)
		if errors.Is(err, producer.ErrSnapshotVersion) {
			return fmt.Errorf("%s: %w: %v", name, ErrVersion, err)
		}
		if err != nil || next != off {
			l.logger.Warn("ignoring bad producer snapshot", "dir", l.dir, "file", name, "err", err)
			continue
		}
		l.mu.producers, from, loaded = st, off, true
	}
	if !loaded && first > 0 {
		l.logger.Warn("no producer snapshot at the first segment; transactions open before it are not known",
			"dir", l.dir, "first", first)
	}
	nowMs := l.now().UnixMilli()
	for i, s := range segs {
		if s.next <= from {
			continue
		}
		var aborted []index.AbortedTxn
		var ends []txnEnd
		err := l.replayTxn(s, from, func(h *batch.Header, m *batch.Marker) {
			if e, ok := applyBatch(l.mu.producers, h, m, nowMs); ok {
				ends = append(ends, e)
				if e.abort {
					aborted = append(aborted, e.AbortedTxn)
				}
			}
		})
		if err != nil {
			return err
		}
		if i == act {
			s.txn = segTxns{}
			for _, ab := range aborted {
				s.txn.add(ab)
			}
			// Completed in the active segment: their markers may not be
			// replicated yet (LastStableOffset).
			l.setUnreplicatedLocked(ends)
			break
		}
		if !s.txn.onDisk {
			if err := writeAtomic(l.fs, l.dir, fileName(s.base, txnIndexSuffix), encodeTxnIndex(s.base, aborted), false); err != nil {
				return err
			}
			s.txn = txnSummary(aborted)
			l.mu.dirDirty = true
			l.logger.Info("rebuilt aborted transaction index", "dir", l.dir, "file", fileName(s.base, txnIndexSuffix), "entries", len(aborted))
		}
		// Snapshots at or below limit newer than the loaded one were
		// tried and found unusable; the ones above it only if missing.
		if s.next > limit && have[s.next] {
			continue
		}
		st := l.mu.producers.Clone()
		st.RemoveBelow(l.mu.start)
		if err := writeAtomic(l.fs, l.dir, fileName(s.next, snapshotSuffix), st.AppendSnapshot(nil, s.next), false); err != nil {
			return err
		}
		l.mu.dirDirty = true
		l.logger.Info("rewrote producer snapshot", "dir", l.dir, "file", fileName(s.next, snapshotSuffix))
	}
	l.mu.producers.RemoveBelow(l.mu.start)
	l.noteTxnsLocked()
	return nil
}

package log

import (
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/strata-io/strata/ingest/batch"
	"github.com/strata-io/strata/ingest/producer"
)

// What a follower needs from the log: appending the leader's batches as they
// are (AppendReplica) and cutting a divergent tail (TruncateTo).
//
// Offsets may skip in a follower's log (a compacted leader sends batches
// with gaps). A segment whose offsets skip carries segFlagCompacted in its
// header, as a cleaner's output does, so that recovery accepts the gaps;
// segments stay contiguous (each starts at the previous one's end), so a
// read at a missing offset finds the next batch present.

// AppendReplica appends b, one or more record batches fetched from the
// partition's leader, as they are: base offsets and partition leader epochs
// are the leader's. Every batch's CRC must match (else an error wrapping
// batch.ErrCorrupt), batches must be in increasing offset order, and the
// first must start at or after EndOffset() (offsets may skip; a batch below
// the end gives an error wrapping ErrOffsetOutOfRange). Nothing is appended
// on error. Producer state is updated from every batch without checks (the
// leader made them), transaction markers close transactions and abort
// markers add to the aborted-transaction index as on the leader (so a
// follower's AbortedTxns and FirstUnstableOffset match the leader's), and
// each batch's leader epoch is recorded at its base
// offset, so that EndOffsetForEpoch answers as the leader's log does. Rolls,
// indexes, flush policy, durability (WaitDurable), sticky I/O errors
// (ErrStorage), ErrDiskFull and ErrClosed are as for Append.
//
// A follower writes its log but does not read it back, so AppendReplica
// first tells the kernel to drop the page cache of the active segment's
// durable bytes, all but the last ReplicaCacheKeep (dropReplicaCache).
func (l *Log) AppendReplica(b []byte) (AppendResult, error) {
	l.dropReplicaCache()
	hdrs, records, err := parseBatches(b)
	if err != nil {
		return AppendResult{}, fmt.Errorf("append replica: %w", err)
	}
	pos := 0
	for i := range hdrs {
		h := &hdrs[i]
		n := h.Size()
		if got := crc32.Checksum(b[pos+21:pos+n], castagnoli); got != h.CRC {
			return AppendResult{}, fmt.Errorf("append replica: batch %d at offset %d: %w: CRC %08x, computed %08x",
				i, h.BaseOffset, batch.ErrCorrupt, h.CRC, got)
		}
		if h.BaseOffset < 0 {
			return AppendResult{}, fmt.Errorf("append replica: batch %d: %w: negative base offset %d", i, batch.ErrCorrupt, h.BaseOffset)
		}
		if i > 0 && h.BaseOffset <= hdrs[i-1].LastOffset() {
			return AppendResult{}, fmt.Errorf("append replica: batch %d at offset %d: %w: not after the previous batch ending at %d",
				i, h.BaseOffset, batch.ErrInvalidRecord, hdrs[i-1].LastOffset())
		}
		pos += n
	}
	markers, _ := parseMarkers(b, hdrs, false) // not strict: never fails
	res, forceSync, err := l.appendReplicaLocked(b, hdrs, markers, records)
	if err != nil {
		return res, err
	}
	if forceSync {
		l.syncNow()
	} else {
		l.scheduleSync()
	}
	return res, nil
}

// ReplicaCacheKeep is how many of the newest durable bytes of a follower's
// active segment AppendReplica leaves in the page cache: enough for the
// reads at the tail that follow when this replica becomes the leader
// (followers catching up, consumers at the high watermark).
const ReplicaCacheKeep = 4 << 20

// dropReplicaCache drops the page cache of the active segment's durable
// bytes below its newest ReplicaCacheKeep (posix_fadvise DONTNEED; only
// clean pages go, and reads still work, from the disk). Without it a
// follower's page cache grows with every byte it copies, and the kernel
// keeps taking fresh pages for the copy: on a virtual machine whose unused
// memory is handed back to the host that costs a host page fault per 4 KiB
// (write(2) into fresh pages took ~8× the CPU of writes into reused ones on
// the benchmark VM), and elsewhere it pushes hotter pages, such as a
// leader's tail, out of the cache. Only files of the operating system's
// file system are advised; errors are ignored (advice changes no data).
func (l *Log) dropReplicaCache() {
	l.mu.Lock()
	if l.mu.closed || l.mu.err != nil || l.mu.resetting {
		l.mu.Unlock()
		return
	}
	act := l.activeLocked()
	var pos int64 // every byte of act below it is durable
	if durable := l.durable.Load(); durable >= act.next {
		pos = act.size
	} else if e, ok := act.offIdx.Lookup(durable); ok {
		pos = int64(e.Position) // a batch starting at or below durable
	}
	pos -= ReplicaCacheKeep
	if pos <= 0 || act.w == nil {
		l.mu.Unlock()
		return
	}
	w := act.w.acquire()
	l.mu.Unlock()
	defer func() { _ = w.release() }() // advice only; a close error changes nothing
	if sc, ok := w.f.(interface {
		SyscallConn() (syscall.RawConn, error)
	}); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			_ = rc.Control(func(fd uintptr) { _ = unix.Fadvise(int(fd), 0, pos, unix.FADV_DONTNEED) })
		}
	}
}

func (l *Log) appendReplicaLocked(b []byte, hdrs []batch.Header, markers []*batch.Marker, records int64) (AppendResult, bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.mu.closed:
		return AppendResult{}, false, ErrClosed
	case l.mu.err != nil:
		return AppendResult{}, false, fmt.Errorf("%w: %s: %w", ErrStorage, l.dir, l.mu.err)
	case l.mu.resetting:
		return AppendResult{}, false, errResetting
	}
	act := l.activeLocked()
	first, lastOffset := hdrs[0].BaseOffset, hdrs[len(hdrs)-1].LastOffset()
	if first < act.next {
		return AppendResult{}, false, fmt.Errorf("%w: append replica: batch at %d is below the log end %d of %s",
			ErrOffsetOutOfRange, first, act.next, l.dir)
	}
	if err := l.checkSpaceLocked(len(b), false); err != nil {
		return AppendResult{}, false, err
	}
	gaps := first != act.next
	for i := 1; i < len(hdrs) && !gaps; i++ {
		gaps = hdrs[i].BaseOffset != hdrs[i-1].LastOffset()+1
	}

	now := l.now()
	cfg := l.mu.cfg
	if act.next > act.base && (act.size+int64(len(b)) > cfg.SegmentBytes ||
		now.Sub(act.firstAppend).Milliseconds() >= cfg.SegmentMs || !act.fits(lastOffset, len(b)) || (gaps && !act.gaps)) {
		var flags uint16
		if gaps {
			flags = segFlagCompacted
		}
		if err := l.rollFlagsLocked(flags); errors.Is(err, ErrDiskFull) {
			return AppendResult{}, false, err
		} else if err != nil {
			return AppendResult{}, false, l.failLocked(err)
		}
		act = l.activeLocked()
	} else if gaps && !act.gaps {
		// An empty segment without the flag: rewrite its header. Nothing
		// else is in the file, and a torn header is recreated by Open.
		hdr := appendSegmentHeaderFlags(nil, act.base, segFlagCompacted)
		if err := act.w.f.Truncate(0); err != nil {
			return AppendResult{}, false, l.failLocked(fmt.Errorf("truncate %s: %w", act.path, err))
		}
		if err := writeAll(act.w.f, hdr); err != nil {
			return AppendResult{}, false, l.failLocked(fmt.Errorf("write %s: %w", act.path, err))
		}
		act.gaps = true
	}
	if !act.fits(lastOffset, len(b)) {
		return AppendResult{}, false, fmt.Errorf("append replica: batches [%d, %d] of %d bytes do not fit a segment at %d of %s",
			first, lastOffset, len(b), act.base, l.dir)
	}

	if _, err := act.w.f.Write(b); err != nil {
		return AppendResult{}, false, l.failLocked(fmt.Errorf("write %s: %w", act.path, err))
	}
	for i := range hdrs {
		if l.mu.epochs.assign(hdrs[i].PartitionLeaderEpoch, hdrs[i].BaseOffset) {
			l.mu.epochsDirty = true
		}
	}
	force := l.appendedLocked(act, hdrs, markers, len(b), records, now, cfg)
	return AppendResult{BaseOffset: first, LastOffset: lastOffset, LogStartOffset: l.mu.start}, force, nil
}

// TruncateTo removes every record at or above offset (a follower's divergent
// tail) and returns the new end offset. The cut is at a batch boundary: if
// offset falls inside a batch (or in a gap of offsets before one), that
// whole batch goes, so the new end may be below offset. An offset at or
// above EndOffset() changes nothing and returns EndOffset(). An offset below
// StartOffset() gives ErrOffsetOutOfRange, one below LocalStartOffset()
// ErrBelowLocalStart (the tier's records cannot be cut); nothing changes.
// Truncating to StartOffset() leaves a log without records at the start
// (if the start is inside a batch, EndOffset() becomes StartOffset(): the
// log restarts empty there).
//
// Afterwards EndOffset() is the new end, DurableOffset() equals it,
// producer state is as of the new end (the newest producer snapshot at or
// below it plus a replay, as at recovery), the leader-epoch cache has no
// entry at or past the new end, and the cut segment is the active one. Reads
// of cut offsets give ErrOffsetOutOfRange; a reader that captured a cut
// segment before looks the offset up again. A cleaner pass that began
// before does not commit (ErrCleanRaced), and the cleaner point is lowered
// to the new end.
//
// When it returns nil the truncation is durable. A crash during it leaves
// either the old log or the truncated one. The commit point is the fdatasync
// of the cut segment's truncation: the cut segment's index files are removed
// durably before, so that recovery scans it, finds it shorter than the next
// segment's base (a torn seal) and drops every later segment. Appends and
// rolls fail while it runs. An I/O error is sticky (ErrStorage); Open then
// gives the old or the truncated log.
func (l *Log) TruncateTo(offset int64) (int64, error) {
	l.adminMu.Lock()
	defer l.adminMu.Unlock()
	l.mu.Lock()
	if err := l.usableLocked(); err != nil {
		l.mu.Unlock()
		return 0, err
	}
	if l.mu.resetting {
		l.mu.Unlock()
		return 0, errResetting
	}
	end, start, local := l.activeLocked().next, l.mu.start, l.mu.segments[0].base
	switch {
	case offset >= end:
		l.mu.Unlock()
		return end, nil
	case offset < start:
		l.mu.Unlock()
		return 0, fmt.Errorf("%w: truncate %s to %d: log start is %d", ErrOffsetOutOfRange, l.dir, offset, start)
	case offset < local:
		l.mu.Unlock()
		return 0, fmt.Errorf("%w: truncate %s to %d: local log starts at %d", ErrBelowLocalStart, l.dir, offset, local)
	}
	l.mu.resetting = true
	l.mu.Unlock()

	// Make what was appended durable and finish pending seals: afterwards
	// every segment but the active one is sealed, with its index files and
	// producer snapshot, and no sync round has work of its own.
	l.syncNow()
	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	l.mu.Lock()
	err := l.usableLocked()
	if err == nil && len(l.mu.seals) > 0 {
		err = l.failLocked(errors.New("truncate: seals pending after a sync round")) // cannot happen
	}
	segs := slices.Clone(l.mu.segments)
	cfg := l.mu.cfg
	l.mu.Unlock()
	if err != nil {
		l.endTruncate()
		return 0, err
	}

	newEnd, err := l.truncateFiles(segs, offset, start, cfg)
	l.endTruncate()
	if err != nil {
		return 0, err
	}
	l.logger.Info("log truncated", "dir", l.dir, "to", offset, "end", newEnd, "old end", end)
	return newEnd, nil
}

func (l *Log) endTruncate() {
	l.mu.Lock()
	l.mu.resetting = false
	l.mu.Unlock()
}

// truncateFiles does the work of TruncateTo, with adminMu and syncMu held
// and appends refused. segs is the segment list, all sealed and durable but
// the last.
func (l *Log) truncateFiles(segs []*segment, offset, start int64, cfg Config) (int64, error) {
	i := segmentIndex(segs, offset)
	cut := segs[i]
	sealed := i < len(segs)-1

	// Find the cut: the first batch ending at or after offset. The batches
	// before it are indexed again for the cut segment's new in-memory state.
	var f interface {
		ReadAt([]byte, int64) (int, error)
	}
	var closeRead func()
	if cut.w != nil {
		f = cut.w.f
	} else {
		rf, err := l.fs.Open(cut.path)
		if err != nil {
			return 0, fmt.Errorf("truncate: open %s: %w", cut.path, err) // nothing changed
		}
		f, closeRead = rf, func() { _ = rf.Close() } // read-only
	}
	ns := newSegment(cut.base, cut.path)
	ns.gaps = cut.gaps
	cutPos := cut.size
	err := walkHeaders(f, segHeaderSize, cut.size, func(h *batch.Header, pos int64) bool {
		if h.LastOffset() >= offset {
			cutPos = pos
			return false
		}
		ns.indexBatch(h, pos, cfg.IndexIntervalBytes)
		return true
	})
	if err == nil && sealed {
		// The active segment knows its flags; a sealed one's are in its
		// header.
		var hdr [segHeaderSize]byte
		if n, rerr := f.ReadAt(hdr[:], 0); n < len(hdr) {
			err = fmt.Errorf("read header of %s: %w", cut.path, rerr)
		} else if _, flags, derr := decodeSegmentHeader(hdr[:], cut.path); derr != nil {
			err = derr
		} else {
			ns.gaps = flags&segFlagCompacted != 0
		}
	}
	if closeRead != nil {
		closeRead()
	}
	if err != nil {
		return 0, fmt.Errorf("truncate %s: %w", l.dir, err) // nothing changed
	}
	newEnd := ns.next
	if sealed && newEnd == cut.next {
		// Cannot happen: segments are contiguous and end with a batch.
		return 0, fmt.Errorf("truncate %s to %d: no batch of segment [%d, %d) is cut", l.dir, offset, cut.base, cut.next)
	}

	// Producer state and the cut segment's aborted transactions as of the
	// new end, from the files as they are: the replay reads no byte past
	// the cut.
	kept := append(slices.Clone(segs[:i]), ns)
	names, err := l.fs.ReadDir(l.dir)
	if err != nil {
		return 0, fmt.Errorf("truncate %s: %w", l.dir, err) // nothing changed
	}
	var snaps []int64
	for _, n := range names {
		if off, ok := parseFileName(n, snapshotSuffix); ok {
			snaps = append(snaps, off)
		}
	}
	producers, cutEnds, err := l.producersAt(kept, snaps, newEnd, start)
	if err != nil {
		return 0, fmt.Errorf("truncate %s: rebuild producer state: %w", l.dir, err) // nothing changed
	}
	for _, e := range cutEnds {
		if e.abort {
			ns.txn.add(e.AbortedTxn)
		}
	}

	// Before the commit point: changes that are right for the old log too.
	if p := l.cleanPoint.Load(); p > newEnd {
		if err := writeAtomic(l.fs, l.dir, cleanerCheckpoint, encodeCleanerCheckpoint(newEnd, nil), true); err != nil {
			return 0, l.fail(err)
		}
		l.cleanPoint.Store(newEnd)
	}
	if newEnd < start && !l.startSaved {
		// Recovery must know the start to restart the log there.
		if err := writeAtomic(l.fs, l.dir, startCheckpoint, encodeStartOffset(start), true); err != nil {
			return 0, l.fail(err)
		}
		l.startSaved = true
	}
	if sealed {
		// Recovery must scan the cut segment, not trust its indexes: then a
		// truncated cut segment is a torn seal and the segments after it go.
		for _, suffix := range []string{indexSuffix, timeIndexSuffix} {
			if err := l.fs.Remove(filepath.Join(l.dir, fileName(cut.base, suffix))); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return 0, l.fail(fmt.Errorf("truncate: %w", err))
			}
		}
		if err := l.fs.SyncDir(l.dir); err != nil {
			return 0, l.fail(fmt.Errorf("sync dir %s: %w", l.dir, err))
		}
	}

	// The commit point. Reads of the cut segment that overlap the cut look
	// again (segment.cut), until the swap below gives them the new one.
	wf, err := l.fs.OpenFile(cut.path, os.O_RDWR|os.O_APPEND, 0o644)
	if err != nil {
		return 0, l.fail(fmt.Errorf("truncate: open %s: %w", cut.path, err))
	}
	cut.cut.Store(true)
	err = wf.Truncate(cutPos)
	if err == nil {
		err = wf.Datasync()
	}
	if err != nil {
		_ = wf.Close()       // the truncate or sync error is what counts
		cut.cut.Store(false) // the log fails: reads of what is left give errors, not retries
		return 0, l.fail(fmt.Errorf("truncate %s: %w", cut.path, err))
	}
	ns.w = newWriter(wf)
	if ns.next > ns.base { // as for segment.ms after an Open
		ns.firstAppend = cut.firstAppend
		if ns.firstAppend.IsZero() {
			ns.firstAppend = l.now()
		}
	}

	// Swap the in-memory segments. Readers that captured a cut or removed
	// segment find it replaced and look the offset up again.
	l.mu.Lock()
	old := l.activeLocked()
	oldW := old.w
	old.w = nil
	for _, s := range segs[i:] {
		s.deleted, s.replaced = true, true
	}
	l.files.evict(l.fs, cut.path)
	l.mu.segments = kept
	l.mu.producers = producers
	l.noteTxnsLocked()
	l.setUnreplicatedLocked(cutEnds)
	if l.mu.epochs.truncateFromEnd(newEnd) {
		l.mu.epochsDirty = true
	}
	epochs := encodeEpochs(l.mu.epochs.clone())
	l.mu.truncations++
	l.mu.unsynced, l.mu.unsyncedAt = 0, time.Time{}
	l.mu.Unlock()
	_ = oldW.release() // the old active descriptor; readers may still hold references
	l.durable.Store(newEnd)
	l.notifyDurable()

	// After the commit point: what recovery would do anyway.
	doomed := segs[i+1:]
	for k := len(doomed) - 1; k >= 0; k-- {
		if err := l.removeSegmentFiles(doomed[k].base); err != nil {
			return 0, l.fail(fmt.Errorf("truncate: delete segment %s: %w", doomed[k].path, err))
		}
	}
	for _, off := range snaps {
		if off <= newEnd {
			continue
		}
		if err := l.fs.Remove(filepath.Join(l.dir, fileName(off, snapshotSuffix))); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return 0, l.fail(fmt.Errorf("truncate: %w", err))
		}
	}
	if sealed {
		// The cut segment is the active one now: its entries are in
		// memory, and a leftover file would be removed by Open anyway.
		if err := l.fs.Remove(filepath.Join(l.dir, fileName(cut.base, txnIndexSuffix))); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return 0, l.fail(fmt.Errorf("truncate: %w", err))
		}
	}
	if err := writeAtomic(l.fs, l.dir, epochCheckpoint, epochs, false); err != nil {
		return 0, l.fail(err)
	}
	if err := l.fs.SyncDir(l.dir); err != nil {
		return 0, l.fail(fmt.Errorf("sync dir %s: %w", l.dir, err))
	}
	l.mu.Lock()
	l.mu.epochsDirty = false // written above; only appends change epochs, and they wait
	l.mu.dirDirty = false
	l.mu.Unlock()

	if newEnd < start {
		// The start was inside the cut batch: restart the log empty at the
		// start, as recovery would.
		if err := l.restartAt(start); err != nil {
			return 0, err
		}
		newEnd = start
	}
	return newEnd, nil
}

// segmentIndex returns the index of the segment holding offset.
func segmentIndex(segs []*segment, offset int64) int {
	i := len(segs) - 1
	for i > 0 && segs[i].base > offset {
		i--
	}
	return i
}

// producersAt rebuilds producer state as of end from the newest usable
// snapshot at or below the last segment's base (and at or above the first
// segment's base) and a replay of the batches after it, as recovery does.
// It also returns the transactions whose marker is in the last segment
// (below end), in marker order.
func (l *Log) producersAt(segs []*segment, snaps []int64, end, start int64) (*producer.State, []txnEnd, error) {
	slices.Sort(snaps)
	last := segs[len(segs)-1]
	st, from := producer.NewState(), segs[0].base
	for k := len(snaps) - 1; k >= 0; k-- {
		off := snaps[k]
		if off > min(end, last.base) || off < segs[0].base {
			continue
		}
		name := fileName(off, snapshotSuffix)
		b, err := readFile(l.fs, filepath.Join(l.dir, name))
		if err != nil {
			return nil, nil, err
		}
		s, next, err := producer.DecodeSnapshot(b)
		if err != nil || next != off {
			l.logger.Warn("ignoring bad producer snapshot", "dir", l.dir, "file", name, "err", err)
			continue
		}
		st, from = s, off
		break
	}
	nowMs := l.now().UnixMilli()
	var ends []txnEnd
	for _, s := range segs {
		if s.next <= from {
			continue
		}
		err := l.replayTxn(s, from, func(h *batch.Header, m *batch.Marker) {
			if e, ok := applyBatch(st, h, m, nowMs); ok && s == last {
				ends = append(ends, e)
			}
		})
		if err != nil {
			return nil, nil, err
		}
	}
	st.RemoveBelow(start)
	return st, ends, nil
}

// restartAt replaces the segments, which hold no record at or above start,
// by one empty segment at start. The old segments go first, from the last,
// then the new one is created: a crash in between leaves segments ending
// below the checkpointed start, which recovery turns into the same empty log.
func (l *Log) restartAt(start int64) error {
	l.mu.Lock()
	segs := slices.Clone(l.mu.segments)
	l.mu.Unlock()
	for k := len(segs) - 1; k >= 0; k-- {
		if err := l.removeSegmentFiles(segs[k].base); err != nil {
			return l.fail(fmt.Errorf("truncate: delete segment %s: %w", segs[k].path, err))
		}
	}
	names, err := l.fs.ReadDir(l.dir)
	if err != nil {
		return l.fail(fmt.Errorf("truncate: %w", err))
	}
	for _, n := range names {
		if _, ok := parseFileName(n, snapshotSuffix); ok {
			if err := l.fs.Remove(filepath.Join(l.dir, n)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return l.fail(fmt.Errorf("truncate: %w", err))
			}
		}
	}
	path := filepath.Join(l.dir, fileName(start, logSuffix))
	f, err := l.fs.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o644)
	if err != nil {
		return l.fail(fmt.Errorf("truncate: create %s: %w", path, err))
	}
	err = writeAll(f, appendSegmentHeader(nil, start))
	if err == nil {
		err = f.Datasync()
	}
	if err == nil {
		err = l.fs.SyncDir(l.dir)
	}
	if err != nil {
		_ = f.Close() // the write or sync error is what counts
		return l.fail(fmt.Errorf("truncate: create %s: %w", path, err))
	}
	seg := newSegment(start, path)
	seg.w = newWriter(f)
	l.mu.Lock()
	var ws []*writer
	for _, s := range segs {
		s.deleted, s.replaced = true, true
		if s.w != nil {
			ws = append(ws, s.w)
			s.w = nil
		}
	}
	l.mu.segments = []*segment{seg}
	l.mu.producers.RemoveBelow(start) // no batch is left; nothing ends at or after start
	l.noteTxnsLocked()
	l.setUnreplicatedLocked(nil)
	if l.mu.epochs.truncateFromStart(start) {
		l.mu.epochsDirty = true
	}
	l.mu.Unlock()
	for _, w := range ws {
		_ = w.release() // readers may still hold references
	}
	l.durable.Store(start)
	l.notifyDurable()
	return nil
}

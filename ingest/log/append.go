package log

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/strata-io/strata/ingest/batch"
	"github.com/strata-io/strata/ingest/producer"
)

// AppendInfo describes an append.
type AppendInfo struct {
	LeaderEpoch int32 // stamped into every batch and recorded in the epoch cache
	// Coordinator marks an append a coordinator makes on a producer's
	// behalf, such as the group coordinator's TxnOffsetCommit records
	// (transactional batches with the producer's id and epoch and base
	// sequence 0 each time): an older producer epoch is still fenced, but
	// no sequence or duplicate check is done (producer.OriginCoordinator).
	// The batches still open the producer's transaction.
	Coordinator bool
}

// AppendResult describes where an append landed.
type AppendResult struct {
	BaseOffset, LastOffset int64
	LogStartOffset         int64
	// Duplicate is set when the batch repeats one of a producer's recent
	// batches: nothing was appended and the offsets are the original's.
	Duplicate bool
}

// errMixedDuplicates is returned for an append of several batches of which
// only some are duplicates; Kafka clients never send that.
var errMixedDuplicates = errors.New("append mixes duplicate and new idempotent batches")

// Append writes b, one or more record batches the caller has validated,
// after assigning offsets and the leader epoch to each batch in place. It
// checks and records idempotent producer state under the append lock; a
// producer error (it has Code()) is returned as is. The data is written but
// not yet durable: use WaitDurable. Sticky I/O errors wrap ErrStorage;
// ErrDiskFull is returned when free space is below Config.MinFreeBytes.
//
// Transaction markers (batch.AppendMarker) are appended with Append too:
// a control batch with a producer id must hold a commit or abort marker
// (else an error wrapping batch.ErrCorrupt), is checked with
// producer.State.CheckMarker (older producer epoch: INVALID_PRODUCER_EPOCH;
// older coordinator epoch: TRANSACTION_COORDINATOR_FENCED), closes the
// producer's open transaction and, for an abort, records it in the
// aborted-transaction index (AbortedTxns).
func (l *Log) Append(b []byte, info AppendInfo) (AppendResult, error) {
	hdrs, records, err := parseBatches(b)
	if err != nil {
		return AppendResult{}, err
	}
	markers, err := parseMarkers(b, hdrs, true)
	if err != nil {
		return AppendResult{}, err
	}
	res, forceSync, err := l.appendLocked(b, hdrs, markers, records, info)
	if err != nil || res.Duplicate {
		return res, err
	}
	if forceSync {
		l.syncNow()
	} else {
		l.scheduleSync()
	}
	return res, nil
}

// parseBatches reads the headers of the batches in b.
func parseBatches(b []byte) ([]batch.Header, int64, error) {
	var hdrs []batch.Header
	var records int64
	for pos := 0; pos < len(b); {
		h, err := batch.ParseHeader(b[pos:])
		if err != nil {
			return nil, 0, fmt.Errorf("append: batch at byte %d: %w", pos, err)
		}
		if h.Size() > len(b)-pos || h.LastOffsetDelta < 0 {
			return nil, 0, fmt.Errorf("append: batch at byte %d: %w", pos, batch.ErrShort)
		}
		hdrs = append(hdrs, h)
		records += int64(h.LastOffsetDelta) + 1
		pos += h.Size()
	}
	if len(hdrs) == 0 {
		return nil, 0, errors.New("append: no record batch")
	}
	return hdrs, records, nil
}

func (l *Log) appendLocked(b []byte, hdrs []batch.Header, markers []*batch.Marker, records int64, info AppendInfo) (AppendResult, bool, error) {
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
	if err := l.checkSpaceLocked(len(b), false); err != nil {
		return AppendResult{}, false, err
	}
	// Idempotence: check every batch against the state as it would be after
	// the ones before it. A single batch (the Kafka case) needs no copy.
	state := l.mu.producers
	if len(hdrs) > 1 {
		state = state.Clone()
	}
	origin := producer.OriginClient
	if info.Coordinator {
		origin = producer.OriginCoordinator
	}
	var dups int
	var first, last int64
	for i := range hdrs {
		m := markerAt(markers, i)
		var dup *producer.BatchMeta
		var err error
		if m != nil {
			err = state.CheckMarker(&hdrs[i], *m)
		} else {
			dup, err = state.CheckFrom(&hdrs[i], origin)
		}
		if err != nil {
			return AppendResult{}, false, err
		}
		if dup != nil {
			if dups == 0 {
				first = dup.FirstOffset
			}
			dups++
			last = dup.LastOffset
		} else if len(hdrs) > 1 {
			applyBatch(state, &hdrs[i], m, 0)
		}
	}
	if dups == len(hdrs) {
		return AppendResult{BaseOffset: first, LastOffset: last, LogStartOffset: l.mu.start, Duplicate: true}, false, nil
	} else if dups > 0 {
		return AppendResult{}, false, errMixedDuplicates
	}

	now := l.now()
	cfg := l.mu.cfg
	act := l.activeLocked()
	next := act.next
	lastOffset := next + records - 1
	if act.next > act.base && (act.size+int64(len(b)) > cfg.SegmentBytes ||
		now.Sub(act.firstAppend).Milliseconds() >= cfg.SegmentMs || !act.fits(lastOffset, len(b))) {
		if err := l.rollLocked(); errors.Is(err, ErrDiskFull) {
			return AppendResult{}, false, err
		} else if err != nil {
			return AppendResult{}, false, l.failLocked(err)
		}
		act = l.activeLocked()
	}

	assignOffsets(b, hdrs, next, info.LeaderEpoch)
	if _, err := act.w.f.Write(b); err != nil {
		return AppendResult{}, false, l.failLocked(fmt.Errorf("write %s: %w", act.path, err))
	}

	if l.mu.epochs.assign(info.LeaderEpoch, next) {
		l.mu.epochsDirty = true
	}
	force := l.appendedLocked(act, hdrs, markers, len(b), records, now, cfg)
	return AppendResult{BaseOffset: next, LastOffset: lastOffset, LogStartOffset: l.mu.start}, force, nil
}

// appendedLocked does the bookkeeping of batches just written to act (by
// Append or AppendReplica): sparse indexes, producer state, open and aborted
// transactions, and the flush policy's counters. It reports whether
// flush.messages or flush.ms ask for a sync now.
func (l *Log) appendedLocked(act *segment, hdrs []batch.Header, markers []*batch.Marker, size int, records int64, now time.Time, cfg Config) bool {
	if act.firstAppend.IsZero() {
		act.firstAppend = now
	}
	nowMs := now.UnixMilli()
	pos := act.size
	txns := false
	for i := range hdrs {
		h := &hdrs[i]
		act.indexBatch(h, pos, cfg.IndexIntervalBytes)
		pos += int64(h.Size())
		if e, ok := applyBatch(l.mu.producers, h, markerAt(markers, i), nowMs); ok {
			if e.abort {
				act.txn.add(e.AbortedTxn)
			}
			l.noteEndLocked(e)
		}
		txns = txns || h.IsTransactional() || h.IsControl()
	}
	if txns {
		l.noteTxnsLocked()
	}
	if l.mu.unsynced == 0 {
		l.mu.unsyncedAt = now
	}
	l.mu.unsynced += records
	l.mu.sinceSpace += int64(size)
	return l.mu.unsynced >= cfg.FlushMessages || now.Sub(l.mu.unsyncedAt).Milliseconds() >= cfg.FlushMs
}

// markerAt returns markers[i], nil if markers is nil.
func markerAt(markers []*batch.Marker, i int) *batch.Marker {
	if markers == nil {
		return nil
	}
	return markers[i]
}

// assignOffsets patches base offsets and leader epochs in place, in b and
// in the parsed headers.
func assignOffsets(b []byte, hdrs []batch.Header, next int64, epoch int32) {
	batch.AssignOffsets(b, next, epoch)
	for i := range hdrs {
		hdrs[i].BaseOffset, hdrs[i].PartitionLeaderEpoch = next, epoch
		next = hdrs[i].LastOffset() + 1
	}
}

// checkSpaceLocked refuses the append if free space is below the headroom.
// It asks the file system only when forced (at roll), every spaceCheckBytes
// appended, or on every append while space is low.
func (l *Log) checkSpaceLocked(n int, force bool) error {
	minFree := l.mu.cfg.MinFreeBytes
	if minFree <= 0 || (!force && !l.mu.spaceLow && l.mu.sinceSpace+int64(n) < spaceCheckBytes) {
		return nil
	}
	l.mu.sinceSpace = 0
	free, err := l.fs.FreeSpace(l.dir)
	if err != nil {
		l.logger.Warn("free space check failed", "dir", l.dir, "err", err)
		return nil // not a write error; the write itself will tell
	}
	l.mu.spaceLow = free < minFree+int64(n)
	if l.mu.spaceLow {
		return fmt.Errorf("%w: %d bytes free in %s, headroom %d", ErrDiskFull, free, l.dir, minFree)
	}
	return nil
}

// rollLocked seals the active segment and starts a new one at its end. The
// I/O that needs fsync (the sealed segment's data, its index files, the
// producer snapshot, the directory) is left to the next sync round, which
// does it before publishing any offset of the new segment.
func (l *Log) rollLocked() error { return l.rollFlagsLocked(0) }

// rollFlagsLocked is rollLocked with the new segment's header flags
// (segFlagCompacted for a follower segment whose offsets may skip).
func (l *Log) rollFlagsLocked(flags uint16) error {
	old := l.activeLocked()
	if err := l.checkSpaceLocked(0, true); err != nil {
		return err
	}
	path := filepath.Join(l.dir, fileName(old.next, logSuffix))
	f, err := l.fs.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("roll: create %s: %w", path, err)
	}
	if err := writeAll(f, appendSegmentHeaderFlags(nil, old.next, flags)); err != nil {
		_ = f.Close() // the write error is what counts
		return fmt.Errorf("roll: write %s: %w", path, err)
	}
	old.finishTimeIndex()
	l.mu.seals = append(l.mu.seals, sealJob{seg: old, w: old.w, producers: l.mu.producers.Clone(), aborted: old.txn.entries})
	seg := newSegment(old.next, path)
	seg.gaps = flags&segFlagCompacted != 0
	seg.w = newWriter(f)
	l.mu.segments = append(l.mu.segments, seg)
	l.mu.dirDirty = true
	return nil
}

package log

import (
	"fmt"
	"path/filepath"

	"github.com/strata-io/strata/compactor"
)

// SetStartOffset moves the log start offset forward to off (DeleteRecords):
// it persists the new start, deletes the segments wholly below it and drops
// producer state that ends below it. off must not exceed the durable offset
// (ErrOffsetOutOfRange); an off at or below the current start is a no-op.
// With a remote tier, an off below LocalStartOffset only moves the
// checkpoint (no local segment is affected; the tier drops its data below
// it), and an off beyond it deletes the local segments wholly below off.
func (l *Log) SetStartOffset(off int64) error {
	l.adminMu.Lock()
	defer l.adminMu.Unlock()
	l.mu.Lock()
	if err := l.usableLocked(); err != nil {
		l.mu.Unlock()
		return err
	}
	start := l.mu.start
	l.mu.Unlock()
	if off <= start {
		return nil
	}
	if d := l.durable.Load(); off > d {
		return fmt.Errorf("%w: new log start %d is past the durable offset %d of %s", ErrOffsetOutOfRange, off, d, l.dir)
	}
	return l.advanceStart(off)
}

// ApplyRetention deletes the oldest sealed, durable segments while they are
// past retention: their largest timestamp is more than retentionMs before
// now, or the log would still hold at least retentionBytes without them.
// A negative limit is unlimited. The active segment is never deleted. It
// returns the number of segments deleted.
//
// It moves the log start offset and counts local segments only, so it is
// the retention of a log without a remote tier. A tiered log bounds its
// local part with DeleteLocalBefore and its whole history with
// SetStartOffset. It is ApplyRetentionConfig with cleanup.policy=delete.
func (l *Log) ApplyRetention(retentionMs, retentionBytes int64) (deleted int, err error) {
	plan, err := l.ApplyRetentionConfig(compactor.Config{
		CleanupPolicy: compactor.Delete, RetentionMs: retentionMs, RetentionBytes: retentionBytes,
		LocalRetentionMs: -1, LocalRetentionBytes: -1,
	})
	return len(plan.Local), err
}

// ApplyRetentionConfig applies the retention of c to a log without a remote
// tier as compactor.PlanRetention plans it over the log as it is now (see
// RetentionInput), and returns the plan. Planning and deleting happen under
// the admin lock, so the plan returned is what was done: the log start
// moves to plan.LogStart and the segments wholly below it are deleted.
// c.RemoteStorage is ignored (a tiered log's retention is the tier's), and
// cleanup.policy=compact alone deletes nothing.
func (l *Log) ApplyRetentionConfig(c compactor.Config) (compactor.RetentionPlan, error) {
	l.adminMu.Lock()
	defer l.adminMu.Unlock()
	l.mu.Lock()
	if err := l.usableLocked(); err != nil {
		l.mu.Unlock()
		return compactor.RetentionPlan{}, err
	}
	c.RemoteStorage = false
	plan := compactor.PlanRetention(l.retentionInputLocked(), c, l.now())
	l.mu.Unlock()
	if plan.LogStart <= plan.OldLogStart {
		return plan, nil
	}
	return plan, l.advanceStart(plan.LogStart)
}

// RetentionInput describes the log as the compactor's planners read it: its
// segments (Bytes is the file size, header included, as Size and
// retention.bytes count it; Key the file name), the log start, and the
// durable offset as the high watermark. The cleaner points are left at the
// log start.
func (l *Log) RetentionInput() compactor.Partition {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.retentionInputLocked()
}

func (l *Log) retentionInputLocked() compactor.Partition {
	durable := l.durable.Load()
	segs := make([]compactor.Segment, len(l.mu.segments))
	for i, s := range l.mu.segments {
		sealed := i < len(l.mu.segments)-1
		segs[i] = compactor.Segment{
			Tier: compactor.Local, Base: s.base, Next: s.next, Bytes: s.size,
			MaxTimestamp: s.maxTs, FirstTimestamp: -1,
			Sealed: sealed, Durable: sealed && s.w == nil && s.next <= durable,
			Key: fileName(s.base, logSuffix),
		}
	}
	start := l.mu.start
	return compactor.Partition{Local: segs, LogStart: start, RemoteLogStart: start, HighWatermark: durable,
		CleanerPoint: l.cleanerPointLocked(), RemoteCleanerPoint: start}
}

func (l *Log) usableLocked() error {
	switch {
	case l.mu.closed:
		return ErrClosed
	case l.mu.err != nil:
		return fmt.Errorf("%w: %s: %w", ErrStorage, l.dir, l.mu.err)
	}
	return nil
}

// advanceStart persists off as the log start, then applies it in memory and
// deletes the segments wholly below it. Called with adminMu held.
func (l *Log) advanceStart(off int64) error {
	if err := writeAtomic(l.fs, l.dir, startCheckpoint, encodeStartOffset(off), true); err != nil {
		return l.fail(err)
	}
	l.startSaved = true
	l.mu.Lock()
	l.mu.start = off
	l.mu.producers.RemoveBelow(off)
	l.noteTxnsLocked()
	if l.mu.epochs.truncateFromStart(off) {
		l.mu.epochsDirty = true
	}
	var doomed []*segment
	for len(l.mu.segments) > 1 && l.mu.segments[0].next <= off && l.mu.segments[0].w == nil {
		s := l.mu.segments[0]
		s.deleted = true // readers that captured it before now give up on it
		doomed = append(doomed, s)
		l.mu.segments[0] = nil // do not keep it (and its indexes) reachable
		l.mu.segments = l.mu.segments[1:]
	}
	l.mu.Unlock()
	if len(doomed) == 0 {
		return nil
	}
	for _, s := range doomed {
		if err := l.removeSegmentFiles(s.base); err != nil {
			return l.fail(fmt.Errorf("delete segment %s: %w", s.path, err))
		}
		// The snapshot at a deleted segment's base is older than every
		// remaining segment; the one at its end stays.
		_ = l.fs.Remove(filepath.Join(l.dir, fileName(s.base, snapshotSuffix))) // usually absent; Open removes strays
	}
	if err := l.fs.SyncDir(l.dir); err != nil {
		return l.fail(fmt.Errorf("sync dir %s: %w", l.dir, err))
	}
	l.logger.Info("deleted segments below the log start", "dir", l.dir, "start", off, "segments", len(doomed))
	return nil
}

package log

import (
	"fmt"
	"slices"
	"time"

	"github.com/strata-io/strata/index"
	"github.com/strata-io/strata/ingest/producer"
)

// scheduleSync asks for a sync round: on the Syncer if it runs, else inline.
// Must be called without Log.mu held.
func (l *Log) scheduleSync() {
	if l.queued.Swap(true) {
		return // already queued; the round will capture our append
	}
	if !l.syncer.schedule(l) {
		l.queued.Store(false)
		l.syncNow()
	}
}

// syncScheduled runs a round for the Syncer.
func (l *Log) syncScheduled() {
	l.queued.Store(false)
	l.syncNow()
}

// syncNow runs one group-commit round: capture what to sync under Log.mu,
// fdatasync and write index/snapshot/checkpoint files outside it, then
// publish the new durable offset. Everything appended before the capture is
// covered.
func (l *Log) syncNow() {
	l.syncMu.Lock()
	defer l.syncMu.Unlock()

	l.mu.Lock()
	if l.mu.err != nil || l.mu.closed {
		l.mu.Unlock()
		return
	}
	act := l.activeLocked()
	target := act.next
	seals := slices.Clone(l.mu.seals)
	dirDirty := l.mu.dirDirty
	var epochs []byte
	if l.mu.epochsDirty {
		epochs = encodeEpochs(l.mu.epochs.clone())
	}
	if target <= l.durable.Load() && len(seals) == 0 && !dirDirty && epochs == nil {
		l.mu.Unlock()
		return
	}
	l.mu.dirDirty, l.mu.epochsDirty = false, false
	l.mu.unsynced, l.mu.unsyncedAt = 0, time.Time{}
	w := act.w.acquire()
	l.mu.Unlock()

	err := l.syncFiles(seals, w, act.path, dirDirty || len(seals) > 0 || epochs != nil, epochs)
	if cerr := w.release(); err == nil && cerr != nil {
		err = fmt.Errorf("close %s: %w", act.path, cerr)
	}
	if err != nil {
		l.fail(err)
		return
	}

	l.mu.Lock()
	for _, j := range seals {
		l.mu.seals[0] = sealJob{} // do not keep the segment and producer state reachable
		l.mu.seals = l.mu.seals[1:]
		j.seg.w = nil
		// The entries now live in the .txnindex file; the cache keeps
		// the newest segments' for the fetches at the tail.
		j.seg.txn.entries, j.seg.txn.onDisk = nil, true
	}
	l.mu.Unlock()
	for _, j := range seals {
		if len(j.aborted) > 0 {
			l.txns.put(j.seg, j.aborted)
		}
	}
	// The last reference closes the descriptor: not under Log.mu.
	for _, j := range seals {
		if cerr := j.w.release(); cerr != nil && err == nil {
			err = fmt.Errorf("close %s: %w", j.seg.path, cerr)
		}
	}
	if err != nil {
		l.fail(err)
		return
	}
	l.publish(target)
}

// syncFiles does the I/O of a round. Seal work goes first, so that a later
// segment is never durable before an earlier one.
func (l *Log) syncFiles(seals []sealJob, w *writer, activePath string, syncDir bool, epochs []byte) error {
	for _, j := range seals {
		if err := j.w.f.Datasync(); err != nil {
			return fmt.Errorf("sync %s: %w", j.seg.path, err)
		}
		// The sealed segment's indexes no longer change: safe to read here.
		if err := writeAtomic(l.fs, l.dir, fileName(j.seg.base, indexSuffix), j.seg.offIdx.AppendEncode(nil), false); err != nil {
			return err
		}
		if err := writeAtomic(l.fs, l.dir, fileName(j.seg.base, timeIndexSuffix), j.seg.timeIdx.AppendEncode(nil), false); err != nil {
			return err
		}
		if err := writeAtomic(l.fs, l.dir, fileName(j.seg.base, txnIndexSuffix), encodeTxnIndex(j.seg.base, j.aborted), false); err != nil {
			return err
		}
		snap := j.producers.AppendSnapshot(nil, j.seg.next)
		if err := writeAtomic(l.fs, l.dir, fileName(j.seg.next, snapshotSuffix), snap, false); err != nil {
			return err
		}
	}
	if err := w.f.Datasync(); err != nil {
		return fmt.Errorf("sync %s: %w", activePath, err)
	}
	if epochs != nil {
		if err := writeAtomic(l.fs, l.dir, epochCheckpoint, epochs, false); err != nil {
			return err
		}
	}
	if syncDir {
		if err := l.fs.SyncDir(l.dir); err != nil {
			return fmt.Errorf("sync dir %s: %w", l.dir, err)
		}
	}
	return nil
}

// publish advances the durable offset. Called only under syncMu.
func (l *Log) publish(target int64) {
	if target <= l.durable.Load() {
		return
	}
	l.durable.Store(target)
	l.notifyDurable()
	if l.onDurable != nil {
		l.onDurable(target)
	}
}

// sealJob is the deferred work of a roll: sync the sealed segment's data,
// write its index files (offset, time, aborted transactions) and the
// producer snapshot as of its end.
type sealJob struct {
	seg       *segment
	w         *writer            // the segment's descriptor; released when the seal is done
	producers *producer.State    // producer state as of seg.next
	aborted   []index.AbortedTxn // the segment's aborted transactions, in marker order
}

package log

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/strata-io/strata/index"
	"github.com/strata-io/strata/ingest/log/vfs"
	"github.com/strata-io/strata/ingest/producer"
)

// Log is the durable local log of one partition. Its methods are safe for
// concurrent use.
type Log struct {
	dir    string
	fs     vfs.FS
	files  *FileCache
	syncer *Syncer
	logger *slog.Logger
	now    func() time.Time

	onDurable  func(int64)
	ownsSyncer bool

	// cleanMu serializes cleaner passes (clean.go); it comes before adminMu.
	// Close cancels a running pass and waits for it here.
	cleanMu    sync.Mutex
	cleanPoint atomic.Int64                                     // persisted cleaner point; -1 if none
	cleanSleep func(ctx context.Context, d time.Duration) error // rate-limit waits; nil: a timer (tests replace it)

	adminMu sync.Mutex // serializes start-offset changes, retention, local deletion, reset, Close and Delete
	// startSaved is true when the log-start-offset checkpoint on disk holds
	// mu.start. Guarded by adminMu (every change of mu.start happens under
	// it, or in recovery before the log is shared).
	startSaved bool
	syncMu     sync.Mutex // one sync round at a time

	queued  atomic.Bool  // scheduled on the Syncer and not yet started
	durable atomic.Int64 // every offset below it is durable
	fuo     atomic.Int64 // first unstable offset (aborted.go), -1 if no transaction is open
	// unreplicated is len(mu.unreplicated), for a lock-free LastStableOffset.
	unreplicated atomic.Int64
	txns         txnCache // decoded .txnindex entries of recently read sealed segments

	durMu struct {
		sync.Mutex
		ch chan struct{} // closed and replaced when durable or the error changes
	}

	mu struct {
		sync.Mutex
		cfg         Config
		segments    []*segment // ordered by base; the last is active
		start       int64      // log start offset
		producers   *producer.State
		epochs      epochCache
		epochsDirty bool      // epochs changed since the last checkpoint
		dirDirty    bool      // directory entries created since the last SyncDir
		seals       []sealJob // rolled segments whose seal work is pending, oldest first
		err         error     // sticky I/O error
		closed      bool
		unsynced    int64     // records appended since the last captured sync
		unsyncedAt  time.Time // broker clock at the first of them
		sinceSpace  int64     // bytes appended since the last free-space check
		spaceLow    bool      // the last free-space check failed
		resetting   bool      // ResetTo is swapping the log; appends and rolls are refused
		truncations uint64    // TruncateTo calls that cut records; a cleaner pass begun before one does not commit
		closing     bool      // Close has begun: no cleaner pass starts
		cleanCancel func()    // cancels the running cleaner pass, nil if none
		// unreplicated are the transactions completed recently, in marker
		// order (LastStableOffset); at most maxUnreplicated.
		unreplicated []index.AbortedTxn
	}
}

// StartOffset is the log start offset.
func (l *Log) StartOffset() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.mu.start
}

// EndOffset is the offset the next appended record will get.
func (l *Log) EndOffset() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.activeLocked().next
}

// DurableOffset is the offset below which every record is fdatasync'd, with
// the index and directory entries needed to find it after a crash.
func (l *Log) DurableOffset() int64 { return l.durable.Load() }

// Size is the total size of the log's segment files in bytes.
func (l *Log) Size() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	var n int64
	for _, s := range l.mu.segments {
		n += s.size
	}
	return n
}

// Err is the sticky I/O error, nil while the log is healthy.
func (l *Log) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.mu.err
}

// SetConfig changes the log's settings; they apply from the next Append.
func (l *Log) SetConfig(cfg Config) {
	l.mu.Lock()
	l.mu.cfg = cfg.withDefaults()
	l.mu.Unlock()
}

// ExpireProducers drops producer state idle for longer than
// producer.id.expiration.ms.
func (l *Log) ExpireProducers() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.mu.producers.Expire(l.now().UnixMilli(), l.mu.cfg.ProducerIDExpirationMs)
}

// Producers returns the state of every producer with state in the log, by
// id (DescribeProducers: epoch, last sequence and timestamp, coordinator
// epoch, open transaction's first offset).
func (l *Log) Producers() []producer.Producer {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.mu.producers.Producers()
}

// EndOffsetForEpoch answers OffsetForLeaderEpoch: the end offset of the
// requested leader epoch and the largest epoch <= it, or (-1, -1) if unknown.
func (l *Log) EndOffsetForEpoch(epoch int32) (leaderEpoch int32, endOffset int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.mu.epochs.endOffsetFor(epoch, l.activeLocked().next)
}

// AssignEpoch records that leader epoch starts at the log's end, as a
// broker becoming leader does before its first append (Kafka's
// makeLeader): a follower asking for the end of an older epoch then gets
// this offset even if the new leader has appended nothing yet. Epochs not
// newer than the latest are ignored. The checkpoint is written by the
// next sync round, which this schedules; recovery keeps only epochs that
// records follow, so after a restart a leader assigns its epoch again.
func (l *Log) AssignEpoch(epoch int32) {
	l.mu.Lock()
	changed := !l.mu.closed && l.mu.err == nil && l.mu.epochs.assign(epoch, l.activeLocked().next)
	if changed {
		l.mu.epochsDirty = true
	}
	l.mu.Unlock()
	if changed {
		l.scheduleSync()
	}
}

// LatestEpoch is the newest leader epoch in the log, -1 when it has none.
func (l *Log) LatestEpoch() int32 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if n := len(l.mu.epochs.entries); n > 0 {
		return l.mu.epochs.entries[n-1].Epoch
	}
	return -1
}

func (l *Log) activeLocked() *segment { return l.mu.segments[len(l.mu.segments)-1] }

// failLocked makes err the sticky error (the first one wins) and wakes
// waiters. Returns the sticky error wrapped in ErrStorage.
func (l *Log) failLocked(err error) error {
	if l.mu.err == nil {
		l.mu.err = err
		l.logger.Error("partition log failed; refusing writes until restart", "dir", l.dir, "err", err)
		l.notifyDurable()
	}
	return fmt.Errorf("%w: %s: %w", ErrStorage, l.dir, l.mu.err)
}

func (l *Log) fail(err error) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.failLocked(err)
}

// notifyDurable wakes every WaitDurable caller to re-check.
func (l *Log) notifyDurable() {
	l.durMu.Lock()
	close(l.durMu.ch)
	l.durMu.ch = make(chan struct{})
	l.durMu.Unlock()
}

// WaitDurable returns nil once every record at or below offset is durable,
// the sticky error (wrapped in ErrStorage) if the log failed first, ErrClosed
// if the log closed first, or the context's error.
func (l *Log) WaitDurable(ctx context.Context, offset int64) error {
	for {
		l.durMu.Lock()
		ch := l.durMu.ch
		l.durMu.Unlock()
		if l.durable.Load() > offset {
			return nil
		}
		l.mu.Lock()
		err, closed := l.mu.err, l.mu.closed
		l.mu.Unlock()
		if err != nil {
			return fmt.Errorf("%w: %s: %w", ErrStorage, l.dir, err)
		}
		if closed {
			return ErrClosed
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Close syncs what was appended, closes every descriptor and stops the log.
// Calls after Close return ErrClosed. It returns the sticky error, if any.
func (l *Log) Close() error {
	l.stopCleaner()
	l.cleanMu.Lock() // waits for a cancelled pass to give up
	defer l.cleanMu.Unlock()
	l.adminMu.Lock()
	defer l.adminMu.Unlock()
	l.mu.Lock()
	if l.mu.closed {
		l.mu.Unlock()
		return nil
	}
	l.mu.Unlock()

	l.syncNow()

	l.syncMu.Lock()
	l.mu.Lock()
	l.mu.closed = true
	var errs []error
	for _, s := range l.mu.segments {
		if s.w != nil {
			errs = append(errs, s.w.release())
			s.w = nil
		}
		l.files.evict(l.fs, s.path)
	}
	sticky := l.mu.err
	l.mu.Unlock()
	l.syncMu.Unlock()
	l.notifyDurable()
	if l.ownsSyncer {
		l.syncer.Close()
	}
	if sticky != nil {
		return fmt.Errorf("%w: %s: %w", ErrStorage, l.dir, sticky)
	}
	return errors.Join(errs...)
}

// Delete closes the log and removes its directory and files.
func (l *Log) Delete() error {
	_ = l.Close() // a sticky error does not matter to a log being deleted
	names, err := l.fs.ReadDir(l.dir)
	if err != nil {
		return fmt.Errorf("delete log %s: %w", l.dir, err)
	}
	for _, n := range names {
		if err := l.fs.Remove(filepath.Join(l.dir, n)); err != nil {
			return fmt.Errorf("delete log %s: %w", l.dir, err)
		}
	}
	if err := l.fs.Remove(l.dir); err != nil {
		return fmt.Errorf("delete log %s: %w", l.dir, err)
	}
	return l.fs.SyncDir(filepath.Dir(l.dir))
}

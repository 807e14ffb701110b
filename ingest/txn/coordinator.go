package txn

import (
	"errors"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
)

// Appender makes records durable in the coordinator's __transaction_state
// partition.
//
// Append is called serially, in the order the coordinator produced the
// records, and never with the coordinator's lock held. It must not block on
// the append itself: it queues the records and calls done exactly once, with
// nil once they are durable (replicated) or with the append's error (kerr
// values are mapped to the codes Kafka answers with). done may be called
// from any goroutine, including synchronously from Append.
type Appender interface {
	Append(records []Record, done func(err error))
}

// Markers is one transaction's marker write: a commit or abort control
// batch of ProducerID/ProducerEpoch to each of Partitions, stamped with the
// coordinator epoch so that partition leaders refuse markers of a deposed
// coordinator.
type Markers struct {
	TransactionalID  string
	ProducerID       int64
	ProducerEpoch    int16
	CoordinatorEpoch int32
	Commit           bool
	Partitions       []TopicPartition // sorted
}

// MarkerWriter writes transaction markers at the partitions' leaders
// (WriteTxnMarkers).
//
// WriteMarkers is called without the coordinator's lock held, at most once
// at a time per transaction. It must not block on the writes: it calls done
// exactly once, from any goroutine (also synchronously), with the outcome
// per partition of m.Partitions: nil once the marker is durable there (a
// partition missing from the map counts as a retriable failure). The
// coordinator retries from Tick, with backoff, the partitions that failed
// with a retriable error (not leader, not enough replicas, timeouts, storage
// errors, kerr.UnknownTopicOrPartition while metadata moves); it drops a
// partition that failed with ErrPartitionDeleted (its topic no longer
// exists: nobody can read the transaction there), and one that kept
// failing with kerr.UnknownTopicOrPartition for Config.UnknownPartitionRetries
// attempts. kerr.InvalidProducerEpoch, kerr.ProducerFenced and
// kerr.TransactionCoordinatorFenced mean a newer coordinator owns the
// transaction: this one stops writing its markers.
type MarkerWriter interface {
	WriteMarkers(m Markers, done func(map[TopicPartition]error))
}

// ErrPartitionDeleted is the error a MarkerWriter reports for a partition
// whose topic was deleted (the broker's metadata no longer has it), as
// Kafka's marker channel drops partitions without a leader in metadata.
var ErrPartitionDeleted = errors.New("transaction marker partition deleted")

// Config holds the coordinator's settings; zero fields get Kafka's defaults.
type Config struct {
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// Appender receives the records to persist. Required.
	Appender Appender
	// Markers writes transaction markers. Required.
	Markers MarkerWriter
	// ProducerIDs hands out a fresh producer id (the broker's allocator).
	// It is called with the coordinator's lock held and must not block
	// on I/O (hand ids out of a block fetched ahead). A kerr error is
	// answered as is; any other error as COORDINATOR_LOAD_IN_PROGRESS
	// (retriable), as Kafka answers while no id block is available.
	// Required.
	ProducerIDs func() (int64, error)
	// OffsetsPartition is the __consumer_offsets partition of a group
	// (AddOffsetsToTxn). Required.
	OffsetsPartition func(groupID string) TopicPartition
	// MaxTimeout is transaction.max.timeout.ms (15 minutes).
	MaxTimeout time.Duration
	// ExpirationTime is transactional.id.expiration.ms (7 days): an id
	// with no open transaction and no change for this long is deleted.
	ExpirationTime time.Duration
	// ExpirationCheckInterval is how often Tick looks for expired ids
	// (transaction.remove.expired.transaction.cleanup.interval.ms, 1 hour);
	// that scan is the only work of Tick proportional to all ids.
	ExpirationCheckInterval time.Duration
	// RetryBackoff is the first delay before a failed marker write or
	// completion record is retried (100 ms); it doubles per failure up to
	// MaxRetryBackoff (5 s).
	RetryBackoff    time.Duration
	MaxRetryBackoff time.Duration
	// UnknownPartitionRetries is how many times a marker write that fails
	// with kerr.UnknownTopicOrPartition is tried before the partition is
	// dropped from the transaction (10).
	UnknownPartitionRetries int
	// Logger receives the coordinator's logs; discarded when nil.
	Logger *slog.Logger
}

func (c *Config) defaults() {
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.MaxTimeout == 0 {
		c.MaxTimeout = 15 * time.Minute
	}
	if c.ExpirationTime == 0 {
		c.ExpirationTime = 7 * 24 * time.Hour
	}
	if c.ExpirationCheckInterval == 0 {
		c.ExpirationCheckInterval = time.Hour
	}
	if c.RetryBackoff == 0 {
		c.RetryBackoff = 100 * time.Millisecond
	}
	if c.MaxRetryBackoff == 0 {
		c.MaxRetryBackoff = 5 * time.Second
	}
	if c.UnknownPartitionRetries == 0 {
		c.UnknownPartitionRetries = 10
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

type loadState int8

const (
	notLoaded loadState = iota // NOT_COORDINATOR
	loading                    // COORDINATOR_LOAD_IN_PROGRESS
	active
)

// Coordinator owns the transactional ids of one __transaction_state
// partition. All methods are safe for concurrent use; none blocks on I/O.
// Answers arrive on the returned channels (buffered: the coordinator never
// waits for a reader).
//
// Lock order: mu, then nothing. Appender.Append and
// MarkerWriter.WriteMarkers run without mu, from flush, in the order they
// were queued; their completions take mu. ProducerIDs runs with mu held.
// Answers are sent under mu on buffered channels, each exactly once.
type Coordinator struct {
	cfg Config

	mu          sync.Mutex
	state       loadState
	gen         uint64 // bumped by BeginLoad/LoadFrom/Unload; stale completions are ignored
	coordEpoch  int32  // the __transaction_state partition's leader epoch, stamped on markers
	txns        map[string]*txnMeta
	open        map[string]*txnMeta // Ongoing, PrepareCommit, PrepareAbort: what Tick visits
	nextExpiry  time.Time           // next id expiration scan
	outbox      []func()            // I/O calls queued under mu, run by flush in order
	dispatching bool
}

// New returns a coordinator that owns no partition yet: it answers
// NOT_COORDINATOR until a load completes.
func New(cfg Config) *Coordinator {
	cfg.defaults()
	return &Coordinator{cfg: cfg, txns: map[string]*txnMeta{}, open: map[string]*txnMeta{}}
}

func (c *Coordinator) activeErrLocked() error {
	switch c.state {
	case notLoaded:
		return kerr.NotCoordinator
	case loading:
		return kerr.CoordinatorLoadInProgress
	}
	return nil
}

// Err is the error every request gets now: nil once loaded,
// kerr.CoordinatorLoadInProgress while loading, kerr.NotCoordinator
// otherwise. ListTransactions answers it for the whole broker.
func (c *Coordinator) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.activeErrLocked()
}

// appendLocked queues records; done runs under mu once they are durable or
// failed, with live=false if the coordinator was reloaded or unloaded
// meanwhile (its state is gone: done must only answer).
func (c *Coordinator) appendLocked(records []Record, done func(live bool, err error)) {
	gen := c.gen
	c.outbox = append(c.outbox, func() {
		c.mu.Lock()
		stale := c.gen != gen
		c.mu.Unlock()
		if stale {
			// Queued before an Unload or a new load: the log must not get
			// a record the state now running never decided.
			c.mu.Lock()
			done(false, kerr.NotCoordinator)
			c.mu.Unlock()
			return
		}
		c.cfg.Appender.Append(records, func(err error) {
			c.mu.Lock()
			done(c.gen == gen && c.state == active, err)
			c.mu.Unlock()
			c.flush()
		})
	})
}

// flush runs the queued I/O calls in order, without mu held.
func (c *Coordinator) flush() {
	c.mu.Lock()
	if c.dispatching {
		c.mu.Unlock()
		return
	}
	c.dispatching = true
	for len(c.outbox) > 0 {
		batch := c.outbox
		c.outbox = nil
		c.mu.Unlock()
		for _, call := range batch {
			call()
		}
		c.mu.Lock()
	}
	c.dispatching = false
	c.mu.Unlock()
}

// appendError maps an append failure to the code Kafka answers with
// (TransactionStateManager.appendTransactionToLog).
func appendError(err error) error {
	var ke *kerr.Error
	if !errors.As(err, &ke) {
		return kerr.CoordinatorNotAvailable
	}
	switch ke {
	case kerr.UnknownTopicOrPartition, kerr.NotEnoughReplicas, kerr.NotEnoughReplicasAfterAppend, kerr.RequestTimedOut:
		return kerr.CoordinatorNotAvailable
	case kerr.NotLeaderForPartition, kerr.KafkaStorageError:
		return kerr.NotCoordinator
	case kerr.MessageTooLarge, kerr.RecordListTooLarge:
		return kerr.UnknownServerError
	}
	return ke
}

// LoadToken names one BeginLoad; LoadFrom with an older token is refused.
type LoadToken uint64

// ErrLoadSuperseded is returned by LoadFrom when Unload or another
// BeginLoad came after the BeginLoad that made the token: leadership moved
// while the records were being read.
var ErrLoadSuperseded = errors.New("transaction coordinator load superseded")

// BeginLoad starts taking over the partition, whose leader epoch is
// coordinatorEpoch: until LoadFrom, requests get
// COORDINATOR_LOAD_IN_PROGRESS.
func (c *Coordinator) BeginLoad(coordinatorEpoch int32) LoadToken {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dropLocked(kerr.CoordinatorLoadInProgress)
	c.state = loading
	c.coordEpoch = coordinatorEpoch
	return LoadToken(c.gen)
}

// Unload gives the partition up (leadership moved): requests waiting for
// markers get NOT_COORDINATOR, and so does every later request until a new
// load. Marker writes and appends in flight complete into nothing.
func (c *Coordinator) Unload() {
	c.mu.Lock()
	c.dropLocked(kerr.NotCoordinator)
	c.state = notLoaded
	c.mu.Unlock()
}

func (c *Coordinator) dropLocked(err error) {
	c.gen++
	for _, t := range c.open {
		if t.end != nil && t.end.reply != nil {
			t.end.reply(err)
		}
	}
	c.txns = map[string]*txnMeta{}
	c.open = map[string]*txnMeta{}
}

// Tick does the timed work at now: it aborts, with an epoch bump that fences
// the producer, Ongoing transactions open longer than their timeout;
// retries failed marker writes and completion records whose backoff
// elapsed; and, every ExpirationCheckInterval, deletes transactional ids
// idle for ExpirationTime. Apart from that scan it visits only open
// transactions.
func (c *Coordinator) Tick(now time.Time) {
	c.mu.Lock()
	if c.state == active {
		c.tickLocked(now)
	}
	c.mu.Unlock()
	c.flush()
}

func (c *Coordinator) tickLocked(now time.Time) {
	nowMs := now.UnixMilli()
	ids := make([]string, 0, len(c.open))
	for id := range c.open {
		ids = append(ids, id)
	}
	sort.Strings(ids) // deterministic order of the appends
	for _, id := range ids {
		t := c.open[id]
		switch {
		case t.pending != nil:
		case t.state == Ongoing && t.start+int64(t.timeoutMs) < nowMs:
			c.cfg.Logger.Info("aborting timed out transaction", "transactional_id", t.id,
				"producer_id", t.producerID, "producer_epoch", t.epoch, "timeout_ms", t.timeoutMs)
			c.endLocked(t, false, true, nil)
		case t.end != nil && t.end.due(now):
			if t.end.completing {
				c.completeLocked(t)
			} else {
				c.sendMarkersLocked(t)
			}
		}
	}
	if c.nextExpiry.IsZero() {
		c.nextExpiry = now.Add(c.cfg.ExpirationCheckInterval)
	} else if !now.Before(c.nextExpiry) {
		c.expireLocked(now)
		c.nextExpiry = now.Add(c.cfg.ExpirationCheckInterval)
	}
}

// expireBatch bounds the tombstones of one append.
const expireBatch = 500

// expireLocked deletes ids with no open transaction and no change for
// ExpirationTime (Kafka's removeExpiredTransactionalIds).
func (c *Coordinator) expireLocked(now time.Time) {
	limit := now.Add(-c.cfg.ExpirationTime).UnixMilli()
	var batch []*txnMeta
	emit := func() {
		if len(batch) == 0 {
			return
		}
		metas := batch
		batch = nil
		records := make([]Record, len(metas))
		for i, t := range metas {
			records[i] = Tombstone(t.id)
		}
		c.appendLocked(records, func(live bool, err error) {
			if !live {
				return
			}
			for _, t := range metas {
				t.pending = nil
				if err == nil && c.txns[t.id] == t {
					delete(c.txns, t.id)
				}
			}
			if err != nil {
				// The ids stay; the next scan tries again.
				c.cfg.Logger.Warn("expiring transactional ids", "ids", len(metas), "err", err)
			}
		})
	}
	ids := make([]string, 0, len(c.txns))
	for id := range c.txns {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		t := c.txns[id]
		if t.pending != nil || t.end != nil || t.lastUpdate > limit {
			continue
		}
		if t.state != Empty && t.state != CompleteCommit && t.state != CompleteAbort {
			continue
		}
		tr := t.snapshot()
		tr.state = Dead
		t.pending = &tr
		batch = append(batch, t)
		if len(batch) == expireBatch {
			emit()
		}
	}
	emit()
}

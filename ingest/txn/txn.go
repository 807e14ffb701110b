package txn

import (
	"math"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
)

// noProducerEpoch and noProducerID are Kafka's "none" values.
const (
	noProducerEpoch int16 = -1
	noProducerID    int64 = -1
)

// epochExhausted is Kafka's TransactionMetadata.isEpochExhausted: the last
// epoch that may be handed out is MaxInt16-1, so that fencing an open
// transaction can still bump it once.
func epochExhausted(e int16) bool { return e >= math.MaxInt16-1 }

// txnMeta is one transactional id. Its fields are the durable state; a
// change is prepared as a transit, appended, and applied once durable
// (pending is set meanwhile, and requests get CONCURRENT_TRANSACTIONS).
type txnMeta struct {
	id             string
	producerID     int64
	lastProducerID int64 // the id before the last transition (differs after a rotation)
	epoch          int16
	lastEpoch      int16 // the epoch before the last bump, for KIP-360 retries; -1 if none
	timeoutMs      int32
	state          State
	partitions     map[TopicPartition]struct{}
	start          int64 // Unix ms; -1 when no transaction was started
	lastUpdate     int64 // Unix ms

	pending *transit // the transition being appended, nil if none
	end     *ending  // markers of a PrepareCommit/PrepareAbort, nil otherwise
}

// transit is a transaction's state after a transition (Kafka's
// TxnTransitMetadata).
type transit struct {
	producerID     int64
	lastProducerID int64
	epoch          int16
	lastEpoch      int16
	timeoutMs      int32
	state          State
	partitions     map[TopicPartition]struct{}
	start          int64
	lastUpdate     int64
}

func (t *txnMeta) snapshot() transit {
	parts := make(map[TopicPartition]struct{}, len(t.partitions))
	for tp := range t.partitions {
		parts[tp] = struct{}{}
	}
	return transit{
		producerID: t.producerID, lastProducerID: t.producerID,
		epoch: t.epoch, lastEpoch: t.lastEpoch, timeoutMs: t.timeoutMs,
		state: t.state, partitions: parts, start: t.start, lastUpdate: t.lastUpdate,
	}
}

func (t *txnMeta) apply(tr transit) {
	t.producerID, t.lastProducerID = tr.producerID, tr.lastProducerID
	t.epoch, t.lastEpoch = tr.epoch, tr.lastEpoch
	t.timeoutMs, t.state, t.partitions = tr.timeoutMs, tr.state, tr.partitions
	t.start, t.lastUpdate = tr.start, tr.lastUpdate
}

func (tr transit) partitionList() []TopicPartition {
	out := make([]TopicPartition, 0, len(tr.partitions))
	for tp := range tr.partitions {
		out = append(out, tp)
	}
	return sortedPartitions(out)
}

func (tr transit) record(txnID string) Record {
	return MetadataRecord(txnID, Metadata{
		ProducerID: tr.producerID, ProducerEpoch: tr.epoch, TimeoutMs: tr.timeoutMs, State: tr.state,
		Partitions: tr.partitionList(), LastUpdateMs: tr.lastUpdate, StartMs: tr.start,
	})
}

func (t *txnMeta) partitionList() []TopicPartition {
	out := make([]TopicPartition, 0, len(t.partitions))
	for tp := range t.partitions {
		out = append(out, tp)
	}
	return sortedPartitions(out)
}

// transitionLocked appends tr as t's new state and applies it once durable;
// done then runs under mu with nil, or with the error to answer (the
// append's, mapped, or NOT_COORDINATOR when the coordinator lost the
// partition meanwhile; t is then stale and done must only answer).
func (c *Coordinator) transitionLocked(t *txnMeta, tr transit, done func(err error)) {
	t.pending = &tr
	c.appendLocked([]Record{tr.record(t.id)}, func(live bool, err error) {
		if !live {
			done(kerr.NotCoordinator)
			return
		}
		t.pending = nil
		if err != nil {
			c.cfg.Logger.Debug("transaction state append failed", "transactional_id", t.id, "state", tr.state, "err", err)
			done(appendError(err))
			return
		}
		t.apply(tr)
		c.trackLocked(t)
		done(nil)
	})
}

// trackLocked keeps c.open to the transactions Tick must visit.
func (c *Coordinator) trackLocked(t *txnMeta) {
	switch t.state {
	case Ongoing, PrepareCommit, PrepareAbort:
		c.open[t.id] = t
	default:
		delete(c.open, t.id)
	}
}

func nowMs(now time.Time) int64 { return now.UnixMilli() }

// once makes f answer only the first time: a request is answered either by
// its completion or by an Unload, whichever comes first.
func once(f func(error)) func(error) {
	if f == nil {
		return nil
	}
	done := false
	return func(err error) {
		if !done {
			done = true
			f(err)
		}
	}
}

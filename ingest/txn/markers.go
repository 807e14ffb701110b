package txn

import (
	"errors"
	"math"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
)

// ending is the marker phase of a transaction in PrepareCommit or
// PrepareAbort: the partitions whose marker is not durable yet, and, once
// there are none, the CompleteCommit/CompleteAbort record.
type ending struct {
	commit     bool
	remaining  map[TopicPartition]int // partition → UNKNOWN_TOPIC_OR_PARTITION failures
	inflight   bool                   // a WriteMarkers or completion append is out
	completing bool                   // markers done; the completion record is next
	fenced     bool                   // a newer coordinator owns the transaction: stop
	retryAt    time.Time              // zero: not waiting for a retry
	backoff    time.Duration
	reply      func(error) // answers the request waiting for the outcome; nil if none
}

func (e *ending) due(now time.Time) bool {
	return !e.inflight && !e.fenced && !e.retryAt.IsZero() && !now.Before(e.retryAt)
}

func (c *Coordinator) retryLaterLocked(e *ending) {
	switch {
	case e.backoff == 0:
		e.backoff = c.cfg.RetryBackoff
	case 2*e.backoff > c.cfg.MaxRetryBackoff:
		e.backoff = c.cfg.MaxRetryBackoff
	default:
		e.backoff *= 2
	}
	e.retryAt = c.cfg.Now().Add(e.backoff)
}

// endLocked ends t's Ongoing transaction: it appends PrepareCommit or
// PrepareAbort, then writes the markers, then appends CompleteCommit or
// CompleteAbort. With fence the producer epoch is bumped first (Kafka's
// PrepareEpochFence: a timeout, an InitProducerId or an operator abort
// fences the producer), and the markers carry the bumped epoch.
//
// reply, if not nil, is answered once: with the error when the prepare
// record fails, else with nil when the completion record is durable — or,
// with answerPrepared, with kerr.ConcurrentTransactions as soon as the
// prepare record is durable (InitProducerId's answer while it aborts).
func (c *Coordinator) endLocked(t *txnMeta, commit, fence bool, reply func(error)) {
	c.endWithLocked(t, commit, fence, false, reply)
}

func (c *Coordinator) endWithLocked(t *txnMeta, commit, fence, answerPrepared bool, reply func(error)) {
	reply = once(reply)
	tr := t.snapshot()
	tr.state = PrepareAbort
	if commit {
		tr.state = PrepareCommit
	}
	tr.lastUpdate = nowMs(c.cfg.Now())
	if fence {
		if tr.epoch < math.MaxInt16 {
			tr.epoch++
		}
		tr.lastEpoch = noProducerEpoch
	}
	c.transitionLocked(t, tr, func(err error) {
		if err != nil {
			if reply != nil {
				reply(err)
			}
			return
		}
		e := &ending{commit: commit, remaining: map[TopicPartition]int{}}
		for tp := range t.partitions {
			e.remaining[tp] = 0
		}
		if answerPrepared {
			reply(kerr.ConcurrentTransactions)
		} else {
			e.reply = reply
		}
		t.end = e
		c.sendMarkersLocked(t)
	})
}

// sendMarkersLocked writes the markers of t's remaining partitions, or the
// completion record if there are none.
func (c *Coordinator) sendMarkersLocked(t *txnMeta) {
	e := t.end
	e.retryAt = time.Time{}
	if len(e.remaining) == 0 {
		c.completeLocked(t)
		return
	}
	parts := make([]TopicPartition, 0, len(e.remaining))
	for tp := range e.remaining {
		parts = append(parts, tp)
	}
	m := Markers{
		TransactionalID: t.id, ProducerID: t.producerID, ProducerEpoch: t.epoch,
		CoordinatorEpoch: c.coordEpoch, Commit: e.commit, Partitions: sortedPartitions(parts),
	}
	e.inflight = true
	gen := c.gen
	c.outbox = append(c.outbox, func() {
		c.cfg.Markers.WriteMarkers(m, func(res map[TopicPartition]error) {
			c.mu.Lock()
			if c.gen == gen && c.state == active && t.end == e {
				c.markersDoneLocked(t, m.Partitions, res)
			}
			c.mu.Unlock()
			c.flush()
		})
	})
}

type markerOutcome int8

const (
	markerDone markerOutcome = iota
	markerRetry
	markerUnknown // retried up to UnknownPartitionRetries, then dropped
	markerDrop
	markerFenced
)

// classifyMarker is what to do with a partition's marker write result
// (Kafka's TransactionMarkerRequestCompletionHandler).
func classifyMarker(err error) markerOutcome {
	switch {
	case err == nil:
		return markerDone
	case errors.Is(err, ErrPartitionDeleted):
		return markerDrop
	case errors.Is(err, kerr.UnknownTopicOrPartition):
		return markerUnknown
	case errors.Is(err, kerr.InvalidProducerEpoch), errors.Is(err, kerr.ProducerFenced),
		errors.Is(err, kerr.TransactionCoordinatorFenced):
		return markerFenced
	case errors.Is(err, kerr.UnsupportedForMessageFormat):
		return markerDrop // Kafka skips partitions of pre-0.11 formats
	}
	// Not leader, not enough replicas, timeouts, storage errors — and
	// anything unexpected: retrying keeps the transaction atomic, where
	// giving up would not.
	return markerRetry
}

func (c *Coordinator) markersDoneLocked(t *txnMeta, sent []TopicPartition, res map[TopicPartition]error) {
	e := t.end
	e.inflight = false
	failed := false
	for _, tp := range sent {
		err, ok := res[tp]
		if !ok {
			err = kerr.RequestTimedOut
		}
		switch classifyMarker(err) {
		case markerDone:
			delete(e.remaining, tp)
		case markerDrop:
			c.cfg.Logger.Warn("dropping transaction marker of a deleted partition", "transactional_id", t.id,
				"topic", tp.Topic, "partition", tp.Partition, "err", err)
			delete(e.remaining, tp)
		case markerUnknown:
			e.remaining[tp]++
			if e.remaining[tp] >= c.cfg.UnknownPartitionRetries {
				c.cfg.Logger.Warn("dropping transaction marker of an unknown partition", "transactional_id", t.id,
					"topic", tp.Topic, "partition", tp.Partition, "attempts", e.remaining[tp])
				delete(e.remaining, tp)
			} else {
				failed = true
			}
		case markerFenced:
			c.cfg.Logger.Error("transaction coordinator fenced by a partition leader; stopping markers",
				"transactional_id", t.id, "topic", tp.Topic, "partition", tp.Partition, "err", err)
			e.fenced = true
		default:
			c.cfg.Logger.Debug("transaction marker write failed; retrying", "transactional_id", t.id,
				"topic", tp.Topic, "partition", tp.Partition, "err", err)
			failed = true
		}
	}
	switch {
	case e.fenced:
		if e.reply != nil {
			e.reply(kerr.NotCoordinator)
		}
	case failed:
		c.retryLaterLocked(e)
	case len(e.remaining) == 0:
		e.backoff = 0
		c.completeLocked(t)
	default:
		c.sendMarkersLocked(t) // partitions the writer was not asked about (none expected)
	}
}

// completeLocked appends CompleteCommit or CompleteAbort once every marker
// is durable. A failed append is retried from Tick (the outcome is decided
// and visible in the partitions; only the record is missing); the waiting
// request, if any, gets the error and retries EndTxn, which answers
// CONCURRENT_TRANSACTIONS until the record is durable.
func (c *Coordinator) completeLocked(t *txnMeta) {
	e := t.end
	e.completing = true
	e.inflight = true
	e.retryAt = time.Time{}
	tr := t.snapshot()
	tr.state = CompleteAbort
	if e.commit {
		tr.state = CompleteCommit
	}
	tr.partitions = map[TopicPartition]struct{}{}
	tr.lastUpdate = nowMs(c.cfg.Now())
	c.transitionLocked(t, tr, func(err error) {
		if t.end != e {
			return
		}
		e.inflight = false
		if err == nil {
			t.end = nil
			if e.reply != nil {
				e.reply(nil)
			}
			return
		}
		if e.reply != nil {
			e.reply(err)
		}
		if c.txns[t.id] == t {
			c.retryLaterLocked(e)
		}
	})
}

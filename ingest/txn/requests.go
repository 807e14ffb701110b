package txn

import (
	"errors"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
)

// InitRequest is an InitProducerId with a transactional id. ProducerID and
// ProducerEpoch are -1 unless the producer asks to bump its own epoch
// (KIP-360, InitProducerId v3+).
type InitRequest struct {
	TransactionalID string
	TimeoutMs       int32
	ProducerID      int64
	ProducerEpoch   int16
}

// InitResponse is InitProducerId's answer; ProducerID and ProducerEpoch
// are -1 with an error.
type InitResponse struct {
	ProducerID    int64
	ProducerEpoch int16
	Err           error
}

// InitProducerID hands a transactional producer its producer id and a new
// epoch, fencing any older instance of it (Kafka's handleInitProducerId):
//
//   - a new transactional id gets a fresh producer id and epoch 0;
//   - an id with no open transaction gets its epoch bumped, or a fresh
//     producer id with epoch 0 once the epoch reached MaxInt16-1;
//   - an id with an Ongoing transaction has it aborted with a bumped epoch
//     (the old producer is fenced at the coordinator and, through the
//     markers, at its partitions); the answer, once the abort is decided,
//     is kerr.ConcurrentTransactions, and the client's retry bumps the
//     epoch again — Kafka's behaviour, which also moves an exhausted epoch
//     to a new producer id;
//   - an id whose transaction is being committed or aborted, or whose
//     state is being written, gets kerr.ConcurrentTransactions.
//
// With KIP-360 the request's producer id must be the current one (or the
// previous one with an exhausted epoch, a retry of a rotation), else
// kerr.ProducerFenced; its epoch must be the current one (bumped) or the
// previous one (a retry: the current epoch is answered again), else
// kerr.ProducerFenced. The wire layer answers kerr.ProducerFenced as
// INVALID_PRODUCER_EPOCH to InitProducerId versions before 4, as Kafka.
//
// TimeoutMs must be in (0, MaxTimeout] (kerr.InvalidTransactionTimeout).
// The answer arrives once the new epoch is durable.
func (c *Coordinator) InitProducerID(req InitRequest) <-chan InitResponse {
	ch := make(chan InitResponse, 1)
	c.mu.Lock()
	c.initLocked(req, func(r InitResponse) { ch <- r })
	c.mu.Unlock()
	c.flush()
	return ch
}

func initErr(err error) InitResponse {
	return InitResponse{ProducerID: noProducerID, ProducerEpoch: noProducerEpoch, Err: err}
}

// producerIDError maps a ProducerIDs failure.
func producerIDError(err error) error {
	var ke *kerr.Error
	if errors.As(err, &ke) {
		return ke
	}
	return kerr.CoordinatorLoadInProgress
}

func (c *Coordinator) initLocked(req InitRequest, reply func(InitResponse)) {
	if err := c.activeErrLocked(); err != nil {
		reply(initErr(err))
		return
	}
	if req.TransactionalID == "" || (req.ProducerID == noProducerID) != (req.ProducerEpoch == noProducerEpoch) {
		reply(initErr(kerr.InvalidRequest))
		return
	}
	if req.TimeoutMs <= 0 || time.Duration(req.TimeoutMs)*time.Millisecond > c.cfg.MaxTimeout {
		reply(initErr(kerr.InvalidTransactionTimeout))
		return
	}
	expected := req.ProducerID != noProducerID
	now := nowMs(c.cfg.Now())
	t := c.txns[req.TransactionalID]
	if t == nil {
		pid, err := c.cfg.ProducerIDs()
		if err != nil {
			c.cfg.Logger.Warn("allocating a producer id", "transactional_id", req.TransactionalID, "err", err)
			reply(initErr(producerIDError(err)))
			return
		}
		// As Kafka, the new id is kept (in memory) even if the append
		// below fails: a retry reuses the producer id.
		t = &txnMeta{
			id: req.TransactionalID, producerID: pid, lastProducerID: noProducerID,
			epoch: noProducerEpoch, lastEpoch: noProducerEpoch, timeoutMs: req.TimeoutMs,
			state: Empty, partitions: map[TopicPartition]struct{}{}, start: -1, lastUpdate: now,
		}
		c.txns[t.id] = t
	}
	if t.pending != nil {
		reply(initErr(kerr.ConcurrentTransactions))
		return
	}
	if expected && !(t.epoch == noProducerEpoch || req.ProducerID == t.producerID ||
		(req.ProducerID == t.lastProducerID && epochExhausted(req.ProducerEpoch))) {
		reply(initErr(kerr.ProducerFenced))
		return
	}
	switch t.state {
	case PrepareCommit, PrepareAbort:
		reply(initErr(kerr.ConcurrentTransactions))
		return
	case Ongoing:
		c.cfg.Logger.Info("fencing producer: aborting its open transaction", "transactional_id", t.id,
			"producer_id", t.producerID, "producer_epoch", t.epoch)
		c.endWithLocked(t, false, true, true, func(err error) { reply(initErr(err)) })
		return
	}
	var tr transit
	if epochExhausted(t.epoch) && (!expected || req.ProducerEpoch == t.epoch) {
		pid, err := c.cfg.ProducerIDs()
		if err != nil {
			c.cfg.Logger.Warn("allocating a producer id", "transactional_id", t.id, "err", err)
			reply(initErr(producerIDError(err)))
			return
		}
		tr = t.snapshot()
		tr.producerID, tr.epoch, tr.lastEpoch = pid, 0, noProducerEpoch
		if expected {
			tr.lastEpoch = t.epoch
		}
	} else {
		var err error
		if tr, err = t.bumpEpoch(expected, req.ProducerEpoch); err != nil {
			reply(initErr(err))
			return
		}
	}
	tr.timeoutMs = req.TimeoutMs
	tr.state = Empty
	tr.partitions = map[TopicPartition]struct{}{}
	tr.start = -1
	tr.lastUpdate = now
	c.transitionLocked(t, tr, func(err error) {
		if err != nil {
			reply(initErr(err))
			return
		}
		reply(InitResponse{ProducerID: tr.producerID, ProducerEpoch: tr.epoch})
	})
}

// bumpEpoch is Kafka's prepareIncrementProducerEpoch.
func (t *txnMeta) bumpEpoch(expected bool, expectedEpoch int16) (transit, error) {
	tr := t.snapshot()
	switch {
	case !expected || t.epoch == noProducerEpoch || expectedEpoch == t.epoch:
		if epochExhausted(t.epoch) {
			return tr, kerr.ProducerFenced // only reachable with a stale expected epoch
		}
		tr.epoch, tr.lastEpoch = t.epoch+1, t.epoch
		if !expected {
			tr.lastEpoch = noProducerEpoch
		}
	case expectedEpoch == t.lastEpoch:
		// A retry of a bump whose answer was lost: answer the current
		// epoch again.
	default:
		return tr, kerr.ProducerFenced
	}
	return tr, nil
}

// checkProducerLocked is the producer check of AddPartitionsToTxn,
// AddOffsetsToTxn and EndTxn.
func (c *Coordinator) checkProducerLocked(txnID string, pid int64, epoch int16) (*txnMeta, error) {
	if err := c.activeErrLocked(); err != nil {
		return nil, err
	}
	if txnID == "" {
		return nil, kerr.InvalidRequest
	}
	t := c.txns[txnID]
	switch {
	case t == nil || t.producerID != pid:
		return nil, kerr.InvalidProducerIDMapping
	case t.epoch != epoch:
		return nil, kerr.ProducerFenced
	case t.pending != nil:
		return nil, kerr.ConcurrentTransactions
	}
	return t, nil
}

// AddPartitions adds partitions to the producer's transaction, starting
// one (Ongoing, start time now) if none is open (AddPartitionsToTxn up to
// v3). Every partition gets the same error: kerr.InvalidProducerIDMapping
// for an unknown id or another producer id, kerr.ProducerFenced for
// another epoch, kerr.ConcurrentTransactions while the previous
// transaction is being ended or a state change is being written. The
// answer arrives once the partitions are durable in the transaction (at
// once if they already were). Checking that the partitions exist is the
// caller's (UNKNOWN_TOPIC_OR_PARTITION).
func (c *Coordinator) AddPartitions(txnID string, pid int64, epoch int16, parts []TopicPartition) <-chan map[TopicPartition]error {
	ch := make(chan map[TopicPartition]error, 1)
	c.mu.Lock()
	c.addLocked(txnID, pid, epoch, parts, func(err error) {
		out := make(map[TopicPartition]error, len(parts))
		for _, tp := range parts {
			out[tp] = err
		}
		ch <- out
	})
	c.mu.Unlock()
	c.flush()
	return ch
}

// AddOffsets adds the __consumer_offsets partition of groupID
// (Config.OffsetsPartition) to the producer's transaction
// (AddOffsetsToTxn), with AddPartitions' rules.
func (c *Coordinator) AddOffsets(txnID string, pid int64, epoch int16, groupID string) <-chan error {
	ch := make(chan error, 1)
	c.mu.Lock()
	if err := c.activeErrLocked(); err != nil {
		ch <- err
	} else {
		tp := c.cfg.OffsetsPartition(groupID)
		c.addLocked(txnID, pid, epoch, []TopicPartition{tp}, func(err error) { ch <- err })
	}
	c.mu.Unlock()
	c.flush()
	return ch
}

func (c *Coordinator) addLocked(txnID string, pid int64, epoch int16, parts []TopicPartition, reply func(error)) {
	t, err := c.checkProducerLocked(txnID, pid, epoch)
	if err != nil {
		reply(err)
		return
	}
	switch t.state {
	case PrepareCommit, PrepareAbort:
		reply(kerr.ConcurrentTransactions)
		return
	case Ongoing:
		all := true
		for _, tp := range parts {
			if _, ok := t.partitions[tp]; !ok {
				all = false
				break
			}
		}
		if all {
			reply(nil)
			return
		}
	}
	now := nowMs(c.cfg.Now())
	tr := t.snapshot()
	if t.state != Ongoing {
		tr.partitions = map[TopicPartition]struct{}{}
		tr.start = now
	}
	for _, tp := range parts {
		tr.partitions[tp] = struct{}{}
	}
	tr.state = Ongoing
	tr.lastUpdate = now
	c.transitionLocked(t, tr, reply)
}

// EndRequest is an EndTxn.
type EndRequest struct {
	TransactionalID string
	ProducerID      int64
	ProducerEpoch   int16
	Commit          bool
}

// EndTxn commits or aborts the producer's transaction. The answer arrives
// once the outcome is final: the prepare record, every partition's marker
// and the completion record durable (Kafka answers after the prepare
// record; the markers are awaited here so that a committed transaction is
// readable when the producer hears of it).
//
// Errors: the producer checks of AddPartitions; a retry of a completed
// transaction with the same outcome succeeds, with the other outcome gets
// kerr.InvalidTxnState; one being completed gets kerr.ConcurrentTransactions
// (same outcome) or kerr.InvalidTxnState; an abort with no transaction open
// (Empty) succeeds, a commit gets kerr.InvalidTxnState. If the partition
// moves before the outcome is final the answer is kerr.NotCoordinator and
// the new coordinator finishes the transaction.
func (c *Coordinator) EndTxn(req EndRequest) <-chan error {
	ch := make(chan error, 1)
	c.mu.Lock()
	reply := func(err error) { ch <- err }
	t, err := c.checkProducerLocked(req.TransactionalID, req.ProducerID, req.ProducerEpoch)
	if err != nil {
		reply(err)
	} else {
		c.endTxnLocked(t, req.Commit, reply)
	}
	c.mu.Unlock()
	c.flush()
	return ch
}

func (c *Coordinator) endTxnLocked(t *txnMeta, commit bool, reply func(error)) {
	switch t.state {
	case Ongoing:
		c.endLocked(t, commit, false, reply)
	case CompleteCommit, CompleteAbort:
		if (t.state == CompleteCommit) == commit {
			reply(nil)
		} else {
			reply(kerr.InvalidTxnState)
		}
	case PrepareCommit, PrepareAbort:
		if (t.state == PrepareCommit) == commit {
			reply(kerr.ConcurrentTransactions)
		} else {
			reply(kerr.InvalidTxnState)
		}
	case Empty:
		if commit {
			reply(kerr.InvalidTxnState)
		} else {
			reply(nil)
		}
	default:
		reply(kerr.InvalidTxnState)
	}
}

// Abort aborts txnID's open transaction with a bumped epoch, fencing its
// producer (an operator's command for a hanging transaction). The answer
// arrives once the abort is complete. Errors: kerr.TransactionalIDNotFound
// for an unknown id; kerr.ConcurrentTransactions while the transaction is
// being aborted or a state change is being written; kerr.InvalidTxnState
// when no transaction is open or it is being committed.
func (c *Coordinator) Abort(txnID string) <-chan error {
	ch := make(chan error, 1)
	c.mu.Lock()
	reply := func(err error) { ch <- err }
	t := c.txns[txnID]
	switch err := c.activeErrLocked(); {
	case err != nil:
		reply(err)
	case t == nil:
		reply(kerr.TransactionalIDNotFound)
	case t.pending != nil || t.state == PrepareAbort:
		reply(kerr.ConcurrentTransactions)
	case t.state != Ongoing:
		reply(kerr.InvalidTxnState)
	default:
		c.cfg.Logger.Info("aborting transaction on request", "transactional_id", t.id,
			"producer_id", t.producerID, "producer_epoch", t.epoch)
		c.endLocked(t, false, true, reply)
	}
	c.mu.Unlock()
	c.flush()
	return ch
}

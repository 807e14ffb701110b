package producer

import (
	"math"
	"slices"

	"github.com/strata-io/strata/ingest/batch"
)

// MaxBatches is how many of a producer's most recent batches are remembered
// for duplicate detection, as in Kafka (and as clients assume: at most five
// in-flight requests per connection with idempotence).
const MaxBatches = 5

// BatchMeta is what is remembered about one appended batch.
type BatchMeta struct {
	FirstSeq, LastSeq       int32
	FirstOffset, LastOffset int64
	TimestampMs             int64 // the batch's max timestamp
}

// Producer is a copy of the state kept for one producer id.
type Producer struct {
	ID    int64
	Epoch int16
	// CoordinatorEpoch is the epoch of the transaction coordinator that wrote
	// the producer's last transaction marker, -1 if none (set by
	// UpdateMarker; CheckMarker fences markers from older coordinators).
	CoordinatorEpoch int32
	// CurrentTxnFirstOffset is the offset of the first batch of the
	// producer's open transaction, -1 if none is open.
	CurrentTxnFirstOffset int64
	// LastAppendMs is the broker clock at the producer's last append, used
	// for expiry.
	LastAppendMs int64
	// Batches holds the metadata of the last batches appended in the current
	// epoch, oldest first, at most MaxBatches.
	Batches []BatchMeta
}

// entry is the per-producer state. Batches are kept oldest first in a fixed
// array so that an entry is one allocation and Clone is a copy.
type entry struct {
	epoch            int16
	n                uint8 // batches in use
	coordinatorEpoch int32
	txnFirstOffset   int64
	lastAppendMs     int64
	batches          [MaxBatches]BatchMeta
}

func newEntry(epoch int16) *entry {
	return &entry{epoch: epoch, coordinatorEpoch: -1, txnFirstOffset: -1}
}

func (e *entry) push(m BatchMeta) {
	if int(e.n) == MaxBatches {
		copy(e.batches[:], e.batches[1:])
		e.batches[MaxBatches-1] = m
		return
	}
	e.batches[e.n] = m
	e.n++
}

// State is the idempotent-producer state of one partition: for each producer
// id, its current epoch and its last MaxBatches batches, and the open
// transactions in the order of their first offsets (FirstUnstableOffset).
//
// State is not safe for concurrent use; the partition log calls it under its
// append lock. No method blocks or does I/O.
type State struct {
	producers map[int64]*entry
	txns      openTxns
}

// NewState returns an empty State.
func NewState() *State {
	return &State{producers: make(map[int64]*entry)}
}

// Len is the number of producer ids with state.
func (s *State) Len() int { return len(s.producers) }

// Producer returns a copy of the state kept for producer id, if any.
func (s *State) Producer(id int64) (Producer, bool) {
	e, ok := s.producers[id]
	if !ok {
		return Producer{}, false
	}
	return Producer{
		ID:                    id,
		Epoch:                 e.epoch,
		CoordinatorEpoch:      e.coordinatorEpoch,
		CurrentTxnFirstOffset: e.txnFirstOffset,
		LastAppendMs:          e.lastAppendMs,
		Batches:               append([]BatchMeta(nil), e.batches[:e.n]...),
	}, true
}

// Producers returns a copy of the state of every producer, by id (for
// DescribeProducers).
func (s *State) Producers() []Producer {
	ids := make([]int64, 0, len(s.producers))
	for id := range s.producers {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	out := make([]Producer, len(ids))
	for i, id := range ids {
		out[i], _ = s.Producer(id)
	}
	return out
}

// Check validates the header of a batch about to be appended by a client,
// following Kafka's rules:
//
//   - ProducerID < 0 (not idempotent): accepted, no checks.
//   - no state for the producer id (new, or removed by expiry or by the log
//     start offset moving): any sequence is accepted, as in Kafka 2.5+.
//   - epoch older than the current one: INVALID_PRODUCER_EPOCH (47).
//   - epoch newer than the current one (a bump, KIP-360): accepted only with
//     base sequence 0, else OUT_OF_ORDER_SEQUENCE_NUMBER (45).
//   - same epoch: a batch whose sequence range equals one of the last
//     MaxBatches batches is a duplicate, and its metadata is returned as dup
//     (the caller answers with dup.FirstOffset and appends nothing);
//     otherwise the base sequence must follow the last sequence (wrapping to
//     0 after MaxInt32), else OUT_OF_ORDER_SEQUENCE_NUMBER (45).
//
// A negative base sequence with a producer id is INVALID_RECORD (87).
// Control batches (transaction markers) are only checked for fencing (see
// CheckMarker for the coordinator epoch). Errors are *Error and carry the
// Kafka code in Code(). Check does not change the state; call Update once
// the batch is appended.
func (s *State) Check(h *batch.Header) (dup *BatchMeta, err error) {
	return s.CheckFrom(h, OriginClient)
}

// Origin says who appends a batch, as Kafka's AppendOrigin does for the
// checks that differ.
type Origin int8

const (
	// OriginClient is a producer's own batch: every check of Check applies.
	OriginClient Origin = iota
	// OriginCoordinator is a batch a coordinator writes for a producer,
	// such as the group coordinator's TxnOffsetCommit records (base
	// sequence 0 each time): an older epoch is still fenced, but sequence
	// and duplicate checks are skipped, as Kafka skips them for appends
	// that do not come from a client.
	OriginCoordinator
)

// CheckFrom is Check for a batch appended by origin.
func (s *State) CheckFrom(h *batch.Header, origin Origin) (dup *BatchMeta, err error) {
	if h.ProducerID < 0 {
		return nil, nil
	}
	e := s.producers[h.ProducerID]
	if h.IsControl() || origin == OriginCoordinator {
		if e != nil && h.ProducerEpoch < e.epoch {
			what := "epoch"
			if h.IsControl() {
				what = "marker epoch"
			}
			return nil, errorf(ErrInvalidProducerEpoch, "producer %d: %s %d is older than current epoch %d",
				h.ProducerID, what, h.ProducerEpoch, e.epoch)
		}
		return nil, nil
	}
	if h.BaseSequence < 0 {
		return nil, errorf(ErrInvalidRecord, "producer %d: invalid base sequence %d", h.ProducerID, h.BaseSequence)
	}
	if e == nil {
		return nil, nil
	}
	switch {
	case h.ProducerEpoch < e.epoch:
		return nil, errorf(ErrInvalidProducerEpoch, "producer %d: epoch %d is older than current epoch %d",
			h.ProducerID, h.ProducerEpoch, e.epoch)
	case h.ProducerEpoch > e.epoch:
		if h.BaseSequence != 0 {
			return nil, errorf(ErrOutOfOrderSequence, "producer %d: new epoch %d (current %d) must start at sequence 0, got %d",
				h.ProducerID, h.ProducerEpoch, e.epoch, h.BaseSequence)
		}
		return nil, nil
	}
	last := h.LastSequence()
	for i := range e.n {
		if e.batches[i].FirstSeq == h.BaseSequence && e.batches[i].LastSeq == last {
			m := e.batches[i] // a copy: the caller must not alias the state
			return &m, nil
		}
	}
	if e.n == 0 {
		// Only a marker has been seen in this epoch: no sequence to follow.
		return nil, nil
	}
	if lastSeq := e.batches[e.n-1].LastSeq; !inSequence(lastSeq, h.BaseSequence) {
		return nil, errorf(ErrOutOfOrderSequence, "producer %d epoch %d: expected sequence %d, got %d",
			h.ProducerID, h.ProducerEpoch, nextSeq(lastSeq), h.BaseSequence)
	}
	return nil, nil
}

func nextSeq(last int32) int32 {
	if last == math.MaxInt32 {
		return 0
	}
	return last + 1
}

func inSequence(last, next int32) bool { return next == nextSeq(last) }

// CheckMarker validates a transaction marker (a control batch whose marker
// is m) about to be appended by the leader, as Kafka does: a producer epoch
// older than the producer's current one is INVALID_PRODUCER_EPOCH (47), and
// a coordinator epoch older than the one the producer's last marker carried
// is TRANSACTION_COORDINATOR_FENCED (52): a zombie coordinator's marker.
// It does not change the state; call UpdateMarker once it is appended.
func (s *State) CheckMarker(h *batch.Header, m batch.Marker) error {
	if _, err := s.CheckFrom(h, OriginCoordinator); err != nil || h.ProducerID < 0 {
		return err
	}
	if e := s.producers[h.ProducerID]; e != nil && m.CoordinatorEpoch < e.coordinatorEpoch {
		return errorf(ErrTransactionCoordinatorFenced, "producer %d: marker coordinator epoch %d is older than %d",
			h.ProducerID, m.CoordinatorEpoch, e.coordinatorEpoch)
	}
	return nil
}

// Update records a batch that has been appended: h.BaseOffset must be the
// offset it was assigned. appendMs is the broker's clock at the append and is
// what Expire compares against. Update does not validate; for client batches
// call it only after Check accepted the batch (no error, no duplicate).
// Followers call it for every batch they copy from the leader.
//
// A new epoch replaces the producer's batch metadata. A transactional batch
// opens a transaction if none is open; a control batch closes it (use
// UpdateMarker for a transaction marker whose content is known, so that
// its coordinator epoch is kept).
func (s *State) Update(h *batch.Header, appendMs int64) {
	s.update(h, appendMs)
}

// UpdateMarker records a transaction marker (control batch h holding m)
// that has been appended at h.BaseOffset: it closes the producer's open
// transaction and keeps the marker's coordinator epoch. It returns the
// first offset of the transaction it closed, -1 if none was open (a commit
// or abort of a transaction with no data in this partition, or a retried
// marker). The caller records [first, h.BaseOffset] as aborted when m is an
// abort and first >= 0.
func (s *State) UpdateMarker(h *batch.Header, m batch.Marker, appendMs int64) (first int64) {
	e, first := s.update(h, appendMs)
	if e != nil {
		e.coordinatorEpoch = m.CoordinatorEpoch
	}
	return first
}

// update is Update. It returns the producer's entry (nil for a batch
// without producer id) and, for a control batch, the first offset of the
// transaction it closed (-1 if none).
func (s *State) update(h *batch.Header, appendMs int64) (e *entry, closed int64) {
	if h.ProducerID < 0 {
		return nil, -1
	}
	e = s.producers[h.ProducerID]
	if e == nil {
		e = newEntry(h.ProducerEpoch)
		s.producers[h.ProducerID] = e
	}
	if h.ProducerEpoch != e.epoch {
		e.epoch = h.ProducerEpoch
		e.n = 0
	}
	e.lastAppendMs = appendMs
	if h.IsControl() {
		closed = e.txnFirstOffset
		if closed >= 0 {
			s.txns.closed()
		} else {
			closed = -1
		}
		e.txnFirstOffset = -1
		return e, closed
	}
	if h.IsTransactional() && e.txnFirstOffset < 0 {
		e.txnFirstOffset = h.BaseOffset
		s.txns.opened(s.producers, h.ProducerID, h.BaseOffset)
	}
	e.push(BatchMeta{
		FirstSeq:    h.BaseSequence,
		LastSeq:     h.LastSequence(),
		FirstOffset: h.BaseOffset,
		LastOffset:  h.LastOffset(),
		TimestampMs: h.MaxTimestamp,
	})
	return e, -1
}

// FirstUnstableOffset is the first offset of the oldest open transaction,
// ok false when none is open. Amortized O(1).
func (s *State) FirstUnstableOffset() (offset int64, ok bool) {
	return s.txns.first(s.producers)
}

// OpenTransactions is the number of producers with an open transaction.
func (s *State) OpenTransactions() int { return s.txns.live }

// Expire removes producers whose last append is at least expirationMs
// (producer.id.expiration.ms) before nowMs, as Kafka does, except those with
// an open transaction. It returns how many were removed.
func (s *State) Expire(nowMs, expirationMs int64) int {
	removed := 0
	for id, e := range s.producers {
		if e.txnFirstOffset < 0 && nowMs-e.lastAppendMs >= expirationMs {
			delete(s.producers, id)
			removed++
		}
	}
	return removed
}

// RemoveBelow removes producers whose last batch ends below logStartOffset
// (after retention or DeleteRecords moved the log start offset), and those
// with no batch at all, except those with an open transaction: like Kafka,
// the log keeps an open transaction (and the last stable offset stays at
// the log start) until its marker comes. It returns how many were removed.
// Pass the log start offset of the whole log, not the start of the local
// tier.
func (s *State) RemoveBelow(logStartOffset int64) int {
	removed := 0
	for id, e := range s.producers {
		if e.txnFirstOffset >= 0 {
			continue
		}
		if e.n == 0 || e.batches[e.n-1].LastOffset < logStartOffset {
			delete(s.producers, id)
			removed++
		}
	}
	return removed
}

// Clone returns a deep copy of s, e.g. to roll back a failed multi-batch
// append or to snapshot outside the append lock.
func (s *State) Clone() *State {
	c := &State{producers: make(map[int64]*entry, len(s.producers))}
	for id, e := range s.producers {
		cp := *e
		c.producers[id] = &cp
	}
	c.txns = s.txns.clone(s.producers)
	return c
}

package txn

import (
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
)

// LoadFrom rebuilds the coordinator's transactional ids from every record
// of its __transaction_state partition, in log order (the last record of an
// id wins, a tombstone deletes it), and starts answering requests, for a
// load begun by BeginLoad. It fails with ErrLoadSuperseded, changing
// nothing, when the coordinator was unloaded or began another load since.
// On a record it cannot decode it fails and the coordinator stays
// unloaded; records of unknown key versions are skipped.
//
// Transactions found in PrepareCommit or PrepareAbort get their markers
// written again, stamped with the new coordinator epoch, and are
// completed; Ongoing ones keep their start time and expire from Tick.
func (c *Coordinator) LoadFrom(tok LoadToken, records []Record) error {
	c.mu.Lock()
	err := c.loadLocked(tok, records)
	c.mu.Unlock()
	c.flush()
	return err
}

func (c *Coordinator) loadLocked(tok LoadToken, records []Record) error {
	if c.state != loading || LoadToken(c.gen) != tok {
		return ErrLoadSuperseded
	}
	c.dropLocked(kerr.NotCoordinator)
	c.state = notLoaded
	txns := map[string]*txnMeta{}
	for i, r := range records {
		d, err := DecodeRecord(r.Key, r.Value)
		if errors.Is(err, ErrUnknownRecordType) {
			continue
		}
		if err != nil {
			return fmt.Errorf("load __transaction_state record %d: %w", i, err)
		}
		id := d.Key.TransactionalID
		if d.Value == nil {
			delete(txns, id)
			continue
		}
		m := metadataOf(d.Value)
		t := &txnMeta{
			id: id, producerID: m.ProducerID, lastProducerID: noProducerID,
			epoch: m.ProducerEpoch, lastEpoch: noProducerEpoch, timeoutMs: m.TimeoutMs, state: m.State,
			partitions: map[TopicPartition]struct{}{}, start: m.StartMs, lastUpdate: m.LastUpdateMs,
		}
		if d.Value.PreviousProducerID >= 0 { // value v1 (KIP-890) keeps it
			t.lastProducerID = d.Value.PreviousProducerID
		}
		for _, tp := range m.Partitions {
			t.partitions[tp] = struct{}{}
		}
		switch t.state {
		case Dead:
			delete(txns, id) // never written by Kafka; read as the tombstone it stands for
			continue
		case PrepareEpochFence:
			// Never persisted by Kafka either: the fence was not decided,
			// so the transaction is still open and expires by timeout.
			t.state = Ongoing
		}
		txns[id] = t
	}
	c.txns = txns
	c.state = active
	c.nextExpiry = c.cfg.Now().Add(c.cfg.ExpirationCheckInterval)
	for _, t := range txns {
		c.trackLocked(t)
		if t.state == PrepareCommit || t.state == PrepareAbort {
			t.end = &ending{commit: t.state == PrepareCommit, remaining: map[TopicPartition]int{}}
			for tp := range t.partitions {
				t.end.remaining[tp] = 0
			}
			c.sendMarkersLocked(t)
		}
	}
	return nil
}

// Loading reports whether the load begun with tok is still the
// coordinator's current one and not finished.
func (c *Coordinator) Loading(tok LoadToken) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state == loading && LoadToken(c.gen) == tok
}

package txn

import (
	"sort"

	"github.com/twmb/franz-go/pkg/kerr"
)

// Description is one entry of DescribeTransactions. State, producer id and
// epoch, timeout and partitions are the durable ones (a change being
// written is not shown). StartMs is -1 when no transaction was started.
type Description struct {
	TransactionalID string
	Err             error
	State           State
	ProducerID      int64
	ProducerEpoch   int16
	TimeoutMs       int32
	StartMs         int64
	Partitions      []TopicPartition // sorted
}

// Describe describes transactional ids (DescribeTransactions): an unknown
// one gets kerr.TransactionalIDNotFound, all of them the coordinator's
// error while it is not loaded.
func (c *Coordinator) Describe(ids []string) []Description {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]Description, 0, len(ids))
	for _, id := range ids {
		d := Description{TransactionalID: id, ProducerID: noProducerID, ProducerEpoch: noProducerEpoch, StartMs: -1}
		t := c.txns[id]
		switch err := c.activeErrLocked(); {
		case err != nil:
			d.Err = err
		case t == nil || t.state == Dead:
			d.Err = kerr.TransactionalIDNotFound
		default:
			d.State, d.ProducerID, d.ProducerEpoch = t.state, t.producerID, t.epoch
			d.TimeoutMs, d.StartMs, d.Partitions = t.timeoutMs, t.start, t.partitionList()
		}
		out = append(out, d)
	}
	return out
}

// Listing is one entry of ListTransactions.
type Listing struct {
	TransactionalID string
	ProducerID      int64
	State           State
}

// List lists the coordinator's transactional ids, sorted, filtered by state
// names (as State.String; an unknown name matches nothing — the wire layer
// reports it with ParseState as an unknown state filter) and by producer
// ids; empty filters match everything. It lists nothing while the
// coordinator is not loaded (see Err).
func (c *Coordinator) List(states []string, producerIDs []int64) []Listing {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state != active {
		return nil
	}
	want := map[State]bool{}
	for _, name := range states {
		if s, ok := ParseState(name); ok {
			want[s] = true
		}
	}
	pids := map[int64]bool{}
	for _, p := range producerIDs {
		pids[p] = true
	}
	var out []Listing
	for _, t := range c.txns {
		if t.state == Dead || (len(states) > 0 && !want[t.state]) || (len(pids) > 0 && !pids[t.producerID]) {
			continue
		}
		out = append(out, Listing{TransactionalID: t.id, ProducerID: t.producerID, State: t.state})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].TransactionalID < out[j].TransactionalID })
	return out
}

package group

import (
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
)

// Load rebuilds the coordinator's groups from every record of its
// __consumer_offsets partition, in log order (for a restart, or on becoming
// the partition's leader), and starts answering requests. Groups with
// members come back Stable with their generation and assignments; each
// member's session restarts at load time. Records of types this
// coordinator does not own are skipped. On error the coordinator stays
// unloaded.
//
// Transactional offset commits are pending until a Marker record of their
// producer follows them (commit: they become the committed offsets unless
// a later commit of the partition precedes the marker; abort: dropped);
// those with no marker up to the end stay pending, for CompleteTxn. An
// offset tombstone drops the partition's pending offsets too.
func (c *Coordinator) Load(records []Record) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.loadLocked(records)
}

// LoadFrom is Load for a load begun by BeginLoad: it fails with
// ErrLoadSuperseded, and changes nothing, when the coordinator was
// unloaded or began another load since, so that a slow read of a partition
// this broker no longer leads cannot make it answer for the partition.
func (c *Coordinator) LoadFrom(token LoadToken, records []Record) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state != loading || LoadToken(c.epoch) != token {
		return ErrLoadSuperseded
	}
	return c.loadLocked(records)
}

func (c *Coordinator) loadLocked(records []Record) error {
	c.dropLocked(kerr.NotCoordinator)
	c.state = notLoaded
	now := c.cfg.Now()
	groups := map[string]*Group{}
	get := func(id string) *Group {
		g := groups[id]
		if g == nil {
			g = newGroup(id, now)
			groups[id] = g
		}
		return g
	}
	txnGroups := map[int64]map[string]struct{}{}
	for i, r := range records {
		if r.Marker != nil {
			c.completeTxnLocked(groups, txnGroups, r.ProducerID, r.Marker.Commit)
			continue
		}
		d, err := DecodeRecord(r.Key, r.Value)
		if errors.Is(err, ErrUnknownRecordType) {
			continue
		}
		if err != nil {
			return fmt.Errorf("load __consumer_offsets record %d: %w", i, err)
		}
		switch {
		case d.Offset != nil:
			k := d.Offset.Key
			g := get(k.Group)
			tp := TopicPartition{Topic: k.Topic, Partition: k.Partition}
			v := d.Offset.Value
			if v == nil {
				delete(g.offsets, tp)
				g.clearTxnPartition(tp)
				continue
			}
			o := Offset{Offset: v.Offset, LeaderEpoch: v.LeaderEpoch, Metadata: v.Metadata,
				CommitTime: time.UnixMilli(v.CommitTimestamp), logPos: uint64(i)}
			if v.Version == 1 && v.ExpireTimestamp > 0 {
				o.ExpireTime = time.UnixMilli(v.ExpireTimestamp)
			}
			// A commit after the group's tombstone recreates it (a simple
			// group), as live.
			g.deleted = false
			if r.Transactional {
				g.putTxn(r.ProducerID, tp, &txnOffset{off: o, durable: true})
				indexTxnGroup(txnGroups, r.ProducerID, k.Group)
				continue
			}
			g.offsets[tp] = o
		case d.Group != nil:
			id := d.Group.Key.Group
			g := get(id)
			fresh := newGroup(id, now)
			fresh.offsets, fresh.txn, fresh.txnParts = g.offsets, g.txn, g.txnParts
			groups[id] = fresh
			v := d.Group.Value
			if v == nil {
				fresh.deleted = true
				continue
			}
			fresh.applyMetadata(v, now)
		}
	}
	for id, g := range groups {
		if g.deleted && len(g.offsets) == 0 && len(g.txn) == 0 {
			delete(groups, id)
		}
	}
	c.groups = groups
	c.txnGroups = txnGroups
	c.logPos = uint64(len(records))
	c.state = active
	return nil
}

// Loading reports whether the load begun with token is still the
// coordinator's current one and not finished.
func (c *Coordinator) Loading(token LoadToken) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state == loading && LoadToken(c.epoch) == token
}

// GroupCount is the number of groups the coordinator holds (with members
// or committed offsets).
func (c *Coordinator) GroupCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.groups)
}

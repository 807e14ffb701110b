package group

import (
	"errors"
	"fmt"
	"github.com/twmb/franz-go/pkg/kerr"
	"time"
)

// Load rebuilds the coordinator's groups from every record of its
// __consumer_offsets partition, in log order (for a restart, or on becoming
// the partition's leader), and starts answering requests. Groups with
// members come back Stable with their generation and assignments; each
// member's session restarts at load time. Records of types this
// coordinator does not own are skipped. On error the coordinator stays
// unloaded.
func (c *Coordinator) Load(records []Record) error {
	c.mu.Lock()
	defer c.mu.Unlock()
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
	deleted := map[string]bool{}
	for i, r := range records {
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
				continue
			}
			o := Offset{Offset: v.Offset, LeaderEpoch: v.LeaderEpoch, Metadata: v.Metadata, CommitTime: time.UnixMilli(v.CommitTimestamp)}
			if v.Version == 1 && v.ExpireTimestamp > 0 {
				o.ExpireTime = time.UnixMilli(v.ExpireTimestamp)
			}
			g.offsets[tp] = o
		case d.Group != nil:
			id := d.Group.Key.Group
			g := get(id)
			fresh := newGroup(id, now)
			fresh.offsets = g.offsets
			groups[id] = fresh
			v := d.Group.Value
			if v == nil {
				deleted[id] = true
				continue
			}
			delete(deleted, id)
			fresh.applyMetadata(v, now)
		}
	}
	for id, g := range groups {
		if deleted[id] && len(g.offsets) == 0 {
			delete(groups, id)
		}
	}
	c.groups = groups
	c.state = active
	return nil
}

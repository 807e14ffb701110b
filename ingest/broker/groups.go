package broker

// Consumer groups: the __consumer_offsets topic and one group.Coordinator
// per partition of it (see docs/groups.md).
//
// The topic is created at Open when missing (compacted, internal, never
// auto-created or deleted through the Kafka APIs, refused for client
// produce). Every coordinator loads its partition's records at Open and then
// serves; its records are appended through the partition's ordinary log path
// and reported durable once below the high watermark. A single node leads
// every offsets partition; with replication, leadership changes become
// BeginLoad/Load/Unload calls on the coordinators.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/strata-io/strata/ingest/batch"
	"github.com/strata-io/strata/ingest/cluster"
	"github.com/strata-io/strata/ingest/group"
	plog "github.com/strata-io/strata/ingest/log"
)

// OffsetsTopic is the internal topic that stores committed offsets and group
// metadata.
const OffsetsTopic = "__consumer_offsets"

// DefaultOffsetsTopicPartitions is offsets.topic.num.partitions, as Kafka.
const DefaultOffsetsTopicPartitions = 50

// groupTickInterval bounds how late session, join and sync deadlines are
// noticed.
const groupTickInterval = 100 * time.Millisecond

// groupState is the broker's coordinators, one per offsets partition.
type groupState struct {
	coords []*group.Coordinator
}

// startGroups creates __consumer_offsets if missing, loads a coordinator per
// partition and starts the tick and expiry loops. Called from Open.
func (b *Broker) startGroups() error {
	n := b.cfg.OffsetsTopicPartitions
	if n <= 0 {
		n = DefaultOffsetsTopicPartitions
	}
	t, ok := b.meta.Topic(OffsetsTopic)
	if !ok {
		var err error
		t, err = b.meta.CreateTopic(cluster.Topic{
			Name: OffsetsTopic, Internal: true, Partitions: make([]cluster.Partition, n),
			Configs: map[string]string{"cleanup.policy": "compact", "segment.bytes": "104857600"},
		})
		if err != nil && !errors.Is(err, cluster.ErrTopicExists) {
			return fmt.Errorf("create %s: %w", OffsetsTopic, err)
		}
		if t, ok = b.meta.Topic(OffsetsTopic); !ok {
			return fmt.Errorf("create %s: topic missing after creation", OffsetsTopic)
		}
		b.log.Info("created the offsets topic", "topic", OffsetsTopic, "partitions", len(t.Partitions))
	}
	// An existing topic keeps its partition count: groups are placed by it.
	gs := &groupState{}
	for i := range t.Partitions {
		idx := int32(i)
		c := group.New(group.Config{
			Appender:         &offsetsAppender{b: b, idx: idx},
			OffsetsRetention: b.cfg.OffsetsRetention,
		})
		c.BeginLoad()
		recs, err := b.readOffsetsPartition(idx)
		if err != nil {
			return err
		}
		if err := c.Load(recs); err != nil {
			return fmt.Errorf("%s-%d: %w", OffsetsTopic, idx, err)
		}
		gs.coords = append(gs.coords, c)
	}
	b.groups = gs
	b.wg.Add(2)
	go b.every(groupTickInterval, func() {
		now := time.Now()
		for _, c := range gs.coords {
			c.Tick(now)
		}
	})
	check := b.cfg.OffsetsRetentionCheckInterval
	if check <= 0 {
		check = 10 * time.Minute
	}
	go b.every(check, func() {
		now := time.Now()
		for i, c := range gs.coords {
			if o, g := c.ExpireOffsets(now); o+g > 0 {
				b.log.Info("expired committed offsets", "partition", i, "offsets", o, "groups", g)
			}
		}
	})
	return nil
}

// stopGroups unloads the coordinators: waiting joins and syncs are answered
// NOT_COORDINATOR and later requests too. Called from Close.
func (b *Broker) stopGroups() {
	if b.groups == nil {
		return
	}
	for _, c := range b.groups.coords {
		c.Unload()
	}
}

// readOffsetsPartition returns every record of an offsets partition below
// its high watermark, in log order.
func (b *Broker) readOffsetsPartition(idx int32) ([]group.Record, error) {
	p, err := b.Partition(OffsetsTopic, idx)
	if err != nil {
		return nil, fmt.Errorf("%s-%d: %w", OffsetsTopic, idx, err)
	}
	var out []group.Record
	off := p.LogStartOffset()
	for off < p.HighWatermark() {
		data, err := p.Read(b.ctx, off, 1<<20, true)
		if err != nil {
			return nil, fmt.Errorf("read %s-%d at %d: %w", OffsetsTopic, idx, off, err)
		}
		if len(data) == 0 {
			break
		}
		for len(data) > 0 {
			h, err := batch.ParseHeader(data)
			if err != nil {
				return nil, fmt.Errorf("read %s-%d at %d: %w", OffsetsTopic, idx, off, err)
			}
			one := data[:h.Size()]
			data = data[h.Size():]
			off = h.LastOffset() + 1
			if h.IsControl() {
				continue
			}
			err = batch.Records(one, 0, func(r batch.Record) error {
				rec := group.Record{Key: append([]byte(nil), r.Key...)}
				if r.Value != nil {
					rec.Value = append([]byte(nil), r.Value...)
				}
				out = append(out, rec)
				return nil
			})
			if err != nil {
				return nil, fmt.Errorf("read %s-%d at %d: %w", OffsetsTopic, idx, h.BaseOffset, err)
			}
		}
	}
	return out, nil
}

// ErrNoGroups is returned by GroupCoordinator before the coordinators run.
var ErrNoGroups = errors.New("group coordinator not running")

// GroupCoordinator returns the coordinator of a group (the one of its
// offsets partition, group.PartitionFor).
func (b *Broker) GroupCoordinator(groupID string) (*group.Coordinator, error) {
	gs := b.groups
	if gs == nil || len(gs.coords) == 0 {
		return nil, ErrNoGroups
	}
	return gs.coords[group.PartitionFor(groupID, int32(len(gs.coords)))], nil
}

// GroupCoordinators returns every coordinator (ListGroups asks them all).
func (b *Broker) GroupCoordinators() []*group.Coordinator {
	if b.groups == nil {
		return nil
	}
	return b.groups.coords
}

// offsetsAppender appends a coordinator's records to its offsets partition.
type offsetsAppender struct {
	b   *Broker
	idx int32
}

// Append implements group.Appender: the records are appended as one batch
// at once (in call order, since the coordinator calls serially) and done is
// called from another goroutine once they are durable.
func (a *offsetsAppender) Append(records []group.Record, done func(error)) {
	p, err := a.b.Partition(OffsetsTopic, a.idx)
	if err != nil {
		done(kerr.NotLeaderForPartition)
		return
	}
	now := time.Now().UnixMilli()
	recs := make([]batch.Record, len(records))
	for i, r := range records {
		recs[i] = batch.Record{Key: r.Key, Value: r.Value}
	}
	data, err := batch.AppendBuild(nil, batch.BuildOptions{BaseTimestamp: now}, recs...)
	if err != nil {
		done(appendErr(err))
		return
	}
	res, err := p.Produce(data, true)
	if err != nil {
		done(appendErr(err))
		return
	}
	go func() { done(appendErr(p.WaitDurable(a.b.ctx, res.LastOffset))) }()
}

// appendErr maps an offsets append failure to the kerr value the
// coordinator maps to Kafka's answer.
func appendErr(err error) error {
	if err == nil {
		return nil
	}
	var coded interface{ Code() int16 }
	if errors.As(err, &coded) {
		if ke := kerr.ErrorForCode(coded.Code()); ke != nil {
			return ke
		}
	}
	switch {
	case errors.Is(err, plog.ErrStorage), errors.Is(err, plog.ErrDiskFull):
		return kerr.KafkaStorageError
	case errors.Is(err, plog.ErrClosed), errors.Is(err, context.Canceled), errors.Is(err, ErrUnknownTopicOrPartition):
		return kerr.NotLeaderForPartition
	}
	return err
}

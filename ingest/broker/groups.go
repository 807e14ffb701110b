package broker

// Consumer groups: the __consumer_offsets topic and one group.Coordinator
// per partition of it (see docs/groups.md).
//
// The topic is created at Open when missing (compacted, internal, never
// auto-created or deleted through the Kafka APIs, refused for client
// produce). Every coordinator loads its partition's records when elected
// (for every partition at Open, in the background) and then serves; its records are appended through the partition's ordinary log path
// and reported durable once below the high watermark. A single node leads
// every offsets partition; with replication, leadership changes of an
// offsets partition call ElectCoordinator and ResignCoordinator.

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
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

// Loading an offsets partition back into its coordinator is retried after
// a failed read with this backoff, doubling up to the maximum.
const (
	groupLoadBackoff    = time.Second
	groupLoadMaxBackoff = 30 * time.Second
	// groupLoadParallel bounds the offsets partitions read back at once.
	groupLoadParallel = 4
)

// groupState is the broker's coordinators, one per offsets partition, and
// which of those partitions this broker leads.
type groupState struct {
	coords  []*group.Coordinator
	leading []atomic.Bool
	// mu orders Elect and Resign of one partition against each other (the
	// coordinator's BeginLoad/Unload and leading change together).
	mu      sync.Mutex
	loadSem chan struct{}
	// initial is done when the loads started by Open have finished.
	initial sync.WaitGroup
}

// startGroups creates __consumer_offsets if missing, makes a coordinator per
// partition, elects this broker coordinator of every partition (the loads
// run in the background: until a partition is loaded its groups get
// COORDINATOR_LOAD_IN_PROGRESS, which clients retry) and starts the tick and
// expiry loops. Called from Open.
func (b *Broker) startGroups() error {
	n := b.cfg.OffsetsTopicPartitions
	if n <= 0 {
		n = DefaultOffsetsTopicPartitions
	}
	t, ok := b.meta.Topic(OffsetsTopic)
	if !ok {
		rf := b.waitOffsetsReplicas()
		var err error
		t, err = b.meta.CreateTopic(cluster.Topic{
			Name: OffsetsTopic, Internal: true, Partitions: make([]cluster.Partition, n),
			Configs: map[string]string{"cleanup.policy": "compact", "segment.bytes": "104857600"},
		}, rf)
		if err != nil && !errors.Is(err, cluster.ErrTopicExists) {
			return fmt.Errorf("create %s: %w", OffsetsTopic, err)
		}
		// Another broker may have created it: its creation reaches this
		// broker's metadata a moment later.
		deadline := time.Now().Add(10 * time.Second)
		for t, ok = b.meta.Topic(OffsetsTopic); !ok && time.Now().Before(deadline); t, ok = b.meta.Topic(OffsetsTopic) {
			time.Sleep(20 * time.Millisecond)
		}
		if !ok {
			return fmt.Errorf("create %s: topic missing after creation (create answered %v)", OffsetsTopic, err)
		}
		b.log.Info("created the offsets topic", "topic", OffsetsTopic, "partitions", len(t.Partitions))
	}
	// An existing topic keeps its partition count: groups are placed by it.
	gs := &groupState{
		coords:  make([]*group.Coordinator, len(t.Partitions)),
		leading: make([]atomic.Bool, len(t.Partitions)),
		loadSem: make(chan struct{}, groupLoadParallel),
	}
	for i := range gs.coords {
		gs.coords[i] = group.New(group.Config{
			Appender:         &offsetsAppender{b: b, idx: int32(i)},
			OffsetsRetention: b.cfg.OffsetsRetention,
		})
	}
	b.groups = gs
	// Coordinators of the offsets partitions this broker leads (on a
	// single node, all of them); leadership changes later move them
	// (syncCoordinators).
	start := time.Now()
	for i, mp := range t.Partitions {
		if mp.Leader == b.cfg.NodeID {
			gs.initial.Add(1)
			b.electCoordinator(int32(i), gs.initial.Done)
		}
	}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		gs.initial.Wait()
		if b.ctx.Err() == nil {
			b.log.Info("group coordinators loaded", "partitions", len(gs.coords), "took", time.Since(start).Round(time.Millisecond))
		}
	}()
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

// waitOffsetsReplicas returns the replication factor for a new offsets
// topic: offsets.topic.replication.factor (3), bounded by the cluster's
// size (its voters), waiting up to 30 s for that many brokers to be up, as
// Kafka waits before creating the topic; after that it takes what is
// there.
func (b *Broker) waitOffsetsReplicas() int {
	want := min(3, max(1, len(b.cfg.ControllerVoters)))
	deadline := time.Now().Add(30 * time.Second)
	for len(b.meta.Brokers()) < want && time.Now().Before(deadline) && b.ctx.Err() == nil {
		time.Sleep(50 * time.Millisecond)
	}
	if n := len(b.meta.Brokers()); n < want {
		b.log.Warn("creating the offsets topic with fewer replicas than wanted", "replicas", n, "wanted", want)
		return n
	}
	return want
}

// syncCoordinators elects or resigns this broker as coordinator of each
// offsets partition as its leadership says. Called on metadata changes of
// the offsets topic.
func (b *Broker) syncCoordinators(t cluster.Topic) {
	gs := b.groups
	if gs == nil {
		return
	}
	for i, mp := range t.Partitions {
		if i >= len(gs.coords) {
			break
		}
		lead := mp.Leader == b.cfg.NodeID
		switch was := gs.leading[i].Load(); {
		case lead && !was:
			b.electCoordinator(int32(i), nil)
			b.log.Info("elected group coordinator", "partition", i, "leader_epoch", mp.LeaderEpoch)
		case !lead && was:
			_ = b.ResignCoordinator(int32(i))
		}
	}
}

// WaitGroupsLoaded returns once the coordinator loads started by Open have
// finished (or ctx ends).
func (b *Broker) WaitGroupsLoaded(ctx context.Context) error {
	gs := b.groups
	if gs == nil {
		return ErrNoGroups
	}
	done := make(chan struct{})
	go func() { gs.initial.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ElectCoordinator makes this broker the group coordinator of offsets
// partition idx, as on becoming the partition's leader: its groups get
// COORDINATOR_LOAD_IN_PROGRESS while the partition's records are read back
// in the background, and are served from then on. Electing again reloads.
func (b *Broker) ElectCoordinator(idx int32) error {
	if _, err := b.coordinatorAt(idx); err != nil {
		return err
	}
	b.electCoordinator(idx, nil)
	return nil
}

// ResignCoordinator gives up offsets partition idx, as on losing its
// leadership: waiting joins and syncs and every later request for its
// groups get NOT_COORDINATOR, FindCoordinator stops naming this broker, and
// a load still running is abandoned. The committed offsets stay in the log
// for the next coordinator.
func (b *Broker) ResignCoordinator(idx int32) error {
	c, err := b.coordinatorAt(idx)
	if err != nil {
		return err
	}
	gs := b.groups
	gs.mu.Lock()
	gs.leading[idx].Store(false)
	c.Unload()
	gs.mu.Unlock()
	b.log.Info("resigned group coordinator", "partition", idx)
	return nil
}

// LeadsCoordinator reports whether this broker is the coordinator of the
// group's offsets partition (loaded or loading).
func (b *Broker) LeadsCoordinator(groupID string) bool {
	gs := b.groups
	if gs == nil || len(gs.coords) == 0 {
		return false
	}
	return gs.leading[group.PartitionFor(groupID, int32(len(gs.coords)))].Load()
}

func (b *Broker) coordinatorAt(idx int32) (*group.Coordinator, error) {
	gs := b.groups
	if gs == nil {
		return nil, ErrNoGroups
	}
	if idx < 0 || int(idx) >= len(gs.coords) {
		return nil, fmt.Errorf("%s-%d: %w", OffsetsTopic, idx, ErrUnknownTopicOrPartition)
	}
	return gs.coords[idx], nil
}

// electCoordinator begins the load of partition idx and reads it back in
// the background; done (if any) runs when the load ends either way.
func (b *Broker) electCoordinator(idx int32, done func()) {
	gs := b.groups
	c := gs.coords[idx]
	gs.mu.Lock()
	tok := c.BeginLoad()
	gs.leading[idx].Store(true)
	gs.mu.Unlock()
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		if done != nil {
			defer done()
		}
		b.loadCoordinator(idx, c, tok)
	}()
}

// loadCoordinator reads offsets partition idx back into its coordinator,
// retrying failed reads with backoff until the load succeeds, is
// superseded (the partition was resigned or elected again) or the broker
// closes.
func (b *Broker) loadCoordinator(idx int32, c *group.Coordinator, tok group.LoadToken) {
	select {
	case b.groups.loadSem <- struct{}{}:
		defer func() { <-b.groups.loadSem }()
	case <-b.ctx.Done():
		return
	}
	backoff := groupLoadBackoff
	for {
		start := time.Now()
		recs, err := b.readOffsetsPartition(idx)
		if err == nil {
			err = c.LoadFrom(tok, recs)
		}
		switch {
		case err == nil:
			b.log.Info("loaded group coordinator", "partition", idx, "records", len(recs),
				"groups", c.GroupCount(), "took", time.Since(start).Round(time.Millisecond))
			return
		case errors.Is(err, group.ErrLoadSuperseded), b.ctx.Err() != nil:
			return
		}
		b.log.Error("loading group coordinator failed; retrying", "partition", idx, "err", err, "retry_in", backoff)
		select {
		case <-time.After(backoff):
		case <-b.ctx.Done():
			return
		}
		if !c.Loading(tok) {
			return
		}
		backoff = min(2*backoff, groupLoadMaxBackoff)
	}
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

// readOffsetsPartition returns every record of an offsets partition, in log
// order, up to its log end.
func (b *Broker) readOffsetsPartition(idx int32) ([]group.Record, error) {
	var out []group.Record
	err := b.readInternal(OffsetsTopic, idx, func(h *batch.Header, r batch.Record) {
		if h.IsControl() {
			// A transaction's marker: it completes the producer's
			// transactional offset commits before it.
			if m, err := batch.MarkerOf(r); err == nil {
				out = append(out, group.Record{ProducerID: h.ProducerID, ProducerEpoch: h.ProducerEpoch,
					Marker: &group.TxnMarker{Commit: m.Commit}})
			}
			return
		}
		rec := group.Record{Key: append([]byte(nil), r.Key...)}
		if r.Value != nil {
			rec.Value = append([]byte(nil), r.Value...)
		}
		if h.IsTransactional() {
			rec.Transactional, rec.ProducerID, rec.ProducerEpoch = true, h.ProducerID, h.ProducerEpoch
		}
		out = append(out, rec)
	})
	return out, err
}

// readInternal calls fn with every record of a partition of an internal
// topic, in log order, up to its log end: a new leader's high watermark may
// lag until its followers report, and what its log holds is what it will
// commit. fn must copy what it keeps.
func (b *Broker) readInternal(topic string, idx int32, fn func(h *batch.Header, r batch.Record)) error {
	p, err := b.Partition(topic, idx)
	if err != nil {
		return fmt.Errorf("%s-%d: %w", topic, idx, err)
	}
	off := p.LogStartOffset()
	for off < p.LogEndOffset() {
		data, err := p.ReadForFollower(off, 1<<20)
		if err != nil {
			return fmt.Errorf("read %s-%d at %d: %w", topic, idx, off, err)
		}
		if len(data) == 0 {
			break
		}
		for len(data) > 0 {
			h, err := batch.ParseHeader(data)
			if err != nil {
				return fmt.Errorf("read %s-%d at %d: %w", topic, idx, off, err)
			}
			one := data[:h.Size()]
			data = data[h.Size():]
			off = h.LastOffset() + 1
			err = batch.Records(one, 0, func(r batch.Record) error {
				fn(&h, r)
				return nil
			})
			if err != nil {
				return fmt.Errorf("read %s-%d at %d: %w", topic, idx, h.BaseOffset, err)
			}
		}
	}
	return nil
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
//
// Transactional offset commits (one producer per call, group.Appender's
// contract) become a transactional batch of that producer, base sequence 0,
// appended as the coordinator's (no sequence check; an older producer epoch
// is still fenced).
func (a *offsetsAppender) Append(records []group.Record, done func(error)) {
	recs := make([]batch.Record, len(records))
	for i, r := range records {
		recs[i] = batch.Record{Key: r.Key, Value: r.Value}
	}
	var opts batch.BuildOptions
	if len(records) > 0 && records[0].Transactional {
		opts = batch.BuildOptions{Transactional: true, Idempotent: true,
			ProducerID: records[0].ProducerID, ProducerEpoch: records[0].ProducerEpoch}
	}
	a.b.appendInternal(OffsetsTopic, a.idx, recs, opts, done)
}

// appendInternal appends records as one batch (built with opts, at the
// broker's clock) to a partition of an internal topic this broker leads,
// and calls done from another goroutine once they are durable, or at once
// on failure, with a kerr value.
func (b *Broker) appendInternal(topic string, idx int32, recs []batch.Record, opts batch.BuildOptions, done func(error)) {
	p, err := b.Partition(topic, idx)
	if err != nil {
		done(kerr.NotLeaderForPartition)
		return
	}
	opts.BaseTimestamp = time.Now().UnixMilli()
	data, err := batch.AppendBuild(nil, opts, recs...)
	if err != nil {
		done(appendErr(err))
		return
	}
	res, err := p.produce(data, true, plog.AppendInfo{Coordinator: opts.Transactional})
	if err != nil {
		done(appendErr(err))
		return
	}
	go func() { done(appendErr(p.WaitDurable(b.ctx, res.LastOffset))) }()
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

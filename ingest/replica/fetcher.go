// Package replica copies partitions from their leaders to this broker, as
// Kafka's replica fetchers do: one fetcher per leader broker sends Fetch
// requests with this broker's replica id for every partition it follows
// from that leader, appends what comes back verbatim, waits until it is
// durable, and fetches again from the new end (so the leader, which counts
// a follower's fetch offset as what it holds durably, never counts data a
// crash could lose).
//
// Before fetching a partition it truncates any divergent tail: it asks the
// leader for the end offset of its own latest leader epoch
// (OffsetForLeaderEpoch, KIP-101/279) and cuts its log there.
//
// The package knows partitions only through the Follower interface.
package replica

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Follower is a partition this broker follows.
type Follower interface {
	// Key names the partition (topic and index).
	Key() (topic string, partition int32)
	// FollowEpoch is the leader epoch of the leader being followed.
	FollowEpoch() int32
	// EndOffset and StartOffset are the local log's.
	EndOffset() int64
	StartOffset() int64
	// LatestEpoch is the newest leader epoch in the local log, -1 if none;
	// EndOffsetForEpoch is the local log's answer to OffsetForLeaderEpoch.
	LatestEpoch() int32
	EndOffsetForEpoch(epoch int32) (int32, int64)
	// Truncate removes the records at and above offset and returns the new
	// end.
	Truncate(offset int64) (int64, error)
	// AppendFromLeader appends fetched batches as they are and returns the
	// new end offset.
	AppendFromLeader(b []byte) (int64, error)
	// WaitDurable waits until every record below end is durable.
	WaitDurable(ctx context.Context, end int64) error
	// SetLeaderHighWatermark passes on the leader's high watermark, and
	// SetLeaderLogStart the leader's log start (retention, DeleteRecords).
	SetLeaderHighWatermark(hw int64)
	SetLeaderLogStart(start int64)
	// HighWatermark is the replica's own (what it knows is committed).
	HighWatermark() int64
}

// Config configures a Manager.
type Config struct {
	// Self is this broker's id, sent as the replica id.
	Self int32
	// Resolve returns a broker's address.
	Resolve func(id int32) (addr string, ok bool)
	// MaxWait is replica.fetch.wait.max.ms (500ms); MaxBytes is
	// replica.fetch.response.max.bytes (10 MiB) and PartitionMaxBytes
	// replica.fetch.max.bytes (1 MiB).
	MaxWait           time.Duration
	MaxBytes          int32
	PartitionMaxBytes int32
	// Backoff is replica.fetch.backoff.ms (1s), after an error.
	Backoff time.Duration
	Logger  *slog.Logger
	// Dial, if set, makes the connections to leaders (tests cut links
	// with it).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

func (c *Config) defaults() {
	if c.MaxWait <= 0 {
		c.MaxWait = 500 * time.Millisecond
	}
	if c.MaxBytes <= 0 {
		c.MaxBytes = 10 << 20
	}
	if c.PartitionMaxBytes <= 0 {
		c.PartitionMaxBytes = 1 << 20
	}
	if c.Backoff <= 0 {
		c.Backoff = time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

type pkey struct {
	topic string
	part  int32
}

// Manager runs one fetcher per leader broker.
type Manager struct {
	cfg Config

	mu       sync.Mutex
	fetchers map[int32]*fetcher
	where    map[pkey]int32 // partition → leader it is fetched from
	closed   bool
}

// NewManager returns a manager with no partitions.
func NewManager(cfg Config) *Manager {
	cfg.defaults()
	return &Manager{cfg: cfg, fetchers: map[int32]*fetcher{}, where: map[pkey]int32{}}
}

// Follow makes f fetched from leader (and from no other broker). Calling it
// again for the same partition, e.g. with a new leader epoch, starts over:
// the partition is truncated again before it is fetched.
func (m *Manager) Follow(leader int32, f Follower) {
	t, p := f.Key()
	k := pkey{t, p}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return
	}
	if old, ok := m.where[k]; ok && old != leader {
		m.fetchers[old].remove(k)
	}
	fe := m.fetchers[leader]
	if fe == nil {
		fe = newFetcher(m.cfg, leader)
		m.fetchers[leader] = fe
	}
	m.where[k] = leader
	fe.add(k, f)
}

// Unfollow stops fetching the partition.
func (m *Manager) Unfollow(topic string, partition int32) {
	k := pkey{topic, partition}
	m.mu.Lock()
	defer m.mu.Unlock()
	if l, ok := m.where[k]; ok {
		m.fetchers[l].remove(k)
		delete(m.where, k)
	}
}

// Following reports the leader a partition is fetched from.
func (m *Manager) Following(topic string, partition int32) (int32, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	l, ok := m.where[pkey{topic, partition}]
	return l, ok
}

// Close stops every fetcher and waits for them.
func (m *Manager) Close() {
	m.mu.Lock()
	m.closed = true
	fs := m.fetchers
	m.fetchers = map[int32]*fetcher{}
	m.mu.Unlock()
	for _, f := range fs {
		f.stop()
	}
}

// fetcher fetches the partitions led by one broker.
type fetcher struct {
	cfg    Config
	leader int32
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
	wake   chan struct{}

	mu    sync.Mutex
	parts map[pkey]*state
}

// state is one partition's place in its fetcher.
type state struct {
	f         Follower
	truncated bool // divergent tail removed for the current leader epoch
	failUntil time.Time
	// behind: the leader answered that it no longer has the offset this
	// replica fetches (its log start, or local log start, passed it).
	behind bool
}

// StartOverer is a Follower that can start over at the leader's log when
// its own log ends below what the leader still holds locally (retention on
// the leader, or local retention of a tiered topic, deleted it).
type StartOverer interface {
	// StartOver is told the leader's log start and local log start and
	// returns the replica's new end offset.
	StartOver(ctx context.Context, leaderStart, leaderLocalStart int64) (int64, error)
}

func newFetcher(cfg Config, leader int32) *fetcher {
	fe := &fetcher{cfg: cfg, leader: leader, log: cfg.Logger.With("leader", leader), done: make(chan struct{}),
		wake: make(chan struct{}, 1), parts: map[pkey]*state{}}
	fe.ctx, fe.cancel = context.WithCancel(context.Background())
	go fe.run()
	return fe
}

func (fe *fetcher) add(k pkey, f Follower) {
	fe.mu.Lock()
	fe.parts[k] = &state{f: f}
	fe.mu.Unlock()
	select {
	case fe.wake <- struct{}{}:
	default:
	}
}

func (fe *fetcher) remove(k pkey) {
	fe.mu.Lock()
	delete(fe.parts, k)
	fe.mu.Unlock()
}

func (fe *fetcher) stop() {
	fe.cancel()
	<-fe.done
}

// current reports whether st is still the partition's state (not removed
// or replaced while a request was out).
func (fe *fetcher) current(k pkey, st *state) bool {
	fe.mu.Lock()
	defer fe.mu.Unlock()
	return fe.parts[k] == st
}

func (fe *fetcher) run() {
	defer close(fe.done)
	var cl *kgo.Client
	var clAddr string
	defer func() {
		if cl != nil {
			cl.Close()
		}
	}()
	for fe.ctx.Err() == nil {
		fe.mu.Lock()
		snap := make(map[pkey]*state, len(fe.parts))
		now := time.Now()
		for k, st := range fe.parts {
			if now.After(st.failUntil) {
				snap[k] = st
			}
		}
		fe.mu.Unlock()
		if len(snap) == 0 {
			select {
			case <-fe.wake:
			case <-time.After(fe.cfg.Backoff):
			case <-fe.ctx.Done():
			}
			continue
		}
		addr, ok := fe.cfg.Resolve(fe.leader)
		if !ok {
			fe.sleep()
			continue
		}
		if cl == nil || clAddr != addr {
			if cl != nil {
				cl.Close()
			}
			var err error
			opts := []kgo.Opt{kgo.SeedBrokers(addr), kgo.ClientID(fmt.Sprintf("strata-replica-%d", fe.cfg.Self)),
				kgo.RetryTimeout(5 * time.Second)}
			if fe.cfg.Dial != nil {
				opts = append(opts, kgo.Dialer(fe.cfg.Dial))
			}
			cl, err = kgo.NewClient(opts...)
			if err != nil {
				fe.log.Error("replica fetcher client", "err", err)
				fe.sleep()
				continue
			}
			clAddr = addr
		}
		br := cl.Broker(int(fe.leader))
		for k, st := range snap {
			if st.behind {
				if err := fe.startOver(br, k, st); err != nil {
					fe.log.Warn("starting over at the leader's log failed; will retry", "topic", k.topic, "partition", k.part, "err", err)
					st.failUntil = time.Now().Add(fe.cfg.Backoff)
					delete(snap, k)
					continue
				}
			}
			if !st.truncated {
				if err := fe.truncate(br, k, st); err != nil {
					fe.log.Warn("truncating a follower to the leader's log failed; will retry", "topic", k.topic, "partition", k.part, "err", err)
					st.failUntil = time.Now().Add(fe.cfg.Backoff)
					delete(snap, k)
				}
			}
		}
		if len(snap) == 0 {
			continue
		}
		if err := fe.fetchOnce(br, snap); err != nil {
			if fe.ctx.Err() == nil {
				fe.log.Debug("replica fetch failed", "err", err)
				fe.sleep()
			}
		}
	}
}

func (fe *fetcher) sleep() {
	select {
	case <-time.After(fe.cfg.Backoff):
	case <-fe.ctx.Done():
	}
}

// truncate cuts the follower's divergent tail (KIP-279): the leader
// answers the end offset of the follower's latest epoch, or of the largest
// epoch it knows below it; the follower keeps what both logs agree on.
func (fe *fetcher) truncate(br *kgo.Broker, k pkey, st *state) error {
	f := st.f
	epoch := f.LatestEpoch()
	if epoch < 0 || f.EndOffset() == f.StartOffset() {
		st.truncated = true
		return nil
	}
	req := kmsg.NewPtrOffsetForLeaderEpochRequest()
	req.ReplicaID = fe.cfg.Self
	rt := kmsg.NewOffsetForLeaderEpochRequestTopic()
	rt.Topic = k.topic
	rp := kmsg.NewOffsetForLeaderEpochRequestTopicPartition()
	rp.Partition, rp.CurrentLeaderEpoch, rp.LeaderEpoch = k.part, f.FollowEpoch(), epoch
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	ctx, cancel := context.WithTimeout(fe.ctx, 10*time.Second)
	defer cancel()
	resp, err := br.Request(ctx, req)
	if err != nil {
		return err
	}
	r := resp.(*kmsg.OffsetForLeaderEpochResponse)
	if len(r.Topics) != 1 || len(r.Topics[0].Partitions) != 1 {
		return errors.New("OffsetForLeaderEpoch answered another partition")
	}
	p := r.Topics[0].Partitions[0]
	if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
		return err
	}
	if !fe.current(k, st) {
		return nil
	}
	cut := p.EndOffset
	if p.LeaderEpoch >= 0 {
		if _, mine := f.EndOffsetForEpoch(p.LeaderEpoch); mine >= 0 && mine < cut {
			cut = mine
		}
	} else {
		// The leader has no epoch at or below ours (KIP-101's fallback):
		// keep what is known committed, never more.
		cut = max(f.StartOffset(), f.HighWatermark())
	}
	if end := f.EndOffset(); cut < end {
		newEnd, err := f.Truncate(cut)
		if err != nil {
			return fmt.Errorf("truncate to %d: %w", cut, err)
		}
		fe.log.Info("truncated a divergent log tail before following", "topic", k.topic, "partition", k.part,
			"from", end, "to", newEnd, "leader_epoch", f.FollowEpoch())
	}
	st.truncated = true
	return nil
}

// startOver asks the leader for its log start and local log start
// (ListOffsets, earliest and KIP-1005's earliest-local) and lets the
// replica start over there when its log ends below them.
func (fe *fetcher) startOver(br *kgo.Broker, k pkey, st *state) error {
	so, ok := st.f.(StartOverer)
	if !ok {
		return errors.New("the leader no longer has the offsets this replica needs, and it cannot start over")
	}
	req := kmsg.NewPtrListOffsetsRequest()
	req.ReplicaID = fe.cfg.Self
	rt := kmsg.NewListOffsetsRequestTopic()
	rt.Topic = k.topic
	for _, ts := range []int64{-2, -4} {
		rp := kmsg.NewListOffsetsRequestTopicPartition()
		rp.Partition, rp.CurrentLeaderEpoch, rp.Timestamp = k.part, st.f.FollowEpoch(), ts
		rt.Partitions = append(rt.Partitions, rp)
	}
	req.Topics = append(req.Topics, rt)
	ctx, cancel := context.WithTimeout(fe.ctx, 2*time.Minute)
	defer cancel()
	resp, err := br.Request(ctx, req)
	if err != nil {
		return err
	}
	r := resp.(*kmsg.ListOffsetsResponse)
	if len(r.Topics) != 1 || len(r.Topics[0].Partitions) != 2 {
		return errors.New("ListOffsets answered other partitions")
	}
	ps := r.Topics[0].Partitions
	for _, p := range ps {
		if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
			return err
		}
	}
	if !fe.current(k, st) {
		return nil
	}
	from := st.f.EndOffset()
	end, err := so.StartOver(ctx, ps[0].Offset, ps[1].Offset)
	if err != nil {
		return err
	}
	if end < ps[1].Offset {
		// Still below what the leader holds locally (a replica without
		// the tier, or a bucket behind the leader's local start): retry
		// later rather than fetch out of range again at once.
		return fmt.Errorf("started over at %d, still below the leader's local log start %d", end, ps[1].Offset)
	}
	fe.log.Info("replica started over at the leader's log", "topic", k.topic, "partition", k.part,
		"from", from, "to", end, "leader_log_start", ps[0].Offset, "leader_local_start", ps[1].Offset)
	st.behind = false
	// An emptied log has no divergent tail; one the leader's log still
	// covers was out of range above the leader's end: truncate again.
	st.truncated = end != from
	return nil
}

// fetchOnce sends one Fetch for the partitions in snap and appends what
// comes back.
func (fe *fetcher) fetchOnce(br *kgo.Broker, snap map[pkey]*state) error {
	req := kmsg.NewPtrFetchRequest()
	req.ReplicaID = fe.cfg.Self
	req.MaxWaitMillis = int32(fe.cfg.MaxWait.Milliseconds())
	req.MinBytes = 1
	req.MaxBytes = fe.cfg.MaxBytes
	req.SessionEpoch = -1
	byTopic := map[string]int{}
	for k, st := range snap {
		i, ok := byTopic[k.topic]
		if !ok {
			t := kmsg.NewFetchRequestTopic()
			t.Topic = k.topic
			req.Topics = append(req.Topics, t)
			i = len(req.Topics) - 1
			byTopic[k.topic] = i
		}
		p := kmsg.NewFetchRequestTopicPartition()
		p.Partition = k.part
		p.CurrentLeaderEpoch = st.f.FollowEpoch()
		p.FetchOffset = st.f.EndOffset()
		p.LogStartOffset = st.f.StartOffset()
		p.PartitionMaxBytes = fe.cfg.PartitionMaxBytes
		req.Topics[i].Partitions = append(req.Topics[i].Partitions, p)
	}
	ctx, cancel := context.WithTimeout(fe.ctx, fe.cfg.MaxWait+15*time.Second)
	defer cancel()
	resp, err := br.Request(ctx, req)
	if err != nil {
		return err
	}
	r := resp.(*kmsg.FetchResponse)
	if err := kerr.ErrorForCode(r.ErrorCode); err != nil {
		return err
	}
	type appended struct {
		st    *state
		end   int64
		hw    int64
		start int64
	}
	var done []appended
	for _, t := range r.Topics {
		for _, p := range t.Partitions {
			k := pkey{t.Topic, p.Partition}
			st, ok := snap[k]
			if !ok || !fe.current(k, st) {
				continue
			}
			if err := kerr.ErrorForCode(p.ErrorCode); errors.Is(err, kerr.OffsetOutOfRange) || errors.Is(err, kerr.OffsetMovedToTieredStorage) {
				st.behind = true
				continue
			} else if err != nil {
				// Leadership moved or the epoch is stale: the metadata
				// will say where to go; back off this partition.
				fe.log.Debug("replica fetch partition error", "topic", k.topic, "partition", k.part, "err", err)
				st.failUntil = time.Now().Add(fe.cfg.Backoff)
				continue
			}
			end := st.f.EndOffset()
			if len(p.RecordBatches) > 0 {
				if end, err = st.f.AppendFromLeader(p.RecordBatches); err != nil {
					// The leader's log does not continue ours: truncate
					// again (against the leader's current epochs) first.
					fe.log.Warn("appending fetched batches failed; truncating to the leader again", "topic", k.topic, "partition", k.part, "err", err)
					st.truncated = false
					st.failUntil = time.Now().Add(fe.cfg.Backoff)
					continue
				}
			}
			done = append(done, appended{st, end, p.HighWatermark, p.LogStartOffset})
		}
	}
	// One durability wait for everything appended (the syncer groups the
	// fsyncs), before the next fetch reports the new ends to the leader.
	for _, a := range done {
		if err := a.st.f.WaitDurable(fe.ctx, a.end); err != nil {
			return err
		}
		a.st.f.SetLeaderHighWatermark(a.hw)
		a.st.f.SetLeaderLogStart(a.start)
	}
	return nil
}

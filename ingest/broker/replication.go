package broker

// Partition replication, Kafka's ISR model (see docs/replication.md).
//
// Leader side: every follower's Fetch (replica id set) reports its fetch
// offset, which means the follower holds every record below it durably
// (the fetcher waits for its own fsync before fetching again). The high
// watermark is the smallest of the leader's durable offset and the fetch
// offsets of the other in-sync replicas, and never goes back. A follower
// that has not caught up with the leader's end for replica.lag.time.max.ms
// leaves the ISR, one that reaches the high watermark joins it again; both
// through AlterPartition at the controller. acks=-1 waits for the high
// watermark. Partitions with a single replica keep the single-node path:
// their high watermark is the durable offset.
//
// Follower side: ingest/replica fetches from the leader; the follower's
// high watermark is the leader's, bounded by its own durable end.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/strata-io/strata/ingest/cluster"
	"github.com/strata-io/strata/ingest/replica"
)

// DefaultReplicaLagTime is replica.lag.time.max.ms.
const DefaultReplicaLagTime = 30 * time.Second

// ErrNotEnoughReplicasAfterAppend: the ISR shrank below min.insync.replicas
// while an acks=-1 produce waited (the records are in the log).
var ErrNotEnoughReplicasAfterAppend = errors.New("not enough in-sync replicas after append")

// followerState is what the leader knows of one follower.
type followerState struct {
	offset         int64 // the follower holds every record below it, durably
	lastFetch      time.Time
	leoAtLastFetch int64
	lastCaughtUp   time.Time
}

// replication is a partition's replication state.
type replication struct {
	applyMu sync.Mutex // serialises applyState
	// roleMu: appends (client produce, follower fetch, truncation) hold it
	// shared with their role check; a role change holds it exclusively.
	roleMu    sync.RWMutex
	mu        sync.Mutex
	self      int32
	leading   bool
	hw        int64 // of a partition with more than one replica
	followers map[int32]*followerState
	hwCh      chan struct{} // closed and replaced when hw advances or the role changes
	altering  bool          // an AlterPartition is in flight
	// pending is the ISR an AlterPartition in flight asks for: the high
	// watermark counts the union of it and the current ISR (Kafka's
	// "maximal ISR"), so it cannot pass a replica being added.
	pending []int32
	// epochStart is where this broker's leader epoch began in its log; a
	// follower joins the ISR only once it has reached it.
	epochStart int64
}

func (r *replication) signalLocked() {
	if r.hwCh != nil {
		close(r.hwCh)
	}
	r.hwCh = make(chan struct{})
}

// leads reports whether broker self leads the partition.
func (p *Partition) leads(self int32) bool {
	st := p.state.Load()
	return st == nil || st.Leader == self
}

// replicated reports whether the partition has followers to wait for.
func (p *Partition) replicated() bool {
	st := p.state.Load()
	return st != nil && len(st.Replicas) > 1
}

// applyState records new metadata for the partition and changes its role:
// a new leader epoch led by this broker makes it leader (followers start a
// fresh lag window); one led by another broker makes it a follower of it
// (fetching starts after truncation). Called on metadata changes.
func (b *Broker) applyState(p *Partition, mp cluster.Partition) {
	// Serialised per partition, and never back to an older state (the
	// catch-up pass at Open can race the metadata goroutine).
	p.rep.applyMu.Lock()
	defer p.rep.applyMu.Unlock()
	prev := p.state.Load()
	if prev != nil && (mp.LeaderEpoch < prev.LeaderEpoch || mp.LeaderEpoch == prev.LeaderEpoch && mp.PartitionEpoch < prev.PartitionEpoch) {
		return
	}
	self := b.cfg.NodeID
	newEpoch := prev == nil || prev.LeaderEpoch != mp.LeaderEpoch || prev.Leader != mp.Leader
	r := &p.rep
	if newEpoch {
		// Wait for appends under the old role or epoch to finish, and
		// keep new ones out until the role below is set.
		r.roleMu.Lock()
		defer r.roleMu.Unlock()
	}
	p.state.Store(&mp)
	r.mu.Lock()
	becomeLeader := mp.Leader == self && (newEpoch || !r.leading)
	r.mu.Unlock()
	var epochStart int64
	if becomeLeader {
		// The new epoch starts at the log end, before any append, so
		// followers asking for the end of their older epochs get it.
		// (Outside r.mu: the log's sync round calls back into
		// recomputeHW, which takes it.)
		p.log.AssignEpoch(mp.LeaderEpoch)
		epochStart = p.log.EndOffset()
	}
	r.mu.Lock()
	r.self = self
	switch {
	case becomeLeader:
		r.epochStart = epochStart
		r.leading = true
		r.followers = map[int32]*followerState{}
		now := time.Now()
		for _, id := range mp.Replicas {
			if id != self {
				r.followers[id] = &followerState{lastCaughtUp: now}
			}
		}
		// The high watermark carries on from what this broker knew; it
		// rises as the in-sync followers report their positions (or at
		// once to the durable end when the leader is alone in the ISR).
		// Taking the whole local log as committed at once could show
		// consumers records another replica never got.
		r.signalLocked()
	case mp.Leader != self && r.leading:
		r.leading = false
		r.followers = nil
		r.signalLocked()
	}
	leading := r.leading
	r.mu.Unlock()
	if leading {
		if b.replicas != nil {
			b.replicas.Unfollow(p.Topic, p.Index)
		}
		p.recomputeHW()
		return
	}
	if b.replicas == nil {
		return
	}
	if mp.Leader == cluster.NoLeader {
		b.replicas.Unfollow(p.Topic, p.Index)
		return
	}
	if newEpoch {
		b.replicas.Follow(mp.Leader, &follower{p: p})
	}
}

// HighWatermark is the offset below which records are committed: durable
// on the leader and on every in-sync replica. Consumers read below it.
func (p *Partition) HighWatermark() int64 {
	if !p.replicated() {
		return p.log.DurableOffset()
	}
	p.rep.mu.Lock()
	defer p.rep.mu.Unlock()
	return min(p.rep.hw, p.log.DurableOffset())
}

// LastStableOffset is the offset below which every transaction is decided:
// the first offset of the oldest open transaction, or the high watermark
// when that is lower (or no transaction is open). read_committed consumers
// read below it and the tier uploads below it.
//
// A transaction whose marker is not yet below the high watermark still
// holds it back (the marker could be lost with this leader), as in Kafka.
func (p *Partition) LastStableOffset() int64 {
	return p.log.LastStableOffset(p.HighWatermark())
}

// recomputeHW advances the leader's high watermark from the ISR's
// positions and wakes waiters when it moved.
func (p *Partition) recomputeHW() {
	st := p.state.Load()
	if st == nil || len(st.Replicas) <= 1 {
		return
	}
	r := &p.rep
	r.mu.Lock()
	if !r.leading {
		r.mu.Unlock()
		return
	}
	hw := p.log.DurableOffset()
	for _, id := range append(slices.Clone(st.ISR), r.pending...) {
		if id == r.self {
			continue
		}
		f := r.followers[id]
		if f == nil {
			hw = min(hw, r.hw)
			continue
		}
		hw = min(hw, f.offset)
	}
	moved := hw > r.hw
	if moved {
		r.hw = hw
		r.signalLocked()
	}
	r.mu.Unlock()
	if moved {
		p.wakeWaiters()
	}
}

// WaitDurable waits until the records up to offset are committed: durable
// locally for a single replica, below the high watermark otherwise (the
// in-sync replicas hold them). It fails with ErrNotLeader when leadership
// moves meanwhile, and with ErrNotEnoughReplicasAfterAppend when the ISR
// is below min.insync.replicas when the records commit.
func (p *Partition) WaitDurable(ctx context.Context, offset int64) error {
	if !p.replicated() {
		return p.log.WaitDurable(ctx, offset)
	}
	epoch := p.LeaderEpoch()
	for {
		p.rep.mu.Lock()
		hw, leading, ch := p.rep.hw, p.rep.leading, p.rep.hwCh
		if ch == nil {
			p.rep.signalLocked()
			ch = p.rep.hwCh
		}
		p.rep.mu.Unlock()
		if !leading || p.LeaderEpoch() != epoch {
			return fmt.Errorf("%w: %s-%d: leadership moved while waiting for replicas", ErrNotLeader, p.Topic, p.Index)
		}
		if hw > offset {
			if st := p.state.Load(); len(st.ISR) < int(p.Config().MinInsyncReplicas) {
				return fmt.Errorf("%w: %s-%d has %d in-sync replicas, min.insync.replicas is %d",
					ErrNotEnoughReplicasAfterAppend, p.Topic, p.Index, len(st.ISR), p.Config().MinInsyncReplicas)
			}
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// CheckMinISR refuses an acks=-1 produce while the ISR is smaller than
// min.insync.replicas (NOT_ENOUGH_REPLICAS; nothing is appended).
func (p *Partition) CheckMinISR() error {
	st := p.state.Load()
	if st == nil {
		return nil
	}
	if min := int(p.Config().MinInsyncReplicas); len(st.ISR) < min {
		return fmt.Errorf("%w: %s-%d has %d in-sync replicas, min.insync.replicas is %d", ErrNotEnoughReplicas, p.Topic, p.Index, len(st.ISR), min)
	}
	return nil
}

// FollowerFetch records a follower's fetch at offset (it holds everything
// below it) and advances the high watermark. It fails for a broker that is
// not a replica.
func (p *Partition) FollowerFetch(id int32, offset int64) error {
	st := p.state.Load()
	if st == nil || !slices.Contains(st.Replicas, id) || id == st.Leader {
		return fmt.Errorf("%w: broker %d is not a follower of %s-%d", ErrNotLeader, id, p.Topic, p.Index)
	}
	now := time.Now()
	leo := p.log.EndOffset()
	r := &p.rep
	r.mu.Lock()
	if !r.leading {
		r.mu.Unlock()
		return fmt.Errorf("%w: %s-%d", ErrNotLeader, p.Topic, p.Index)
	}
	f := r.followers[id]
	if f == nil {
		f = &followerState{lastCaughtUp: now}
		r.followers[id] = f
	}
	// Kafka's rule: caught up when the fetch reaches the leader's end now,
	// or reaches what the end was at the follower's previous fetch.
	switch {
	case offset >= leo:
		f.lastCaughtUp = now
	case offset >= f.leoAtLastFetch && !f.lastFetch.IsZero():
		f.lastCaughtUp = f.lastFetch
	}
	f.offset = min(offset, leo)
	f.lastFetch, f.leoAtLastFetch = now, leo
	r.mu.Unlock()
	p.recomputeHW()
	return nil
}

// ReadForFollower returns whole batches from offset up to the log end (not
// just the high watermark: followers copy what is not committed yet).
func (p *Partition) ReadForFollower(offset int64, maxBytes int) ([]byte, error) {
	end := p.log.EndOffset()
	if offset == end {
		return nil, nil
	}
	return p.log.Read(offset, maxBytes, end)
}

// isrChange returns the ISR the leader should ask for now (shrunk by
// followers that lag for longer than lag, grown by followers that reached
// the high watermark), and whether it differs from the current one.
func (p *Partition) isrChange(now time.Time, lag time.Duration, usable func(int32) bool) ([]int32, bool) {
	st := p.state.Load()
	r := &p.rep
	r.mu.Lock()
	defer r.mu.Unlock()
	if st == nil || !r.leading || len(st.Replicas) <= 1 || r.altering {
		return nil, false
	}
	want := []int32{r.self}
	changed := false
	for _, id := range st.Replicas {
		if id == r.self {
			continue
		}
		f := r.followers[id]
		in := slices.Contains(st.ISR, id)
		switch {
		case in && (f == nil || now.Sub(f.lastCaughtUp) > lag):
			changed = true // shrink
		case in:
			want = append(want, id)
		case f != nil && f.offset >= r.hw && f.offset >= r.epochStart && now.Sub(f.lastCaughtUp) <= lag && usable(id):
			want = append(want, id) // expand
			changed = true
		}
	}
	slices.Sort(want)
	return want, changed
}

// manageISR asks the controller for ISR changes of the partitions this
// broker leads. Run every second; one request per partition at a time.
func (b *Broker) manageISR() {
	lag := b.cfg.ReplicaLagTime
	usable := map[int32]bool{}
	for _, br := range b.meta.Brokers() {
		usable[br.ID] = true
	}
	now := time.Now()
	b.mu.RLock()
	parts := make([]*Partition, 0, len(b.mu.parts))
	for _, p := range b.mu.parts {
		parts = append(parts, p)
	}
	b.mu.RUnlock()
	for _, p := range parts {
		want, changed := p.isrChange(now, lag, func(id int32) bool { return usable[id] })
		if !changed {
			continue
		}
		st := p.state.Load()
		p.rep.mu.Lock()
		p.rep.altering = true
		p.rep.pending = want
		p.rep.mu.Unlock()
		// Not in b.wg: the request is bounded by the metadata request
		// timeout, and Close must not wait for a controller that is gone.
		go func() {
			defer func() {
				p.rep.mu.Lock()
				p.rep.altering = false
				p.rep.pending = nil
				p.rep.mu.Unlock()
				p.recomputeHW()
			}()
			_, err := b.meta.AlterPartition(cluster.AlterPartition{
				TopicID: p.TopicID, Partition: p.Index, Leader: b.cfg.NodeID,
				LeaderEpoch: st.LeaderEpoch, PartitionEpoch: st.PartitionEpoch, ISR: want,
			})
			if err != nil {
				b.log.Warn("ISR change refused", "topic", p.Topic, "partition", p.Index, "isr", want, "err", err)
				return
			}
			b.log.Info("ISR changed", "topic", p.Topic, "partition", p.Index, "from", st.ISR, "to", want)
		}()
	}
}

// follower adapts a partition to replica.Follower.
type follower struct{ p *Partition }

var _ replica.Follower = (*follower)(nil)

func (f *follower) Key() (string, int32) { return f.p.Topic, f.p.Index }

func (f *follower) FollowEpoch() int32 { return f.p.LeaderEpoch() }

func (f *follower) EndOffset() int64 { return f.p.log.EndOffset() }

func (f *follower) StartOffset() int64 { return f.p.log.StartOffset() }

func (f *follower) LatestEpoch() int32 { return f.p.log.LatestEpoch() }

func (f *follower) EndOffsetForEpoch(epoch int32) (int32, int64) {
	return f.p.log.EndOffsetForEpoch(epoch)
}

// errLeading refuses follower work on a partition that became a leader.
var errLeading = errors.New("the partition is led here now")

func (f *follower) following() bool {
	f.p.rep.mu.Lock()
	defer f.p.rep.mu.Unlock()
	return !f.p.rep.leading
}

func (f *follower) Truncate(offset int64) (int64, error) {
	f.p.rep.roleMu.RLock()
	defer f.p.rep.roleMu.RUnlock()
	if !f.following() {
		return 0, errLeading
	}
	end, err := f.p.log.TruncateTo(offset)
	if err == nil {
		f.p.rep.mu.Lock()
		if !f.p.rep.leading {
			f.p.rep.hw = min(f.p.rep.hw, end)
		}
		f.p.rep.mu.Unlock()
	}
	return end, err
}

func (f *follower) HighWatermark() int64 { return f.p.HighWatermark() }

// StartOver empties a replica whose log ends below the leader's local log
// start (it was down while the leader's retention, or local retention of a
// tiered topic, deleted what it would fetch next), so that it fetches what
// the leader still has (Kafka's truncate-fully-and-start-at). Its records
// are committed history the leader let go: a tiered partition continues at
// the bucket's end (the leader's local log starts at or below it; the
// producer state and leader epochs come from the bucket), any other at the
// leader's log start. It returns the new end.
func (f *follower) StartOver(ctx context.Context, leaderStart, leaderLocalStart int64) (int64, error) {
	// The bucket is read first, outside the role lock (a role change
	// must not wait for the object store).
	if tp := f.p.tiered(); tp != nil && f.p.log.EndOffset() < leaderLocalStart {
		if err := tp.PrepareRebuild(ctx); err != nil {
			return 0, fmt.Errorf("start over from the bucket: %w", err)
		}
	}
	f.p.rep.roleMu.RLock()
	defer f.p.rep.roleMu.RUnlock()
	if !f.following() {
		return 0, errLeading
	}
	l := f.p.log
	if l.EndOffset() >= leaderLocalStart {
		return l.EndOffset(), nil // nothing to do: the leader has what comes next
	}
	tp := f.p.tiered()
	if tp == nil && f.p.needsTier.Load() {
		return 0, fmt.Errorf("%w: %s-%d: the tier is not open yet", ErrRemoteStorage, f.p.Topic, f.p.Index)
	}
	if _, err := l.TruncateTo(l.LocalStartOffset()); err != nil {
		return 0, fmt.Errorf("start over: %w", err)
	}
	if tp != nil {
		if err := tp.RebuildLog(ctx); err != nil {
			return 0, fmt.Errorf("start over from the bucket: %w", err)
		}
	} else if err := l.ResetTo(leaderStart, leaderStart, nil, nil); err != nil {
		return 0, fmt.Errorf("start over at the leader's log start %d: %w", leaderStart, err)
	}
	f.p.rep.mu.Lock()
	f.p.rep.hw = min(f.p.rep.hw, l.EndOffset())
	f.p.rep.mu.Unlock()
	return l.EndOffset(), nil
}

// SetLeaderLogStart follows the leader's log start forward (retention and
// DeleteRecords on the leader), within what this replica holds durably.
func (f *follower) SetLeaderLogStart(start int64) {
	if start > f.p.log.StartOffset() && start <= f.p.log.DurableOffset() {
		// A failure (a sticky I/O error) shows on the log's next write;
		// the start is tried again with the next fetch.
		_ = f.p.log.SetStartOffset(start)
	}
}

// errTierNotOpen: an empty replica of a tiered topic waits for its tier,
// which may make it continue from the bucket's end instead of copying
// history.
var errTierNotOpen = errors.New("the partition's tier is not open yet")

func (f *follower) AppendFromLeader(b []byte) (int64, error) {
	f.p.rep.roleMu.RLock()
	defer f.p.rep.roleMu.RUnlock()
	if !f.following() {
		return 0, errLeading
	}
	if l := f.p.log; f.p.needsTier.Load() && f.p.tiered() == nil && l.EndOffset() == l.LocalStartOffset() {
		return 0, errTierNotOpen
	}
	if _, err := f.p.log.AppendReplica(b); err != nil {
		return 0, err
	}
	return f.p.log.EndOffset(), nil
}

func (f *follower) WaitDurable(ctx context.Context, end int64) error {
	if end <= 0 {
		return nil
	}
	return f.p.log.WaitDurable(ctx, end-1)
}

// SetLeaderHighWatermark sets a follower's high watermark: the leader's,
// bounded by what this follower holds.
func (f *follower) SetLeaderHighWatermark(hw int64) {
	r := &f.p.rep
	r.mu.Lock()
	if !r.leading {
		r.hw = max(r.hw, min(hw, f.p.log.DurableOffset()))
	}
	r.mu.Unlock()
}

// ControlledShutdown moves leadership of this broker's partitions to other
// in-sync replicas before it stops (Kafka's controlled shutdown), then
// gives clients a moment to learn the new leaders. A broker alone in its
// cluster returns at once.
func (b *Broker) ControlledShutdown(timeout time.Duration) error {
	if len(b.meta.Brokers()) <= 1 {
		return nil
	}
	if err := b.meta.ControlledShutdown(timeout); err != nil {
		return err
	}
	// Producers waiting on this broker get NOT_LEADER_OR_FOLLOWER now;
	// requests arriving in the next moments are answered the same, so
	// clients refresh metadata rather than find the port closed.
	time.Sleep(500 * time.Millisecond)
	return nil
}

package group

import (
	"sort"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// CommitOffset is one partition of an OffsetCommit.
type CommitOffset struct {
	TopicPartition
	Offset      int64
	LeaderEpoch int32  // -1 when not sent (v0-v5)
	Metadata    string // a null metadata is stored as ""
}

// CommitRequest is an OffsetCommit. Generation -1 with no member id is a
// simple commit by a consumer that assigns partitions itself; it is only
// accepted while the group has no members.
type CommitRequest struct {
	Group      string
	MemberID   string
	InstanceID string
	Generation int32
	// Retention is OffsetCommit v2-v4's retention time; 0 or negative uses
	// offsets.retention.minutes.
	Retention time.Duration
	Offsets   []CommitOffset
}

// PartitionResult is a per-partition error.
type PartitionResult struct {
	TopicPartition
	Err error
}

// CommitOffsets commits offsets. The answer (one result per requested
// partition, in request order) arrives once the commit records are durable;
// only then are the offsets visible to FetchOffsets. Topic and partition
// existence is the caller's to check (UNKNOWN_TOPIC_OR_PARTITION) before
// calling.
func (c *Coordinator) CommitOffsets(req CommitRequest) <-chan []PartitionResult {
	ch := make(chan []PartitionResult, 1)
	c.mu.Lock()
	c.commitLocked(c.cfg.Now(), req, ch)
	c.mu.Unlock()
	c.flush()
	return ch
}

func (c *Coordinator) commitLocked(now time.Time, req CommitRequest, ch chan []PartitionResult) {
	out := make([]PartitionResult, len(req.Offsets))
	for i := range req.Offsets {
		out[i].TopicPartition = req.Offsets[i].TopicPartition
	}
	fail := func(err error) {
		for i := range out {
			out[i].Err = err
		}
		ch <- out
	}
	if err := c.activeErrLocked(); err != nil {
		fail(err)
		return
	}
	if req.Group == "" {
		fail(kerr.InvalidGroupID)
		return
	}
	g := c.groups[req.Group]
	if g == nil {
		if req.Generation >= 0 || req.MemberID != "" || req.InstanceID != "" {
			fail(kerr.IllegalGeneration)
			return
		}
		g = newGroup(req.Group, now)
		c.groups[req.Group] = g
	}
	if err := g.validateCommit(req); err != nil {
		fail(err)
		return
	}
	if m := g.members[req.MemberID]; m != nil {
		m.deadline = now.Add(m.sessionTimeout)
	}
	g.deleted = false
	var records []Record
	var idx []int
	var offs []Offset
	for i, o := range req.Offsets {
		if len(o.Metadata) > c.cfg.MaxMetadataBytes {
			out[i].Err = kerr.OffsetMetadataTooLarge
			continue
		}
		off := Offset{Offset: o.Offset, LeaderEpoch: o.LeaderEpoch, Metadata: o.Metadata, CommitTime: now}
		if req.Retention > 0 {
			off.ExpireTime = now.Add(req.Retention)
		}
		records = append(records, OffsetCommitRecord(g.id, o.Topic, o.Partition, off))
		idx = append(idx, i)
		offs = append(offs, off)
	}
	if len(records) == 0 {
		ch <- out
		return
	}
	g.commitStarted()
	pos := c.appendLocked(records, func(live bool, err error) {
		defer g.commitDone()
		switch {
		case err != nil:
			err = appendError(err, true)
		case !live || c.groups[g.id] != g:
			// Durable, but the group moved or was deleted: the client
			// retries against the current coordinator.
			err = kerr.NotCoordinator
		default:
			for k, i := range idx {
				// A transaction's offsets committed meanwhile from an
				// earlier record lose to this one; from a later record,
				// they win, as on replay.
				g.applyCommitted(req.Offsets[i].TopicPartition, offs[k])
			}
		}
		for _, i := range idx {
			out[i].Err = err
		}
		ch <- out
	})
	for k := range offs {
		offs[k].logPos = pos + uint64(k)
	}
}

// validateCommit is Kafka's check of a classic group's OffsetCommit.
func (g *Group) validateCommit(req CommitRequest) error {
	if g.state == Dead {
		return kerr.CoordinatorNotAvailable
	}
	if req.Generation < 0 && g.state == Empty {
		return nil // simple commit
	}
	if req.Generation >= 0 || req.MemberID != "" || req.InstanceID != "" {
		if _, err := g.validateMember(req.MemberID, req.InstanceID); err != nil {
			return err
		}
		if req.Generation != g.generation {
			return kerr.IllegalGeneration
		}
	} else if g.state != Empty {
		return kerr.UnknownMemberID // a simple commit to a group with members
	}
	if g.state == CompletingRebalance {
		return kerr.RebalanceInProgress
	}
	// PreparingRebalance with the current generation is accepted: members
	// commit while revoking (eager) or keeping (cooperative) partitions.
	return nil
}

// FetchedOffset is one partition of an OffsetFetch answer: Offset -1,
// LeaderEpoch -1 and Metadata "" when nothing is committed.
type FetchedOffset struct {
	TopicPartition
	Offset      int64
	LeaderEpoch int32
	Metadata    string
	Err         error
}

// FetchOffsets returns the committed offsets of partitions, or of every
// partition with a committed offset when partitions is nil. An unknown
// group is not an error: its offsets are -1 (sarama and librdkafka depend
// on that). Pending transactional offsets are not seen: a partition with
// one answers its last committed offset.
func (c *Coordinator) FetchOffsets(group string, partitions []TopicPartition) ([]FetchedOffset, error) {
	return c.fetchOffsets(group, partitions, false)
}

// FetchStableOffsets is FetchOffsets for an OffsetFetch v7+ with
// RequireStable: a partition with a pending transactional offset (from a
// TxnOffsetCommit whose transaction has not ended) gets
// UNSTABLE_OFFSET_COMMIT, offset -1, as Kafka answers, and the client
// retries until the transaction ends.
func (c *Coordinator) FetchStableOffsets(group string, partitions []TopicPartition) ([]FetchedOffset, error) {
	return c.fetchOffsets(group, partitions, true)
}

func (c *Coordinator) fetchOffsets(group string, partitions []TopicPartition, requireStable bool) ([]FetchedOffset, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.activeErrLocked(); err != nil {
		return nil, err
	}
	g := c.groups[group]
	var offsets map[TopicPartition]Offset
	if g != nil {
		offsets = g.offsets
	}
	if partitions == nil {
		partitions = sortedOffsets(offsets)
	}
	out := make([]FetchedOffset, 0, len(partitions))
	for _, tp := range partitions {
		f := FetchedOffset{TopicPartition: tp, Offset: -1, LeaderEpoch: -1}
		if requireStable && g != nil && g.hasTxn(tp) {
			f.Err = kerr.UnstableOffsetCommit
		} else if o, ok := offsets[tp]; ok {
			f.Offset, f.LeaderEpoch, f.Metadata = o.Offset, o.LeaderEpoch, o.Metadata
		}
		out = append(out, f)
	}
	return out, nil
}

// DeleteOffsets deletes a group's committed offsets (OffsetDelete). The
// group must be Empty, or a consumer group not subscribed to the topics
// (GROUP_SUBSCRIBED_TO_TOPIC per partition otherwise). Err is group-level;
// the per-partition results arrive once the tombstones are durable.
func (c *Coordinator) DeleteOffsets(group string, partitions []TopicPartition) <-chan DeleteOffsetsResponse {
	ch := make(chan DeleteOffsetsResponse, 1)
	c.mu.Lock()
	resp := c.deleteOffsetsLocked(group, partitions, ch)
	if resp != nil {
		ch <- *resp
	}
	c.mu.Unlock()
	c.flush()
	return ch
}

// DeleteOffsetsResponse is an OffsetDelete answer.
type DeleteOffsetsResponse struct {
	Err        error
	Partitions []PartitionResult
}

func (c *Coordinator) deleteOffsetsLocked(group string, partitions []TopicPartition, ch chan DeleteOffsetsResponse) *DeleteOffsetsResponse {
	if err := c.activeErrLocked(); err != nil {
		return &DeleteOffsetsResponse{Err: err}
	}
	g := c.groups[group]
	if g == nil || g.state == Dead {
		return &DeleteOffsetsResponse{Err: kerr.GroupIDNotFound}
	}
	var subscribed map[string]bool // nil: any topic may be deleted
	if g.state != Empty {
		if g.protocolType != "consumer" {
			return &DeleteOffsetsResponse{Err: kerr.NonEmptyGroup}
		}
		subscribed = g.subscribedTopics()
	}
	resp := DeleteOffsetsResponse{}
	var records []Record
	var idx []int
	var tombstoned []TopicPartition
	for _, tp := range partitions {
		r := PartitionResult{TopicPartition: tp}
		switch {
		case subscribed != nil && (subscribed[tp.Topic] || subscribed[""]):
			r.Err = kerr.GroupSubscribedToTopic
		default:
			// As Kafka 4.x: a pending transactional offset gets a
			// tombstone too, which drops it (here and on replay).
			if _, ok := g.offsets[tp]; ok || g.hasTxn(tp) {
				delete(g.offsets, tp)
				g.clearTxnPartition(tp)
				records = append(records, OffsetTombstone(group, tp.Topic, tp.Partition))
				idx = append(idx, len(resp.Partitions))
				tombstoned = append(tombstoned, tp)
			}
		}
		resp.Partitions = append(resp.Partitions, r)
	}
	if len(records) == 0 {
		return &resp
	}
	pos := c.appendLocked(records, func(_ bool, err error) {
		if err != nil {
			for _, i := range idx {
				resp.Partitions[i].Err = appendError(err, true)
			}
		}
		ch <- resp
	})
	for k, tp := range tombstoned {
		g.tombstoneWritten(tp, pos+uint64(k))
	}
	return nil
}

// subscribedTopics are the topics a consumer group's members subscribe to,
// from their ConsumerProtocol subscriptions. The key "" means a
// subscription could not be read, so every topic counts as subscribed
// (Kafka's rule when subscriptions are unknown).
func (g *Group) subscribedTopics() map[string]bool {
	out := map[string]bool{}
	for _, m := range g.members {
		for _, p := range m.protocols {
			if g.protocol != "" && p.Name != g.protocol {
				continue
			}
			var s kmsg.ConsumerMemberMetadata
			if err := s.ReadFrom(p.Metadata); err != nil {
				out[""] = true
				continue
			}
			for _, t := range s.Topics {
				out[t] = true
			}
		}
	}
	return out
}

// ExpiryInput describes one group for PlanOffsetExpiry.
type ExpiryInput struct {
	State     State
	StateTime time.Time // when the group entered State
	// Subscribed are the topics of a stable consumer group's members; nil
	// when unknown or not a consumer group. The key "" means unknown.
	Subscribed map[string]bool
	Offsets    map[TopicPartition]Offset
	// Busy groups (commits in flight, KIP-394 members pending) expire nothing.
	Busy bool
	// TxnPending are the partitions with pending transactional offsets:
	// their committed offsets do not expire, and a group with any is not
	// deleted (Kafka: not while transactions with its offsets are open).
	TxnPending map[TopicPartition]bool
}

// ExpiryPlan is what offsets.retention.minutes removes from one group.
type ExpiryPlan struct {
	Offsets     []TopicPartition // sorted
	DeleteGroup bool             // Empty with no offsets left: the group goes too
}

// PlanOffsetExpiry applies offsets.retention.minutes (KIP-211) to a group:
//   - an Empty group's offset expires once the group has been empty and the
//     offset uncommitted for the retention (the later of the two counts, so
//     a simple consumer that keeps committing keeps its offsets);
//   - a Stable consumer group's offsets of topics no member subscribes to
//     expire the retention after their commit;
//   - an offset committed with an explicit retention (OffsetCommit v2-v4)
//     expires at that time instead, under the same conditions;
//   - other groups keep their offsets;
//   - a partition with a pending transactional offset keeps its offset.
//
// An Empty group left with no offsets and no pending transactional offsets
// is deleted.
func PlanOffsetExpiry(in ExpiryInput, now time.Time, retention time.Duration) ExpiryPlan {
	var plan ExpiryPlan
	if in.Busy {
		return plan
	}
	var base func(o Offset) time.Time
	switch {
	case in.State == Empty:
		base = func(o Offset) time.Time {
			if in.StateTime.After(o.CommitTime) {
				return in.StateTime
			}
			return o.CommitTime
		}
	case in.State == Stable && in.Subscribed != nil && !in.Subscribed[""]:
		base = func(o Offset) time.Time { return o.CommitTime }
	default:
		return plan
	}
	for _, tp := range sortedOffsets(in.Offsets) {
		o := in.Offsets[tp]
		if (in.State != Empty && in.Subscribed[tp.Topic]) || in.TxnPending[tp] {
			continue
		}
		expired := now.Sub(base(o)) >= retention
		if !o.ExpireTime.IsZero() {
			expired = !now.Before(o.ExpireTime)
		}
		if expired {
			plan.Offsets = append(plan.Offsets, tp)
		}
	}
	plan.DeleteGroup = in.State == Empty && len(plan.Offsets) == len(in.Offsets) && len(in.TxnPending) == 0
	return plan
}

// ExpireOffsets applies offsets.retention.minutes to every group at now and
// appends the tombstones; it returns how many offsets and groups it removed.
func (c *Coordinator) ExpireOffsets(now time.Time) (offsets, groups int) {
	c.mu.Lock()
	defer c.flush()
	defer c.mu.Unlock()
	if c.state != active {
		return 0, 0
	}
	var records []Record
	ids := make([]string, 0, len(c.groups))
	for id := range c.groups {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		g := c.groups[id]
		in := ExpiryInput{State: g.state, StateTime: g.stateTime, Offsets: g.offsets,
			Busy: g.pendingCommits > 0 || len(g.pending) > 0 || g.storing}
		if g.state == Stable && g.protocolType == "consumer" {
			in.Subscribed = g.subscribedTopics()
		}
		if len(g.txnParts) > 0 {
			in.TxnPending = make(map[TopicPartition]bool, len(g.txnParts))
			for tp := range g.txnParts {
				in.TxnPending[tp] = true
			}
		}
		plan := PlanOffsetExpiry(in, now, c.cfg.OffsetsRetention)
		for _, tp := range plan.Offsets {
			delete(g.offsets, tp)
			records = append(records, OffsetTombstone(id, tp.Topic, tp.Partition))
		}
		offsets += len(plan.Offsets)
		if plan.DeleteGroup {
			g.transition(Dead, now)
			delete(c.groups, id)
			records = append(records, GroupTombstone(id))
			groups++
		}
	}
	if len(records) > 0 {
		c.appendLocked(records, func(bool, error) {
			// A failed tombstone leaves the offsets in the log; they are
			// expired again after the next load.
		})
	}
	return offsets, groups
}

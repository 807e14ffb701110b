package broker

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/strata-io/strata/compactor"
	"github.com/strata-io/strata/ingest/cluster"
	"github.com/strata-io/strata/ingest/topicconfig"
	"github.com/strata-io/strata/tier"
)

func (b *Broker) configOptions() topicconfig.Options {
	return topicconfig.Options{Tiering: b.cfg.Tier != nil}
}

// attachTier opens the tier of a partition whose topic has
// remote.storage.enable=true, on every replica: an empty local log
// continues from the bucket first (a wiped disk, or a new replica, does not
// copy the history the bucket holds). The tier is opened read-only; the
// tier pass reopens it with the leader epoch when this broker leads.
func (b *Broker) attachTier(p *Partition, tc topicconfig.Config) error {
	if b.cfg.Tier == nil || !tc.RemoteStorage {
		return nil
	}
	p.tierMu.Lock()
	defer p.tierMu.Unlock()
	if p.tiered() != nil {
		return nil
	}
	// Until the tier is attached, an empty local log must not take writes:
	// the bucket may hold history it has to continue from.
	p.needsTier.Store(true)
	ctx, cancel := context.WithTimeout(b.ctx, 2*time.Minute)
	defer cancel()
	tp, err := b.cfg.Tier.OpenReplica(ctx, p.TopicID, p.Index, p.log)
	if err != nil {
		return fmt.Errorf("open tier of %s-%d: %w", p.Topic, p.Index, err)
	}
	p.setTiered(tp)
	return nil
}

// attachTierLater attaches the tier in the background (at most a few at a
// time); the tier pass retries what fails.
func (b *Broker) attachTierLater(p *Partition, tc topicconfig.Config) {
	if b.cfg.Tier == nil || !tc.RemoteStorage || p.tiered() != nil {
		return
	}
	p.needsTier.Store(true)
	if !p.attaching.CompareAndSwap(false, true) {
		return
	}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		defer p.attaching.Store(false)
		select {
		case b.attachSem <- struct{}{}:
		case <-b.ctx.Done():
			return
		}
		defer func() { <-b.attachSem }()
		if err := b.attachTier(p, tc); err != nil {
			b.log.Warn("open tier; will retry", "topic", p.Topic, "partition", p.Index, "err", err)
		}
	}()
}

// leaderTier returns the partition's tier opened with its current leader
// epoch when this broker leads it, reopening it after a leader change: the
// new tier continues from the newest manifest in the bucket and publishes
// with the new epoch, which fences the manifests of the leader before. Nil
// when this broker does not lead, or the tier is not open.
func (b *Broker) leaderTier(ctx context.Context, p *Partition) (*tier.Partition, error) {
	if !p.leads(b.cfg.NodeID) {
		return nil, nil
	}
	p.tierMu.Lock()
	defer p.tierMu.Unlock()
	tp, epoch := p.tiered(), p.LeaderEpoch()
	if tp == nil || tp.Epoch() == epoch {
		return tp, nil
	}
	ntp, err := b.cfg.Tier.OpenPartition(ctx, p.TopicID, p.Index, epoch, p.log)
	if err != nil {
		return nil, fmt.Errorf("open tier of %s-%d at leader epoch %d: %w", p.Topic, p.Index, epoch, err)
	}
	p.setTiered(ntp)
	b.log.Info("tier continues at a new leader epoch", "topic", p.Topic, "partition", p.Index,
		"leader_epoch", epoch, "remote_end", ntp.RemoteEndOffset())
	return ntp, nil
}

// tierLoop uploads, applies retention to both tiers and collects garbage for
// every tiered partition, a bounded number at a time.
func (b *Broker) tierLoop() {
	defer b.wg.Done()
	t := time.NewTicker(b.cfg.TierCheckInterval)
	defer t.Stop()
	b.resumeRemoteDeletions()
	for round := 1; ; round++ {
		select {
		case <-b.ctx.Done():
			return
		case <-t.C:
		}
		b.TierPass(round%b.cfg.TierGCEvery == 0)
	}
}

// TierPass runs one pass over every tiered partition and waits for it to
// finish: on partitions this broker leads, uploads and retention of both
// tiers (and garbage collection when gc is set); on the others, local
// retention of what the bucket already holds.
func (b *Broker) TierPass(gc bool) {
	b.relieveDisk()
	b.mu.RLock()
	var parts, detached []*Partition
	for _, p := range b.mu.parts {
		if p.tiered() != nil {
			parts = append(parts, p)
		} else if p.needsTier.Load() && !p.attaching.Load() {
			detached = append(detached, p)
		}
	}
	b.mu.RUnlock()
	// Partitions whose tier could not be opened (the store was down) are
	// retried here.
	for _, p := range detached {
		if err := b.attachTier(p, p.Config()); err != nil {
			b.log.Warn("open tier; will retry", "topic", p.Topic, "partition", p.Index, "err", err)
		} else {
			parts = append(parts, p)
		}
	}
	b.describeTopics(parts)
	sem := make(chan struct{}, b.cfg.TierWorkers)
	var wg sync.WaitGroup
	for _, p := range parts {
		select {
		case sem <- struct{}{}:
		case <-b.ctx.Done():
			wg.Wait()
			return
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if p.leads(b.cfg.NodeID) {
				b.tierPartition(p, gc)
			} else {
				b.followTier(p)
			}
		}()
	}
	wg.Wait()
}

// tierRetention is the retention part of a planner config (plannerConfig),
// as the tier takes it.
func tierRetention(cfg compactor.Config) tier.Retention {
	return tier.Retention{
		RetentionMs: cfg.RetentionMs, RetentionBytes: cfg.RetentionBytes,
		LocalRetentionMs: cfg.LocalRetentionMs, LocalRetentionBytes: cfg.LocalRetentionBytes,
		CleanupPolicy: cfg.CleanupPolicy,
	}
}

// followTier applies local retention on a replica that does not lead the
// partition: it deletes local segments the bucket holds (as the leader's
// newest manifest says) once local retention lets them go. The manifest is
// read again only while sealed segments wait for the leader's upload.
func (b *Broker) followTier(p *Partition) {
	tp := p.tiered()
	logger := b.log.With("topic", p.Topic, "partition", p.Index)
	cfg, err := plannerConfig(p.Config())
	if err != nil { // validated when set; never delete on a value we cannot read
		logger.Warn("tier retention", "err", err)
		return
	}
	r := tierRetention(cfg)
	if tp.Lag().Segments > 0 {
		ctx, cancel := context.WithTimeout(b.ctx, time.Minute)
		err := tp.Refresh(ctx)
		cancel()
		if err != nil {
			logger.Warn("follower: read the leader's manifest", "err", err)
			return
		}
	}
	if n, err := tp.ApplyLocalRetention(r); err != nil {
		logger.Warn("follower: local retention", "err", err)
	} else if n > 0 {
		logger.Debug("follower: local retention", "local_segments_deleted", n)
	}
}

func (b *Broker) tierPartition(p *Partition, gc bool) {
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Minute)
	defer cancel()
	logger := b.log.With("topic", p.Topic, "partition", p.Index)
	tp, err := b.leaderTier(ctx, p)
	if err != nil || tp == nil {
		if err != nil {
			logger.Warn("tier", "err", err)
		}
		return
	}
	if _, err := tp.Upload(ctx, p.LastStableOffset()); errors.Is(err, tier.ErrFenced) {
		logger.Warn("tier upload fenced by a newer leader; stopping", "err", err)
		return
	} else if err != nil {
		// The store may be down or failing some requests: uploads resume on
		// the next pass. Retention and GC still run: local retention only
		// deletes what a published manifest already holds.
		logger.Warn("tier upload", "err", err)
	}
	cfg, err := plannerConfig(p.Config())
	if err != nil { // validated when set; never delete on a value we cannot read
		logger.Warn("tier retention", "err", err)
		return
	}
	r := tierRetention(cfg)
	// What leaves the bucket is decided only by a leader the quorum still
	// confirms at this epoch: a deposed leader that has not heard of its
	// successor yet must not drop history (the successor's manifests fence
	// its publishing, but not its deletions).
	confirmed := func() bool {
		err := b.confirmLeader(ctx, p, tp.Epoch())
		if err != nil {
			logger.Warn("tier: leadership not confirmed; deleting nothing from the bucket this pass", "err", err)
		}
		return err == nil
	}
	var local, remote int
	if plan := tp.PlanRetention(r); plan.Publish && !confirmed() {
		local, err = tp.ApplyLocalRetention(r)
	} else {
		local, remote, err = tp.ApplyRetention(ctx, r)
	}
	if err != nil {
		logger.Warn("tier retention", "err", err)
	} else if local+remote > 0 {
		logger.Debug("tier retention", "local_segments_deleted", local, "remote_segments_dropped", remote)
	}
	if gc && confirmed() {
		if _, err := tp.GC(ctx); err != nil {
			logger.Warn("tier garbage collection", "err", err)
		}
	}
}

// confirmLeader asks the metadata quorum whether this broker still leads
// the partition at epoch.
func (b *Broker) confirmLeader(ctx context.Context, p *Partition, epoch int32) error {
	if p.LeaderEpoch() != epoch || !p.leads(b.cfg.NodeID) {
		return fmt.Errorf("%w: %s-%d: leader epoch is now %d", ErrNotLeader, p.Topic, p.Index, p.LeaderEpoch())
	}
	return b.meta.ConfirmLeader(ctx, p.TopicID, p.Index, epoch)
}

// relieveDisk shrinks the tier's read cache when the data disk gets close to
// the free-space headroom, so cached chunks go before the log refuses
// writes.
//
// Between twice the headroom and the headroom itself, produce responses
// also carry a throttle time that grows as free space shrinks (up to
// maxProduceThrottle), so clients slow down while uploads catch up and local
// retention frees space, before appends are refused outright.
func (b *Broker) relieveDisk() {
	if b.cfg.MinFreeBytes <= 0 {
		return
	}
	free, err := b.cfg.FS.FreeSpace(b.cfg.DataDir)
	if err != nil || free >= 2*b.cfg.MinFreeBytes {
		b.throttleMs.Store(0)
		return
	}
	if freed := b.cfg.Tier.ShrinkCache(0); freed > 0 {
		b.log.Warn("data disk low on space; emptied the tier read cache", "free_bytes", free, "freed_bytes", freed)
	}
	// free in [MinFree, 2*MinFree) → throttle in (0, max]; below: max.
	over := max(free-b.cfg.MinFreeBytes, 0)
	ms := maxProduceThrottle.Milliseconds() * (b.cfg.MinFreeBytes - over) / b.cfg.MinFreeBytes
	b.throttleMs.Store(int32(ms))
	b.log.Warn("data disk low on space; throttling producers", "free_bytes", free, "throttle_ms", ms)
}

// maxProduceThrottle is the longest throttle time produce responses carry
// while the data disk is nearly full.
const maxProduceThrottle = 5 * time.Second

// ProduceThrottleMs is the throttle time for produce responses (0 normally).
func (b *Broker) ProduceThrottleMs() int32 { return b.throttleMs.Load() }

// Remote data of deleted topics is removed by a background job; the pending
// list is persisted so an interrupted deletion resumes after a restart.
type remoteDeletion struct {
	TopicID string `json:"topic_id"`
	// Partitions is the topic's partition count, used when Indexes is
	// empty (files written before replication).
	Partitions int32 `json:"partitions"`
	// Indexes are the partitions this broker held: every replica deletes
	// the data of its own (deleting twice is harmless), so no single
	// broker being down leaves data behind.
	Indexes []int32 `json:"indexes,omitempty"`
}

type remoteDeletions struct {
	Version int              `json:"version"`
	Pending []remoteDeletion `json:"pending"`
}

func (b *Broker) deletionsPath() string { return filepath.Join(b.cfg.DataDir, "tier-deletions.json") }

// deleteRemote records the remote data of a tiered topic's partitions for
// deletion and starts deleting it.
func (b *Broker) deleteRemote(id cluster.TopicID, indexes []int32) {
	b.delMu.Lock()
	pend := b.loadDeletionsLocked()
	pend = append(pend, remoteDeletion{TopicID: id.String(), Partitions: int32(len(indexes)), Indexes: indexes})
	err := b.saveDeletionsLocked(pend)
	b.delMu.Unlock()
	if err != nil {
		b.log.Error("record remote deletion", "topic_id", id.String(), "err", err)
	}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		b.resumeRemoteDeletions()
	}()
}

// resumeRemoteDeletions deletes the remote data of every pending topic.
func (b *Broker) resumeRemoteDeletions() {
	b.delRun.Lock()
	defer b.delRun.Unlock()
	b.delMu.Lock()
	pend := b.loadDeletionsLocked()
	b.delMu.Unlock()
	for _, d := range pend {
		var id cluster.TopicID
		if raw, err := hex.DecodeString(d.TopicID); err != nil || len(raw) != len(id) {
			b.log.Error("bad pending remote deletion", "topic_id", d.TopicID, "err", err)
			continue
		} else {
			copy(id[:], raw)
		}
		total := 0
		// The descriptor goes first, so that no broker imports a topic
		// whose data is being deleted.
		err := b.cfg.Tier.DeleteTopic(b.ctx, id)
		parts := d.Indexes
		if len(parts) == 0 {
			for i := range d.Partitions {
				parts = append(parts, i)
			}
		}
		for _, part := range parts {
			if err != nil {
				break
			}
			var n int
			n, err = b.cfg.Tier.DeletePartitionData(b.ctx, id, part)
			total += n
		}
		if err != nil {
			b.log.Warn("remote deletion of a deleted topic; will retry", "topic_id", d.TopicID, "err", err)
			continue
		}
		b.log.Info("deleted remote data of a deleted topic", "topic_id", d.TopicID, "objects", total)
		b.delMu.Lock()
		rest := b.loadDeletionsLocked()
		for i := range rest {
			if rest[i].TopicID == d.TopicID && slices.Equal(rest[i].Indexes, d.Indexes) && rest[i].Partitions == d.Partitions {
				rest = append(rest[:i], rest[i+1:]...)
				break
			}
		}
		if err := b.saveDeletionsLocked(rest); err != nil {
			b.log.Error("record remote deletion done", "topic_id", d.TopicID, "err", err)
		}
		b.delMu.Unlock()
	}
}

func (b *Broker) loadDeletionsLocked() []remoteDeletion {
	raw, err := os.ReadFile(b.deletionsPath())
	if os.IsNotExist(err) {
		return nil
	}
	var f remoteDeletions
	if err == nil {
		err = json.Unmarshal(raw, &f)
	}
	if err == nil && f.Version != 1 {
		err = fmt.Errorf("unsupported version %d", f.Version)
	}
	if err != nil {
		b.log.Error("read pending remote deletions", "path", b.deletionsPath(), "err", err)
		return nil
	}
	return f.Pending
}

func (b *Broker) saveDeletionsLocked(p []remoteDeletion) error {
	raw, err := json.Marshal(remoteDeletions{Version: 1, Pending: p})
	if err != nil {
		return err
	}
	return cluster.WriteFileAtomic(b.deletionsPath(), raw)
}

// describeTopics keeps a descriptor of every tiered topic in the bucket
// (name, id, partitions, configs), rewriting it when it changes, so that a
// broker with a new data directory can import the topic (importTopics).
func (b *Broker) describeTopics(parts []*Partition) {
	seen := map[cluster.TopicID]bool{}
	for _, p := range parts {
		if seen[p.TopicID] {
			continue
		}
		seen[p.TopicID] = true
		t, ok := b.meta.TopicByID(p.TopicID)
		if !ok {
			continue
		}
		raw, _ := json.Marshal([]any{t.Name, len(t.Partitions), t.Configs})
		b.descMu.Lock()
		same := b.descWritten[t.ID] == string(raw)
		b.descMu.Unlock()
		if same {
			continue
		}
		ctx, cancel := context.WithTimeout(b.ctx, time.Minute)
		err := b.cfg.Tier.PutTopic(ctx, t.ID, t.Name, int32(len(t.Partitions)), t.Configs)
		cancel()
		if err != nil {
			b.log.Warn("tier topic descriptor; will retry", "topic", t.Name, "err", err)
			continue
		}
		b.descMu.Lock()
		b.descWritten[t.ID] = string(raw)
		b.descMu.Unlock()
	}
}

// importTopics creates, in the local metadata, the tiered topics the bucket
// describes but this broker does not know (a new data directory on an old
// bucket). Their partitions then continue from the bucket: empty local logs
// are reset to the remote end offsets. Topics whose name is taken by another
// topic, and topics pending deletion, are left alone.
func (b *Broker) importTopics() error {
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Minute)
	defer cancel()
	descs, err := b.cfg.Tier.Topics(ctx)
	if err != nil {
		return err
	}
	pending := map[string]bool{}
	b.delMu.Lock()
	for _, d := range b.loadDeletionsLocked() {
		pending[d.TopicID] = true
	}
	b.delMu.Unlock()
	for _, d := range descs {
		var id cluster.TopicID
		raw, _ := hex.DecodeString(d.ID) // checked by Topics
		copy(id[:], raw)
		if pending[d.ID] {
			continue
		}
		if _, ok := b.meta.TopicByID(id); ok {
			continue
		}
		if other, ok := b.meta.Topic(d.Name); ok {
			b.log.Warn("bucket describes a tiered topic whose name is taken; not importing it",
				"topic", d.Name, "bucket_topic_id", d.ID, "local_topic_id", other.ID.String())
			continue
		}
		t := cluster.Topic{Name: d.Name, ID: id, Partitions: make([]cluster.Partition, d.Partitions), Configs: d.Configs}
		if _, err := b.meta.CreateTopic(t, 1); err != nil { // default.replication.factor
			return fmt.Errorf("import topic %s from the bucket: %w", d.Name, err)
		}
		b.log.Info("imported tiered topic from the bucket", "topic", d.Name, "topic_id", d.ID, "partitions", d.Partitions)
	}
	return nil
}

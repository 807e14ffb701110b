package broker

import (
	"context"
	"errors"

	"github.com/strata-io/strata/compactor"
	"github.com/strata-io/strata/tier"
)

// Compaction and merging of the history in the bucket, for tiered
// partitions. Both run on the partition's tier (tier.Partition.Compact and
// Merge), one at a time with its uploads, retention and GC, and publish
// through its fenced manifests.

// CompactRemote runs a compaction pass over the remote history of every
// tiered partition whose cleanup.policy contains compact, where the plan
// says it is due (min.cleanable.dirty.ratio, max.compaction.lag.ms), with
// the cleaner's map size and rate limit. It returns the partitions
// compacted. Errors are logged; the next pass retries.
func (b *Broker) CompactRemote(ctx context.Context) int {
	n := 0
	for _, p := range b.tieredPartitions() {
		if ctx.Err() != nil {
			break
		}
		tp := p.tiered()
		cfg, err := p.remoteCompactionConfig()
		if err != nil || !cfg.CleanupPolicy.Compacts() {
			if err != nil {
				b.log.Warn("remote compaction", "topic", p.Topic, "partition", p.Index, "err", err)
			}
			continue
		}
		res, err := tp.Compact(ctx, tier.RemoteCompactOptions{
			Config: cfg, MaxMapEntries: b.cfg.CleanerMapEntries, RateLimit: b.cfg.CleanerRateLimit,
		})
		switch {
		case errors.Is(err, context.Canceled), errors.Is(err, tier.ErrFenced):
		case err != nil:
			b.log.Warn("remote compaction", "topic", p.Topic, "partition", p.Index, "err", err)
		case res.Plan.Clean:
			n++
		}
	}
	return n
}

// MergeRemote merges small adjacent objects of every tiered partition into
// objects of about targetBytes (0: tier.DefaultMergeTargetBytes). It
// returns the objects merged away (inputs minus outputs).
func (b *Broker) MergeRemote(ctx context.Context, targetBytes int64) int {
	n := 0
	for _, p := range b.tieredPartitions() {
		if ctx.Err() != nil {
			break
		}
		res, err := p.tiered().Merge(ctx, targetBytes, b.cfg.CleanerRateLimit)
		switch {
		case errors.Is(err, context.Canceled), errors.Is(err, tier.ErrFenced):
		case err != nil:
			b.log.Warn("remote merge", "topic", p.Topic, "partition", p.Index, "err", err)
		default:
			n += res.ObjectsIn - res.ObjectsOut
		}
	}
	return n
}

// RemoteCompactionPlan is what CompactRemote would do to the partition's
// remote history now, for a dry run; ok is false for a partition that is
// not tiered.
func (p *Partition) RemoteCompactionPlan() (plan compactor.CompactionPlan, ok bool, err error) {
	tp := p.tiered()
	if tp == nil {
		return compactor.CompactionPlan{}, false, nil
	}
	cfg, err := p.remoteCompactionConfig()
	if err != nil {
		return compactor.CompactionPlan{}, false, err
	}
	return tp.PlanCompaction(cfg), true, nil
}

// remoteCompactionConfig is compactionConfig for the bucket's history:
// remote objects may be grouped up to segment.bytes (the local cleaner
// must not merge segments of a tiered log; the bucket's compaction may).
func (p *Partition) remoteCompactionConfig() (compactor.Config, error) {
	cfg, err := p.compactionConfig()
	if err != nil {
		return cfg, err
	}
	cfg.SegmentBytes = p.Config().SegmentBytes
	return cfg, nil
}

// tieredPartitions returns the partitions this broker leads whose tier is
// open at the current leader epoch (only the leader changes the bucket; the
// tier pass reopens a tier after a leader change).
func (b *Broker) tieredPartitions() []*Partition {
	b.mu.RLock()
	defer b.mu.RUnlock()
	var out []*Partition
	for _, p := range b.mu.parts {
		if tp := p.tiered(); tp != nil && p.leads(b.cfg.NodeID) && tp.Epoch() == p.LeaderEpoch() {
			out = append(out, p)
		}
	}
	return out
}

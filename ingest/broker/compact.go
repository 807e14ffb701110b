package broker

import (
	"context"
	"errors"
	"time"

	"github.com/strata-io/strata/compactor"
	plog "github.com/strata-io/strata/ingest/log"
	"github.com/strata-io/strata/ingest/topicconfig"
)

// Cleaner defaults (Kafka's names in parentheses).
const (
	// DefaultCleanerBackoff is how often compacted partitions are checked
	// (log.cleaner.backoff.ms).
	DefaultCleanerBackoff = 15 * time.Second
)

// CleanPass plans compaction for every partition whose cleanup.policy
// contains compact and cleans those the plan says are due (dirty ratio or
// max.compaction.lag.ms). It returns the partitions cleaned.
func (b *Broker) CleanPass(ctx context.Context) int {
	b.mu.RLock()
	parts := make([]*Partition, 0, len(b.mu.parts))
	for _, p := range b.mu.parts {
		parts = append(parts, p)
	}
	b.mu.RUnlock()
	n := 0
	for _, p := range parts {
		if ctx.Err() != nil {
			break
		}
		if ok, err := b.cleanPartition(ctx, p); err != nil {
			b.log.Warn("compaction", "topic", p.Topic, "partition", p.Index, "err", err)
		} else if ok {
			n++
		}
	}
	return n
}

// CompactionPlan returns what the cleaner would do to the partition's local
// log now, with its current configs.
func (p *Partition) CompactionPlan(now time.Time) (compactor.CompactionPlan, error) {
	cfg, err := p.compactionConfig()
	if err != nil {
		return compactor.CompactionPlan{}, err
	}
	return compactor.PlanCompaction(p.log.RetentionInput(), cfg, now), nil
}

// compactionConfig maps the partition's topic configs to the planner's.
func (p *Partition) compactionConfig() (compactor.Config, error) {
	c := p.Config()
	// A tiered topic whose tier is not open yet (store down at start) is
	// still tiered: its segments must not be merged, nor its tombstones
	// dropped, before the tier catches up.
	c.RemoteStorage = c.RemoteStorage || p.tiered() != nil
	return plannerConfig(c)
}

// plannerConfig maps a topic's resolved configs to the planners'.
func plannerConfig(c topicconfig.Config) (compactor.Config, error) {
	pol, err := compactor.ParseCleanupPolicy(c.CleanupPolicy)
	if err != nil {
		return compactor.Config{}, err
	}
	cfg := compactor.Config{
		CleanupPolicy: pol, RetentionMs: c.RetentionMs, RetentionBytes: c.RetentionBytes,
		LocalRetentionMs: c.LocalRetentionMs, LocalRetentionBytes: c.LocalRetentionBytes,
		RemoteStorage: c.RemoteStorage, SegmentBytes: c.SegmentBytes,
		MinCleanableDirtyRatio: c.MinCleanableDirtyRatio, MinCompactionLagMs: c.MinCompactionLagMs,
		MaxCompactionLagMs: c.MaxCompactionLagMs, DeleteRetentionMs: c.DeleteRetentionMs,
	}
	if cfg.RemoteStorage {
		// The uploader continues at the remote end offset, which must stay
		// a local segment boundary: never merge segments of a tiered log.
		cfg.SegmentBytes = 1
	}
	return cfg, nil
}

// cleanPartition runs one compaction pass on p if its plan says so.
func (b *Broker) cleanPartition(ctx context.Context, p *Partition) (bool, error) {
	cfg, err := p.compactionConfig()
	if err != nil || !cfg.CleanupPolicy.Compacts() {
		return false, err
	}
	now := time.Now()
	plan := compactor.PlanCompaction(p.log.RetentionInput(), cfg, now)
	if !plan.Clean {
		return false, nil
	}
	horizon := now.Add(-time.Duration(cfg.DeleteRetentionMs) * time.Millisecond)
	if cfg.RemoteStorage {
		// Older values of a tombstone's key may sit in the bucket (or a
		// segment may go up without its tombstone): locally a tiered log
		// keeps every tombstone; the bucket's compaction removes them.
		horizon = time.Time{}
	}
	res, err := p.log.Clean(plog.CleanOptions{
		From: plan.From, To: plan.To,
		MaxMapEntries:    b.cfg.CleanerMapEntries,
		TombstoneHorizon: horizon,
		SegmentBytes:     cfg.SegmentBytes,
		RateLimit:        b.cfg.CleanerRateLimit,
		Context:          ctx,
	})
	if errors.Is(err, plog.ErrCleanRaced) || errors.Is(err, context.Canceled) {
		return false, nil // retention or shutdown got there first; next pass
	}
	if err != nil {
		return false, err
	}
	b.log.Info("compacted", "topic", p.Topic, "partition", p.Index, "from", res.From, "to", res.End,
		"reason", string(plan.Reason), "dirty_ratio", plan.DirtyRatio,
		"records_kept", res.RecordsKept, "records_removed", res.RecordsRemoved, "tombstones_removed", res.TombstonesRemoved,
		"segments_in", res.SegmentsIn, "segments_out", res.SegmentsOut, "bytes_read", res.BytesRead, "bytes_written", res.BytesWritten,
		"duration", res.Duration)
	return true, nil
}

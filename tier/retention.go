package tier

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/strata-io/strata/compactor"
	"github.com/strata-io/strata/tier/manifest"
	"github.com/strata-io/strata/tier/objstore"
)

// Retention holds a topic's retention settings with Kafka's meanings
// (negative: unlimited). Local values are already resolved (-2 replaced by
// the total).
type Retention struct {
	RetentionMs, RetentionBytes           int64
	LocalRetentionMs, LocalRetentionBytes int64
	// CleanupPolicy is cleanup.policy; the zero value is delete. Compact
	// alone deletes nothing by RetentionMs or RetentionBytes.
	CleanupPolicy compactor.CleanupPolicy
}

func (r Retention) config() compactor.Config {
	return compactor.Config{
		CleanupPolicy: r.CleanupPolicy, RemoteStorage: true,
		RetentionMs: r.RetentionMs, RetentionBytes: r.RetentionBytes,
		LocalRetentionMs: r.LocalRetentionMs, LocalRetentionBytes: r.LocalRetentionBytes,
	}
}

// PlanInput describes the partition as the compactor's planners read it:
// the local segments, the newest manifest's entries, the log start offsets
// and the high watermark (the durable offset). Callers add the cleaner
// points when they plan compaction.
func (p *Partition) PlanInput() compactor.Partition {
	cur := p.Manifest()
	segs := p.log.Segments()
	local := make([]compactor.Segment, len(segs))
	for i, s := range segs {
		local[i] = compactor.Segment{
			Tier: compactor.Local, Base: s.Base, Next: s.Next, Bytes: s.Size,
			MaxTimestamp: s.MaxTimestamp, FirstTimestamp: -1,
			Sealed: s.Sealed, Durable: s.Durable,
		}
	}
	start := p.log.StartOffset()
	return compactor.Partition{
		Local: local, Remote: manifest.RemoteSegments(cur),
		LogStart: start, RemoteLogStart: cur.LogStartOffset,
		HighWatermark: p.log.DurableOffset(), CleanerPoint: start, RemoteCleanerPoint: start,
	}
}

// PlanRetention is what ApplyRetention(r) would do now, without doing it:
// the dry run.
func (p *Partition) PlanRetention(r Retention) compactor.RetentionPlan {
	p.workMu.Lock()
	defer p.workMu.Unlock()
	return compactor.PlanRetention(p.PlanInput(), r.config(), p.m.cfg.Now())
}

// ApplyRetention applies the total retention to both tiers (whole remote
// segments leave the manifest, the log start offset moves) and the local
// retention to the local tier (only segments already in the bucket are
// deleted locally), as compactor.PlanRetention plans it. It returns the
// local segments deleted by local retention and the remote segments
// dropped.
func (p *Partition) ApplyRetention(ctx context.Context, r Retention) (local, remote int, err error) {
	p.workMu.Lock()
	defer p.workMu.Unlock()
	now := p.m.cfg.Now()
	plan := compactor.PlanRetention(p.PlanInput(), r.config(), now)
	if plan.Publish {
		err := p.publish(ctx, func(next *manifest.Manifest) error {
			next.RemovePrefix(len(plan.Remote), plan.LogStart, now.UnixMilli())
			return nil
		})
		if err != nil {
			return 0, 0, err
		}
		remote = len(plan.Remote)
		// The local log start never passes the durable offset; the
		// segments below it go with it.
		if start := min(plan.LogStart, p.log.DurableOffset()); start > p.log.StartOffset() {
			if err := p.log.SetStartOffset(start); err != nil {
				return 0, remote, fmt.Errorf("tier: move log start of %s/%d to %d: %w", p.topic, p.part, start, err)
			}
		}
	}
	if cut, ok := plan.LocalCut(); ok {
		// DeleteLocalBefore checks again that each segment is sealed and
		// durable; the plan only ever names segments below the remote end.
		if local, err = p.log.DeleteLocalBefore(cut); err != nil {
			return local, remote, fmt.Errorf("tier: local retention of %s/%d: %w", p.topic, p.part, err)
		}
	}
	return local, remote, nil
}

// GC deletes what no manifest needs any more, once the grace period has
// passed: objects that left the newest manifest, orphaned uploads (failed or
// repeated attempts, or a crash between upload and publish), superseded
// manifests, and incomplete multipart uploads. Only the partition's leader
// may call it. It returns the number of objects deleted.
func (p *Partition) GC(ctx context.Context) (int, error) {
	p.workMu.Lock()
	defer p.workMu.Unlock()
	kept, err := p.m.client.History(ctx, p.topic, p.part, 3)
	if errors.Is(err, manifest.ErrNoManifest) {
		return 0, nil
	} else if err != nil {
		return 0, fmt.Errorf("tier: gc %s/%d: %w", p.topic, p.part, err)
	}
	var objects []manifest.Object
	prefix := manifest.PartitionPrefix(p.topic, p.part)
	err = p.m.store.List(ctx, prefix, func(o objstore.ObjectInfo) error {
		objects = append(objects, manifest.Object{Key: o.Key, Size: o.Size, ModTime: o.ModTime})
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("tier: gc list %s: %w", prefix, err)
	}
	now := p.m.cfg.Now()
	plan, err := manifest.PlanGC(kept, objects, now, p.m.cfg.GracePeriod)
	if err != nil {
		return 0, fmt.Errorf("tier: gc %s/%d: %w", p.topic, p.part, err)
	}
	// Objects a running compaction or merge pass uploaded are not orphans
	// yet, however long the pass has been running.
	plan.Orphans = slices.DeleteFunc(plan.Orphans, p.rewritingNow)
	n := 0
	for _, keys := range [][]string{plan.Orphans, plan.Expired, plan.Manifests} {
		for _, k := range keys {
			if err := p.m.store.Delete(ctx, k); err != nil {
				return n, fmt.Errorf("tier: gc delete %s: %w", k, err)
			}
			p.m.footers.Forget(k)
			p.m.hot.forget(k)
			n++
		}
	}
	if len(plan.Expired) > 0 {
		err := p.publish(ctx, func(next *manifest.Manifest) error {
			next.DropDeleted(plan.Expired)
			return nil
		})
		if err != nil {
			return n, err
		}
	}
	if _, err := objstore.AbortIncompleteUploads(ctx, p.m.store, prefix, now.Add(-p.m.cfg.GracePeriod)); err != nil {
		return n, fmt.Errorf("tier: gc abort uploads under %s: %w", prefix, err)
	}
	if n > 0 {
		p.logger.Info("tier garbage collected", "objects", n, "orphans", len(plan.Orphans), "expired", len(plan.Expired), "manifests", len(plan.Manifests))
	}
	return n, nil
}

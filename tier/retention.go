package tier

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/strata-io/strata/tier/manifest"
	"github.com/strata-io/strata/tier/objstore"
)

// Retention holds a topic's retention settings with Kafka's meanings
// (negative: unlimited). Local values are already resolved (-2 replaced by
// the total).
type Retention struct {
	RetentionMs, RetentionBytes           int64
	LocalRetentionMs, LocalRetentionBytes int64
}

// ApplyRetention applies the total retention to both tiers (whole remote
// segments leave the manifest, the log start offset moves) and the local
// retention to the local tier (only segments already in the bucket are
// deleted locally). It returns the local segments deleted and the remote
// segments dropped.
func (p *Partition) ApplyRetention(ctx context.Context, r Retention) (local, remote int, err error) {
	p.workMu.Lock()
	defer p.workMu.Unlock()
	now := p.m.cfg.Now()
	cur := p.Manifest()
	segs := p.log.Segments()
	var localBytes int64
	for _, s := range segs {
		if s.Next > cur.EndOffset() {
			localBytes += s.Size
		}
	}
	plan := manifest.PlanRetention(cur, manifest.RetentionPolicy{
		RetentionMs: r.RetentionMs, RetentionBytes: r.RetentionBytes,
		LocalBytes: localBytes, StartOffset: p.log.StartOffset(),
	}, now)
	if plan.Drop > 0 || plan.LogStartOffset > cur.LogStartOffset {
		err := p.publish(ctx, func(next *manifest.Manifest) error {
			next.RemovePrefix(plan.Drop, plan.LogStartOffset, now.UnixMilli())
			return nil
		})
		if err != nil {
			return 0, 0, err
		}
		remote = plan.Drop
		if start := min(plan.LogStartOffset, p.log.DurableOffset()); start > p.log.StartOffset() {
			if err := p.log.SetStartOffset(start); err != nil {
				return 0, remote, fmt.Errorf("tier: move log start of %s/%d to %d: %w", p.topic, p.part, start, err)
			}
		}
	}
	local, err = p.applyLocalRetention(r, now)
	return local, remote, err
}

// applyLocalRetention deletes local segments that are in the bucket and past
// local retention, oldest first.
func (p *Partition) applyLocalRetention(r Retention, now time.Time) (int, error) {
	end := p.RemoteEndOffset()
	segs := p.log.Segments()
	var total int64
	for _, s := range segs {
		total += s.Size
	}
	cut := int64(-1)
	for _, s := range segs {
		if !s.Sealed || s.Next > end {
			break
		}
		expired := r.LocalRetentionMs >= 0 && s.MaxTimestamp >= 0 && now.UnixMilli()-s.MaxTimestamp > r.LocalRetentionMs
		tooBig := r.LocalRetentionBytes >= 0 && total-s.Size >= r.LocalRetentionBytes
		if !expired && !tooBig {
			break
		}
		cut, total = s.Next, total-s.Size
	}
	if cut < 0 {
		return 0, nil
	}
	n, err := p.log.DeleteLocalBefore(cut)
	if err != nil {
		return n, fmt.Errorf("tier: local retention of %s/%d: %w", p.topic, p.part, err)
	}
	return n, nil
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

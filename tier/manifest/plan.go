package manifest

import (
	"fmt"
	"slices"
	"time"
)

// Object is one listed object of a partition prefix.
type Object struct {
	Key     string
	Size    int64
	ModTime time.Time
}

// GCPlan is what garbage collection of one partition deletes. Every list is
// sorted. Deleting is the caller's job, and only the partition's current
// leader (epoch confirmed by the metadata quorum) may do it.
type GCPlan struct {
	// Orphans are segment objects named by none of the kept manifests
	// (Entries or Deleted) and older than the grace period: failed or
	// repeated upload attempts, and segments only superseded manifests named.
	Orphans []string
	// Expired are Deleted entries of the newest manifest whose grace period
	// has passed. Delete their objects (a missing one is fine), then publish
	// a manifest without them (Manifest.DropDeleted).
	Expired []string
	// Manifests are superseded manifests: older than the newest KeepManifests
	// and older than the grace period.
	Manifests []string
}

// PlanGC decides what garbage collection deletes. kept are the newest
// manifests, newest first (Client.History with KeepManifests); objects is a
// listing of the partition prefix taken after kept was loaded. Objects are
// protected while younger than grace (an upload may be about to publish them;
// a reader may be about to read a manifest). Keys this package cannot parse
// are never deleted, nor segment objects uploaded at a higher epoch than the
// newest manifest's (a newer leader's uploads).
//
// It fails if the listing holds a manifest newer than kept[0]: the view is
// stale, load again.
func PlanGC(kept []*Manifest, objects []Object, now time.Time, grace time.Duration) (GCPlan, error) {
	var plan GCPlan
	if len(kept) == 0 {
		return plan, fmt.Errorf("manifest: PlanGC needs the newest manifest")
	}
	newest := kept[0]
	named := make(map[string]bool)
	keptIDs := make(map[ManifestID]bool, len(kept))
	for _, m := range kept {
		keptIDs[m.ID()] = true
		for _, e := range m.Entries {
			named[e.Key] = true
		}
		for _, d := range m.Deleted {
			named[d.Key] = true
		}
	}
	old := func(o Object) bool { return now.Sub(o.ModTime) >= grace }
	for _, o := range objects {
		if n, err := ParseManifestKey(o.Key); err == nil {
			switch {
			case n.Topic != newest.Topic || n.Partition != newest.Partition:
			case newest.ID().Less(n.ID):
				return GCPlan{}, fmt.Errorf("%w: listing holds manifest %s, newer than %s", ErrStale, n.ID, newest.ID())
			case !keptIDs[n.ID] && old(o):
				plan.Manifests = append(plan.Manifests, o.Key)
			}
			continue
		}
		n, err := ParseSegmentKey(o.Key)
		if err != nil || n.Topic != newest.Topic || n.Partition != newest.Partition {
			continue // not ours to judge
		}
		if !named[o.Key] && n.Epoch <= newest.Epoch && old(o) {
			plan.Orphans = append(plan.Orphans, o.Key)
		}
	}
	for _, d := range newest.Deleted {
		if now.UnixMilli()-d.RemovedMs >= grace.Milliseconds() {
			plan.Expired = append(plan.Expired, d.Key)
		}
	}
	slices.Sort(plan.Orphans)
	slices.Sort(plan.Expired)
	slices.Sort(plan.Manifests)
	return plan, nil
}

// RetentionPolicy bounds the whole log (both tiers), with Kafka's meanings.
type RetentionPolicy struct {
	RetentionMs    int64 // retention.ms; negative: unlimited
	RetentionBytes int64 // retention.bytes; negative: unlimited
	// LocalBytes is the size of the log above the manifest's EndOffset (only
	// on local disk); it counts towards RetentionBytes.
	LocalBytes int64
	// StartOffset is a log start requested by DeleteRecords (0: none).
	StartOffset int64
}

// RetentionPlan says which leading entries leave the manifest and the new log
// start offset. Apply it with Manifest.RemovePrefix(Drop, LogStartOffset, now).
type RetentionPlan struct {
	Drop           int
	LogStartOffset int64
}

// PlanRetention decides which whole segments retention removes, oldest
// first, as the local log does: a segment goes while its largest timestamp
// (or, lacking one, its upload time) is more than RetentionMs before now, or
// while the log without it still holds at least RetentionBytes (sizes are raw
// batch bytes, as on local disk), or while it lies wholly below StartOffset.
// The first segment that is kept stops the scan.
func PlanRetention(m *Manifest, p RetentionPolicy, now time.Time) RetentionPlan {
	nowMs := now.UnixMilli()
	total := p.LocalBytes
	for _, e := range m.Entries {
		total += e.RawSize
	}
	plan := RetentionPlan{LogStartOffset: max(m.LogStartOffset, p.StartOffset)}
	for _, e := range m.Entries {
		ts := e.MaxTimestamp
		if ts < 0 {
			ts = e.CreatedMs
		}
		expired := p.RetentionMs >= 0 && nowMs-ts > p.RetentionMs
		tooBig := p.RetentionBytes >= 0 && total-e.RawSize >= p.RetentionBytes
		below := e.NextOffset <= p.StartOffset
		if !expired && !tooBig && !below {
			break
		}
		total -= e.RawSize
		plan.Drop++
		plan.LogStartOffset = max(plan.LogStartOffset, e.NextOffset)
	}
	return plan
}

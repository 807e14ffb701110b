package manifest

import (
	"fmt"
	"slices"
	"time"

	"github.com/strata-io/strata/compactor"
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
// first, when all the caller has is the manifest: a segment goes while its
// largest timestamp (or, lacking one, its upload time) is more than
// RetentionMs before now, or while the log without it still holds at least
// RetentionBytes (sizes are raw batch bytes, as on local disk), or while it
// lies wholly below StartOffset. The first segment that is kept stops the
// scan. It computes through compactor.PlanRetention, which a caller holding
// the local log too (tier.Partition) calls directly.
func PlanRetention(m *Manifest, p RetentionPolicy, now time.Time) RetentionPlan {
	part := compactor.Partition{Remote: RemoteSegments(m), LogStart: p.StartOffset, RemoteLogStart: m.LogStartOffset}
	if p.LocalBytes > 0 {
		// The local data above the remote end, as one active segment.
		end := m.EndOffset()
		part.Local = []compactor.Segment{{Tier: compactor.Local, Base: end, Next: end + 1, Bytes: p.LocalBytes, MaxTimestamp: -1, FirstTimestamp: -1}}
	}
	plan := compactor.PlanRetention(part, compactor.Config{
		CleanupPolicy: compactor.Delete, RemoteStorage: true,
		RetentionMs: p.RetentionMs, RetentionBytes: p.RetentionBytes,
		LocalRetentionMs: -1, LocalRetentionBytes: -1,
	}, now)
	return RetentionPlan{Drop: len(plan.Remote), LogStartOffset: plan.LogStart}
}

// RemoteSegments describes the manifest's entries as the compactor's
// planners read them: Bytes is the raw batch size (what retention.bytes
// counts on both tiers), ObjectBytes the object's size in the bucket, Key
// the object key.
func RemoteSegments(m *Manifest) []compactor.Segment {
	out := make([]compactor.Segment, len(m.Entries))
	for i, e := range m.Entries {
		out[i] = compactor.Segment{
			Tier: compactor.Remote, Base: e.BaseOffset, Next: e.NextOffset,
			Bytes: e.RawSize, ObjectBytes: e.StoredSize,
			MaxTimestamp: e.MaxTimestamp, FirstTimestamp: e.FirstTimestamp, CreatedMs: e.CreatedMs,
			Sealed: true, Durable: true, Key: e.Key,
		}
	}
	return out
}

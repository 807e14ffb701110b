package compactor

import (
	"fmt"
	"math"
	"strings"
	"time"
)

// CompactionReason says why a compaction plan cleans, or why not.
type CompactionReason string

// The reasons a CompactionPlan gives.
const (
	ReasonNotCompacted     CompactionReason = "cleanup.policy does not compact"
	ReasonNothingCleanable CompactionReason = "no sealed segment below the first uncleanable offset"
	ReasonNothingDirty     CompactionReason = "nothing dirty below the first uncleanable offset"
	ReasonBelowRatio       CompactionReason = "dirty ratio not above min.cleanable.dirty.ratio"
	ReasonDirtyRatio       CompactionReason = "dirty ratio above min.cleanable.dirty.ratio"
	ReasonMaxLag           CompactionReason = "a dirty record is older than max.compaction.lag.ms"
)

// Group is a run of adjacent segments that one pass rewrites into a single
// output segment (compaction) or object (merge).
type Group struct {
	Segments []Segment
	// Base and Next bound the offsets the group covers.
	Base, Next int64
	// Bytes is the group's size: the segments' Bytes for compaction, their
	// ObjectBytes for a merge.
	Bytes int64
}

func newGroup(segs []Segment, size func(Segment) int64) Group {
	g := Group{Segments: segs, Base: segs[0].Base, Next: segs[len(segs)-1].Next}
	for _, s := range segs {
		g.Bytes += size(s)
	}
	return g
}

func rawBytes(s Segment) int64 { return s.Bytes }

// CompactionPlan is what one pass of the log cleaner does to one tier of a
// partition, with Kafka's selection rules.
type CompactionPlan struct {
	// Tier is the tier planned: Local segments or Remote objects.
	Tier Tier
	// Policy is the cleanup.policy the plan was made with.
	Policy CleanupPolicy
	// Clean is set when the tier should be compacted now; Reason says why
	// or why not. Forced is set when max.compaction.lag.ms has passed for
	// a dirty segment (cleaning then ignores the dirty ratio).
	Clean  bool
	Reason CompactionReason
	Forced bool
	// From, DirtyFrom and To bound the cleanable range [From, To): whole
	// sealed segments from the log start to the first uncleanable offset.
	// [From, DirtyFrom) was compacted before (the clean part), [DirtyFrom,
	// To) was not. Every segment of [From, To) is rewritten, the clean part
	// too (records there superseded by dirty ones go), and after a clean the
	// cleaner point is To.
	From, DirtyFrom, To int64
	// FirstUncleanable is the lowest of the high watermark, the base of the
	// active (or first non-durable) segment and the base of the first dirty
	// segment holding a record younger than min.compaction.lag.ms. To is
	// the end of the last whole segment below it.
	FirstUncleanable int64
	// CleanBytes and DirtyBytes are the sizes of the clean and dirty parts
	// of the cleanable range (a segment that straddles the cleaner point
	// counts as dirty); DirtyRatio is DirtyBytes over their sum (0 when
	// both are 0). MinDirtyRatio is min.cleanable.dirty.ratio.
	CleanBytes, DirtyBytes int64
	DirtyRatio             float64
	MinDirtyRatio          float64
	// SegmentBytes is segment.bytes, the bound on each group (0: none).
	SegmentBytes int64
	// Groups are the runs of adjacent cleanable segments rewritten into one
	// output segment each, when Clean: as Kafka's groupSegmentsBySize, a
	// group grows while its summed Bytes stay within SegmentBytes and its
	// offsets within 2^31-1 of its base. A segment larger than SegmentBytes
	// is a group alone.
	Groups []Group
	// DeleteHorizonMs is now minus delete.retention.ms: a rewritten segment
	// loses its tombstones only when it lies wholly in the clean part and
	// its newest record is at or before the horizon (DropsTombstones). A
	// tombstone thus survives at least the pass that first cleans it, and
	// stays readable delete.retention.ms after it was written.
	DeleteHorizonMs int64
}

// DropsTombstones reports whether the cleaner removes tombstones (and
// transaction markers) from segment s when it rewrites it.
func (p CompactionPlan) DropsTombstones(s Segment) bool {
	return s.Next <= p.DirtyFrom && s.MaxTimestamp >= 0 && s.MaxTimestamp <= p.DeleteHorizonMs
}

// PlanCompaction decides whether the log cleaner compacts the local log of
// p now, and what it rewrites, with Kafka's rules: the cleanable range is
// the sealed, durable local segments from the log start up to the first
// uncleanable offset (the lowest of the active segment's base, the high
// watermark, and the base of the first dirty segment holding a record
// younger than min.compaction.lag.ms), taken as whole segments. The part
// from the cleaner point on is dirty. The log is cleaned when its dirty
// ratio is above min.cleanable.dirty.ratio (strictly, as Kafka), or when a
// dirty sealed segment's first batch is older than max.compaction.lag.ms
// and something is dirty. A policy without compact cleans nothing.
func PlanCompaction(p Partition, c Config, now time.Time) CompactionPlan {
	return planCompaction(Local, p.Local, p.LogStart, p.CleanerPoint, p.HighWatermark, c, now.UnixMilli())
}

// PlanRemoteCompaction is PlanCompaction over the remote segment objects,
// for compacting tiered history in the bucket: the same rules, with every
// object sealed and durable, the log start the higher of the log's and the
// manifest's, and RemoteCleanerPoint as the cleaner point.
func PlanRemoteCompaction(p Partition, c Config, now time.Time) CompactionPlan {
	return planCompaction(Remote, p.Remote, max(p.LogStart, p.RemoteLogStart), p.RemoteCleanerPoint, p.HighWatermark, c, now.UnixMilli())
}

func planCompaction(tier Tier, segs []Segment, logStart, cleanerPoint, hw int64, c Config, nowMs int64) CompactionPlan {
	plan := CompactionPlan{
		Tier: tier, Policy: c.CleanupPolicy, MinDirtyRatio: c.MinCleanableDirtyRatio,
		SegmentBytes: c.SegmentBytes, DeleteHorizonMs: nowMs - c.DeleteRetentionMs,
	}
	if tier == Local && c.RemoteStorage {
		// Older values of a tombstone's key may be in the bucket: a tiered
		// log keeps its tombstones locally (the bucket's compaction drops
		// them).
		plan.DeleteHorizonMs = math.MinInt64
	}
	for len(segs) > 0 && segs[0].Next <= logStart {
		segs = segs[1:] // wholly below the log start: about to go
	}
	if len(segs) > 0 {
		logStart = max(logStart, segs[0].Base)
	}
	end := logStart
	if len(segs) > 0 {
		end = segs[len(segs)-1].Next
	}
	dirtyFrom := cleanerPoint
	if dirtyFrom < logStart || dirtyFrom > end {
		dirtyFrom = logStart
	}
	sealed := func(s Segment) bool { return tier == Remote || s.Sealed && s.Durable }
	uncleanable := hw
	for _, s := range segs {
		if !sealed(s) {
			uncleanable = min(uncleanable, s.Base)
			break
		}
	}
	if c.MinCompactionLagMs > 0 {
		for _, s := range segs {
			if sealed(s) && s.Next > dirtyFrom && s.MaxTimestamp > nowMs-c.MinCompactionLagMs {
				uncleanable = min(uncleanable, s.Base)
				break
			}
		}
	}
	plan.FirstUncleanable = uncleanable
	n := 0
	for n < len(segs) && sealed(segs[n]) && segs[n].Next <= uncleanable {
		n++
	}
	cleanable := segs[:n]
	plan.From, plan.To = logStart, logStart
	if n > 0 {
		plan.From, plan.To = cleanable[0].Base, cleanable[n-1].Next
	}
	plan.DirtyFrom = min(max(dirtyFrom, plan.From), plan.To)
	for _, s := range cleanable {
		if s.Next > dirtyFrom {
			plan.DirtyBytes += s.Bytes
		} else {
			plan.CleanBytes += s.Bytes
		}
	}
	if total := plan.CleanBytes + plan.DirtyBytes; total > 0 {
		plan.DirtyRatio = float64(plan.DirtyBytes) / float64(total)
	}
	plan.Forced = maxLagPassed(segs, sealed, dirtyFrom, c.MaxCompactionLagMs, nowMs)

	switch {
	case !c.CleanupPolicy.Compacts():
		plan.Reason = ReasonNotCompacted
	case n == 0:
		plan.Reason = ReasonNothingCleanable
	case plan.DirtyBytes == 0:
		plan.Reason = ReasonNothingDirty
	case plan.DirtyRatio > c.MinCleanableDirtyRatio:
		plan.Clean, plan.Reason = true, ReasonDirtyRatio
	case plan.Forced:
		plan.Clean, plan.Reason = true, ReasonMaxLag
	default:
		plan.Reason = ReasonBelowRatio
	}
	if plan.Clean {
		plan.Groups = groupBySize(cleanable, c.SegmentBytes)
	}
	return plan
}

// maxLagPassed reports whether a dirty sealed segment's first batch (its
// newest record when that is unknown) is older than maxLagMs, as Kafka's
// max compaction delay: timestamps of 0 or less are ignored.
func maxLagPassed(segs []Segment, sealed func(Segment) bool, dirtyFrom, maxLagMs, nowMs int64) bool {
	if maxLagMs <= 0 {
		return false
	}
	for _, s := range segs {
		if !sealed(s) || s.Next <= dirtyFrom {
			continue
		}
		ts := s.FirstTimestamp
		if ts <= 0 {
			ts = s.MaxTimestamp
		}
		if ts > 0 && ts < nowMs-maxLagMs {
			return true
		}
	}
	return false
}

// groupBySize is Kafka's groupSegmentsBySize: adjacent segments join a
// group while the group's summed Bytes stay within maxBytes (no limit when
// 0 or less) and the group's offsets within 2^31-1 of its base (an empty
// segment always fits that bound).
func groupBySize(segs []Segment, maxBytes int64) []Group {
	var out []Group
	for len(segs) > 0 {
		n, size := 1, segs[0].Bytes
		for n < len(segs) {
			s := segs[n]
			if maxBytes > 0 && size+s.Bytes > maxBytes {
				break
			}
			if s.Bytes > 0 && s.Next-1-segs[0].Base > math.MaxInt32 {
				break
			}
			n, size = n+1, size+s.Bytes
		}
		out = append(out, newGroup(segs[:n:n], rawBytes))
		segs = segs[n:]
	}
	return out
}

// String is the plan as a dry run prints it: the decision and its reason,
// the cleanable range with its clean and dirty parts, then each output
// segment with the segments it is made of.
func (p CompactionPlan) String() string {
	var b strings.Builder
	verdict := "nothing to do"
	if p.Clean {
		verdict = "clean"
	}
	fmt.Fprintf(&b, "compaction plan (%s, cleanup.policy=%s): %s: %s", p.Tier, p.Policy, verdict, p.Reason)
	if p.Policy.Compacts() {
		fmt.Fprintf(&b, " (dirty ratio %.4f, min.cleanable.dirty.ratio %.4f", p.DirtyRatio, p.MinDirtyRatio)
		if p.Forced {
			b.WriteString(", max.compaction.lag.ms passed")
		}
		b.WriteString(")")
	}
	b.WriteString("\n")
	if !p.Policy.Compacts() {
		return b.String()
	}
	fmt.Fprintf(&b, "cleanable: offsets [%d, %d), %d bytes; clean [%d, %d) %d bytes, dirty [%d, %d) %d bytes; first uncleanable offset %d\n",
		p.From, p.To, p.CleanBytes+p.DirtyBytes, p.From, p.DirtyFrom, p.CleanBytes, p.DirtyFrom, p.To, p.DirtyBytes, p.FirstUncleanable)
	if !p.Clean {
		return b.String()
	}
	noun := "segment"
	if p.Tier == Remote {
		noun = "object"
	}
	limit := "no segment.bytes limit"
	if p.SegmentBytes > 0 {
		limit = fmt.Sprintf("segment.bytes %d", p.SegmentBytes)
	}
	fmt.Fprintf(&b, "rewrite %s into %s (%s):\n", count(p.inputs(), noun), count(len(p.Groups), noun), limit)
	for _, g := range p.Groups {
		fmt.Fprintf(&b, "  [%d, %d) %d bytes from %s: %s\n", g.Base, g.Next, g.Bytes, count(len(g.Segments), noun), names(g.Segments))
	}
	var drop []Segment
	for _, g := range p.Groups {
		for _, s := range g.Segments {
			if p.DropsTombstones(s) {
				drop = append(drop, s)
			}
		}
	}
	switch {
	case len(drop) == 0 && p.DeleteHorizonMs == math.MinInt64:
		b.WriteString("tombstones: all kept (a tiered log keeps its tombstones locally)\n")
	case len(drop) == 0:
		fmt.Fprintf(&b, "tombstones: all kept (delete horizon %s)\n", formatMs(p.DeleteHorizonMs))
	default:
		fmt.Fprintf(&b, "tombstones: removed from %s (newest record at or before %s): %s\n", count(len(drop), noun), formatMs(p.DeleteHorizonMs), names(drop))
	}
	return b.String()
}

func (p CompactionPlan) inputs() int {
	n := 0
	for _, g := range p.Groups {
		n += len(g.Segments)
	}
	return n
}

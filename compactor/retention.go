package compactor

import (
	"fmt"
	"strings"
	"time"
)

// Reason says why retention deletes a segment.
type Reason string

// The reasons a RetentionPlan gives, named after the setting that decided.
const (
	ReasonLogStart            Reason = "below the log start"
	ReasonRetentionMs         Reason = "retention.ms"
	ReasonRetentionBytes      Reason = "retention.bytes"
	ReasonLocalRetentionMs    Reason = "local.retention.ms"
	ReasonLocalRetentionBytes Reason = "local.retention.bytes"
)

// Deletion is one segment a retention plan deletes, and why.
type Deletion struct {
	Segment
	Reason Reason
}

// RetentionPlan is what one retention pass does to a partition.
type RetentionPlan struct {
	// Policy and Tiered are the cleanup.policy and remote.storage.enable
	// the plan was made with.
	Policy CleanupPolicy
	Tiered bool
	// Remote are the leading manifest entries that leave the manifest,
	// oldest first. Their objects wait in the manifest's Deleted list until
	// garbage collection.
	Remote []Deletion
	// OldLogStart is the log start before, LogStart after: past every
	// segment deleted on either tier, and never below the DeleteRecords
	// start or the manifest's log start.
	OldLogStart, LogStart int64
	// Publish is set for a tiered topic when a new manifest must be
	// published: entries leave it or its log start moves forward.
	Publish bool
	// Local are the local segments deleted, oldest first: for a topic
	// without remote storage, those past retention; for a tiered topic,
	// first those wholly below the new log start (ReasonLogStart, deleted
	// by moving the log start), then those already in the bucket and past
	// local retention (deleted with the log start unchanged).
	Local []Deletion
}

// LocalCut is the offset below which local retention of a tiered topic
// deletes local segments (the Next of its last deletion), and whether it
// deletes any. Deletions by the log start are not included: moving the log
// start deletes them.
func (p RetentionPlan) LocalCut() (int64, bool) {
	for i := len(p.Local) - 1; i >= 0; i-- {
		if r := p.Local[i].Reason; r == ReasonLocalRetentionMs || r == ReasonLocalRetentionBytes {
			return p.Local[i].Next, true
		}
	}
	return 0, false
}

// PlanRetention decides which whole segments retention deletes, on both
// tiers, as the broker applies it.
//
// Without remote storage: the oldest sealed, durable local segments go
// while their newest record is more than RetentionMs before now, or while
// the log without them still holds at least RetentionBytes; the first
// segment kept, the first that is not durable and the active segment stop
// the scan. The log start moves to the end of the last one. A segment
// without timestamps is never deleted by time.
//
// With remote storage, total retention works on the manifest: its leading
// entries go while their newest record (the upload time when they have no
// timestamp) is more than RetentionMs before now, while the log without
// them (remote raw bytes plus the local bytes above the remote end) still
// holds at least RetentionBytes, or while they lie wholly below the log
// start (DeleteRecords). The new log start is past them and never below the
// log start or the manifest's; when it moves, the local segments wholly
// below it go too. Then local retention deletes the oldest remaining local
// segments that are sealed, durable and wholly below the remote end, while
// their newest record is more than LocalRetentionMs before now or the local
// log without them still holds at least LocalRetentionBytes.
//
// cleanup.policy=compact alone deletes nothing by retention.ms or
// retention.bytes; DeleteRecords and local retention still apply.
func PlanRetention(p Partition, c Config, now time.Time) RetentionPlan {
	if !c.CleanupPolicy.Deletes() {
		c.RetentionMs, c.RetentionBytes = -1, -1
	}
	if c.RemoteStorage {
		return planTieredRetention(p, c, now.UnixMilli())
	}
	return planLocalRetention(p, c, now.UnixMilli())
}

func planLocalRetention(p Partition, c Config, nowMs int64) RetentionPlan {
	plan := RetentionPlan{Policy: c.CleanupPolicy, OldLogStart: p.LogStart, LogStart: p.LogStart}
	total := sumBytes(p.Local)
	start := p.LogStart
	var dels []Deletion
	for _, s := range p.Local {
		if !s.Sealed || !s.Durable {
			break
		}
		r, ok := pastRetention(s, s.MaxTimestamp, total, c.RetentionMs, c.RetentionBytes, nowMs)
		if !ok {
			break
		}
		total -= s.Bytes
		start = s.Next
		dels = append(dels, Deletion{s, r})
	}
	if start > p.LogStart { // else nothing moves, and nothing is deleted
		plan.LogStart, plan.Local = start, dels
	}
	return plan
}

func planTieredRetention(p Partition, c Config, nowMs int64) RetentionPlan {
	plan := RetentionPlan{Policy: c.CleanupPolicy, Tiered: true, OldLogStart: p.LogStart}
	remoteEnd := p.RemoteEnd()
	total := sumBytes(p.Remote)
	for _, s := range p.Local {
		if s.Next > remoteEnd {
			total += s.Bytes
		}
	}
	start := max(p.RemoteLogStart, p.LogStart)
	for _, s := range p.Remote {
		ts := s.MaxTimestamp
		if ts < 0 {
			ts = s.CreatedMs
		}
		r, ok := ReasonLogStart, true
		if s.Next > p.LogStart {
			r, ok = pastRetention(s, ts, total, c.RetentionMs, c.RetentionBytes, nowMs)
		}
		if !ok {
			break
		}
		total -= s.Bytes
		start = max(start, s.Next)
		plan.Remote = append(plan.Remote, Deletion{s, r})
	}
	plan.LogStart = start
	plan.Publish = len(plan.Remote) > 0 || start > p.RemoteLogStart

	local := p.Local
	if plan.Publish && start > p.LogStart {
		// Moving the log start deletes the local segments wholly below it
		// (the local log's start never passes its durable offset, and a
		// durable segment lies below that).
		for len(local) > 0 && local[0].Sealed && local[0].Durable && local[0].Next <= start {
			plan.Local = append(plan.Local, Deletion{local[0], ReasonLogStart})
			local = local[1:]
		}
	}
	if plan.Publish && len(plan.Remote) == len(p.Remote) {
		remoteEnd = start // a manifest without entries ends at its log start
	}
	total = sumBytes(local)
	for _, s := range local {
		if !s.Sealed || !s.Durable || s.Next > remoteEnd {
			break
		}
		r, ok := pastRetention(s, s.MaxTimestamp, total, c.LocalRetentionMs, c.LocalRetentionBytes, nowMs)
		if !ok {
			break
		}
		if r == ReasonRetentionMs {
			r = ReasonLocalRetentionMs
		} else {
			r = ReasonLocalRetentionBytes
		}
		total -= s.Bytes
		plan.Local = append(plan.Local, Deletion{s, r})
	}
	return plan
}

// pastRetention reports whether a segment with newest timestamp ts (-1:
// none) is past retention in a log of total bytes, and which limit it
// passes (time first).
func pastRetention(s Segment, ts, total, ms, bytes, nowMs int64) (Reason, bool) {
	switch {
	case ms >= 0 && ts >= 0 && nowMs-ts > ms:
		return ReasonRetentionMs, true
	case bytes >= 0 && total-s.Bytes >= bytes:
		return ReasonRetentionBytes, true
	}
	return "", false
}

func sumBytes(segs []Segment) int64 {
	var n int64
	for _, s := range segs {
		n += s.Bytes
	}
	return n
}

// String is the plan as a dry run prints it: the policy, the log start,
// then per tier the segments deleted with their offsets, names, sizes and
// reasons.
func (p RetentionPlan) String() string {
	var b strings.Builder
	kind := "local log"
	if p.Tiered {
		kind = "tiered"
	}
	fmt.Fprintf(&b, "retention plan (%s, cleanup.policy=%s)\n", kind, p.Policy)
	if p.LogStart != p.OldLogStart {
		fmt.Fprintf(&b, "log start: %d -> %d\n", p.OldLogStart, p.LogStart)
	} else {
		fmt.Fprintf(&b, "log start: %d (unchanged)\n", p.LogStart)
	}
	if p.Tiered {
		writeDeletions(&b, "remote", "object", "leave the manifest", p.Remote)
	}
	writeDeletions(&b, "local", "segment", "deleted", p.Local)
	return b.String()
}

func writeDeletions(b *strings.Builder, tier, noun, verb string, dels []Deletion) {
	if len(dels) == 0 {
		fmt.Fprintf(b, "%s: nothing to delete\n", tier)
		return
	}
	segs := make([]Segment, len(dels))
	for i, d := range dels {
		segs[i] = d.Segment
	}
	fmt.Fprintf(b, "%s: %s %s, %s\n", tier, count(len(dels), noun), verb, span(segs))
	for _, d := range dels {
		fmt.Fprintf(b, "  %s  %s  (%s)\n", describeSegment(d.Segment), d.Name(), d.Reason)
	}
}

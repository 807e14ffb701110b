package compactor

import (
	"fmt"
	"strings"
)

// Tier says where a segment lives.
type Tier uint8

const (
	// Local is a segment file of the partition's log on the broker's disk.
	Local Tier = iota
	// Remote is a segment object in the bucket, named by the newest
	// manifest.
	Remote
)

func (t Tier) String() string {
	switch t {
	case Local:
		return "local"
	case Remote:
		return "remote"
	}
	return fmt.Sprintf("Tier(%d)", uint8(t))
}

// Segment is one local segment or one remote segment object, as the plans
// read it.
type Segment struct {
	// Tier is where the segment lives.
	Tier Tier
	// Base and Next bound the offsets the segment covers: [Base, Next).
	Base, Next int64
	// Bytes is the size that retention.bytes, segment.bytes and the dirty
	// ratio count. For a local segment it is what the log counts as its
	// size; for a remote one, the raw size of its record batches before
	// chunk compression (manifest RawSize), so both tiers count alike.
	Bytes int64
	// ObjectBytes is the size of a remote segment's object in the bucket
	// (manifest StoredSize): what merging sizes objects by and what a dry
	// run reports as the bucket's saving. Zero for local segments.
	ObjectBytes int64
	// MaxTimestamp is the largest record timestamp in ms, -1 if none.
	MaxTimestamp int64
	// FirstTimestamp is the first batch's max timestamp in ms, -1 if
	// unknown; max.compaction.lag.ms measures a dirty segment's age by it
	// (by MaxTimestamp when unknown), as Kafka does.
	FirstTimestamp int64
	// CreatedMs is, for a remote segment, when its object was uploaded
	// (Unix ms): time retention falls back to it when MaxTimestamp is -1.
	// Unused for local segments, which are never deleted by time without
	// a timestamp.
	CreatedMs int64
	// Sealed is false for the local active segment (the last one), which is
	// never deleted or compacted. Ignored for remote segments.
	Sealed bool
	// Durable is set for a sealed local segment whose bytes are all synced
	// and whose seal work is done (log SegmentInfo.Durable). Retention
	// deletes and compaction rewrites only durable local segments; the scan
	// stops at the first that is not. Ignored for remote segments.
	Durable bool
	// Key names the segment in a plan's text: the object key of a remote
	// segment, or the file name of a local one (optional; Kafka's
	// 20-digit base-offset name when empty).
	Key string
}

// Name is the segment's name as plans print it.
func (s Segment) Name() string {
	if s.Key != "" || s.Tier == Remote {
		return s.Key
	}
	return fmt.Sprintf("%020d.log", s.Base)
}

// Partition is one partition as the plans read it: both tiers and the
// offsets that bound them.
type Partition struct {
	// Local are the local segments ordered by Base; the last one is the
	// active segment (Sealed false). A local segment wholly below the
	// remote end (Next <= RemoteEnd()) is also in the bucket.
	Local []Segment
	// Remote are the segment objects the newest manifest names, ordered and
	// contiguous (a manifest's entries). Empty for a topic without remote
	// storage.
	Remote []Segment
	// LogStart is the log start offset of the local log (moved by retention
	// and DeleteRecords): offsets below it are gone on both tiers.
	LogStart int64
	// RemoteLogStart is the log start offset the newest manifest records
	// (its EndOffset when it names no segment). Retention publishes a new
	// manifest when it drops entries or moves this forward.
	RemoteLogStart int64
	// HighWatermark is the offset below which every record is committed
	// (the durable offset on a single node). Compaction never rewrites a
	// record at or above it.
	HighWatermark int64
	// CleanerPoint is the first dirty offset of the local log: everything
	// below it was compacted before. The log start when never cleaned; a
	// value below the log start or past the log end is reset to the log
	// start, as Kafka does with a stale checkpoint.
	CleanerPoint int64
	// RemoteCleanerPoint is CleanerPoint for the remote history.
	RemoteCleanerPoint int64
}

// RemoteEnd is the offset after the last remote segment (the manifest's
// EndOffset): RemoteLogStart when there is none.
func (p Partition) RemoteEnd() int64 {
	if n := len(p.Remote); n > 0 {
		return p.Remote[n-1].Next
	}
	return p.RemoteLogStart
}

// CleanupPolicy is the topic's cleanup.policy. The zero value is Kafka's
// default, delete.
type CleanupPolicy uint8

const (
	// Delete removes whole segments past retention.ms or retention.bytes.
	Delete CleanupPolicy = iota
	// Compact keeps the latest record per key and never deletes by time
	// or size (local.retention.* still moves uploaded data off the disk,
	// and DeleteRecords still moves the log start).
	Compact
	// CompactDelete does both: compaction, and deletion past retention.
	CompactDelete
)

// ParseCleanupPolicy parses a cleanup.policy value: "delete", "compact", or
// both separated by a comma in either order.
func ParseCleanupPolicy(v string) (CleanupPolicy, error) {
	var del, compact bool
	for _, p := range strings.Split(v, ",") {
		switch strings.TrimSpace(p) {
		case "delete":
			del = true
		case "compact":
			compact = true
		default:
			return Delete, fmt.Errorf("compactor: cleanup.policy %q: must be a list of delete, compact", v)
		}
	}
	switch {
	case del && compact:
		return CompactDelete, nil
	case compact:
		return Compact, nil
	}
	return Delete, nil
}

// Deletes reports whether retention.ms and retention.bytes delete data.
func (c CleanupPolicy) Deletes() bool { return c == Delete || c == CompactDelete }

// Compacts reports whether the log is key-compacted.
func (c CleanupPolicy) Compacts() bool { return c == Compact || c == CompactDelete }

func (c CleanupPolicy) String() string {
	switch c {
	case Delete:
		return "delete"
	case Compact:
		return "compact"
	case CompactDelete:
		return "compact,delete"
	}
	return fmt.Sprintf("CleanupPolicy(%d)", uint8(c))
}

// Config holds a topic's settings with Kafka's names and meanings. The zero
// value is not Kafka's default (RetentionMs 0 deletes every sealed
// segment): callers fill every field from the resolved topic config.
type Config struct {
	// CleanupPolicy is cleanup.policy.
	CleanupPolicy CleanupPolicy
	// RetentionMs is retention.ms: a segment whose newest record is more
	// than this older than now is deleted. Negative: unlimited.
	RetentionMs int64
	// RetentionBytes is retention.bytes: the oldest segments are deleted
	// while the log without them still holds at least this much. For a
	// tiered topic it bounds the whole log (remote segments and local
	// data above the remote end). Negative: unlimited.
	RetentionBytes int64
	// LocalRetentionMs and LocalRetentionBytes are local.retention.ms and
	// local.retention.bytes, already resolved (-2 replaced by the total
	// retention). They bound the local tier of a tiered topic, which only
	// ever deletes segments already in the bucket. Negative: unlimited.
	// Ignored without RemoteStorage.
	LocalRetentionMs, LocalRetentionBytes int64
	// RemoteStorage is remote.storage.enable.
	RemoteStorage bool
	// SegmentBytes is segment.bytes: compaction groups adjacent segments
	// into output segments of at most this many bytes. Zero or negative:
	// no limit.
	SegmentBytes int64
	// MinCleanableDirtyRatio is min.cleanable.dirty.ratio: a log is
	// compacted when its dirty ratio is above it.
	MinCleanableDirtyRatio float64
	// MinCompactionLagMs is min.compaction.lag.ms: a segment holding a
	// record younger than this is not compacted yet, nor anything after it.
	MinCompactionLagMs int64
	// MaxCompactionLagMs is max.compaction.lag.ms: a log with a dirty
	// record older than this is compacted whatever its dirty ratio. Zero
	// or negative: no limit (Kafka's default, the largest long, is none in
	// practice too).
	MaxCompactionLagMs int64
	// DeleteRetentionMs is delete.retention.ms: how long tombstones (and
	// transaction markers) stay readable on a compacted log.
	DeleteRetentionMs int64
	// MergeTargetBytes is the size of object merging aims for (PlanMerge).
	MergeTargetBytes int64
}

// Package topicconfig defines the topic-level configuration Strata accepts,
// with Kafka's names, types, defaults and validation rules, and a typed view
// of a topic's effective configuration.
//
// It owns no state: callers keep a topic's overrides (a map of name to value)
// and ask this package to validate them or resolve them against the defaults.
package topicconfig

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
)

// Type is a config's value type, as DescribeConfigs v3+ reports it.
type Type int8

// Config types with Kafka's numbering (DescribeConfigsResponse ConfigType).
const (
	TypeBoolean Type = 1
	TypeString  Type = 2
	TypeInt     Type = 3
	TypeLong    Type = 5
	TypeDouble  Type = 6
	TypeList    Type = 7
)

// Def describes one topic config.
type Def struct {
	Name    string
	Type    Type
	Default string
	Doc     string
	// check validates a parsed, well-typed value; nil accepts everything.
	check func(v string) error
}

const maxLong = math.MaxInt64

var defs = map[string]*Def{}

func def(name string, typ Type, dflt string, doc string, check func(string) error) {
	defs[name] = &Def{Name: name, Type: typ, Default: dflt, Doc: doc, check: check}
}

func atLeast(min int64) func(string) error {
	return func(v string) error {
		n, _ := strconv.ParseInt(v, 10, 64)
		if n < min {
			return fmt.Errorf("must be at least %d", min)
		}
		return nil
	}
}

func oneOf(vals ...string) func(string) error {
	return func(v string) error {
		for _, ok := range vals {
			if v == ok {
				return nil
			}
		}
		return fmt.Errorf("must be one of %s", strings.Join(vals, ", "))
	}
}

func between(lo, hi float64) func(string) error {
	return func(v string) error {
		f, _ := strconv.ParseFloat(v, 64)
		if f < lo || f > hi {
			return fmt.Errorf("must be between %v and %v", lo, hi)
		}
		return nil
	}
}

// Names of the configs the broker reads directly.
const (
	CleanupPolicy             = "cleanup.policy"
	CompressionType           = "compression.type"
	RetentionMs               = "retention.ms"
	RetentionBytes            = "retention.bytes"
	LocalRetentionMs          = "local.retention.ms"
	LocalRetentionBytes       = "local.retention.bytes"
	RemoteStorageEnable       = "remote.storage.enable"
	SegmentBytes              = "segment.bytes"
	SegmentMs                 = "segment.ms"
	IndexIntervalBytes        = "index.interval.bytes"
	MaxMessageBytes           = "max.message.bytes"
	MessageTimestampType      = "message.timestamp.type"
	TimestampBeforeMaxMs      = "message.timestamp.before.max.ms"
	TimestampAfterMaxMs       = "message.timestamp.after.max.ms"
	FlushMessages             = "flush.messages"
	FlushMs                   = "flush.ms"
	MinInsyncReplicas         = "min.insync.replicas"
	UncleanLeaderElection     = "unclean.leader.election.enable"
	DeleteRetentionMs         = "delete.retention.ms"
	MinCleanableDirtyRatio    = "min.cleanable.dirty.ratio"
	MinCompactionLagMs        = "min.compaction.lag.ms"
	MaxCompactionLagMs        = "max.compaction.lag.ms"
	SegmentIndexBytes         = "segment.index.bytes"
	SegmentJitterMs           = "segment.jitter.ms"
	FileDeleteDelayMs         = "file.delete.delay.ms"
	Preallocate               = "preallocate"
	MessageTimestampDiffMaxMs = "message.timestamp.difference.max.ms"
)

func init() {
	maxL := strconv.FormatInt(maxLong, 10)
	def(CleanupPolicy, TypeList, "delete", "Retention policy for old segments: delete, compact, or both (compact,delete). Compacted topics refuse records without a key.", checkCleanupPolicy)
	def(CompressionType, TypeString, "producer", "Compression codec stored on disk; producer keeps what the producer sent.",
		oneOf("producer", "uncompressed", "gzip", "snappy", "lz4", "zstd"))
	def(RetentionMs, TypeLong, "604800000", "How long to keep a record across both tiers; -1 keeps forever.", atLeast(-1))
	def(RetentionBytes, TypeLong, "-1", "Maximum partition size across both tiers before old segments are deleted; -1 is unlimited.", atLeast(-1))
	def(LocalRetentionMs, TypeLong, "-2", "How long to keep a record on local disk when tiering is on; -2 means retention.ms.", atLeast(-2))
	def(LocalRetentionBytes, TypeLong, "-2", "Maximum local partition size when tiering is on; -2 means retention.bytes.", atLeast(-2))
	def(RemoteStorageEnable, TypeBoolean, "false", "Upload sealed segments to object storage.", nil)
	def(SegmentBytes, TypeInt, "1073741824", "Segment file size at which the active segment rolls.", atLeast(1024))
	def(SegmentMs, TypeLong, "604800000", "Age at which the active segment rolls.", atLeast(1))
	def(IndexIntervalBytes, TypeInt, "4096", "Bytes between sparse offset/time index entries.", atLeast(0))
	def(MaxMessageBytes, TypeInt, "1048588", "Largest record batch the topic accepts.", atLeast(0))
	def(MessageTimestampType, TypeString, "CreateTime", "CreateTime keeps the producer's timestamps; LogAppendTime stamps batches on append.",
		oneOf("CreateTime", "LogAppendTime"))
	def(TimestampBeforeMaxMs, TypeLong, maxL, "How far in the past a CreateTime timestamp may be.", atLeast(0))
	def(TimestampAfterMaxMs, TypeLong, "3600000", "How far in the future a CreateTime timestamp may be.", atLeast(0))
	def(MessageTimestampDiffMaxMs, TypeLong, maxL, "Deprecated: use message.timestamp.before.max.ms and message.timestamp.after.max.ms.", atLeast(0))
	def(FlushMessages, TypeLong, maxL, "Force an extra fsync after this many unsynced records (durability never depends on it).", atLeast(1))
	def(FlushMs, TypeLong, maxL, "Force an extra fsync when unsynced data is this old.", atLeast(0))
	def(MinInsyncReplicas, TypeInt, "1", "Replicas that must have a write for acks=all to succeed.", atLeast(1))
	def(UncleanLeaderElection, TypeBoolean, "false", "Allow a replica outside the ISR to become leader when no in-sync replica can (acknowledged records may be lost); refused on tiered topics.", nil)
	def(DeleteRetentionMs, TypeLong, "86400000", "How long tombstones are kept on compacted topics.", atLeast(0))
	def(MinCleanableDirtyRatio, TypeDouble, "0.5", "Dirty ratio at which a compacted log is cleaned.", between(0, 1))
	def(MinCompactionLagMs, TypeLong, "0", "Minimum age of a record before it can be compacted.", atLeast(0))
	def(MaxCompactionLagMs, TypeLong, maxL, "Maximum age of a record before it must be compacted.", atLeast(1))
	def(SegmentIndexBytes, TypeInt, "10485760", "Accepted for compatibility; Strata sizes its sparse indexes itself.", atLeast(4))
	def(SegmentJitterMs, TypeLong, "0", "Accepted for compatibility; segment rolls are not jittered.", atLeast(0))
	def(FileDeleteDelayMs, TypeLong, "60000", "Accepted for compatibility; deleted segments are removed at once.", atLeast(0))
	def(Preallocate, TypeBoolean, "false", "Accepted for compatibility; segments are not preallocated.", nil)
}

func checkCleanupPolicy(v string) error {
	for _, p := range strings.Split(v, ",") {
		switch strings.TrimSpace(p) {
		case "delete", "compact":
		default:
			return fmt.Errorf("must be a list of delete, compact")
		}
	}
	return nil
}

// Compacted reports whether a cleanup.policy value contains compact: the
// topic's records must have keys, and its log is compacted.
func Compacted(policy string) bool { return hasPolicy(policy, "compact") }

func hasPolicy(policy, want string) bool {
	for _, p := range strings.Split(policy, ",") {
		if strings.TrimSpace(p) == want {
			return true
		}
	}
	return false
}

// Lookup returns the definition of a topic config, or nil if unknown.
func Lookup(name string) *Def { return defs[name] }

// Names returns every known topic config name, sorted.
func Names() []string {
	out := make([]string, 0, len(defs))
	for n := range defs {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Error is a validation failure naming the config. Kafka answers it with
// INVALID_CONFIG (40).
type Error struct {
	Name, Value, Reason string
}

func (e *Error) Error() string {
	return fmt.Sprintf("invalid value %q for configuration %s: %s", e.Value, e.Name, e.Reason)
}

// ValidateOne checks a single name/value pair.
func ValidateOne(name, value string) error {
	d := defs[name]
	if d == nil {
		return &Error{Name: name, Value: value, Reason: "unknown topic configuration"}
	}
	if err := checkType(d.Type, value); err != nil {
		return &Error{Name: name, Value: value, Reason: err.Error()}
	}
	if d.check != nil {
		if err := d.check(value); err != nil {
			return &Error{Name: name, Value: value, Reason: err.Error()}
		}
	}
	return nil
}

func checkType(t Type, v string) error {
	switch t {
	case TypeBoolean:
		if v != "true" && v != "false" {
			return fmt.Errorf("must be true or false")
		}
	case TypeInt:
		if _, err := strconv.ParseInt(v, 10, 32); err != nil {
			return fmt.Errorf("must be a 32-bit integer")
		}
	case TypeLong:
		if _, err := strconv.ParseInt(v, 10, 64); err != nil {
			return fmt.Errorf("must be a 64-bit integer")
		}
	case TypeDouble:
		if _, err := strconv.ParseFloat(v, 64); err != nil {
			return fmt.Errorf("must be a number")
		}
	}
	return nil
}

// Options describe what the broker supports, for Validate.
type Options struct {
	// Tiering is true when the broker has an object store configured.
	Tiering bool
}

// Validate checks a full set of overrides: each value, then the rules that
// tie configs together.
func Validate(overrides map[string]string, opts Options) error {
	names := make([]string, 0, len(overrides))
	for n := range overrides {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := ValidateOne(n, overrides[n]); err != nil {
			return err
		}
	}
	c := Resolve(overrides)
	if c.RemoteStorage && c.UncleanLeaderElection {
		// Checked on the whole set, so it holds whichever of the two was
		// set first. An out-of-sync leader would publish a history that
		// diverges from what the bucket already holds.
		return &Error{Name: UncleanLeaderElection, Value: "true", Reason: "cannot be enabled on a tiered topic (remote.storage.enable=true)"}
	}
	if !c.RemoteStorage {
		// As in Kafka, local.* values are accepted but inert without tiering.
		return nil
	}
	if !opts.Tiering {
		return &Error{Name: RemoteStorageEnable, Value: "true", Reason: "tiered storage is not enabled on this broker (start it with an object store)"}
	}
	// A finite total bounds the local tier: local must be finite and no
	// larger (Kafka's rule).
	if c.RetentionMs >= 0 && (c.LocalRetentionMs < 0 || c.LocalRetentionMs > c.RetentionMs) {
		return &Error{Name: LocalRetentionMs, Value: overrides[LocalRetentionMs], Reason: "must not exceed retention.ms, nor be -1 while retention.ms is finite"}
	}
	if c.RetentionBytes >= 0 && (c.LocalRetentionBytes < 0 || c.LocalRetentionBytes > c.RetentionBytes) {
		return &Error{Name: LocalRetentionBytes, Value: overrides[LocalRetentionBytes], Reason: "must not exceed retention.bytes, nor be -1 while retention.bytes is finite"}
	}
	return nil
}

// Value returns the effective value of name and whether it was overridden.
func Value(overrides map[string]string, name string) (string, bool) {
	if v, ok := overrides[name]; ok {
		return v, true
	}
	if d := defs[name]; d != nil {
		return d.Default, false
	}
	return "", false
}

// Config is the typed, effective configuration of a topic.
type Config struct {
	CleanupPolicy        string
	CompressionType      string
	RetentionMs          int64
	RetentionBytes       int64
	LocalRetentionMs     int64 // resolved: -2 replaced by RetentionMs
	LocalRetentionBytes  int64 // resolved: -2 replaced by RetentionBytes
	RemoteStorage        bool
	SegmentBytes         int64
	SegmentMs            int64
	IndexIntervalBytes   int
	MaxMessageBytes      int32
	LogAppendTime        bool
	TimestampBeforeMaxMs int64
	TimestampAfterMaxMs  int64
	FlushMessages        int64
	FlushMs              int64
	MinInsyncReplicas    int32
	// UncleanLeaderElection lets the controller elect a replica outside
	// the ISR when no in-sync one can lead (never on a tiered topic).
	UncleanLeaderElection bool
	// Compaction (cleanup.policy containing compact).
	MinCleanableDirtyRatio float64
	MinCompactionLagMs     int64
	MaxCompactionLagMs     int64
	DeleteRetentionMs      int64
}

// Resolve returns the effective typed configuration. Overrides must have
// passed Validate; unparsable values fall back to the default.
func Resolve(overrides map[string]string) Config {
	str := func(n string) string { v, _ := Value(overrides, n); return v }
	num := func(n string) int64 {
		v, err := strconv.ParseInt(str(n), 10, 64)
		if err != nil {
			v, _ = strconv.ParseInt(defs[n].Default, 10, 64)
		}
		return v
	}
	c := Config{
		CleanupPolicy:         str(CleanupPolicy),
		CompressionType:       str(CompressionType),
		RetentionMs:           num(RetentionMs),
		RetentionBytes:        num(RetentionBytes),
		LocalRetentionMs:      num(LocalRetentionMs),
		LocalRetentionBytes:   num(LocalRetentionBytes),
		RemoteStorage:         str(RemoteStorageEnable) == "true",
		SegmentBytes:          num(SegmentBytes),
		SegmentMs:             num(SegmentMs),
		IndexIntervalBytes:    int(num(IndexIntervalBytes)),
		MaxMessageBytes:       int32(num(MaxMessageBytes)),
		LogAppendTime:         str(MessageTimestampType) == "LogAppendTime",
		TimestampBeforeMaxMs:  num(TimestampBeforeMaxMs),
		TimestampAfterMaxMs:   num(TimestampAfterMaxMs),
		FlushMessages:         num(FlushMessages),
		FlushMs:               num(FlushMs),
		MinInsyncReplicas:     int32(num(MinInsyncReplicas)),
		UncleanLeaderElection: str(UncleanLeaderElection) == "true",
		MinCompactionLagMs:    num(MinCompactionLagMs),
		MaxCompactionLagMs:    num(MaxCompactionLagMs),
		DeleteRetentionMs:     num(DeleteRetentionMs),
	}
	var err error
	if c.MinCleanableDirtyRatio, err = strconv.ParseFloat(str(MinCleanableDirtyRatio), 64); err != nil {
		c.MinCleanableDirtyRatio, _ = strconv.ParseFloat(defs[MinCleanableDirtyRatio].Default, 64)
	}
	if _, ok := overrides[TimestampBeforeMaxMs]; !ok {
		if v, ok := overrides[MessageTimestampDiffMaxMs]; ok {
			c.TimestampBeforeMaxMs, _ = strconv.ParseInt(v, 10, 64)
		}
	}
	if c.LocalRetentionMs == -2 {
		c.LocalRetentionMs = c.RetentionMs
	}
	if c.LocalRetentionBytes == -2 {
		c.LocalRetentionBytes = c.RetentionBytes
	}
	return c
}

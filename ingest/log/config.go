package log

import (
	"log/slog"
	"math"
	"time"

	"github.com/strata-io/strata/ingest/log/vfs"
)

// Config holds the per-topic settings of a log. It may change at runtime via
// (*Log).SetConfig. Zero fields take the defaults below.
type Config struct {
	SegmentBytes           int64 // segment.bytes (default 1 GiB, at most 2 GiB)
	SegmentMs              int64 // segment.ms (default 7 days), age since the segment's first append
	IndexIntervalBytes     int   // index.interval.bytes (default 4096)
	FlushMessages          int64 // flush.messages: force a synchronous sync after this many unsynced records (0 or MaxInt64: never extra)
	FlushMs                int64 // flush.ms: force a synchronous sync when the oldest unsynced append is this old (0 or MaxInt64: never extra)
	ProducerIDExpirationMs int64 // producer.id.expiration.ms (default 86400000)
	MinFreeBytes           int64 // broker-wide free-space headroom; Append returns ErrDiskFull below it (0: no check)
}

const (
	defaultSegmentBytes   = 1 << 30
	maxSegmentBytes       = math.MaxInt32 // positions are u32 in the index; keep a margin
	defaultSegmentMs      = 7 * 24 * 3600 * 1000
	defaultIndexInterval  = 4096
	defaultProducerExpiry = 86400000
	spaceCheckBytes       = 4 << 20 // check free space at least every this many appended bytes
)

func (c Config) withDefaults() Config {
	if c.SegmentBytes <= 0 {
		c.SegmentBytes = defaultSegmentBytes
	}
	c.SegmentBytes = min(c.SegmentBytes, maxSegmentBytes)
	if c.SegmentMs <= 0 {
		c.SegmentMs = defaultSegmentMs
	}
	if c.IndexIntervalBytes <= 0 {
		c.IndexIntervalBytes = defaultIndexInterval
	}
	if c.FlushMessages <= 0 {
		c.FlushMessages = math.MaxInt64
	}
	if c.FlushMs <= 0 {
		c.FlushMs = math.MaxInt64
	}
	if c.ProducerIDExpirationMs <= 0 {
		c.ProducerIDExpirationMs = defaultProducerExpiry
	}
	return c
}

// Options are the process-wide dependencies of a log.
type Options struct {
	FS     vfs.FS     // default vfs.Default
	Syncer *Syncer    // shared group-commit pool; default: a private one-worker Syncer closed with the log
	Files  *FileCache // shared descriptor cache for sealed segments; default: a private cache of 8
	Logger *slog.Logger
	Now    func() time.Time
	// OnDurable is called, serially, each time the durable offset advances,
	// with the new DurableOffset. It must not block and must not call back
	// into the log's Append.
	OnDurable func(durable int64)
}

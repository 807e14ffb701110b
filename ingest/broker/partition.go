package broker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/strata-io/strata/index"
	"github.com/strata-io/strata/ingest/batch"
	"github.com/strata-io/strata/ingest/cluster"
	plog "github.com/strata-io/strata/ingest/log"
	"github.com/strata-io/strata/ingest/topicconfig"
	"github.com/strata-io/strata/tier"
)

// Partition is one partition this broker leads.
type Partition struct {
	Topic   string
	TopicID cluster.TopicID
	Index   int32

	log *plog.Log
	tp  atomic.Pointer[tier.Partition] // set when the topic is tiered
	// state is the partition's metadata: leader, epochs, replicas, ISR.
	state atomic.Pointer[cluster.Partition]
	// rep is the replication state (replication.go).
	rep replication
	// needsTier is set for tiered topics from the first attempt to open
	// the tier; with no tier attached yet, an empty log refuses writes.
	needsTier atomic.Bool
	// tierMu serialises opening and reopening the tier; attaching is set
	// while a background attach runs.
	tierMu    sync.Mutex
	attaching atomic.Bool

	mu struct {
		sync.Mutex
		cfg     topicconfig.Config
		waiters map[*Waiter]struct{}
	}
}

func newPartition(topic string, id cluster.TopicID, idx int32, cfg topicconfig.Config) *Partition {
	p := &Partition{Topic: topic, TopicID: id, Index: idx}
	p.mu.cfg = cfg
	p.mu.waiters = map[*Waiter]struct{}{}
	return p
}

// Config returns the partition's effective topic configuration.
func (p *Partition) Config() topicconfig.Config {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mu.cfg
}

func (p *Partition) setConfig(c topicconfig.Config, lc plog.Config) {
	p.mu.Lock()
	p.mu.cfg = c
	p.mu.Unlock()
	p.log.SetConfig(lc)
}

func (p *Partition) tiered() *tier.Partition { return p.tp.Load() }

func (p *Partition) setTiered(tp *tier.Partition) { p.tp.Store(tp) }

// Tier returns the partition's tier, nil unless the topic is tiered.
func (p *Partition) Tier() *tier.Partition { return p.tiered() }

// LeaderEpoch is the partition's current leader epoch (from the metadata
// quorum; it grows with every change of leader, including a restart).
func (p *Partition) LeaderEpoch() int32 {
	if st := p.state.Load(); st != nil {
		return st.LeaderEpoch
	}
	return 0
}

// LogStartOffset is the first offset still in the log.
func (p *Partition) LogStartOffset() int64 { return p.log.StartOffset() }

// LocalStartOffset is the first offset on local disk (KIP-1005's
// earliest-local).
func (p *Partition) LocalStartOffset() int64 { return p.log.LocalStartOffset() }

// LatestTieredOffset is the last offset in the bucket, -1 if none
// (KIP-1005's latest-tiered).
func (p *Partition) LatestTieredOffset() int64 {
	tp := p.tiered()
	if tp == nil || len(tp.Manifest().Entries) == 0 {
		return -1
	}
	return tp.RemoteEndOffset() - 1
}

// LogEndOffset is the offset the next appended record gets.
func (p *Partition) LogEndOffset() int64 { return p.log.EndOffset() }

// Size is the partition's size on local disk.
func (p *Partition) Size() int64 { return p.log.Size() }

// Log exposes the partition log for inspection in tests and tools.
func (p *Partition) Log() *plog.Log { return p.log }

// ProduceResult is the outcome of a successful append.
type ProduceResult struct {
	BaseOffset     int64
	LastOffset     int64
	LogAppendTime  int64 // -1 unless the topic uses LogAppendTime
	LogStartOffset int64
}

var codecByName = map[string]int{
	"uncompressed": batch.CodecNone,
	"gzip":         batch.CodecGzip,
	"snappy":       batch.CodecSnappy,
	"lz4":          batch.CodecLZ4,
	"zstd":         batch.CodecZstd,
}

// Produce validates records (the batch of one partition from a produce
// request), applies the topic's timestamp and compression settings and
// appends them. records is modified in place. allowZstd is false for
// requests older than Produce v7. The result is not yet durable: callers
// that need acks=-1 wait with WaitDurable.
func (p *Partition) Produce(records []byte, allowZstd bool) (ProduceResult, error) {
	return p.produce(records, allowZstd, plog.AppendInfo{})
}

// produce is Produce with the log's append options (a coordinator's
// appends on a producer's behalf skip sequence checks).
func (p *Partition) produce(records []byte, allowZstd bool, info plog.AppendInfo) (ProduceResult, error) {
	if p.needsTier.Load() && p.tiered() == nil && p.log.EndOffset() == p.log.LocalStartOffset() {
		return ProduceResult{}, fmt.Errorf("%w: %s-%d: the tier is not open yet, so the offset to continue from is unknown", ErrRemoteStorage, p.Topic, p.Index)
	}
	c := p.Config()
	now := time.Now().UnixMilli()
	opts := batch.ValidateOptions{
		MaxMessageBytes: int(c.MaxMessageBytes),
		TimestampType:   batch.CreateTime,
		NowMs:           now,
		BeforeMaxMs:     c.TimestampBeforeMaxMs,
		AfterMaxMs:      c.TimestampAfterMaxMs,
		SingleBatch:     true,
		DisallowZstd:    !allowZstd,
		RequireKeys:     topicconfig.Compacted(c.CleanupPolicy),
	}
	if c.LogAppendTime {
		opts.TimestampType = batch.LogAppendTime
	}
	if _, err := batch.Validate(records, opts); err != nil {
		return ProduceResult{}, fmt.Errorf("%s-%d: %w", p.Topic, p.Index, err)
	}
	if codec, ok := codecByName[c.CompressionType]; ok {
		var err error
		if records, err = recompressAll(records, codec); err != nil {
			return ProduceResult{}, fmt.Errorf("%s-%d: recompress: %w", p.Topic, p.Index, err)
		}
	}
	res := ProduceResult{LogAppendTime: -1}
	if c.LogAppendTime {
		batch.SetLogAppendTime(records, now)
		res.LogAppendTime = now
	}
	ar, err := p.appendAsLeader(records, info)
	if err != nil {
		return ProduceResult{}, err
	}
	res.BaseOffset, res.LastOffset, res.LogStartOffset = ar.BaseOffset, ar.LastOffset, ar.LogStartOffset
	return res, nil
}

// appendAsLeader appends records (validated) at the current leader epoch.
// The role check and the append happen under the role lock, so a change of
// leader (applyState) waits for appends in progress and no append lands
// after this broker stopped leading or with an old epoch.
func (p *Partition) appendAsLeader(records []byte, info plog.AppendInfo) (plog.AppendResult, error) {
	p.rep.roleMu.RLock()
	defer p.rep.roleMu.RUnlock()
	p.rep.mu.Lock()
	leading := p.rep.leading
	p.rep.mu.Unlock()
	if !leading {
		return plog.AppendResult{}, fmt.Errorf("%w: %s-%d", ErrNotLeader, p.Topic, p.Index)
	}
	info.LeaderEpoch = p.LeaderEpoch()
	return p.log.Append(records, info)
}

// WriteMarker appends a transaction marker (commit or abort) of producer
// pid at epoch and returns its offset; callers that answer only once it is
// durable wait with WaitDurable(offset). A marker of an older producer
// epoch, or from an older transaction coordinator, is refused (the errors
// carry the Kafka code).
func (p *Partition) WriteMarker(pid int64, epoch int16, m batch.Marker) (int64, error) {
	b := batch.AppendMarker(nil, batch.MarkerOptions{
		ProducerID: pid, ProducerEpoch: epoch, TimestampMs: time.Now().UnixMilli(), Marker: m,
	})
	ar, err := p.appendAsLeader(b, plog.AppendInfo{})
	if err != nil {
		return 0, fmt.Errorf("%s-%d: marker of producer %d: %w", p.Topic, p.Index, pid, err)
	}
	return ar.LastOffset, nil
}

// recompressAll rewrites every batch whose codec differs from codec.
func recompressAll(records []byte, codec int) ([]byte, error) {
	var out []byte
	changed := false
	for rest := records; len(rest) > 0; {
		h, err := batch.ParseHeader(rest)
		if err != nil {
			return nil, err
		}
		one := rest[:h.Size()]
		rest = rest[h.Size():]
		if h.Codec() != codec {
			if one, err = batch.Recompress(one, codec); err != nil {
				return nil, err
			}
			changed = true
		}
		out = append(out, one...)
	}
	if !changed {
		return records, nil
	}
	return out, nil
}

// ErrRemoteRead is returned by Read when the offset lies in the bucket and
// the caller did not allow remote reads (it must not block).
var ErrRemoteRead = errors.New("offset is only in the remote tier")

// Read returns whole batches starting with the one holding offset, at most
// maxBytes (but always one batch), below the high watermark. It returns no
// data when offset is at or above the high watermark but within the log.
// Offsets below the local log start of a tiered partition are read from the
// bucket when remote is set, else ErrRemoteRead is returned.
func (p *Partition) Read(ctx context.Context, offset int64, maxBytes int, remote bool) ([]byte, error) {
	return p.ReadIsolated(ctx, offset, maxBytes, remote, false)
}

// ReadIsolated is Read for either isolation level: with committed
// (read_committed) it stops at the last stable offset instead of the high
// watermark. The bucket holds only offsets below the last stable offset.
func (p *Partition) ReadIsolated(ctx context.Context, offset int64, maxBytes int, remote, committed bool) ([]byte, error) {
	hw := p.HighWatermark()
	if committed {
		hw = p.LastStableOffset()
	}
	if offset >= hw && offset <= p.log.EndOffset() {
		return nil, nil
	}
	data, err := p.log.Read(offset, maxBytes, hw)
	if !errors.Is(err, plog.ErrBelowLocalStart) {
		return data, err
	}
	tp := p.tiered()
	if tp == nil {
		if p.needsTier.Load() {
			// History is in the bucket, whose tier is not open yet: a
			// retriable error, never OFFSET_OUT_OF_RANGE (which would make
			// consumers reset).
			return nil, fmt.Errorf("%w: %s-%d: the tier is not open yet", ErrRemoteStorage, p.Topic, p.Index)
		}
		return data, err
	}
	if !remote {
		return nil, ErrRemoteRead
	}
	data, err = tp.Read(ctx, offset, maxBytes)
	if err != nil && !errors.Is(err, plog.ErrOffsetOutOfRange) {
		return nil, fmt.Errorf("%w: %w", ErrRemoteStorage, err)
	}
	return data, err
}

// AbortedTxns lists the aborted transactions overlapping [from, upTo) for
// a read_committed fetch of those offsets, ordered by first offset.
// A range below the local log start (a read served from the bucket, which
// never crosses the remote end) is answered from the segment footers, the
// rest from the local log: one list per fetch, never both, so a
// transaction crossing the remote end is not listed twice.
func (p *Partition) AbortedTxns(ctx context.Context, from, upTo int64) ([]index.AbortedTxn, error) {
	tp := p.tiered()
	if tp != nil && from < p.log.LocalStartOffset() {
		a, err := tp.AbortedTxns(ctx, from, upTo)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrRemoteStorage, err)
		}
		return a, nil
	}
	a, err := p.log.AbortedTxns(from, upTo)
	if err != nil {
		return nil, err
	}
	if tp != nil && from < p.log.LocalStartOffset() {
		// Local deletion removed the segments meanwhile (their entries
		// with them): the bucket has them now.
		return p.AbortedTxns(ctx, from, upTo)
	}
	return a, nil
}

// ErrRemoteStorage wraps failures of the object store on the read path; the
// wire layer answers KAFKA_STORAGE_ERROR, which clients retry.
var ErrRemoteStorage = errors.New("remote storage read failed")

// DeleteRecords moves the log start offset to offset (-1: the high
// watermark) and returns the new low watermark.
func (p *Partition) DeleteRecords(offset int64) (int64, error) {
	hw := p.HighWatermark()
	if offset == -1 {
		offset = hw
	}
	if offset < 0 || offset > hw {
		return 0, fmt.Errorf("%w: %d is outside [0, %d]", plog.ErrOffsetOutOfRange, offset, hw)
	}
	if offset > p.log.StartOffset() {
		if err := p.log.SetStartOffset(offset); err != nil {
			return 0, err
		}
	}
	return p.log.StartOffset(), nil
}

// OffsetForTimestamp returns the first offset whose timestamp is at or after
// ts, among durable records, looking in the bucket first for tiered
// partitions (it may do remote I/O).
func (p *Partition) OffsetForTimestamp(ctx context.Context, ts int64) (offset, timestamp int64, found bool, err error) {
	if tp := p.tiered(); tp != nil {
		off, t, ok, err := tp.OffsetForTimestamp(ctx, ts)
		if err != nil || ok {
			return off, t, ok, err
		}
	}
	off, t, ok, err := p.log.OffsetForTimestamp(ts)
	if err != nil || !ok || off >= p.HighWatermark() {
		return -1, -1, false, err
	}
	return off, t, true, nil
}

// MaxTimestamp returns the offset and timestamp of the record with the
// largest timestamp, across both tiers (it may do remote I/O).
func (p *Partition) MaxTimestamp(ctx context.Context) (offset, ts int64, err error) {
	off, ts, err := p.log.MaxTimestamp()
	if tp := p.tiered(); tp != nil && err == nil {
		roff, rts, rerr := tp.MaxTimestamp(ctx)
		if rerr != nil {
			return -1, -1, rerr
		}
		if rts > ts {
			return roff, rts, nil
		}
	}
	return off, ts, err
}

// EndOffsetForEpoch answers OffsetForLeaderEpoch.
func (p *Partition) EndOffsetForEpoch(epoch int32) (int32, int64) {
	return p.log.EndOffsetForEpoch(epoch)
}

// Waiter is woken when any partition it is registered with gets new
// durable data. Used by fetch long polling.
type Waiter struct{ C chan struct{} }

// NewWaiter returns a waiter with a one-slot channel.
func NewWaiter() *Waiter { return &Waiter{C: make(chan struct{}, 1)} }

// AddWaiter registers w until RemoveWaiter.
func (p *Partition) AddWaiter(w *Waiter) {
	p.mu.Lock()
	p.mu.waiters[w] = struct{}{}
	p.mu.Unlock()
}

// RemoveWaiter unregisters w.
func (p *Partition) RemoveWaiter(w *Waiter) {
	p.mu.Lock()
	delete(p.mu.waiters, w)
	p.mu.Unlock()
}

// onDurable runs on the log's syncer; it must not block.
func (p *Partition) onDurable(int64) {
	p.wakeWaiters()
	// A leader alone in its ISR commits what is durable; followers are
	// woken to fetch it.
	p.recomputeHW()
}

// wakeWaiters wakes fetch long polls.
func (p *Partition) wakeWaiters() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for w := range p.mu.waiters {
		select {
		case w.C <- struct{}{}:
		default:
		}
	}
}

// close wakes every waiter so that long polls end promptly, and waiters
// for the high watermark.
func (p *Partition) close() {
	p.wakeWaiters()
	p.rep.mu.Lock()
	p.rep.leading = false
	p.rep.signalLocked()
	p.rep.mu.Unlock()
}

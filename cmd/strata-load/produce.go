package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"math"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

const (
	// deliveryTimeout bounds how long kgo retries a record before failing it,
	// so a stalled broker shows up as errors rather than a hang.
	deliveryTimeout = 30 * time.Second
	// phaseGrace is added to -duration to bound a phase's flush.
	phaseGrace = 60 * time.Second
)

// ackMode is the producer's acknowledgement setting.
type ackMode int

const (
	acksAll    ackMode = iota // acks=-1, idempotent (kgo's default)
	acksLeader                // acks=1, idempotence disabled
)

// String names the mode as it appears in the report.
func (m ackMode) String() string {
	if m == acksLeader {
		return "acks=1"
	}
	return "acks=-1 idempotent"
}

// opts returns the kgo options selecting the mode.
func (m ackMode) opts() []kgo.Opt {
	if m == acksLeader {
		return []kgo.Opt{kgo.RequiredAcks(kgo.LeaderAck()), kgo.DisableIdempotentWrite()}
	}
	return nil // kgo's defaults: acks=all, idempotent writes
}

// produceSpec describes one produce phase.
type produceSpec struct {
	topic      string
	acks       ackMode
	recordSize int
	duration   time.Duration
	maxRecords int64   // 0: bounded by duration only
	rate       float64 // records per second; 0 produces as fast as possible
	// hooks are added to the client (none: no hooks).
	hooks []kgo.Hook
	// started, if set, is called after the warm-up record, just before the
	// clock starts.
	started func()
}

// produceStats is the outcome of a produce phase.
type produceStats struct {
	records   int64 // acknowledged records
	bytes     int64 // acknowledged value bytes
	failed    int64
	elapsed   time.Duration   // first Produce call to the end of the flush
	latencies []time.Duration // per acknowledged record, rate-limited phases only
}

// mbps returns the acknowledged throughput in MB/s (10^6 bytes).
func (s produceStats) mbps() float64 { return rate(float64(s.bytes)/1e6, s.elapsed) }

// recps returns the acknowledged records per second.
func (s produceStats) recps() float64 { return rate(float64(s.records), s.elapsed) }

// rate divides n by d in seconds, returning 0 for an empty interval.
func rate(n float64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return n / d.Seconds()
}

// collector accumulates produce callbacks.
type collector struct {
	records, bytes, failed atomic.Int64

	mu        sync.Mutex
	firstErr  error
	latencies []time.Duration
}

// done is the kgo promise for records whose latency is not tracked.
func (c *collector) done(r *kgo.Record, err error) {
	if err != nil {
		c.fail(err)
		return
	}
	c.records.Add(1)
	c.bytes.Add(int64(len(r.Value)))
}

// doneSince returns a promise that also records the latency since sent.
func (c *collector) doneSince(sent time.Time) func(*kgo.Record, error) {
	return func(r *kgo.Record, err error) {
		lat := time.Since(sent)
		c.done(r, err)
		if err == nil {
			c.mu.Lock()
			c.latencies = append(c.latencies, lat)
			c.mu.Unlock()
		}
	}
}

// takeLatencies returns the recorded latencies.
func (c *collector) takeLatencies() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.latencies
}

// fail counts a failed record and keeps the first error.
func (c *collector) fail(err error) {
	c.failed.Add(1)
	c.mu.Lock()
	if c.firstErr == nil {
		c.firstErr = err
	}
	c.mu.Unlock()
}

// err returns the first error seen.
func (c *collector) err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.firstErr
}

// producerOpts returns the client options for a produce phase. Compression
// is off so MB/s is the same on the wire and on disk.
func producerOpts(seeds []string, spec produceSpec) []kgo.Opt {
	opts := []kgo.Opt{
		kgo.SeedBrokers(seeds...),
		kgo.DefaultProduceTopic(spec.topic),
		kgo.ProducerBatchCompression(kgo.NoCompression()),
		kgo.RecordDeliveryTimeout(deliveryTimeout),
	}
	if len(spec.hooks) > 0 {
		opts = append(opts, kgo.WithHooks(spec.hooks...))
	}
	return append(opts, spec.acks.opts()...)
}

// produce runs one produce phase. It warms the client up with one
// synchronous record (metadata, producer id) before the clock starts, stops
// producing at the first failed record, and returns an error if any record
// failed or the flush did not finish.
func produce(ctx context.Context, seeds []string, spec produceSpec) (produceStats, error) {
	cl, err := kgo.NewClient(producerOpts(seeds, spec)...)
	if err != nil {
		return produceStats{}, fmt.Errorf("new client: %w", err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, spec.duration+phaseGrace)
	defer cancel()

	payload := make([]byte, spec.recordSize)
	_, _ = rand.Read(payload) // incompressible, like encrypted or compressed payloads
	if err := cl.ProduceSync(ctx, &kgo.Record{Value: payload}).FirstErr(); err != nil {
		return produceStats{}, fmt.Errorf("warm-up record to %s: %w", spec.topic, err)
	}

	if spec.started != nil {
		spec.started()
	}
	c := &collector{}
	start := time.Now()
	if spec.rate > 0 {
		c.latencies = make([]time.Duration, 0, int(spec.rate*spec.duration.Seconds()*1.1))
		produceAtRate(ctx, cl, c, spec, payload, start)
	} else {
		produceAtMax(ctx, cl, c, spec, payload, start)
	}
	flushErr := cl.Flush(ctx)
	st := produceStats{
		records:   c.records.Load(),
		bytes:     c.bytes.Load(),
		failed:    c.failed.Load(),
		elapsed:   time.Since(start),
		latencies: c.takeLatencies(),
	}
	switch {
	case c.err() != nil:
		return st, fmt.Errorf("%d records failed, first: %w", st.failed, c.err())
	case flushErr != nil:
		return st, fmt.Errorf("flush: %w", flushErr)
	}
	return st, nil
}

// done reports whether a produce loop should stop after n records.
func (spec produceSpec) done(ctx context.Context, c *collector, n int64, deadline time.Time) bool {
	return (spec.maxRecords > 0 && n >= spec.maxRecords) || time.Now().After(deadline) ||
		ctx.Err() != nil || c.failed.Load() > 0
}

// produceAtMax produces as fast as the client accepts records; Produce
// blocks when kgo's buffer is full, which is the back-pressure.
func produceAtMax(ctx context.Context, cl *kgo.Client, c *collector, spec produceSpec, payload []byte, start time.Time) {
	deadline := start.Add(spec.duration)
	for n := int64(0); ; n++ {
		if spec.maxRecords > 0 && n >= spec.maxRecords {
			return
		}
		if n%64 == 0 && spec.done(ctx, c, n, deadline) {
			return
		}
		cl.Produce(ctx, &kgo.Record{Value: payload}, c.done)
	}
}

// produceAtRate produces spec.rate records per second, releasing the
// records due every millisecond, and tracks each record's latency from the
// Produce call to its promise.
func produceAtRate(ctx context.Context, cl *kgo.Client, c *collector, spec produceSpec, payload []byte, start time.Time) {
	deadline := start.Add(spec.duration)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	var sent int64
	for !spec.done(ctx, c, sent, deadline) {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			due := int64(spec.rate * now.Sub(start).Seconds())
			if spec.maxRecords > 0 && due > spec.maxRecords {
				due = spec.maxRecords
			}
			for ; sent < due; sent++ {
				cl.Produce(ctx, &kgo.Record{Value: payload}, c.doneSince(time.Now()))
			}
		}
	}
}

// latencySummary holds latency percentiles.
type latencySummary struct {
	p50, p99, p999 time.Duration
	n              int
}

// summarize sorts lat in place and returns its percentiles (nearest rank).
func summarize(lat []time.Duration) latencySummary {
	if len(lat) == 0 {
		return latencySummary{}
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	return latencySummary{
		p50:  percentile(lat, 0.50),
		p99:  percentile(lat, 0.99),
		p999: percentile(lat, 0.999),
		n:    len(lat),
	}
}

// percentile returns the nearest-rank q-quantile of the sorted slice.
func percentile(sorted []time.Duration, q float64) time.Duration {
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	i = max(0, min(i, len(sorted)-1))
	return sorted[i]
}

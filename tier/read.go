package tier

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/strata-io/strata/ingest/batch"
	plog "github.com/strata-io/strata/ingest/log"
	"github.com/strata-io/strata/tier/cache"
	"github.com/strata-io/strata/tier/manifest"
	"github.com/strata-io/strata/tier/segment"
)

// entryFor returns the manifest entry holding offset.
func entryFor(m *manifest.Manifest, offset int64) (*manifest.Entry, error) {
	if offset < m.LogStartOffset || offset >= m.EndOffset() {
		return nil, fmt.Errorf("%w: %d is outside the remote range [%d, %d)", plog.ErrOffsetOutOfRange, offset, m.LogStartOffset, m.EndOffset())
	}
	i := sort.Search(len(m.Entries), func(i int) bool { return m.Entries[i].NextOffset > offset })
	return &m.Entries[i], nil
}

// Read returns whole batches from the bucket, starting with the batch that
// holds offset, at most maxBytes but always at least one batch, from the one
// segment object that holds offset. The bytes are those the local log held.
func (p *Partition) Read(ctx context.Context, offset int64, maxBytes int) ([]byte, error) {
	e, err := entryFor(p.Manifest(), offset)
	if err != nil {
		return nil, err
	}
	r, err := p.reader(ctx, e)
	if err != nil {
		return nil, fmt.Errorf("tier: open %s: %w", e.Key, err)
	}
	// A compacted segment may begin after its manifest base (its first
	// batches were compacted away): an offset in that gap reads the first
	// batch, as a fetch into any compacted-away range gets the next batch.
	ci, ok := r.Locate(max(offset, r.Footer().Summary.BaseOffset))
	if !ok {
		return nil, fmt.Errorf("%w: %d not in %s", plog.ErrOffsetOutOfRange, offset, e.Key)
	}
	raw, sequential, err := p.m.readChunk(ctx, e.Key, r, ci)
	if err != nil {
		return nil, fmt.Errorf("tier: read chunk %d of %s: %w", ci, e.Key, err)
	}
	if ra := p.m.chunks.ReadAheadChunks(); sequential && ci+ra >= len(r.Footer().Chunks) {
		p.prefetchNext(e.NextOffset, ra)
	}
	return r.BatchesFrom(raw, offset, maxBytes), nil
}

// prefetchNext starts loading the first n chunks of the object that begins
// at offset next, for a sequential reader about to reach it (the chunk
// cache's read-ahead stays within one object). It opens the object's footer
// in the background, once per object, and returns at once.
func (p *Partition) prefetchNext(next int64, n int) {
	m := p.Manifest()
	if next >= m.EndOffset() {
		return
	}
	e, err := entryFor(m, next)
	if err != nil {
		return
	}
	if old := p.nextAhead.Load(); old != nil && *old == e.Key {
		return
	}
	key := e.Key
	p.nextAhead.Store(&key)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), prefetchOpenTimeout)
		defer cancel()
		r, err := p.reader(ctx, e)
		if err != nil {
			p.logger.Debug("read-ahead: open next segment object", "key", key, "err", err)
			return
		}
		for i := 0; i < n && i < len(r.Footer().Chunks); i++ {
			p.m.chunks.Prefetch(key, i, cache.ChunkLoader(r, i))
		}
	}()
}

// prefetchOpenTimeout bounds opening the next object's footer for
// read-ahead.
const prefetchOpenTimeout = 30 * time.Second

// OffsetForTimestamp returns the first remote offset whose timestamp is at
// or after ts.
func (p *Partition) OffsetForTimestamp(ctx context.Context, ts int64) (offset, timestamp int64, found bool, err error) {
	m := p.Manifest()
	for i := range m.Entries {
		e := &m.Entries[i]
		if e.MaxTimestamp < ts {
			continue
		}
		r, err := p.reader(ctx, e)
		if err != nil {
			return -1, -1, false, fmt.Errorf("tier: open %s: %w", e.Key, err)
		}
		if m.LogStartOffset > e.BaseOffset {
			// The log start cuts this segment: only records from it count.
			off, t, ok := int64(-1), int64(-1), false
			err := p.scanRecords(ctx, e, r, m.LogStartOffset, ts, func(o, rt int64) bool {
				if rt >= ts {
					off, t, ok = o, rt, true
				}
				return ok
			})
			if err != nil || ok {
				return off, t, ok, err
			}
			continue
		}
		off, t, ok, err := r.OffsetForTimestamp(ctx, ts)
		if err != nil || ok {
			if off < m.LogStartOffset {
				off = m.LogStartOffset
			}
			return off, t, ok, err
		}
	}
	return -1, -1, false, nil
}

// MaxTimestamp returns the largest timestamp in the bucket and its offset,
// from the manifest and the footer of the segment that holds it.
func (p *Partition) MaxTimestamp(ctx context.Context) (offset, ts int64, err error) {
	m := p.Manifest()
	best := -1
	for i, e := range m.Entries {
		if best < 0 || e.MaxTimestamp > m.Entries[best].MaxTimestamp {
			best = i
		}
	}
	if best < 0 || m.Entries[best].MaxTimestamp < 0 {
		return -1, -1, nil
	}
	r, err := p.reader(ctx, &m.Entries[best])
	if err != nil {
		return -1, -1, err
	}
	s := r.Footer().Summary
	if s.MaxTimestampOffset >= m.LogStartOffset {
		return s.MaxTimestampOffset, s.MaxTimestamp, nil
	}
	// The largest timestamp lies below the log start (DeleteRecords cut the
	// first segment): take the largest at or after the log start in the
	// first segment, then compare the later segments' summaries.
	bestOff, bestTs := int64(-1), int64(-1)
	first := &m.Entries[0]
	r0, err := p.reader(ctx, first)
	if err != nil {
		return -1, -1, err
	}
	err = p.scanRecords(ctx, first, r0, m.LogStartOffset, -1<<63, func(o, t int64) bool {
		if t > bestTs {
			bestOff, bestTs = o, t
		}
		return false
	})
	if err != nil {
		return -1, -1, err
	}
	for i := 1; i < len(m.Entries); i++ {
		if e := &m.Entries[i]; e.MaxTimestamp > bestTs {
			ri, err := p.reader(ctx, e)
			if err != nil {
				return -1, -1, err
			}
			si := ri.Footer().Summary
			bestOff, bestTs = si.MaxTimestampOffset, si.MaxTimestamp
		}
	}
	return bestOff, bestTs, nil
}

// scanRecords calls fn with the offset and timestamp of every record of e
// at or after offset from, in order, skipping chunks and batches whose max
// timestamp is below minTs, until fn returns true.
func (p *Partition) scanRecords(ctx context.Context, e *manifest.Entry, r *segment.Reader, from, minTs int64, fn func(off, ts int64) bool) error {
	ci, ok := r.Locate(from)
	if !ok {
		return nil
	}
	chunks := r.Footer().Chunks
	for c := ci; c < len(chunks); c++ {
		if chunks[c].MaxTimestamp < minTs {
			continue
		}
		raw, _, err := p.m.readChunk(ctx, e.Key, r, c)
		if err != nil {
			return fmt.Errorf("tier: read chunk %d of %s: %w", c, e.Key, err)
		}
		for pos := 0; pos < len(raw); {
			h, err := batch.ParseHeader(raw[pos:])
			if err != nil {
				return fmt.Errorf("tier: %s chunk %d: %w", e.Key, c, err)
			}
			one := raw[pos : pos+h.Size()]
			pos += h.Size()
			if h.LastOffset() < from || h.MaxTimestamp < minTs || h.IsControl() {
				continue
			}
			stop := false
			err = batch.Records(one, 0, func(rec batch.Record) error {
				off := h.BaseOffset + int64(rec.OffsetDelta)
				ts := h.BaseTimestamp + rec.TimestampDelta
				if h.LogAppendTime() {
					ts = h.MaxTimestamp
				}
				if off >= from && fn(off, ts) {
					stop = true
					return errStopScan
				}
				return nil
			})
			if stop {
				return nil
			}
			if err != nil {
				return fmt.Errorf("tier: %s chunk %d: %w", e.Key, c, err)
			}
		}
	}
	return nil
}

var errStopScan = errors.New("stop")

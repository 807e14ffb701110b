package tier

import (
	"context"
	"fmt"
	"sort"

	plog "github.com/strata-io/strata/ingest/log"
	"github.com/strata-io/strata/tier/manifest"
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
	ci, ok := r.Locate(offset)
	if !ok {
		return nil, fmt.Errorf("%w: %d not in %s", plog.ErrOffsetOutOfRange, offset, e.Key)
	}
	raw, err := p.m.readChunk(ctx, e.Key, r, ci)
	if err != nil {
		return nil, fmt.Errorf("tier: read chunk %d of %s: %w", ci, e.Key, err)
	}
	return r.BatchesFrom(raw, offset, maxBytes), nil
}

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
	return s.MaxTimestampOffset, s.MaxTimestamp, nil
}

package tier

// A partition's tier on the replicas that do not lead it: they never upload
// or publish, but they read the leader's manifests to learn what the bucket
// holds, so that they can apply local retention to segments already
// uploaded, and a replica whose local log is behind the leader's local log
// start (a wiped disk, or one down for long) can continue from the bucket.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/strata-io/strata/compactor"
	"github.com/strata-io/strata/ingest/batch"
	plog "github.com/strata-io/strata/ingest/log"
	"github.com/strata-io/strata/tier/manifest"
)

// OpenReplica is OpenPartition for a replica that does not lead the
// partition: an empty local log continues from the bucket as on a leader,
// but one that holds records and ends below the remote end is left to catch
// up from the leader. Its Upload, ApplyRetention, GC, Compact and Merge
// must not be called; Refresh, ApplyLocalRetention, RebuildLog and reads
// may.
func (m *Manager) OpenReplica(ctx context.Context, topic [16]byte, partition int32, l *plog.Log) (*Partition, error) {
	return m.open(ctx, topic, partition, -1, l, false)
}

// Epoch is the leader epoch this partition's tier was opened with: the one
// its uploads and manifests carry.
func (p *Partition) Epoch() int32 { return p.epoch }

// Refresh loads the partition's newest manifest and makes it current when
// it is newer than the one known. Followers call it; a leader learns of
// newer manifests through its publisher (and is fenced by them).
func (p *Partition) Refresh(ctx context.Context) error {
	m, _, err := p.m.client.Load(ctx, p.topic, p.part)
	if errors.Is(err, manifest.ErrNoManifest) {
		return nil
	} else if err != nil {
		return fmt.Errorf("tier: refresh manifest of %s/%d: %w", p.topic, p.part, err)
	}
	p.mu.Lock()
	if p.mu.cur == nil || p.mu.cur.ID().Less(m.ID()) {
		p.mu.cur = m
	}
	p.mu.Unlock()
	return nil
}

// ApplyLocalRetention deletes local segments that the bucket already holds
// (below the newest known manifest's end) and that local retention lets go,
// as ApplyRetention plans them, but changes nothing in the bucket and does
// not move the log start: on a follower, the leader owns both. It returns
// the number of local segments deleted.
func (p *Partition) ApplyLocalRetention(r Retention) (int, error) {
	p.workMu.Lock()
	defer p.workMu.Unlock()
	plan := compactor.PlanRetention(p.PlanInput(), r.config(), p.m.cfg.Now())
	cut, ok := plan.LocalCut()
	if !ok {
		return 0, nil
	}
	n, err := p.log.DeleteLocalBefore(cut)
	if err != nil {
		return n, fmt.Errorf("tier: local retention of %s/%d: %w", p.topic, p.part, err)
	}
	return n, nil
}

// PrepareRebuild reads what RebuildLog needs from the bucket (the newest
// manifest and the last remote segment's footer), so that RebuildLog, run
// where I/O must be short, finds it cached.
func (p *Partition) PrepareRebuild(ctx context.Context) error {
	if err := p.Refresh(ctx); err != nil {
		return err
	}
	cur := p.Manifest()
	if n := len(cur.Entries); n > 0 {
		if _, err := p.reader(ctx, &cur.Entries[n-1]); err != nil {
			return fmt.Errorf("tier: %s/%d: read the last remote segment: %w", p.topic, p.part, err)
		}
	}
	return nil
}

// RebuildLog makes a local log that holds no records continue at the end of
// the newest manifest known (PrepareRebuild reads it), with the producer
// state and leader epochs of the last remote segment: how a replica whose
// disk was wiped, or whose log the leader's local log no longer reaches,
// rejoins without copying the history the bucket holds. It refuses a log
// with records.
func (p *Partition) RebuildLog(ctx context.Context) error {
	p.workMu.Lock()
	defer p.workMu.Unlock()
	cur := p.Manifest()
	if p.log.EndOffset() != p.log.LocalStartOffset() {
		return fmt.Errorf("tier: %s/%d: rebuild from the bucket: the local log holds records [%d, %d)",
			p.topic, p.part, p.log.LocalStartOffset(), p.log.EndOffset())
	}
	return p.alignLog(ctx, cur)
}

// batchesFrom reads a segment file's batches, skipping those that end below
// from: a local segment that began below the remote end (its replica rolled
// segments at other offsets than the broker that uploaded before it) is
// uploaded from the remote end on. Replicas copy batches verbatim, so the
// remote end is a batch boundary in every replica's log.
type batchesFrom struct {
	r       *bufio.Reader
	from    int64
	skipped bool
	first   int64 // base offset of the first batch kept, -1 if none yet
}

func newBatchesFrom(r io.Reader, from int64) *batchesFrom {
	return &batchesFrom{r: bufio.NewReaderSize(r, 1<<20), from: from, first: -1}
}

func (b *batchesFrom) Read(p []byte) (int, error) {
	for !b.skipped {
		hdr, err := b.r.Peek(batch.HeaderSize)
		if err != nil {
			// Short input: let the segment builder see it and report it.
			b.skipped = true
			break
		}
		h, err := batch.ParseHeader(hdr)
		if err != nil || h.LastOffset() >= b.from {
			if err == nil {
				b.first = h.BaseOffset
			}
			b.skipped = true
			break
		}
		if _, err := b.r.Discard(h.Size()); err != nil {
			return 0, fmt.Errorf("skip batch at %d: %w", h.BaseOffset, err)
		}
	}
	return b.r.Read(p)
}

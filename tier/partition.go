package tier

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"

	"github.com/strata-io/strata/index"
	plog "github.com/strata-io/strata/ingest/log"
	"github.com/strata-io/strata/tier/manifest"
	"github.com/strata-io/strata/tier/segment"
)

// Partition is the tier of one partition on its leader. Its methods are safe
// for concurrent use; uploads, retention and GC run one at a time.
type Partition struct {
	m      *Manager
	topic  manifest.TopicID
	part   int32
	epoch  int32
	log    *plog.Log
	logger *slog.Logger
	// abortedTxns is log.AbortedTxns: the aborted transactions uploads
	// write into segment footers (tests substitute a model).
	abortedTxns func(from, upTo int64) ([]index.AbortedTxn, error)

	workMu sync.Mutex // one upload, retention or GC pass, or one publish, at a time
	// rewriteMu serializes compaction and merge passes; they hold workMu
	// only to plan and to publish, never across their object I/O.
	rewriteMu sync.Mutex
	// nextAhead is the key of the last object whose first chunks were
	// prefetched for a reader nearing the end of the one before it.
	nextAhead atomic.Pointer[string]
	mu        struct {
		sync.Mutex
		pub    *manifest.Publisher // opened on first publish
		cur    *manifest.Manifest  // newest manifest known; never modified in place
		fenced bool                // a newer leader has published: stop
		// rewriting are the objects a compaction or merge pass uploaded
		// and has not published yet: GC must not take them for orphans
		// while the pass (which runs without workMu) is still going.
		rewriting map[string]bool
	}
}

// ErrFenced is returned once a newer leader has published: this broker must
// stop uploading for the partition.
var ErrFenced = manifest.ErrFenced

// OpenPartition loads the partition's newest manifest and lines the local
// log up with it. A local log that ends below the remote end offset and
// holds no records (a new broker, or a wiped disk) continues at the remote
// end, with the producer state and leader epochs of the last remote segment.
func (m *Manager) OpenPartition(ctx context.Context, topic [16]byte, partition, epoch int32, l *plog.Log) (*Partition, error) {
	return m.open(ctx, topic, partition, epoch, l, true)
}

func (m *Manager) open(ctx context.Context, topic [16]byte, partition, epoch int32, l *plog.Log, leader bool) (*Partition, error) {
	p := &Partition{
		m: m, topic: manifest.TopicID(topic), part: partition, epoch: epoch, log: l, abortedTxns: l.AbortedTxns,
		logger: m.cfg.Logger.With("topic_id", manifest.TopicID(topic).String(), "partition", partition),
	}
	cur, _, err := m.client.Load(ctx, p.topic, partition)
	switch {
	case errors.Is(err, manifest.ErrNoManifest):
		cur = &manifest.Manifest{Topic: p.topic, Partition: partition}
	case err != nil:
		return nil, fmt.Errorf("tier: load manifest of %s/%d: %w", p.topic, partition, err)
	}
	p.mu.cur = cur
	if !leader && l.EndOffset() != l.LocalStartOffset() {
		// A replica's short log catches up from the leader.
		return p, nil
	}
	if err := p.alignLog(ctx, cur); err != nil {
		return nil, err
	}
	return p, nil
}

// alignLog makes the local log continue from the bucket where needed.
func (p *Partition) alignLog(ctx context.Context, cur *manifest.Manifest) error {
	end := cur.EndOffset()
	if p.log.EndOffset() >= end {
		if p.log.StartOffset() < cur.LogStartOffset {
			return p.log.SetStartOffset(min(cur.LogStartOffset, p.log.EndOffset()))
		}
		return nil
	}
	if p.log.EndOffset() != p.log.LocalStartOffset() {
		return fmt.Errorf("tier: %s/%d: local log ends at %d, below the remote end %d, but holds records; refusing to guess",
			p.topic, p.part, p.log.EndOffset(), end)
	}
	var snap []byte
	var epochs []plog.EpochStart
	for _, e := range cur.Entries {
		for _, es := range e.Epochs {
			if n := len(epochs); n == 0 || epochs[n-1].Epoch != es.Epoch {
				epochs = append(epochs, plog.EpochStart{Epoch: es.Epoch, StartOffset: es.StartOffset})
			}
		}
	}
	if n := len(cur.Entries); n > 0 {
		r, err := p.reader(ctx, &cur.Entries[n-1])
		if err != nil {
			return fmt.Errorf("tier: %s/%d: read the last remote segment: %w", p.topic, p.part, err)
		}
		snap = r.Footer().ProducerSnapshot
	}
	p.logger.Info("local log continues from the bucket", "log_start", cur.LogStartOffset, "next_offset", end)
	return p.log.ResetTo(cur.LogStartOffset, end, snap, epochs)
}

// Fenced reports whether a newer leader has published for the partition.
func (p *Partition) Fenced() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mu.fenced
}

// Manifest returns the newest manifest this partition knows. Callers must
// not modify it.
func (p *Partition) Manifest() *manifest.Manifest {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mu.cur
}

// RemoteEndOffset is the offset after the last uploaded record.
func (p *Partition) RemoteEndOffset() int64 { return p.Manifest().EndOffset() }

// publish publishes next (built from the current manifest) and makes it
// current.
func (p *Partition) publish(ctx context.Context, build func(next *manifest.Manifest) error) error {
	p.mu.Lock()
	pub := p.mu.pub
	p.mu.Unlock()
	if pub == nil {
		var err error
		if pub, err = p.m.client.Open(ctx, p.topic, p.part, p.epoch); err != nil {
			if errors.Is(err, manifest.ErrFenced) {
				p.mu.Lock()
				p.mu.fenced = true
				p.mu.Unlock()
			}
			return fmt.Errorf("tier: open manifest publisher for %s/%d: %w", p.topic, p.part, err)
		}
		p.mu.Lock()
		p.mu.pub = pub
		p.mu.Unlock()
	}
	next := pub.Current()
	if err := build(next); err != nil {
		// The publisher's view is at least as new as ours (opening it may
		// have found a deposed leader's last segments): adopt it, so the
		// next pass builds on it instead of failing the same way forever.
		p.mu.Lock()
		p.mu.cur = pub.Current()
		p.mu.Unlock()
		return err
	}
	err := pub.Publish(ctx, next)
	p.mu.Lock()
	p.mu.cur = pub.Current()
	if errors.Is(err, manifest.ErrFenced) {
		p.mu.fenced = true
	}
	p.mu.Unlock()
	if err != nil {
		return fmt.Errorf("tier: publish manifest of %s/%d: %w", p.topic, p.part, err)
	}
	return nil
}

// UploadLag is what is sealed locally but not yet in the bucket.
type UploadLag struct {
	Segments int
	Bytes    int64
}

// Lag returns the sealed local segments above the remote end offset.
func (p *Partition) Lag() UploadLag {
	end := p.RemoteEndOffset()
	var lag UploadLag
	for _, s := range p.log.Segments() {
		if s.Sealed && s.Next > end {
			lag.Segments++
			lag.Bytes += s.Size
		}
	}
	return lag
}

// Upload rolls the active segment if it is older than the upload interval,
// then uploads every sealed, durable segment that ends at or below lso
// (the last stable offset: the high watermark, or the first offset of the
// oldest open transaction if that is lower) and that the bucket does not
// have yet, oldest first, publishing a manifest after each. Each object's
// footer lists the aborted transactions overlapping it (from the local
// log's AbortedTxns), which are final below the last stable offset. It
// returns the number uploaded.
func (p *Partition) Upload(ctx context.Context, lso int64) (int, error) {
	p.workMu.Lock()
	defer p.workMu.Unlock()
	if p.Fenced() {
		// Do not build and PUT objects that could never be published.
		return 0, fmt.Errorf("tier: %s/%d at epoch %d: %w", p.topic, p.part, p.epoch, ErrFenced)
	}
	if _, err := p.log.RollIfOlder(p.m.cfg.UploadInterval); err != nil {
		return 0, fmt.Errorf("tier: roll %s/%d: %w", p.topic, p.part, err)
	}
	n := 0
	for _, s := range p.log.Segments() {
		if !s.Sealed || !s.Durable || s.Next > lso {
			break
		}
		end := p.RemoteEndOffset()
		if s.Next <= end {
			continue
		}
		// A segment that began below the remote end (this broker rolled
		// at other offsets than the leader that uploaded before it) is
		// uploaded from the remote end on.
		if err := p.uploadSegment(ctx, s, max(s.Base, end)); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// uploadSegment uploads the records of local segment s from offset from on
// (s.Base, or the remote end inside s) as one object.
func (p *Partition) uploadSegment(ctx context.Context, s plog.SegmentInfo, from int64) error {
	rc, _, err := p.log.OpenSegment(s.Base)
	if err != nil {
		return fmt.Errorf("tier: open segment %d of %s/%d: %w", s.Base, p.topic, p.part, err)
	}
	defer rc.Close()
	src := newBatchesFrom(rc, from)
	snap, err := p.log.ProducerSnapshotAt(s.Next)
	if err != nil {
		return fmt.Errorf("tier: producer snapshot at %d of %s/%d: %w", s.Next, p.topic, p.part, err)
	}
	// An unreadable local index fails the upload (retried next pass): a
	// footer missing an aborted transaction would be wrong for good.
	aborted, err := p.abortedTxns(from, s.Next)
	if err != nil {
		return fmt.Errorf("tier: aborted transactions of %s/%d [%d, %d): %w", p.topic, p.part, from, s.Next, err)
	}
	var epochs []index.EpochEntry
	for _, e := range p.log.EpochsIn(from, s.Next) {
		epochs = append(epochs, index.EpochEntry{Epoch: e.Epoch, StartOffset: e.StartOffset})
	}
	tmp, err := os.CreateTemp(p.m.cfg.TempDir, "upload-*.seg")
	if err != nil {
		return fmt.Errorf("tier: temp file: %w", err)
	}
	defer func() {
		tmp.Close()
		os.Remove(tmp.Name())
	}()
	w := bufio.NewWriterSize(tmp, 1<<20)
	res, err := segment.Build(w, src, segment.BuildOptions{
		TopicID: p.topic, Partition: p.part,
		ChunkTarget: p.m.cfg.ChunkTarget, IndexInterval: p.m.cfg.IndexInterval,
		Epochs: epochs, Aborted: aborted, ProducerSnapshot: snap, UploaderEpoch: p.epoch, Now: p.m.cfg.Now(),
	})
	if err == nil {
		err = w.Flush()
	}
	if err == nil && src.first >= 0 && src.first < from {
		// The batch at the remote end began below it: this log's batches
		// are not the uploader's.
		err = fmt.Errorf("a batch at %d straddles the remote end %d", src.first, from)
	}
	if err != nil {
		return fmt.Errorf("tier: build object for segment %d of %s/%d from %d: %w", s.Base, p.topic, p.part, from, err)
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("tier: rewind %s: %w", tmp.Name(), err)
	}
	cur := p.Manifest()
	name := cur.SegmentName(p.epoch, from, manifest.NewUploadID())
	key := name.Key()
	if err := p.m.store.PutIfAbsent(ctx, key, tmp, res.Size); err != nil {
		return fmt.Errorf("tier: upload %s: %w", key, err)
	}
	sum := res.Footer.Summary
	entry := manifest.Entry{
		Key: key, BaseOffset: from, NextOffset: s.Next,
		RecordCount: sum.RecordCount, StoredSize: res.Size, RawSize: sum.RawSize,
		FirstTimestamp: sum.FirstTimestamp, MaxTimestamp: sum.MaxTimestamp,
		UploadEpoch: p.epoch, CreatedMs: sum.CreatedMs,
	}
	for _, e := range sum.Epochs {
		entry.Epochs = append(entry.Epochs, manifest.EpochStart{Epoch: e.Epoch, StartOffset: e.StartOffset})
	}
	err = p.publish(ctx, func(next *manifest.Manifest) error {
		if len(next.Entries) == 0 && next.LogStartOffset < from {
			// The first upload: history below it was gone before tiering.
			next.LogStartOffset = max(from, p.log.StartOffset())
		}
		if next.EndOffset() != from {
			return fmt.Errorf("tier: %s/%d: segment at %d does not follow the remote end %d", p.topic, p.part, from, next.EndOffset())
		}
		next.Entries = append(next.Entries, entry)
		return nil
	})
	if err != nil {
		return err
	}
	p.logger.Debug("uploaded segment", "key", key, "base", from, "next", s.Next, "raw", sum.RawSize, "stored", res.Size)
	return nil
}

// reader returns the opened segment object of e, from the footer cache.
func (p *Partition) reader(ctx context.Context, e *manifest.Entry) (*segment.Reader, error) {
	return p.m.footers.Open(ctx, p.m.store, e.Key, e.StoredSize, segment.WithName(e.Key))
}

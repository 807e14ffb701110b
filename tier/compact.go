package tier

// Compaction and merging of the remote history.
//
// Both rewrite runs of adjacent segment objects named by the newest
// manifest into one new object each, then publish one manifest that
// replaces every run (manifest.ReplaceRun) and, for compaction, records the
// new remote cleaner point:
//
//  1. Plan over the current manifest: compactor.PlanRemoteCompaction
//     (Kafka's cleaner selection) or compactor.PlanMerge (small objects).
//  2. Compaction only: read the dirty objects, chunk by chunk, into a key
//     map (compactor/keymap: latest offset per key hash). When the map
//     fills, the pass ends at the start of the object where it filled.
//  3. For each run: stream every batch of its objects (one chunk in memory
//     at a time) through batch.Filter (compaction) or verbatim (merge) into
//     segment.Build, which writes the new object to a temp file, and upload
//     that under a new key (same key scheme as uploads, conditional
//     create). The new object covers exactly the offsets of the run: the
//     manifest entry keeps the run's base and next offsets even when the
//     first records are compacted away, and the last batch is always kept
//     (empty if need be) so the object still ends at the run's last offset.
//     Its footer carries the run's leader epochs, the producer snapshot
//     of the run's last object (taken at the same next offset) and the
//     aborted transactions of the run's objects, the pieces of one
//     transaction spanning them merged (aborted.go). Control batches are
//     kept, so every entry's abort marker stays where it was.
//  4. Publish one manifest. The replaced objects move to the manifest's
//     Deleted list: readers holding an older manifest keep reading them
//     until GC deletes them after the grace period. If the publish fails
//     (fenced, the store, or the manifest changed meanwhile: retention
//     dropped entries), nothing names the new objects and GC removes them
//     as orphans; no manifest ever names a missing object.
//
// Keep rules are the local cleaner's (ingest/log/clean.go): a record goes
// when a later offset of its key is in the map; keyless records stay;
// transactional records never enter the map; control batches are kept as
// they are; the last batch of every producer in the range is kept (empty if
// need be); tombstones go only from objects the plan's DropsTombstones
// names, and only when the rewritten range starts at the remote log start
// (with older history elsewhere a removed tombstone would bring back the
// value it deleted). The last batch of a producer is found from the batch
// headers of the dirty part, and for the clean part (compacted before) from
// the producer snapshot at its end, as Kafka does from its producer state:
// a producer that has expired from the state keeps no empty batch.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"sort"
	"time"

	"github.com/strata-io/strata/compactor"
	"github.com/strata-io/strata/compactor/keymap"
	"github.com/strata-io/strata/compactor/ratelimit"
	"github.com/strata-io/strata/index"
	"github.com/strata-io/strata/ingest/batch"
	"github.com/strata-io/strata/ingest/producer"
	"github.com/strata-io/strata/tier/manifest"
	"github.com/strata-io/strata/tier/segment"
)

// Defaults of remote compaction and merging.
const (
	// DefaultMergeTargetBytes is the object size merging aims for when the
	// caller passes none.
	DefaultMergeTargetBytes = 64 << 20
	// DefaultRemoteMapEntries bounds the key map of a compaction pass (30
	// to 60 MiB of memory).
	DefaultRemoteMapEntries = 1 << 20
)

// ErrRemoteMapFull is returned by Compact when the key map cannot hold the
// distinct keys of even the first dirty object: raise MaxMapEntries.
var ErrRemoteMapFull = errors.New("tier: compaction key map too small for one object")

// RemoteCompactOptions configure one compaction pass over the remote
// history of a partition.
type RemoteCompactOptions struct {
	// Config is the topic's settings as compactor.PlanRemoteCompaction
	// reads them: cleanup.policy, min.cleanable.dirty.ratio,
	// min.compaction.lag.ms, max.compaction.lag.ms, delete.retention.ms,
	// and segment.bytes, which bounds the summed raw size of the objects
	// rewritten into one (0: no bound).
	Config compactor.Config
	// MaxMapEntries bounds the key map (distinct keys of the dirty part).
	// Default DefaultRemoteMapEntries.
	MaxMapEntries int
	// RateLimit bounds the bytes read from and written to the object store
	// per second (a token bucket with 100 ms of burst); 0 is unlimited.
	RateLimit int64
}

// RemoteCompactResult reports a compaction pass.
type RemoteCompactResult struct {
	// Plan is the plan the pass made; nothing else is set when it does
	// not clean.
	Plan compactor.CompactionPlan
	// From and End bound the rewritten range; End < Plan.To when the map
	// filled (MapFull), and the next pass goes on from End.
	From, End  int64
	MapFull    bool
	MapEntries int
	// CleanerPoint is the remote cleaner point after the pass (published
	// in the manifest).
	CleanerPoint int64
	// ObjectsIn are the objects replaced, ObjectsOut the objects written
	// for them (runs whose output equalled their single input are left
	// alone and counted in neither).
	ObjectsIn, ObjectsOut int
	// BytesRead are the stored chunk bytes read from the store,
	// BytesWritten the object bytes uploaded.
	BytesRead, BytesWritten int64
	RecordsKept             int64
	RecordsRemoved          int64 // superseded records and tombstones
	TombstonesRemoved       int64
	Duration                time.Duration
}

// MergeResult reports a merge pass.
type MergeResult struct {
	Plan                    compactor.MergePlan
	ObjectsIn, ObjectsOut   int
	BytesRead, BytesWritten int64
}

// Compact runs one compaction pass over the partition's remote history, as
// described at the top of compact.go, if compactor.PlanRemoteCompaction says
// the history is due (dirty ratio, max.compaction.lag.ms). Only the leader
// calls it; it runs one at a time with uploads, retention and GC. On error
// the manifest is unchanged, unless the error came from the publish itself
// (an ambiguous store error, after which the manifest may or may not have
// landed; either way it names only complete objects).
func (p *Partition) Compact(ctx context.Context, opts RemoteCompactOptions) (RemoteCompactResult, error) {
	began := time.Now()
	p.rewriteMu.Lock()
	defer p.rewriteMu.Unlock()
	defer p.endRewriting()
	p.workMu.Lock()
	if p.Fenced() {
		p.workMu.Unlock()
		return RemoteCompactResult{}, fmt.Errorf("tier: %s/%d at epoch %d: %w", p.topic, p.part, p.epoch, ErrFenced)
	}
	cur := p.Manifest()
	plan := compactor.PlanRemoteCompaction(p.compactionInput(cur), opts.Config, p.m.cfg.Now())
	p.workMu.Unlock()
	// The objects of cur are read and the new ones written without workMu,
	// so that uploads, retention and GC go on meanwhile; the publish
	// replaces runs by key and fails (leaving orphans for GC) if retention
	// took any of them in between.
	res := RemoteCompactResult{Plan: plan, CleanerPoint: cur.CleanerPoint}
	if !plan.Clean {
		return res, nil
	}
	pass := p.newRewritePass(ctx, opts.RateLimit)
	maxEntries := opts.MaxMapEntries
	if maxEntries <= 0 {
		maxEntries = DefaultRemoteMapEntries
	}
	c := &compaction{pass: pass, plan: plan, keys: keymap.New(maxEntries), res: &res}
	pass.startObject = c.startObject
	groups, err := c.prepare(cur)
	if err != nil {
		return RemoteCompactResult{}, fmt.Errorf("tier: compact %s/%d: %w", p.topic, p.part, err)
	}
	var outs []rewritten
	for _, g := range groups {
		out, err := pass.rewrite(g, c.filter)
		if err != nil {
			return RemoteCompactResult{}, fmt.Errorf("tier: compact %s/%d [%d, %d): %w", p.topic, p.part, g[0].BaseOffset, g[len(g)-1].NextOffset, err)
		}
		if out.key != "" {
			outs = append(outs, out)
			res.ObjectsIn += len(g)
			res.ObjectsOut++
		}
	}
	res.CleanerPoint = res.End
	if len(outs) > 0 || res.CleanerPoint != cur.CleanerPoint {
		p.workMu.Lock()
		err := pass.publish(outs, &res.CleanerPoint)
		p.workMu.Unlock()
		if err != nil {
			return RemoteCompactResult{}, err
		}
	}
	res.BytesRead, res.BytesWritten = pass.read, pass.written
	res.Duration = time.Since(began)
	p.logger.Info("compacted remote history", "from", res.From, "to", res.End, "reason", string(plan.Reason),
		"dirty_ratio", plan.DirtyRatio, "map_full", res.MapFull, "records_kept", res.RecordsKept,
		"records_removed", res.RecordsRemoved, "tombstones_removed", res.TombstonesRemoved,
		"objects_in", res.ObjectsIn, "objects_out", res.ObjectsOut, "bytes_read", res.BytesRead,
		"bytes_written", res.BytesWritten, "duration", res.Duration)
	return res, nil
}

// PlanCompaction is what Compact would plan now with the topic's settings
// c, without doing it: the dry run.
func (p *Partition) PlanCompaction(c compactor.Config) compactor.CompactionPlan {
	return compactor.PlanRemoteCompaction(p.compactionInput(p.Manifest()), c, p.m.cfg.Now())
}

// compactionInput is PlanInput with the remote cleaner point of cur.
func (p *Partition) compactionInput(cur *manifest.Manifest) compactor.Partition {
	in := p.PlanInput()
	in.Remote = manifest.RemoteSegments(cur)
	in.RemoteLogStart = cur.LogStartOffset
	in.RemoteCleanerPoint = cur.CleanerPoint
	return in
}

// Merge merges runs of small adjacent remote objects into objects of about
// targetBytes (0 or less: DefaultMergeTargetBytes), as compactor.PlanMerge
// plans it: batches are copied as they are, each run becomes one object
// with a footer built for it, and one manifest replaces every run; rateLimit
// bounds its bytes read plus written per second (0: unlimited). Only the
// leader calls it; it runs one at a time with uploads, retention and GC.
func (p *Partition) Merge(ctx context.Context, targetBytes, rateLimit int64) (MergeResult, error) {
	if targetBytes <= 0 {
		targetBytes = DefaultMergeTargetBytes
	}
	p.rewriteMu.Lock()
	defer p.rewriteMu.Unlock()
	defer p.endRewriting()
	if p.Fenced() {
		return MergeResult{}, fmt.Errorf("tier: %s/%d at epoch %d: %w", p.topic, p.part, p.epoch, ErrFenced)
	}
	cur := p.Manifest() // a snapshot: objects are copied without workMu (see Compact)
	plan := compactor.PlanMerge(manifest.RemoteSegments(cur), targetBytes)
	res := MergeResult{Plan: plan}
	if len(plan.Groups) == 0 {
		return res, nil
	}
	pass := p.newRewritePass(ctx, rateLimit)
	var outs []rewritten
	for _, pg := range plan.Groups {
		g, err := entriesOf(cur, pg.Segments)
		if err == nil {
			var out rewritten
			out, err = pass.rewrite(g, nil)
			outs = append(outs, out)
		}
		if err != nil {
			return MergeResult{}, fmt.Errorf("tier: merge %s/%d [%d, %d): %w", p.topic, p.part, pg.Base, pg.Next, err)
		}
		res.ObjectsIn += len(g)
		res.ObjectsOut++
	}
	p.workMu.Lock()
	err := pass.publish(outs, nil)
	p.workMu.Unlock()
	if err != nil {
		return MergeResult{}, err
	}
	res.BytesRead, res.BytesWritten = pass.read, pass.written
	p.logger.Info("merged remote objects", "objects_in", res.ObjectsIn, "objects_out", res.ObjectsOut,
		"bytes_read", res.BytesRead, "bytes_written", res.BytesWritten)
	return res, nil
}

// markRewriting protects key, an object a pass is about to upload, from GC
// until the pass ends (endRewriting): published, it is named by the
// manifest; not, it is an orphan GC removes after the grace period.
func (p *Partition) markRewriting(key string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mu.rewriting == nil {
		p.mu.rewriting = map[string]bool{}
	}
	p.mu.rewriting[key] = true
}

func (p *Partition) endRewriting() {
	p.mu.Lock()
	defer p.mu.Unlock()
	clear(p.mu.rewriting)
}

// rewritingNow reports whether a running pass uploaded key.
func (p *Partition) rewritingNow(key string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mu.rewriting[key]
}

// entriesOf returns the manifest entries of a plan's segments.
func entriesOf(m *manifest.Manifest, segs []compactor.Segment) ([]manifest.Entry, error) {
	out := make([]manifest.Entry, 0, len(segs))
	for _, s := range segs {
		i := sort.Search(len(m.Entries), func(i int) bool { return m.Entries[i].NextOffset > s.Base })
		if i == len(m.Entries) || m.Entries[i].Key != s.Key {
			return nil, fmt.Errorf("%w: %s", manifest.ErrNotInManifest, s.Key)
		}
		out = append(out, m.Entries[i])
	}
	return out, nil
}

// compaction is the key-compaction state of one Compact pass.
type compaction struct {
	pass *rewritePass
	plan compactor.CompactionPlan
	keys *keymap.Map
	res  *RemoteCompactResult
	// lastOfPID is the base offset of the last data batch of each producer
	// in the dirty part of the range; cleanState the producer state at the
	// end of the clean part (nil: none recorded, every producer's batches
	// there are kept, empty if need be).
	lastOfPID  map[int64]int64
	cleanState *producer.State
	cleanEnd   int64
	// tombstonesOK: the range starts at the remote log start.
	tombstonesOK bool

	// Per object, while rewriting.
	dropTombstones bool
}

// prepare maps the dirty part of the plan's range and returns the runs to
// rewrite, cut at the end of what was mapped.
func (c *compaction) prepare(cur *manifest.Manifest) ([][]manifest.Entry, error) {
	var groups [][]manifest.Entry
	for _, pg := range c.plan.Groups {
		g, err := entriesOf(cur, pg.Segments)
		if err != nil {
			return nil, err
		}
		groups = append(groups, g)
	}
	c.res.From, c.res.End = groups[0][0].BaseOffset, c.plan.To
	var dirty []manifest.Entry
	for _, g := range groups {
		for _, e := range g {
			if e.NextOffset > c.plan.DirtyFrom {
				dirty = append(dirty, e)
			}
		}
	}
	end, err := c.buildMap(dirty)
	if err != nil {
		return nil, err
	}
	c.res.End = end
	// Keep the objects below the end of the map; a run cut by it shrinks.
	n := 0
	for _, g := range groups {
		k := 0
		for k < len(g) && g[k].NextOffset <= end {
			k++
		}
		if k == 0 {
			break
		}
		groups[n] = g[:k]
		n++
	}
	groups = groups[:n]

	// The clean part: its producer state, from the snapshot at its end.
	var lastClean *manifest.Entry
	for _, g := range groups {
		for i := range g {
			if g[i].NextOffset <= c.plan.DirtyFrom {
				lastClean = &g[i]
			}
		}
	}
	if lastClean != nil {
		r, err := c.pass.p.reader(c.pass.ctx, lastClean)
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", lastClean.Key, err)
		}
		if snap := r.Footer().ProducerSnapshot; len(snap) > 0 {
			st, _, err := producer.DecodeSnapshot(snap)
			if err != nil {
				return nil, fmt.Errorf("producer snapshot of %s: %w", lastClean.Key, err)
			}
			c.cleanState = st
		}
		c.cleanEnd = lastClean.NextOffset
	}
	c.tombstonesOK = len(groups) > 0 && groups[0][0].BaseOffset <= cur.LogStartOffset
	return groups, nil
}

var errMapFull = errors.New("key map full")

// buildMap reads the dirty objects into the key map and the producers'
// last batches, and returns the end of the mapped part: the plan's end, or
// the base of the object where the map filled. What that object added to
// the map stays: offsets past the end, whose records stay, so using them
// is safe.
func (c *compaction) buildMap(dirty []manifest.Entry) (int64, error) {
	c.lastOfPID = map[int64]int64{}
	for i := range dirty {
		e := &dirty[i]
		last := map[int64]int64{}
		err := c.pass.scan(e, func(b []byte, h *batch.Header) error {
			if h.ProducerID >= 0 && !h.IsControl() {
				last[h.ProducerID] = h.BaseOffset
			}
			if h.IsControl() || h.IsTransactional() || h.RecordCount == 0 {
				return nil
			}
			return batch.Records(b, 0, func(r batch.Record) error {
				if r.Key != nil && !c.keys.Put(r.Key, h.BaseOffset+int64(r.OffsetDelta)) {
					return errMapFull
				}
				return nil
			})
		})
		if errors.Is(err, errMapFull) {
			if i == 0 {
				return 0, fmt.Errorf("%w: more than %d distinct keys in %s", ErrRemoteMapFull, c.keys.Len(), e.Key)
			}
			c.res.MapFull, c.res.MapEntries = true, c.keys.Len()
			return e.BaseOffset, nil
		}
		if err != nil {
			return 0, err
		}
		maps.Copy(c.lastOfPID, last)
	}
	c.res.MapEntries = c.keys.Len()
	return c.plan.To, nil
}

// lastOfProducer reports whether h is the last data batch of its producer
// in the range.
func (c *compaction) lastOfProducer(h *batch.Header) bool {
	if h.ProducerID < 0 || h.IsControl() {
		return false
	}
	if base, ok := c.lastOfPID[h.ProducerID]; ok {
		return base == h.BaseOffset
	}
	if h.BaseOffset >= c.cleanEnd {
		return false // dirty, and the producer has a later batch there
	}
	if c.cleanState == nil {
		return true
	}
	pr, ok := c.cleanState.Producer(h.ProducerID)
	return ok && len(pr.Batches) > 0 && pr.Batches[len(pr.Batches)-1].FirstOffset == h.BaseOffset
}

// filter is the batchFilter of compaction.
func (c *compaction) filter(dst, b []byte, h *batch.Header, e *manifest.Entry, lastOfRun bool) ([]byte, error) {
	if h.IsControl() {
		c.res.RecordsKept += int64(h.RecordCount)
		return append(dst, b...), nil
	}
	out, fr, err := batch.Filter(dst, b, c.keep, batch.FilterOptions{KeepEmpty: lastOfRun || c.lastOfProducer(h)})
	if err != nil {
		return dst, fmt.Errorf("%w: batch at %d of %s: %w", segment.ErrCorrupt, h.BaseOffset, e.Key, err)
	}
	c.res.RecordsKept += int64(fr.RecordsKept)
	c.res.RecordsRemoved += int64(fr.RecordsIn - fr.RecordsKept)
	return out, nil
}

func (c *compaction) keep(off int64, r *batch.Record) bool {
	if r.Key == nil {
		return true // written before the topic was compacted
	}
	if latest, ok := c.keys.Get(r.Key); ok && off < latest {
		return false
	}
	if r.Value == nil && c.dropTombstones {
		c.res.TombstonesRemoved++
		return false
	}
	return true
}

// startObject is called before the batches of each object of a run.
func (c *compaction) startObject(e *manifest.Entry) {
	c.dropTombstones = c.tombstonesOK && c.plan.DropsTombstones(compactor.Segment{
		Tier: compactor.Remote, Base: e.BaseOffset, Next: e.NextOffset, MaxTimestamp: e.MaxTimestamp,
	})
}

// batchFilter appends the output for batch b (header h) of object e to dst;
// lastOfRun is set for the last batch of the run rewritten, which must be
// kept (empty if need be) so that the new object ends where the run did.
type batchFilter func(dst, b []byte, h *batch.Header, e *manifest.Entry, lastOfRun bool) ([]byte, error)

// rewritePass is the I/O of one Compact or Merge pass: reading objects
// chunk by chunk, building and uploading new ones, and publishing.
type rewritePass struct {
	p       *Partition
	ctx     context.Context
	limit   *ratelimit.Bucket
	read    int64 // stored chunk bytes read
	written int64 // object bytes uploaded
	// startObject, if set, is called before each object's batches.
	startObject func(e *manifest.Entry)
}

func (p *Partition) newRewritePass(ctx context.Context, rate int64) *rewritePass {
	return &rewritePass{p: p, ctx: ctx, limit: ratelimit.New(rate, nil, nil)}
}

// scan calls fn with every batch of the object of e, in order, reading one
// chunk at a time (from the in-memory chunk cache when a reader has it,
// else from the store, without filling the read caches). The batch is
// valid only during the call.
func (w *rewritePass) scan(e *manifest.Entry, fn func(b []byte, h *batch.Header) error) error {
	r, err := w.p.reader(w.ctx, e)
	if err != nil {
		return fmt.Errorf("open %s: %w", e.Key, err)
	}
	f := r.Footer()
	if f.Summary.BaseOffset < e.BaseOffset || f.Summary.NextOffset != e.NextOffset {
		return fmt.Errorf("%w: object %s holds [%d, %d), its manifest entry [%d, %d)",
			segment.ErrCorrupt, e.Key, f.Summary.BaseOffset, f.Summary.NextOffset, e.BaseOffset, e.NextOffset)
	}
	for i := range f.Chunks {
		raw, err := w.readChunk(e.Key, r, i)
		if err != nil {
			return err
		}
		for pos := 0; pos < len(raw); {
			h, err := batch.ParseHeader(raw[pos:])
			if err != nil || h.Size() > len(raw)-pos { // ReadChunk checked the framing
				return fmt.Errorf("%w: %s chunk %d at %d: %v", segment.ErrCorrupt, e.Key, i, pos, err)
			}
			if err := fn(raw[pos:pos+h.Size()], &h); err != nil {
				return err
			}
			pos += h.Size()
		}
	}
	return nil
}

// readChunk returns chunk i of an object from the in-memory chunk cache
// when a reader has it, else from the store (within the rate limit)
// without filling the read caches. The result must not be modified.
func (w *rewritePass) readChunk(key string, r *segment.Reader, i int) ([]byte, error) {
	if raw, ok := w.p.m.hot.get(key, i); ok {
		return raw, nil
	}
	stored := int64(r.Footer().Chunks[i].StoredLen)
	if err := w.limit.Take(w.ctx, stored); err != nil {
		return nil, err
	}
	raw, err := r.ReadChunk(w.ctx, i)
	if err != nil {
		return nil, fmt.Errorf("read chunk %d of %s: %w", i, key, err)
	}
	w.read += stored
	return raw, nil
}

// rewritten is one new object, uploaded and not yet published.
type rewritten struct {
	oldKeys []string
	key     string // empty: the output equals the single input; nothing to publish
	entry   manifest.Entry
}

// rewrite builds the object replacing the run g from its batches, passed
// through filter (nil: verbatim), and uploads it. A run of one object whose
// output equals its input is not uploaded (empty key).
func (w *rewritePass) rewrite(g []manifest.Entry, filter batchFilter) (rewritten, error) {
	out := rewritten{}
	for _, e := range g {
		out.oldKeys = append(out.oldKeys, e.Key)
	}
	last, err := w.p.reader(w.ctx, &g[len(g)-1])
	if err != nil {
		return out, fmt.Errorf("open %s: %w", g[len(g)-1].Key, err)
	}
	var epochs []manifest.EpochStart
	var created int64
	for _, e := range g {
		for _, es := range e.Epochs {
			if n := len(epochs); n == 0 || es.Epoch > epochs[n-1].Epoch {
				epochs = append(epochs, es)
			}
		}
		created = max(created, e.CreatedMs)
	}
	idxEpochs := make([]index.EpochEntry, len(epochs))
	for i, es := range epochs {
		idxEpochs[i] = index.EpochEntry{Epoch: es.Epoch, StartOffset: es.StartOffset}
	}
	aborted, err := w.abortedOf(g)
	if err != nil {
		return out, err
	}

	tmp, err := os.CreateTemp(w.p.m.cfg.TempDir, "upload-rewrite-*.seg")
	if err != nil {
		return out, fmt.Errorf("temp file: %w", err)
	}
	defer func() {
		tmp.Close()
		os.Remove(tmp.Name())
	}()
	pr, pw := io.Pipe()
	changed := make(chan bool, 1)
	fed := make(chan error, 1)
	go func() {
		c, err := w.feed(pw, g, filter)
		changed <- c
		pw.CloseWithError(err) // nil: EOF for Build
		fed <- err
	}()
	bw := bufio.NewWriterSize(tmp, 1<<20)
	built, err := segment.Build(bw, pr, segment.BuildOptions{
		TopicID: w.p.topic, Partition: w.p.part,
		ChunkTarget: w.p.m.cfg.ChunkTarget, IndexInterval: w.p.m.cfg.IndexInterval,
		Epochs: idxEpochs, Aborted: aborted, ProducerSnapshot: last.Footer().ProducerSnapshot,
		UploaderEpoch: w.p.epoch, Now: time.UnixMilli(created),
	})
	pr.CloseWithError(errBuildStopped) // unblocks feed if Build stopped early
	if ferr := <-fed; ferr != nil && !errors.Is(ferr, errBuildStopped) {
		err = ferr // the cause; Build saw it as a read error
	}
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		return out, fmt.Errorf("build object: %w", err)
	}
	if !<-changed && len(g) == 1 {
		return out, nil
	}
	sum := built.Footer.Summary
	if sum.NextOffset != g[len(g)-1].NextOffset {
		return out, fmt.Errorf("%w: rewritten object ends at %d, want %d", segment.ErrCorrupt, sum.NextOffset, g[len(g)-1].NextOffset)
	}
	out.entry = manifest.Entry{
		BaseOffset: g[0].BaseOffset, NextOffset: g[len(g)-1].NextOffset,
		RecordCount: sum.RecordCount, StoredSize: built.Size, RawSize: sum.RawSize,
		FirstTimestamp: sum.FirstTimestamp, MaxTimestamp: sum.MaxTimestamp,
		Epochs: epochs, UploadEpoch: w.p.epoch, CreatedMs: sum.CreatedMs,
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return out, fmt.Errorf("rewind %s: %w", tmp.Name(), err)
	}
	if err := w.limit.Take(w.ctx, built.Size); err != nil {
		return out, err
	}
	key := w.p.Manifest().SegmentName(w.p.epoch, g[0].BaseOffset, manifest.NewUploadID()).Key()
	w.p.markRewriting(key)
	if err := w.p.m.store.PutIfAbsent(w.ctx, key, tmp, built.Size); err != nil {
		return out, fmt.Errorf("upload %s: %w", key, err)
	}
	w.written += built.Size
	out.key, out.entry.Key = key, key
	return out, nil
}

var errBuildStopped = errors.New("segment build stopped")

// abortedOf returns the aborted transactions of the run g from its
// objects' footers, the pieces of one transaction merged (mergeAborted).
// The rewrite keeps every control batch and the run's offsets, so the
// entries stay right for the new object; Build clips them to it (its first
// batch may lie above the run's base when compaction removed the first
// ones).
func (w *rewritePass) abortedOf(g []manifest.Entry) ([]index.AbortedTxn, error) {
	objs := make([]abortedObject, len(g))
	readers := make([]*segment.Reader, len(g))
	some := false
	for i := range g {
		r, err := w.p.reader(w.ctx, &g[i])
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", g[i].Key, err)
		}
		objs[i], readers[i] = newAbortedObject(&g[i], r.Footer()), r
		some = some || len(r.Footer().Aborted) > 0
	}
	if !some {
		return nil, nil
	}
	all, err := mergeAborted(objs, func(i int) (int64, bool, error) {
		ci := len(readers[i].Footer().Chunks) - 1
		raw, err := w.readChunk(g[i].Key, readers[i], ci)
		if err != nil {
			return 0, false, err
		}
		return lastControlBatch(raw, g[i].Key)
	})
	if err != nil {
		return nil, fmt.Errorf("aborted transactions of [%d, %d): %w", g[0].BaseOffset, g[len(g)-1].NextOffset, err)
	}
	return all, nil
}

// feed writes the batches of the run g, through filter, to pw and reports
// whether the output differs from the input.
func (w *rewritePass) feed(pw io.Writer, g []manifest.Entry, filter batchFilter) (changed bool, err error) {
	bw := bufio.NewWriterSize(pw, 256<<10)
	var out []byte
	for i := range g {
		e := &g[i]
		if w.startObject != nil {
			w.startObject(e)
		}
		err := w.scan(e, func(b []byte, h *batch.Header) error {
			if filter == nil {
				_, err := bw.Write(b)
				return err
			}
			var err error
			// The run's last batch ends the new object at the run's end.
			lastOfRun := i == len(g)-1 && h.LastOffset() == e.NextOffset-1
			out, err = filter(out[:0], b, h, e, lastOfRun)
			if err != nil {
				return err
			}
			if !bytes.Equal(out, b) {
				changed = true
			}
			_, err = bw.Write(out)
			return err
		})
		if err != nil {
			return changed, err
		}
	}
	return changed, bw.Flush()
}

// publish publishes one manifest replacing every rewritten run and, when
// point is set, recording the remote cleaner point.
func (w *rewritePass) publish(outs []rewritten, point *int64) error {
	nowMs := w.p.m.cfg.Now().UnixMilli()
	err := w.p.publish(w.ctx, func(next *manifest.Manifest) error {
		for _, o := range outs {
			if err := next.ReplaceRun(o.oldKeys, []manifest.Entry{o.entry}, nowMs); err != nil {
				return fmt.Errorf("tier: %s/%d: %w", w.p.topic, w.p.part, err)
			}
		}
		if point != nil {
			next.CleanerPoint = *point
		}
		return nil
	})
	// On error the new objects are orphans (unless an ambiguous create
	// landed the manifest): GC removes them after the grace period.
	return err
}

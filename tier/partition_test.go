package tier

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/strata-io/strata/ingest/batch"
	plog "github.com/strata-io/strata/ingest/log"
	"github.com/strata-io/strata/ingest/log/vfs"
	"github.com/strata-io/strata/tier/manifest"
	"github.com/strata-io/strata/tier/objstore"
	"github.com/strata-io/strata/tier/objstore/mem"
	"github.com/strata-io/strata/tier/segment"
)

// Shapes of the test data: small local segments cut into several chunks
// each, so reads, indexes and retention work on many objects and chunks.
const (
	testSegmentBytes  = 4096
	testChunkTarget   = 512
	testIndexInterval = 256
	testPartition     = 3
)

var testTopic = [16]byte{0x4f, 0x2a, 0x91, 0x07, 0x3c, 0x1d, 0x4e, 0x8b, 0x9a, 0x10, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// testClock is a settable clock for the tier (retention and GC decisions).
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func newTestClock(t time.Time) *testClock { return &testClock{t: t} }

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// newTestManager returns a Manager over store with the test object shapes,
// its temp files and read cache in a test directory. cfg may set Now and
// GracePeriod.
func newTestManager(t testing.TB, store objstore.Store, cfg Config) *Manager {
	t.Helper()
	cfg.Store = store
	cfg.TempDir = filepath.Join(t.TempDir(), "tier-tmp")
	cfg.ChunkTarget = testChunkTarget
	cfg.IndexInterval = testIndexInterval
	cfg.Logger = discardLogger()
	m, err := NewManager(context.Background(), cfg)
	if err != nil {
		t.Fatalf("NewManager: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// openTestLog opens a partition log with small segments on fsys.
func openTestLog(t testing.TB, fsys vfs.FS, dir string) *plog.Log {
	t.Helper()
	l, err := plog.Open(dir, plog.Config{SegmentBytes: testSegmentBytes, IndexIntervalBytes: testIndexInterval},
		plog.Options{FS: fsys, Logger: discardLogger()})
	if err != nil {
		t.Fatalf("open log %s: %v", dir, err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// batchGen builds record batches with known offsets and timestamps and
// appends the same batches to one or more logs.
type batchGen struct {
	rng    *rand.Rand
	tsOf   func(offset int64) int64 // timestamp of the record at offset
	next   int64                    // offset of the next record
	ts     []int64                  // timestamp of every record, by offset
	starts []int64                  // base offset of every batch
	// Idempotent producer (pid < 0: plain batches).
	pid    int64
	pepoch int16
	seq    int32
	last   []byte // the last batch as built, before an append patched it
}

func newBatchGen(seed uint64, tsOf func(int64) int64) *batchGen {
	if tsOf == nil {
		tsOf = func(off int64) int64 { return 1_700_000_000_000 + off*10 }
	}
	return &batchGen{rng: rand.New(rand.NewPCG(seed, seed^0x5eed)), tsOf: tsOf, pid: -1}
}

// build returns the next batch: 1 to 5 records with compressible values of
// varying size.
func (g *batchGen) build() []byte {
	n := 1 + g.rng.IntN(5)
	base := g.tsOf(g.next)
	recs := make([]batch.Record, n)
	for i := range recs {
		off := g.next + int64(i)
		recs[i] = batch.Record{
			TimestampDelta: g.tsOf(off) - base,
			Key:            []byte(fmt.Sprintf("k%d", off%7)),
			Value:          bytes.Repeat([]byte(fmt.Sprintf("value-%d.", off)), 1+g.rng.IntN(12)),
		}
	}
	opts := batch.BuildOptions{BaseTimestamp: base}
	if g.pid >= 0 {
		opts.Idempotent, opts.ProducerID, opts.ProducerEpoch, opts.BaseSequence = true, g.pid, g.pepoch, g.seq
	}
	return batch.Build(opts, recs...)
}

// appendTo appends count new batches to every log (the same bytes to each)
// at leader epoch, and waits until they are durable.
func (g *batchGen) appendTo(t testing.TB, epoch int32, count int, logs ...*plog.Log) {
	t.Helper()
	for range count {
		b := g.build()
		h, err := batch.ParseHeader(b)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range logs {
			res, err := l.Append(bytes.Clone(b), plog.AppendInfo{LeaderEpoch: epoch})
			if err != nil {
				t.Fatalf("append: %v", err)
			}
			if res.Duplicate || res.BaseOffset != g.next {
				t.Fatalf("append at %d: %+v", g.next, res)
			}
		}
		g.last = b
		g.starts = append(g.starts, g.next)
		for i := range int64(h.RecordCount) {
			g.ts = append(g.ts, g.tsOf(g.next+i))
		}
		g.next += int64(h.RecordCount)
		if g.pid >= 0 {
			g.seq += h.RecordCount
		}
	}
	waitAllDurable(t, g.next, logs...)
}

func waitAllDurable(t testing.TB, end int64, logs ...*plog.Log) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, l := range logs {
		if err := l.WaitDurable(ctx, end-1); err != nil {
			t.Fatalf("WaitDurable(%d): %v", end-1, err)
		}
	}
}

// batchStart returns the base offset of the batch holding offset.
func (g *batchGen) batchStart(offset int64) int64 {
	i, found := slices.BinarySearch(g.starts, offset)
	if found {
		return g.starts[i]
	}
	return g.starts[i-1]
}

// localBytes reads [from, to) from the local log: the batches concatenated,
// and the position of each batch's first byte by base offset.
func localBytes(t testing.TB, l *plog.Log, from, to int64) ([]byte, map[int64]int) {
	t.Helper()
	var out []byte
	pos := map[int64]int{}
	for off := from; off < to; {
		b, err := l.Read(off, 1<<20, to)
		if err != nil || len(b) == 0 {
			t.Fatalf("local Read(%d): %d bytes, %v", off, len(b), err)
		}
		for len(b) > 0 {
			h, err := batch.ParseHeader(b)
			if err != nil {
				t.Fatal(err)
			}
			pos[h.BaseOffset] = len(out)
			out = append(out, b[:h.Size()]...)
			off = h.LastOffset() + 1
			b = b[h.Size():]
		}
	}
	return out, pos
}

// sealedBelow returns the local segments Upload(hw) must upload: the
// sealed, durable prefix whose segments end at or below hw.
func sealedBelow(l *plog.Log, hw int64) []plog.SegmentInfo {
	var out []plog.SegmentInfo
	for _, s := range l.Segments() {
		if !s.Sealed || !s.Durable || s.Next > hw {
			break
		}
		out = append(out, s)
	}
	return out
}

// listKeys returns the keys under prefix.
func listKeys(t testing.TB, s objstore.Store, prefix string) []string {
	t.Helper()
	var keys []string
	err := s.List(context.Background(), prefix, func(o objstore.ObjectInfo) error {
		keys = append(keys, o.Key)
		return nil
	})
	if err != nil {
		t.Fatalf("list %s: %v", prefix, err)
	}
	return keys
}

func objectExists(t testing.TB, s objstore.Store, key string) bool {
	t.Helper()
	_, err := s.Stat(context.Background(), key)
	if err != nil && !errors.Is(err, objstore.ErrNotFound) {
		t.Fatalf("stat %s: %v", key, err)
	}
	return err == nil
}

// loadManifests decodes every manifest of the test partition, oldest first.
func loadManifests(t testing.TB, s objstore.Store) []*manifest.Manifest {
	t.Helper()
	var out []*manifest.Manifest
	for _, k := range listKeys(t, s, manifest.ManifestPrefix(testTopic, testPartition)) {
		rc, err := s.Get(context.Background(), k)
		if err != nil {
			t.Fatalf("get %s: %v", k, err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatalf("read %s: %v", k, err)
		}
		m, err := manifest.Decode(b)
		if err != nil {
			t.Fatalf("decode %s: %v", k, err)
		}
		if m.Key() != k {
			t.Fatalf("manifest %s holds %s", k, m.Key())
		}
		out = append(out, m)
	}
	return out
}

// newestManifest loads the newest manifest from the bucket alone.
func newestManifest(t testing.TB, s objstore.Store) *manifest.Manifest {
	t.Helper()
	c := manifest.NewClient(storeAdapter{s}, manifest.Options{})
	m, _, err := c.Load(context.Background(), testTopic, testPartition)
	if err != nil {
		t.Fatalf("load newest manifest: %v", err)
	}
	return m
}

// openObject opens a segment object as a whole-object reader.
func openObject(t testing.TB, s objstore.Store, key string) (*segment.Reader, int64) {
	t.Helper()
	info, err := s.Stat(context.Background(), key)
	if err != nil {
		t.Fatalf("stat %s: %v", key, err)
	}
	fetch := func(ctx context.Context, off, n int64) ([]byte, error) { return s.GetRange(ctx, key, off, n) }
	r, err := segment.OpenReader(context.Background(), fetch, info.Size, segment.WithName(key))
	if err != nil {
		t.Fatalf("open segment object %s: %v", key, err)
	}
	return r, info.Size
}

// objectBatches returns every chunk of an object concatenated: the raw
// batches it holds.
func objectBatches(t testing.TB, r *segment.Reader) []byte {
	t.Helper()
	var out []byte
	for i := range r.Footer().Chunks {
		raw, err := r.ReadChunk(context.Background(), i)
		if err != nil {
			t.Fatalf("chunk %d: %v", i, err)
		}
		out = append(out, raw...)
	}
	return out
}

func segmentFileBytes(t testing.TB, l *plog.Log, base int64) []byte {
	t.Helper()
	rc, size, err := l.OpenSegment(base)
	if err != nil {
		t.Fatalf("OpenSegment(%d): %v", base, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil || int64(len(b)) != size {
		t.Fatalf("read segment %d: %d of %d bytes, %v", base, len(b), size, err)
	}
	return b
}

// checkEntriesMatchSegments checks that the manifest's entries are exactly
// the local segments segs, contiguous, with fields that describe them.
func checkEntriesMatchSegments(t testing.TB, m *manifest.Manifest, segs []plog.SegmentInfo, g *batchGen, epoch int32) {
	t.Helper()
	if len(m.Entries) != len(segs) {
		t.Fatalf("manifest %s has %d entries, want %d", m.ID(), len(m.Entries), len(segs))
	}
	for i, e := range m.Entries {
		s := segs[i]
		if e.BaseOffset != s.Base || e.NextOffset != s.Next || e.RawSize != s.Size {
			t.Fatalf("entry %d [%d, %d) raw %d, local segment [%d, %d) size %d", i, e.BaseOffset, e.NextOffset, e.RawSize, s.Base, s.Next, s.Size)
		}
		if i > 0 && m.Entries[i-1].NextOffset != e.BaseOffset {
			t.Fatalf("entries %d and %d are not contiguous", i-1, i)
		}
		if e.RecordCount != s.Next-s.Base {
			t.Fatalf("entry %d: %d records, want %d", i, e.RecordCount, s.Next-s.Base)
		}
		wantMax := slices.Max(g.ts[s.Base:s.Next])
		if e.MaxTimestamp != wantMax || e.FirstTimestamp != g.ts[s.Base] {
			t.Fatalf("entry %d: timestamps first %d max %d, want %d %d", i, e.FirstTimestamp, e.MaxTimestamp, g.ts[s.Base], wantMax)
		}
		if e.UploadEpoch != epoch || len(e.Epochs) == 0 || e.Epochs[0].StartOffset != s.Base {
			t.Fatalf("entry %d: upload epoch %d, epochs %v", i, e.UploadEpoch, e.Epochs)
		}
		n, err := manifest.ParseSegmentKey(e.Key)
		if err != nil || n.BaseOffset != s.Base || n.Epoch != epoch || n.Topic != testTopic || n.Partition != testPartition {
			t.Fatalf("entry %d: key %s (%+v, %v)", i, e.Key, n, err)
		}
	}
}

// TestUploadSealedDurableBelowHW: Upload uploads exactly the sealed, durable
// segments that end at or below hw, oldest first, one manifest each, into a
// contiguous manifest; nothing twice, never the active segment. Each object
// is a valid segment object holding exactly the local segment's batches.
func TestUploadSealedDurableBelowHW(t *testing.T) {
	ctx := context.Background()
	store := mem.New()
	m := newTestManager(t, store, Config{})
	l := openTestLog(t, vfs.NewCrashFS(), "/p")
	g := newBatchGen(1, nil)
	g.appendTo(t, 1, 90, l)
	segs := l.Segments()
	if len(segs) < 8 {
		t.Fatalf("test needs more segments, got %d", len(segs))
	}
	p, err := m.OpenPartition(ctx, testTopic, testPartition, 1, l)
	if err != nil {
		t.Fatal(err)
	}
	if p.RemoteEndOffset() != 0 || len(p.Manifest().Entries) != 0 {
		t.Fatalf("fresh partition: remote end %d, %d entries", p.RemoteEndOffset(), len(p.Manifest().Entries))
	}

	// hw inside segment 4: segments 0..3 go, segment 4 does not.
	hw := segs[4].Base + (segs[4].Next-segs[4].Base)/2
	if hw == segs[4].Base {
		hw++
	}
	want := sealedBelow(l, hw)
	if len(want) != 4 {
		t.Fatalf("setup: %d segments below hw %d", len(want), hw)
	}
	n, err := p.Upload(ctx, hw)
	if err != nil || n != len(want) {
		t.Fatalf("Upload(%d) = %d, %v; want %d", hw, n, err, len(want))
	}
	cur := p.Manifest()
	checkEntriesMatchSegments(t, cur, want, g, 1)
	if cur.LogStartOffset != 0 || p.RemoteEndOffset() != want[len(want)-1].Next {
		t.Fatalf("log start %d, remote end %d", cur.LogStartOffset, p.RemoteEndOffset())
	}
	if got := newestManifest(t, store); got.ID() != cur.ID() {
		t.Fatalf("bucket's newest manifest %s, partition's %s", got.ID(), cur.ID())
	}

	// Nothing new below hw: no upload, no new object or manifest.
	before := listKeys(t, store, manifest.PartitionPrefix(testTopic, testPartition))
	if n, err := p.Upload(ctx, hw); err != nil || n != 0 {
		t.Fatalf("repeated Upload(%d) = %d, %v", hw, n, err)
	}
	if after := listKeys(t, store, manifest.PartitionPrefix(testTopic, testPartition)); !slices.Equal(before, after) {
		t.Fatalf("repeated upload changed the bucket:\n%v\n%v", before, after)
	}

	// Everything durable: all sealed segments, never the active one.
	hw = l.DurableOffset()
	want = sealedBelow(l, hw)
	n, err = p.Upload(ctx, hw)
	if err != nil || n != len(want)-4 {
		t.Fatalf("Upload(%d) = %d, %v; want %d", hw, n, err, len(want)-4)
	}
	cur = p.Manifest()
	checkEntriesMatchSegments(t, cur, want, g, 1)
	if act := l.Segments()[len(l.Segments())-1]; act.Sealed || p.RemoteEndOffset() != act.Base || act.Next == act.Base {
		t.Fatalf("remote end %d, active segment %+v", p.RemoteEndOffset(), act)
	}

	// Segment objects: exactly the entries, no stray uploads.
	var keys []string
	for _, e := range cur.Entries {
		keys = append(keys, e.Key)
	}
	if got := listKeys(t, store, manifest.SegmentPrefix(testTopic, testPartition)); !slices.Equal(got, keys) {
		t.Fatalf("segment objects %v, entries %v", got, keys)
	}
	// Every object is a valid segment object whose batches are the local
	// segment's bytes, described by its footer.
	multiChunk := 0
	for i, e := range cur.Entries {
		r, size := openObject(t, store, e.Key)
		if size != e.StoredSize {
			t.Fatalf("%s: %d bytes, entry says %d", e.Key, size, e.StoredSize)
		}
		sum := r.Footer().Summary
		if sum.BaseOffset != e.BaseOffset || sum.NextOffset != e.NextOffset || sum.RecordCount != e.RecordCount ||
			sum.RawSize != e.RawSize || sum.TopicID != testTopic || sum.Partition != testPartition || sum.UploaderEpoch != 1 {
			t.Fatalf("%s: summary %+v does not match entry %+v", e.Key, sum, e)
		}
		if got, want := objectBatches(t, r), segmentFileBytes(t, l, want[i].Base); !bytes.Equal(got, want) {
			t.Fatalf("%s: object batches (%d bytes) differ from the local segment (%d bytes)", e.Key, len(got), len(want))
		}
		if len(r.Footer().Chunks) > 1 {
			multiChunk++
		}
	}
	if multiChunk == 0 {
		t.Fatal("setup: no object has more than one chunk")
	}

	// One publish per segment, in offset order: every manifest extends the
	// previous one by at most one entry.
	ms := loadManifests(t, store)
	if ms[len(ms)-1].ID() != cur.ID() {
		t.Fatalf("last manifest %s, current %s", ms[len(ms)-1].ID(), cur.ID())
	}
	for i := 1; i < len(ms); i++ {
		prev, next := ms[i-1].Entries, ms[i].Entries
		if len(next) < len(prev) || len(next) > len(prev)+1 || !slices.EqualFunc(prev, next[:len(prev)], func(a, b manifest.Entry) bool { return a.Key == b.Key }) {
			t.Fatalf("manifest %s (%d entries) does not extend %s (%d entries) by one segment", ms[i].ID(), len(next), ms[i-1].ID(), len(prev))
		}
	}
}

// uploadAll appends count batches, rolls so that every record is in a
// sealed segment, and uploads everything.
func uploadAll(t testing.TB, p *Partition, l *plog.Log) {
	t.Helper()
	if _, err := l.Roll(); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Upload(context.Background(), l.DurableOffset()); err != nil {
		t.Fatal(err)
	}
	if p.RemoteEndOffset() != l.EndOffset() {
		t.Fatalf("remote end %d, log end %d", p.RemoteEndOffset(), l.EndOffset())
	}
}

// TestReadAfterLocalDeletion: once local retention deleted the uploaded
// segments, Read of every offset returns the bytes the local log returned,
// whole batches from the batch holding the offset, bounded by maxBytes but
// at least one batch.
func TestReadAfterLocalDeletion(t *testing.T) {
	ctx := context.Background()
	store := mem.New()
	m := newTestManager(t, store, Config{})
	l := openTestLog(t, vfs.NewCrashFS(), "/p")
	g := newBatchGen(2, nil)
	g.appendTo(t, 1, 70, l)
	p, err := m.OpenPartition(ctx, testTopic, testPartition, 1, l)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Upload(ctx, l.DurableOffset()); err != nil {
		t.Fatal(err)
	}
	end := p.RemoteEndOffset()
	all, pos := localBytes(t, l, 0, end)

	local, remote, err := p.ApplyRetention(ctx, Retention{RetentionMs: -1, RetentionBytes: -1, LocalRetentionMs: -1, LocalRetentionBytes: 0})
	if err != nil || remote != 0 || local != len(p.Manifest().Entries) {
		t.Fatalf("ApplyRetention = %d local, %d remote, %v; want %d local", local, remote, err, len(p.Manifest().Entries))
	}
	if l.LocalStartOffset() != end || l.StartOffset() != 0 {
		t.Fatalf("local start %d, log start %d, remote end %d", l.LocalStartOffset(), l.StartOffset(), end)
	}
	if _, err := l.Read(0, 1<<20, end); !errors.Is(err, plog.ErrBelowLocalStart) {
		t.Fatalf("local read below the local start: %v", err)
	}

	rng := rand.New(rand.NewPCG(2, 2))
	for off := int64(0); off < end; off++ {
		maxBytes := []int{1, 200, 700, 1 << 20}[rng.IntN(4)]
		b, err := p.Read(ctx, off, maxBytes)
		if err != nil {
			t.Fatalf("Read(%d): %v", off, err)
		}
		h, err := batch.ParseHeader(b)
		if err != nil || h.BaseOffset != g.batchStart(off) {
			t.Fatalf("Read(%d) starts with batch %d (%v), want the batch at %d", off, h.BaseOffset, err, g.batchStart(off))
		}
		at := pos[h.BaseOffset]
		if at+len(b) > len(all) || !bytes.Equal(b, all[at:at+len(b)]) {
			t.Fatalf("Read(%d, %d): %d bytes differ from the local log's", off, maxBytes, len(b))
		}
		if len(b) > max(maxBytes, h.Size()) {
			t.Fatalf("Read(%d, %d) returned %d bytes", off, maxBytes, len(b))
		}
	}
	// Reading on from each answer yields the whole log, byte for byte.
	var got []byte
	for off := int64(0); off < end; {
		b, err := p.Read(ctx, off, 1<<20)
		if err != nil || len(b) == 0 {
			t.Fatalf("Read(%d): %d bytes, %v", off, len(b), err)
		}
		got = append(got, b...)
		for len(b) > 0 {
			h, _ := batch.ParseHeader(b)
			off = h.LastOffset() + 1
			b = b[h.Size():]
		}
	}
	if !bytes.Equal(got, all) {
		t.Fatalf("remote scan: %d bytes differ from the local log's %d", len(got), len(all))
	}
	for _, off := range []int64{end, end + 100, -1} {
		if _, err := p.Read(ctx, off, 1<<20); !errors.Is(err, plog.ErrOffsetOutOfRange) {
			t.Fatalf("Read(%d) outside the remote range: %v", off, err)
		}
	}
}

// TestRemoteReadCost: once a segment's footer is cached, a read of a random
// offset in a chunk not read before costs exactly one GetRange and no other
// request.
func TestRemoteReadCost(t *testing.T) {
	ctx := context.Background()
	base := mem.New()
	l := openTestLog(t, vfs.NewCrashFS(), "/p")
	g := newBatchGen(3, nil)
	g.appendTo(t, 1, 120, l)
	up, err := newTestManager(t, base, Config{}).OpenPartition(ctx, testTopic, testPartition, 1, l)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := up.Upload(ctx, l.DurableOffset()); err != nil {
		t.Fatal(err)
	}
	all, pos := localBytes(t, l, 0, up.RemoteEndOffset())

	// A second broker's view, with cold caches, through a counting store.
	counting := objstore.NewCounting(base)
	m := newTestManager(t, counting, Config{})
	p, err := m.OpenPartition(ctx, testTopic, testPartition, 1, l)
	if err != nil {
		t.Fatal(err)
	}
	cur := p.Manifest()
	// Cache every footer (and chunk 0) by reading each segment's first offset.
	for _, e := range cur.Entries {
		if _, err := p.Read(ctx, e.BaseOffset, 1); err != nil {
			t.Fatal(err)
		}
	}
	rng := rand.New(rand.NewPCG(3, 3))
	tried := 0
	for _, i := range rng.Perm(len(cur.Entries)) {
		e := &cur.Entries[i]
		r, err := p.reader(ctx, e)
		if err != nil {
			t.Fatal(err)
		}
		chunks := r.Footer().Chunks
		if len(chunks) < 3 {
			continue
		}
		// A chunk after chunk 1: not the next one after a chunk read
		// before (no read-ahead) and not cached.
		c := chunks[2+rng.IntN(len(chunks)-2)]
		off := c.FirstOffset + rng.Int64N(c.LastOffset-c.FirstOffset+1)
		before := counting.Counts()
		b, err := p.Read(ctx, off, 1<<20)
		if err != nil {
			t.Fatalf("Read(%d): %v", off, err)
		}
		diff := counting.Counts().Sub(before)
		var want objstore.Counts
		want[objstore.OpGetRange] = objstore.OpCount{Calls: 1, Bytes: diff.Get(objstore.OpGetRange).Bytes}
		if diff != want {
			t.Fatalf("cold read of offset %d in %s: %s, want exactly one get-range", off, e.Key, diff)
		}
		h, _ := batch.ParseHeader(b)
		if at := pos[h.BaseOffset]; h.BaseOffset != g.batchStart(off) || !bytes.Equal(b, all[at:at+len(b)]) {
			t.Fatalf("Read(%d) returned other bytes than the local log", off)
		}
		tried++
	}
	if tried < 5 {
		t.Fatalf("setup: only %d segments with 3 or more chunks", tried)
	}
}

// TestOpenPartitionContinuesFromBucket: a partition whose local log is empty
// (a wiped disk, a new broker) continues at the remote end with the log
// start, leader epochs and producer state of the bucket, so a retry of the
// last idempotent batch is recognised as a duplicate.
func TestOpenPartitionContinuesFromBucket(t *testing.T) {
	ctx := context.Background()
	store := mem.New()
	m := newTestManager(t, store, Config{})
	l := openTestLog(t, vfs.NewCrashFS(), "/p")
	g := newBatchGen(4, nil)
	g.pid, g.pepoch = 4242, 3
	g.appendTo(t, 1, 30, l)
	epoch5 := g.next
	g.appendTo(t, 5, 30, l)
	p, err := m.OpenPartition(ctx, testTopic, testPartition, 5, l)
	if err != nil {
		t.Fatal(err)
	}
	uploadAll(t, p, l)
	// Total retention drops the first segments, so the log start is not 0.
	first := p.Manifest().Entries[0]
	if err := l.SetStartOffset(first.NextOffset); err != nil {
		t.Fatal(err)
	}
	if _, _, err := p.ApplyRetention(ctx, Retention{RetentionMs: -1, RetentionBytes: -1, LocalRetentionMs: -1, LocalRetentionBytes: -1}); err != nil {
		t.Fatal(err)
	}
	cur := p.Manifest()
	if cur.LogStartOffset != first.NextOffset {
		t.Fatalf("setup: log start %d, want %d", cur.LogStartOffset, first.NextOffset)
	}
	end := cur.EndOffset()
	retry := bytes.Clone(g.last)
	lastBase := g.starts[len(g.starts)-1]

	// A wiped disk: a fresh, empty log on another file system.
	fresh := openTestLog(t, vfs.NewCrashFS(), "/p")
	m2 := newTestManager(t, store, Config{})
	p2, err := m2.OpenPartition(ctx, testTopic, testPartition, 6, fresh)
	if err != nil {
		t.Fatalf("OpenPartition on an empty log: %v", err)
	}
	if fresh.StartOffset() != cur.LogStartOffset || fresh.EndOffset() != end || fresh.LocalStartOffset() != end {
		t.Fatalf("reset log: start %d, local start %d, end %d; want start %d, end %d",
			fresh.StartOffset(), fresh.LocalStartOffset(), fresh.EndOffset(), cur.LogStartOffset, end)
	}
	if p2.RemoteEndOffset() != end {
		t.Fatalf("remote end %d, want %d", p2.RemoteEndOffset(), end)
	}
	// Leader epochs come back from the footers.
	if ep, off := fresh.EndOffsetForEpoch(1); ep != 1 || off != epoch5 {
		t.Fatalf("EndOffsetForEpoch(1) = (%d, %d), want (1, %d)", ep, off, epoch5)
	}
	// A retry of the last idempotent batch is a duplicate with its original
	// offsets; the next batch of the producer continues at the remote end.
	res, err := fresh.Append(retry, plog.AppendInfo{LeaderEpoch: 6})
	if err != nil || !res.Duplicate || res.BaseOffset != lastBase {
		t.Fatalf("retry of the last batch: %+v, %v; want a duplicate at %d", res, err, lastBase)
	}
	b := g.build()
	res, err = fresh.Append(b, plog.AppendInfo{LeaderEpoch: 6})
	if err != nil || res.Duplicate || res.BaseOffset != end {
		t.Fatalf("next batch: %+v, %v; want it at %d", res, err, end)
	}
	// History is still readable through the new partition.
	for off := cur.LogStartOffset; off < end; off += 7 {
		if b, err := p2.Read(ctx, off, 1); err != nil || len(b) == 0 {
			t.Fatalf("Read(%d) after the reset: %d bytes, %v", off, len(b), err)
		}
	}

	// A log that holds records but ends below the remote end is refused.
	short := openTestLog(t, vfs.NewCrashFS(), "/p")
	newBatchGen(9, nil).appendTo(t, 1, 2, short)
	if _, err := m2.OpenPartition(ctx, testTopic, testPartition, 6, short); err == nil || short.EndOffset() >= end {
		t.Fatalf("OpenPartition on a short log with records: %v", err)
	}
	// A log at or past the remote end is left as it is.
	if _, err := m2.OpenPartition(ctx, testTopic, testPartition, 6, l); err != nil || l.EndOffset() != end {
		t.Fatalf("OpenPartition on the full log: %v, end %d", err, l.EndOffset())
	}
}

// TestOffsetForTimestampAndMaxTimestamp: time lookups across the remote
// entries (timestamps out of order, the largest one twice) give the first
// record at or after the time, and the first record carrying the largest
// timestamp, within the remote log range.
func TestOffsetForTimestampAndMaxTimestamp(t *testing.T) {
	ctx := context.Background()
	store := mem.New()
	m := newTestManager(t, store, Config{})
	l := openTestLog(t, vfs.NewCrashFS(), "/p")
	const t0 = 1_700_000_000_000
	var spikes [2]int64 = [2]int64{140, 260}
	g := newBatchGen(5, func(off int64) int64 {
		if off == spikes[0] || off == spikes[1] {
			return t0 + 1_000_000
		}
		return t0 + off*100 + (off%7)*40 - 120 // not monotonic
	})
	g.appendTo(t, 1, 130, l)
	if g.next <= spikes[1] {
		t.Fatalf("setup: only %d records", g.next)
	}
	p, err := m.OpenPartition(ctx, testTopic, testPartition, 1, l)
	if err != nil {
		t.Fatal(err)
	}
	uploadAll(t, p, l)
	if _, _, err := p.ApplyRetention(ctx, Retention{RetentionMs: -1, RetentionBytes: -1, LocalRetentionMs: -1, LocalRetentionBytes: 0}); err != nil {
		t.Fatal(err)
	}
	if l.LocalStartOffset() != p.RemoteEndOffset() {
		t.Fatalf("setup: local start %d, remote end %d", l.LocalStartOffset(), p.RemoteEndOffset())
	}

	check := func(from int64) {
		t.Helper()
		truth := func(ts int64) (int64, int64, bool) {
			for off := from; off < g.next; off++ {
				if g.ts[off] >= ts {
					return off, g.ts[off], true
				}
			}
			return -1, -1, false
		}
		var probes []int64
		for off := from; off < g.next; off++ {
			probes = append(probes, g.ts[off]-1, g.ts[off], g.ts[off]+1)
		}
		probes = append(probes, 0, t0+2_000_000)
		for _, ts := range probes {
			off, rts, ok, err := p.OffsetForTimestamp(ctx, ts)
			woff, wts, wok := truth(ts)
			if err != nil || ok != wok || (ok && (off != woff || rts != wts)) {
				t.Fatalf("OffsetForTimestamp(%d) from %d = (%d, %d, %v, %v), want (%d, %d, %v)", ts, from, off, rts, ok, err, woff, wts, wok)
			}
		}
		maxTs, maxOff := int64(-1), int64(-1)
		for off := from; off < g.next; off++ {
			if g.ts[off] > maxTs {
				maxTs, maxOff = g.ts[off], off
			}
		}
		off, ts, err := p.MaxTimestamp(ctx)
		if err != nil || off != maxOff || ts != maxTs {
			t.Fatalf("MaxTimestamp from %d = (%d, %d, %v), want (%d, %d)", from, off, ts, err, maxOff, maxTs)
		}
	}
	check(0)

	// Total retention drops the segments up to and including the first
	// spike: lookups answer from what is left.
	var drop int64
	for _, e := range p.Manifest().Entries {
		drop = e.NextOffset
		if e.NextOffset > spikes[0] {
			break
		}
	}
	if err := l.SetStartOffset(drop); err != nil {
		t.Fatal(err)
	}
	if _, remote, err := p.ApplyRetention(ctx, Retention{RetentionMs: -1, RetentionBytes: -1, LocalRetentionMs: -1, LocalRetentionBytes: 0}); err != nil || remote == 0 {
		t.Fatalf("retention: %d dropped, %v", remote, err)
	}
	if p.Manifest().LogStartOffset != drop || drop > spikes[1] {
		t.Fatalf("setup: log start %d, want %d (below %d)", p.Manifest().LogStartOffset, drop, spikes[1])
	}
	check(drop)
}

// readAllRemote reads [from, to) through p and fails on any error.
func readAllRemote(t testing.TB, p *Partition, from, to int64) []byte {
	t.Helper()
	var out []byte
	for off := from; off < to; {
		b, err := p.Read(context.Background(), off, 1<<20)
		if err != nil || len(b) == 0 {
			t.Fatalf("Read(%d): %d bytes, %v", off, len(b), err)
		}
		out = append(out, b...)
		for len(b) > 0 {
			h, _ := batch.ParseHeader(b)
			off = h.LastOffset() + 1
			b = b[h.Size():]
		}
	}
	return out
}

// TestTimeLookupsWithLogStartInsideSegment: after DeleteRecords moved the
// log start inside the first remote segment, time lookups answer from the
// records at or after the log start only: never a record below it, and
// never the log start offset paired with another record's timestamp.
func TestTimeLookupsWithLogStartInsideSegment(t *testing.T) {
	ctx := context.Background()
	m := newTestManager(t, mem.New(), Config{})
	l := openTestLog(t, vfs.NewCrashFS(), "/p")
	const t0 = 1_700_000_000_000
	spikes := map[int64]int64{3: t0 + 500, 25: t0 + 400, 60: t0 + 300}
	g := newBatchGen(6, func(off int64) int64 {
		if ts, ok := spikes[off]; ok {
			return ts
		}
		return t0 + off%5
	})
	g.appendTo(t, 1, 60, l)
	p, err := m.OpenPartition(ctx, testTopic, testPartition, 1, l)
	if err != nil {
		t.Fatal(err)
	}
	uploadAll(t, p, l)
	start := g.batchStart(12) // a batch boundary between the first two spikes
	if e0 := p.Manifest().Entries[0]; start <= 3 || e0.NextOffset <= 25 {
		t.Fatalf("setup: start %d, first segment [%d, %d)", start, e0.BaseOffset, e0.NextOffset)
	}
	if err := l.SetStartOffset(start); err != nil { // DeleteRecords
		t.Fatal(err)
	}
	if _, _, err := p.ApplyRetention(ctx, Retention{RetentionMs: -1, RetentionBytes: -1, LocalRetentionMs: -1, LocalRetentionBytes: 0}); err != nil {
		t.Fatal(err)
	}
	if p.Manifest().LogStartOffset != start || l.LocalStartOffset() != p.RemoteEndOffset() {
		t.Fatalf("setup: remote log start %d, want %d", p.Manifest().LogStartOffset, start)
	}
	for _, ts := range []int64{t0 + 300, t0 + 400, t0 + 450, t0 + 3} {
		want, wantTs := int64(-1), int64(-1)
		for off := start; off < g.next; off++ {
			if g.ts[off] >= ts {
				want, wantTs = off, g.ts[off]
				break
			}
		}
		off, rts, ok, err := p.OffsetForTimestamp(ctx, ts)
		if err != nil || ok != (want >= 0) || (ok && (off != want || rts != wantTs)) {
			t.Errorf("OffsetForTimestamp(%d) = (%d, %d, %v, %v), want (%d, %d, %v)", ts, off, rts, ok, err, want, wantTs, want >= 0)
		}
	}
	if off, ts, err := p.MaxTimestamp(ctx); err != nil || off != 25 || ts != t0+400 {
		t.Errorf("MaxTimestamp = (%d, %d, %v), want (25, %d): the largest timestamp at or after the log start", off, ts, err, t0+400)
	}
}

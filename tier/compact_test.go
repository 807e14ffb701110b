package tier

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/strata-io/strata/compactor"
	"github.com/strata-io/strata/ingest/batch"
	plog "github.com/strata-io/strata/ingest/log"
	"github.com/strata-io/strata/ingest/log/vfs"
	"github.com/strata-io/strata/tier/manifest"
	"github.com/strata-io/strata/tier/objstore"
	"github.com/strata-io/strata/tier/objstore/faulty"
	"github.com/strata-io/strata/tier/objstore/mem"
)

// keyGen produces updates and deletes over a small key space from two
// idempotent producers (A stops two thirds of the way, so its last batch
// lies inside the history), and keeps the model: what every offset holds
// and the latest offset of every key.
type keyGen struct {
	rng    *rand.Rand
	keys   int
	next   int64
	tsBase int64
	seq    map[int64]int32
	lastOf map[int64]int64 // producer id -> base offset of its last batch
	recs   map[int64]modelRec
	latest map[string]int64
}

type modelRec struct {
	key, value []byte // value nil: a tombstone
}

const (
	producerA = 11
	producerB = 12
)

func newKeyGen(seed uint64, keys int, tsBase int64) *keyGen {
	return &keyGen{
		rng: rand.New(rand.NewPCG(seed, seed^0xc0ffee)), keys: keys, tsBase: tsBase,
		seq: map[int64]int32{}, lastOf: map[int64]int64{}, recs: map[int64]modelRec{}, latest: map[string]int64{},
	}
}

// appendTo appends n batches of 1 to 6 records to l; producer A takes part
// only when withA is set.
func (g *keyGen) appendTo(t testing.TB, l *plog.Log, n int, withA bool) {
	t.Helper()
	for range n {
		pid := int64(producerB)
		if withA && g.rng.IntN(2) == 0 {
			pid = producerA
		}
		recs := make([]batch.Record, 1+g.rng.IntN(6))
		for i := range recs {
			off := g.next + int64(i)
			k := fmt.Appendf(nil, "key-%03d", g.rng.IntN(g.keys))
			var v []byte
			if g.rng.IntN(8) > 0 {
				v = fmt.Appendf(nil, "%s@%d:%s", k, off, bytes.Repeat([]byte{'x'}, g.rng.IntN(40)))
			}
			recs[i] = batch.Record{TimestampDelta: int64(i) * 1000, Key: k, Value: v}
			g.recs[off] = modelRec{key: k, value: v}
			g.latest[string(k)] = off
		}
		b := batch.Build(batch.BuildOptions{
			BaseTimestamp: g.tsBase + g.next*1000, Codec: []int{batch.CodecNone, batch.CodecZstd}[g.rng.IntN(2)],
			Idempotent: true, ProducerID: pid, BaseSequence: g.seq[pid],
		}, recs...)
		res, err := l.Append(b, plog.AppendInfo{LeaderEpoch: 1})
		if err != nil || res.BaseOffset != g.next {
			t.Fatalf("append at %d: %+v, %v", g.next, res, err)
		}
		g.lastOf[pid] = g.next
		g.seq[pid] += int32(len(recs))
		g.next += int64(len(recs))
	}
	waitAllDurable(t, g.next, l)
}

// deleteKeys appends one batch of tombstones (from producer B) for the
// given key numbers.
func (g *keyGen) deleteKeys(t testing.TB, l *plog.Log, keys ...int) {
	t.Helper()
	recs := make([]batch.Record, len(keys))
	for i, k := range keys {
		key := fmt.Appendf(nil, "key-%03d", k)
		recs[i] = batch.Record{Key: key}
		g.recs[g.next+int64(i)] = modelRec{key: key}
		g.latest[string(key)] = g.next + int64(i)
	}
	b := batch.Build(batch.BuildOptions{BaseTimestamp: g.tsBase + g.next*1000, Idempotent: true, ProducerID: producerB, BaseSequence: g.seq[producerB]}, recs...)
	if res, err := l.Append(b, plog.AppendInfo{LeaderEpoch: 1}); err != nil || res.BaseOffset != g.next {
		t.Fatalf("append tombstones at %d: %+v, %v", g.next, res, err)
	}
	g.lastOf[producerB] = g.next
	g.seq[producerB] += int32(len(keys))
	g.next += int64(len(keys))
	waitAllDurable(t, g.next, l)
}

// readRec is a record read back, with the header of its batch.
type readRec struct {
	offset int64
	key    []byte
	value  []byte
}

// bucketView is what a reader with one manifest sees: every batch header
// and record of the objects it names, read from the store alone.
type bucketView struct {
	batches []batch.Header
	recs    []readRec
}

// readBucket reads every object m names straight from the store (no
// caches), checking that each is complete and covers its entry, and
// returns its batches and records; offsets must increase strictly.
func readBucket(t testing.TB, s objstore.Store, m *manifest.Manifest) bucketView {
	t.Helper()
	ctx := context.Background()
	var v bucketView
	prev := int64(-1)
	for _, e := range m.Entries {
		info, err := s.Stat(ctx, e.Key)
		if err != nil || info.Size != e.StoredSize {
			t.Fatalf("manifest %s names %s (%d bytes): %+v, %v", m.ID(), e.Key, e.StoredSize, info, err)
		}
		r, _ := openObject(t, s, e.Key)
		if sum := r.Footer().Summary; sum.BaseOffset < e.BaseOffset || sum.NextOffset != e.NextOffset || sum.RecordCount != e.RecordCount {
			t.Fatalf("%s holds [%d, %d) with %d records, its entry [%d, %d) with %d", e.Key, sum.BaseOffset, sum.NextOffset, sum.RecordCount, e.BaseOffset, e.NextOffset, e.RecordCount)
		}
		raw := objectBatches(t, r)
		for len(raw) > 0 {
			h, err := batch.ParseHeader(raw)
			if err != nil {
				t.Fatal(err)
			}
			if h.BaseOffset <= prev || h.BaseOffset < e.BaseOffset || h.LastOffset() >= e.NextOffset {
				t.Fatalf("%s: batch [%d, %d] after offset %d, entry [%d, %d)", e.Key, h.BaseOffset, h.LastOffset(), prev, e.BaseOffset, e.NextOffset)
			}
			prev = h.LastOffset()
			v.batches = append(v.batches, h)
			err = batch.Records(raw[:h.Size()], 0, func(rec batch.Record) error {
				v.recs = append(v.recs, readRec{offset: h.BaseOffset + int64(rec.OffsetDelta), key: bytes.Clone(rec.Key), value: bytes.Clone(rec.Value)})
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			raw = raw[h.Size():]
		}
	}
	return v
}

// checkRecords checks records read from [from, end) against the model:
// every record is what was written at its offset; with latestOnly, each is
// the latest of its key, and every key whose latest record lies in the
// range is there (a tombstone may be missing when tombstonesMayGo).
func (g *keyGen) checkRecords(t testing.TB, recs []readRec, from, end int64, latestOnly, tombstonesMayGo bool) {
	t.Helper()
	seen := map[string]bool{}
	prev := int64(-1)
	for _, r := range recs {
		want, ok := g.recs[r.offset]
		if r.offset <= prev || !ok || !bytes.Equal(r.key, want.key) || !bytes.Equal(r.value, want.value) || (r.value == nil) != (want.value == nil) {
			t.Fatalf("offset %d holds %q=%q after %d; written %q=%q", r.offset, r.key, r.value, prev, want.key, want.value)
		}
		prev = r.offset
		if latestOnly && g.latest[string(r.key)] != r.offset && g.latest[string(r.key)] < end {
			t.Fatalf("offset %d holds %q, superseded at %d", r.offset, r.key, g.latest[string(r.key)])
		}
		seen[string(r.key)] = true
	}
	for k, off := range g.latest {
		if off < from || off >= end || seen[k] {
			continue
		}
		if g.recs[off].value != nil || !tombstonesMayGo {
			t.Fatalf("the latest record of %s (offset %d) is gone", k, off)
		}
	}
}

// readPartition reads [from, to) through Partition.Read, batch by batch
// with the offsets a consumer would ask for, and returns the records.
func readPartition(t testing.TB, p *Partition, from, to int64) []readRec {
	t.Helper()
	var out []readRec
	for off := from; off < to; {
		b, err := p.Read(context.Background(), off, 1<<20)
		if err != nil || len(b) == 0 {
			t.Fatalf("Read(%d): %d bytes, %v", off, len(b), err)
		}
		for len(b) > 0 {
			h, _ := batch.ParseHeader(b)
			if h.LastOffset() < off {
				t.Fatalf("Read(%d) returned the batch [%d, %d]: offsets went backwards", off, h.BaseOffset, h.LastOffset())
			}
			err := batch.Records(b[:h.Size()], 0, func(rec batch.Record) error {
				if o := h.BaseOffset + int64(rec.OffsetDelta); o >= off {
					out = append(out, readRec{offset: o, key: bytes.Clone(rec.Key), value: bytes.Clone(rec.Value)})
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			off = h.LastOffset() + 1
			b = b[h.Size():]
		}
	}
	return out
}

// compactEnv is a tiered partition whose history was written by a keyGen
// and uploaded, with a settable clock at the real time (the memory store
// stamps objects with it) and records from 100 hours before.
type compactEnv struct {
	ctx   context.Context
	store objstore.Store
	clock *testClock
	l     *plog.Log
	p     *Partition
	g     *keyGen
}

const compactGrace = 10 * time.Minute

func newCompactEnv(t *testing.T, store objstore.Store, seed uint64, keys, batches int) *compactEnv {
	t.Helper()
	now := time.Now().Truncate(time.Millisecond)
	e := &compactEnv{ctx: context.Background(), store: store, clock: newTestClock(now)}
	e.l = openTestLog(t, vfs.NewCrashFS(), "/p")
	e.g = newKeyGen(seed, keys, now.Add(-100*time.Hour).UnixMilli())
	e.g.appendTo(t, e.l, batches, true)
	m := newTestManager(t, store, Config{Now: e.clock.Now, GracePeriod: compactGrace})
	var err error
	if e.p, err = m.OpenPartition(e.ctx, testTopic, testPartition, 1, e.l); err != nil {
		t.Fatal(err)
	}
	uploadAll(t, e.p, e.l)
	return e
}

// compactCfg compacts whatever is dirty, groups objects up to 16 KiB of
// batches, and keeps tombstones for deleteRetention.
func compactCfg(deleteRetention time.Duration) RemoteCompactOptions {
	return RemoteCompactOptions{Config: compactor.Config{
		CleanupPolicy: compactor.Compact, RemoteStorage: true, RetentionMs: -1, RetentionBytes: -1,
		LocalRetentionMs: -1, LocalRetentionBytes: -1, SegmentBytes: 16 << 10,
		MinCleanableDirtyRatio: 0.5, DeleteRetentionMs: deleteRetention.Milliseconds(),
	}}
}

// TestCompactLatestPerKey: after a pass, a reader from the remote log start
// sees exactly the latest record of each key at its original offset (tombstones
// kept within delete.retention.ms), through Partition.Read and straight from
// the bucket; the manifest covers the same offsets with fewer objects and
// records the cleaner point. A second pass after more uploads cleans the
// clean part again against the new dirty part and, past the delete
// horizon, removes tombstones; producers' last batches survive.
func TestCompactLatestPerKey(t *testing.T) {
	e := newCompactEnv(t, mem.New(), 1, 40, 400)
	e.g.deleteKeys(t, e.l, 30, 31, 32, 33, 34, 35)
	uploadAll(t, e.p, e.l)
	before := e.p.Manifest()
	end := before.EndOffset()
	opts := compactCfg(1000 * time.Hour)
	res, err := e.p.Compact(e.ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	after := e.p.Manifest()
	t.Logf("pass 1: %d objects -> %d; %+v", len(before.Entries), len(after.Entries), res)
	if !res.Plan.Clean || res.MapFull || res.From != 0 || res.End != end || res.RecordsRemoved == 0 || res.TombstonesRemoved != 0 {
		t.Fatalf("pass 1 result %+v", res)
	}
	if after.CleanerPoint != end || after.LogStartOffset != before.LogStartOffset || after.EndOffset() != end || after.Entries[0].BaseOffset != before.Entries[0].BaseOffset {
		t.Fatalf("manifest after pass 1: cleaner point %d, log start %d, [%d, %d)", after.CleanerPoint, after.LogStartOffset, after.Entries[0].BaseOffset, after.EndOffset())
	}
	if len(after.Entries) >= len(before.Entries) || len(after.Entries) != len(res.Plan.Groups) || res.ObjectsIn != len(before.Entries) {
		t.Fatalf("%d objects became %d (%d planned groups)", len(before.Entries), len(after.Entries), len(res.Plan.Groups))
	}
	if loaded := newestManifest(t, e.store); loaded.ID() != after.ID() || loaded.CleanerPoint != end {
		t.Fatalf("bucket's newest manifest %s cleaner point %d", loaded.ID(), loaded.CleanerPoint)
	}
	recs := readPartition(t, e.p, after.LogStartOffset, end)
	e.g.checkRecords(t, recs, 0, end, true, false)
	if len(recs) != len(e.g.latest) {
		t.Fatalf("read %d records, want one per key: %d", len(recs), len(e.g.latest))
	}
	v := readBucket(t, e.store, after)
	e.g.checkRecords(t, v.recs, 0, end, true, false)
	checkProducerBatches(t, v, e.g)

	// Nothing dirty: no pass.
	if res, err := e.p.Compact(e.ctx, opts); err != nil || res.Plan.Clean || e.p.Manifest().ID() != after.ID() {
		t.Fatalf("pass with nothing dirty: %+v, %v", res.Plan, err)
	}

	// More history, from B only (A's last batch is now in the clean part)
	// and over keys 0 to 19 only, so that the tombstones of keys 30 to 35
	// stay in the clean part, now past delete.retention.ms.
	e.g.keys = 20
	e.g.appendTo(t, e.l, 250, false)
	uploadAll(t, e.p, e.l)
	end2 := e.p.RemoteEndOffset()
	res, err = e.p.Compact(e.ctx, compactCfg(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	m2 := e.p.Manifest()
	t.Logf("pass 2: %+v", res)
	if !res.Plan.Clean || res.Plan.DirtyFrom != end || res.End != end2 || m2.CleanerPoint != end2 || res.TombstonesRemoved < 6 {
		t.Fatalf("pass 2 result %+v", res)
	}
	v = readBucket(t, e.store, m2)
	// Tombstones may go only from the part clean before the pass.
	e.g.checkRecords(t, v.recs, 0, end2, true, true)
	for k := 30; k <= 35; k++ {
		if slices.ContainsFunc(v.recs, func(r readRec) bool { return string(r.key) == fmt.Sprintf("key-%03d", k) }) {
			t.Fatalf("key-%03d: its tombstone outlived delete.retention.ms", k)
		}
	}
	for k, off := range e.g.latest {
		if e.g.recs[off].value == nil && off >= end && !slices.ContainsFunc(v.recs, func(r readRec) bool { return r.offset == off }) {
			t.Fatalf("tombstone of %s at %d, dirty in pass 2, was removed", k, off)
		}
	}
	checkProducerBatches(t, v, e.g)
	e.g.checkRecords(t, readPartition(t, e.p, m2.LogStartOffset, end2), 0, end2, true, true)
}

// checkProducerBatches: every producer's last batch is still in the
// bucket (empty if its records were superseded), and the last object's
// producer snapshot still names it.
func checkProducerBatches(t testing.TB, v bucketView, g *keyGen) {
	t.Helper()
	for pid, base := range g.lastOf {
		if !slices.ContainsFunc(v.batches, func(h batch.Header) bool { return h.ProducerID == pid && h.BaseOffset == base }) {
			t.Fatalf("the last batch of producer %d (at %d) was compacted away", pid, base)
		}
	}
}

// TestCompactKeepsOldObjectsForOldReaders: a reader holding the manifest
// from before a pass reads the old objects, unchanged, until GC deletes
// them after the grace period; the new objects are never touched; a reader
// that kept reading across the pass (Partition.Read, which takes the newest
// manifest) never fails or goes backwards.
func TestCompactKeepsOldObjectsForOldReaders(t *testing.T) {
	e := newCompactEnv(t, mem.New(), 2, 40, 300)
	old := e.p.Manifest()
	oldView := readBucket(t, e.store, old)
	end := old.EndOffset()
	// A consumer reads the first half before the pass and the rest after.
	mid := old.Entries[len(old.Entries)/2].BaseOffset + 1
	recs := readPartition(t, e.p, 0, mid)
	if _, err := e.p.Compact(e.ctx, compactCfg(1000*time.Hour)); err != nil {
		t.Fatal(err)
	}
	recs = append(recs, readPartition(t, e.p, mid, end)...)
	e.g.checkRecords(t, recs, 0, end, false, false)

	cur := e.p.Manifest()
	start := e.clock.Now()
	for _, at := range []time.Duration{0, compactGrace / 2, compactGrace - time.Second} {
		e.clock.Set(start.Add(at))
		if _, err := e.p.GC(e.ctx); err != nil {
			t.Fatal(err)
		}
		if got := readBucket(t, e.store, old); !slices.EqualFunc(got.recs, oldView.recs, func(a, b readRec) bool {
			return a.offset == b.offset && bytes.Equal(a.value, b.value)
		}) {
			t.Fatalf("at +%v the old manifest reads other records", at)
		}
	}
	e.clock.Set(start.Add(compactGrace + time.Minute))
	if _, err := e.p.GC(e.ctx); err != nil {
		t.Fatal(err)
	}
	for _, en := range old.Entries {
		if objectExists(t, e.store, en.Key) {
			t.Fatalf("replaced object %s survived the grace period", en.Key)
		}
	}
	if m := newestManifest(t, e.store); len(m.Deleted) != 0 || len(m.Entries) != len(cur.Entries) || m.CleanerPoint != cur.CleanerPoint {
		t.Fatalf("after GC the newest manifest has %d deleted, %d entries, cleaner point %d", len(m.Deleted), len(m.Entries), m.CleanerPoint)
	}
	e.g.checkRecords(t, readBucket(t, e.store, e.p.Manifest()).recs, 0, end, true, false)
}

// TestCompactMapFull: with a key map too small for the dirty part, a pass
// stops at the object where the map filled and records that as the cleaner
// point; later passes go on from there until everything is compacted. A map
// that cannot hold one object is an error that changes nothing.
func TestCompactMapFull(t *testing.T) {
	e := newCompactEnv(t, mem.New(), 3, 400, 300)
	end := e.p.RemoteEndOffset()
	opts := compactCfg(1000 * time.Hour)
	opts.Config.MinCleanableDirtyRatio = 0
	opts.MaxMapEntries = 1
	before := e.p.Manifest()
	if _, err := e.p.Compact(e.ctx, opts); !errors.Is(err, ErrRemoteMapFull) {
		t.Fatalf("map of one key: %v, want ErrRemoteMapFull", err)
	}
	if e.p.Manifest().ID() != before.ID() || len(listKeys(t, e.store, manifest.SegmentPrefix(testTopic, testPartition))) != len(before.Entries) {
		t.Fatal("a failed pass changed the bucket")
	}
	opts.MaxMapEntries = 100 // a few objects' keys, of about 400: several passes
	passes, full := 0, 0
	for ; passes < 50; passes++ {
		res, err := e.p.Compact(e.ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		if !res.Plan.Clean {
			break
		}
		if res.MapFull {
			full++
			if res.End >= res.Plan.To || e.p.Manifest().CleanerPoint != res.End {
				t.Fatalf("map full: end %d, plan to %d, cleaner point %d", res.End, res.Plan.To, e.p.Manifest().CleanerPoint)
			}
		}
	}
	if full == 0 || passes < 2 {
		t.Fatalf("%d passes, %d with a full map", passes, full)
	}
	m := e.p.Manifest()
	if m.CleanerPoint != end {
		t.Fatalf("cleaner point %d after every pass, want %d", m.CleanerPoint, end)
	}
	e.g.checkRecords(t, readBucket(t, e.store, m).recs, 0, end, true, false)
}

// TestMerge: small adjacent objects are merged as PlanMerge plans; a reader
// gets identical bytes at every offset, with fewer GETs, and merged objects
// carry a correct footer (epochs, the last producer snapshot).
func TestMerge(t *testing.T) {
	inner := mem.New()
	e := newCompactEnv(t, inner, 4, 40, 200)
	before := e.p.Manifest()
	end := before.EndOffset()
	want := readAllRemote(t, e.p, 0, end)
	var size int64
	for _, en := range before.Entries {
		size += en.StoredSize
	}
	target := 4 * size / int64(len(before.Entries))
	plan := compactor.PlanMerge(manifest.RemoteSegments(before), target)
	if len(plan.Groups) == 0 {
		t.Fatal("setup: nothing to merge")
	}
	res, err := e.p.Merge(e.ctx, target, 0)
	if err != nil {
		t.Fatal(err)
	}
	after := e.p.Manifest()
	if res.ObjectsIn != plan.Objects() || res.ObjectsOut != len(plan.Groups) || len(after.Entries) != len(before.Entries)-plan.Objects()+len(plan.Groups) {
		t.Fatalf("merge %+v: %d objects -> %d; plan merges %d into %d", res, len(before.Entries), len(after.Entries), plan.Objects(), len(plan.Groups))
	}
	if got := readAllRemote(t, e.p, 0, end); !bytes.Equal(got, want) {
		t.Fatal("reading after the merge returned other bytes")
	}
	byKey := map[string]manifest.Entry{}
	for _, en := range before.Entries {
		byKey[en.Key] = en
	}
	for _, g := range plan.Groups {
		en := after.Entries[slices.IndexFunc(after.Entries, func(x manifest.Entry) bool { return x.BaseOffset == g.Base })]
		r, _ := openObject(t, e.store, en.Key)
		f := r.Footer()
		last, _ := openObject(t, e.store, g.Segments[len(g.Segments)-1].Key)
		if en.NextOffset != g.Next || f.Summary.BaseOffset != g.Base || f.Summary.NextOffset != g.Next ||
			!bytes.Equal(f.ProducerSnapshot, last.Footer().ProducerSnapshot) || len(f.Summary.Epochs) == 0 || f.Summary.Epochs[0].StartOffset != g.Base {
			t.Fatalf("merged object %s: entry [%d, %d), footer %+v", en.Key, en.BaseOffset, en.NextOffset, f.Summary)
		}
		var records int64
		for _, s := range g.Segments {
			records += byKey[s.Key].RecordCount
		}
		if en.RecordCount != records || f.Summary.RecordCount != records {
			t.Fatalf("merged object holds %d records (entry %d), its inputs %d", f.Summary.RecordCount, en.RecordCount, records)
		}
	}
	if again, err := e.p.Merge(e.ctx, target, 0); err != nil || again.ObjectsOut != 0 {
		t.Fatalf("second merge: %+v, %v", again, err)
	}

	// A cold reader (fresh manager, empty caches) needs fewer GETs.
	gets := func(m *manifest.Manifest) int64 {
		c := objstore.NewCounting(inner)
		for _, en := range m.Entries {
			r, _ := openObject(t, c, en.Key)
			objectBatches(t, r)
		}
		return c.Counts().Get(objstore.OpGetRange).Calls
	}
	if b, a := gets(before), gets(after); a >= b {
		t.Fatalf("a full replay takes %d GETs after the merge, %d before", a, b)
	}
}

// TestCompactPublishFailure: when the manifest cannot be published (the
// store refuses it, or a newer leader fenced this one), the manifest is
// unchanged, names only complete objects, and the pass's uploads are
// orphans that GC removes after the grace period.
func TestCompactPublishFailure(t *testing.T) {
	fs := faulty.New(mem.New(), 5)
	e := newCompactEnv(t, fs, 5, 40, 250)
	before := e.p.Manifest()
	fs.SetRules(faulty.Rule{Kind: faulty.Error, Ops: []objstore.Op{objstore.OpPutIfAbsent}, KeyPrefix: manifest.ManifestPrefix(testTopic, testPartition)})
	if _, err := e.p.Compact(e.ctx, compactCfg(1000*time.Hour)); err == nil {
		t.Fatal("Compact succeeded without publishing")
	}
	fs.Clear()
	if m := newestManifest(t, fs); m.ID() != before.ID() {
		t.Fatalf("newest manifest %s, want %s", m.ID(), before.ID())
	}
	readBucket(t, fs, before)
	orphans := len(listKeys(t, fs, manifest.SegmentPrefix(testTopic, testPartition))) - len(before.Entries)
	if orphans == 0 {
		t.Fatal("setup: the pass uploaded nothing before publishing")
	}
	// The next pass succeeds; GC then removes the orphans and the replaced
	// objects after the grace period.
	if res, err := e.p.Compact(e.ctx, compactCfg(1000*time.Hour)); err != nil || !res.Plan.Clean {
		t.Fatalf("pass after the failure: %+v, %v", res, err)
	}
	start := e.clock.Now()
	e.clock.Set(start.Add(compactGrace + time.Minute))
	if _, err := e.p.GC(e.ctx); err != nil {
		t.Fatal(err)
	}
	cur := e.p.Manifest()
	left := listKeys(t, fs, manifest.SegmentPrefix(testTopic, testPartition))
	if len(left) != len(cur.Entries) {
		t.Fatalf("%d segment objects left, the manifest names %d", len(left), len(cur.Entries))
	}
	e.g.checkRecords(t, readBucket(t, fs, cur).recs, 0, cur.EndOffset(), true, false)

	// Fenced: a new leader has published; the old one's pass fails and
	// leaves the new leader's manifest as it was.
	e.g.appendTo(t, e.l, 60, false)
	uploadAll(t, e.p, e.l)
	l2 := openTestLog(t, vfs.NewCrashFS(), "/p2")
	p2, err := newTestManager(t, fs, Config{Now: e.clock.Now, GracePeriod: compactGrace}).OpenPartition(e.ctx, testTopic, testPartition, 2, l2)
	if err != nil {
		t.Fatal(err)
	}
	var all int64 // a target every object fits: the merge publishes
	for _, en := range p2.Manifest().Entries {
		all += en.StoredSize
	}
	if _, err := p2.Merge(e.ctx, all, 0); err != nil { // publishes at epoch 2
		t.Fatal(err)
	}
	newer := newestManifest(t, fs)
	if newer.Epoch != 2 {
		t.Fatalf("setup: newest manifest %s", newer.ID())
	}
	opts := compactCfg(1000 * time.Hour)
	opts.Config.MinCleanableDirtyRatio = 0
	if _, err := e.p.Compact(e.ctx, opts); !errors.Is(err, ErrFenced) {
		t.Fatalf("compaction by a deposed leader: %v, want ErrFenced", err)
	}
	if m := newestManifest(t, fs); m.ID() != newer.ID() {
		t.Fatalf("newest manifest %s after the fenced pass, want %s", m.ID(), newer.ID())
	}
	readBucket(t, fs, newer)
	if _, err := e.p.Compact(e.ctx, opts); !errors.Is(err, ErrFenced) {
		t.Fatalf("second pass by a deposed leader: %v", err)
	}
	// The new leader's GC never deletes what its manifest names.
	e.clock.Set(start.Add(3 * (compactGrace + time.Minute)))
	if _, err := p2.GC(e.ctx); err != nil {
		t.Fatal(err)
	}
	readBucket(t, fs, newestManifest(t, fs))
}

// TestCompactFaults: with the store failing, truncating and silently
// cutting reads, and failing or losing the responses of writes, every pass
// either publishes a correct manifest or leaves the old one; no manifest
// ever names a missing or partial object, and the data read back is always
// what was written (latest records never lost). Once the faults stop,
// passes finish the job.
func TestCompactFaults(t *testing.T) {
	for seed := uint64(1); seed <= 3; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			fs := faulty.New(mem.New(), seed)
			e := newCompactEnv(t, fs, 10+seed, 400, 250)
			end := e.p.RemoteEndOffset()
			seg := manifest.SegmentPrefix(testTopic, testPartition)
			// Each pass meets at most one fault, of a kind drawn at random,
			// at a random point (or none at all).
			rules := []faulty.Rule{
				{Kind: faulty.Error, Ops: []objstore.Op{objstore.OpGetRange}},
				{Kind: faulty.Truncate, Ops: []objstore.Op{objstore.OpGetRange}},
				{Kind: faulty.SilentTruncate, Ops: []objstore.Op{objstore.OpGetRange}, KeyPrefix: seg, Bytes: 7},
				{Kind: faulty.Error, Ops: []objstore.Op{objstore.OpPutIfAbsent}},
				{Kind: faulty.ErrorAfter, Ops: []objstore.Op{objstore.OpPutIfAbsent}},
				{Kind: faulty.ErrorAfter, Ops: []objstore.Op{objstore.OpPutIfAbsent}, KeyPrefix: manifest.ManifestPrefix(testTopic, testPartition)},
				{Kind: faulty.FailAfterBytes, Ops: []objstore.Op{objstore.OpPutIfAbsent}, KeyPrefix: seg, Bytes: 100},
				{Kind: faulty.Error, Ops: []objstore.Op{objstore.OpStat, objstore.OpList}},
			}
			rng := rand.New(rand.NewPCG(seed, 99))
			opts := compactCfg(1000 * time.Hour)
			opts.Config.MinCleanableDirtyRatio = 0
			opts.MaxMapEntries = 100
			failed := 0
			for range 15 {
				if i := rng.IntN(len(rules) + 2); i < len(rules) {
					r := rules[i]
					r.Count, r.Prob = 1, 0.05
					fs.SetRules(r)
				}
				if _, err := e.p.Compact(e.ctx, opts); err != nil {
					failed++
				}
				fs.Clear()
				e.g.checkRecords(t, readBucket(t, fs, newestManifest(t, fs)).recs, 0, end, false, false)
			}
			fs.Clear()
			for range 20 {
				res, err := e.p.Compact(e.ctx, opts)
				if err != nil {
					t.Fatalf("pass without faults: %v", err)
				}
				if !res.Plan.Clean {
					break
				}
			}
			m := newestManifest(t, fs)
			if m.CleanerPoint != end {
				t.Fatalf("cleaner point %d, want %d", m.CleanerPoint, end)
			}
			e.g.checkRecords(t, readBucket(t, fs, m).recs, 0, end, true, false)
			e.g.checkRecords(t, readPartition(t, e.p, 0, end), 0, end, true, false)
			t.Logf("%d of 15 passes failed under faults (%d injected)", failed, fs.Injected())
			if fs.Injected() == 0 {
				t.Fatal("no fault was injected")
			}
		})
	}
}

// TestCompactCancelAndRateLimit: a cancelled pass changes nothing; a
// limited pass takes at least the time its bytes need at the rate.
func TestCompactCancelAndRateLimit(t *testing.T) {
	e := newCompactEnv(t, mem.New(), 6, 40, 150)
	before := e.p.Manifest()
	ctx, cancel := context.WithCancel(e.ctx)
	cancel()
	if _, err := e.p.Compact(ctx, compactCfg(time.Hour)); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled pass: %v", err)
	}
	if e.p.Manifest().ID() != before.ID() {
		t.Fatal("a cancelled pass published")
	}
	opts := compactCfg(time.Hour)
	opts.RateLimit = 256 << 10
	began := time.Now()
	res, err := e.p.Compact(e.ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(began)
	least := time.Duration(float64(res.BytesRead+res.BytesWritten-opts.RateLimit/10) / float64(opts.RateLimit) * float64(time.Second))
	if res.BytesRead == 0 || res.BytesWritten == 0 || took < least {
		t.Fatalf("read %d and wrote %d bytes at %d B/s in %v, want at least %v", res.BytesRead, res.BytesWritten, opts.RateLimit, took, least)
	}
}

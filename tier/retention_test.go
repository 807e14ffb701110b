package tier

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/strata-io/strata/compactor"
	plog "github.com/strata-io/strata/ingest/log"
	"github.com/strata-io/strata/ingest/log/vfs"
	"github.com/strata-io/strata/tier/manifest"
	"github.com/strata-io/strata/tier/objstore/mem"
)

var keepAll = Retention{RetentionMs: -1, RetentionBytes: -1, LocalRetentionMs: -1, LocalRetentionBytes: -1}

// retentionEnv is a tiered partition with a settable clock whose records
// carry timestamps one minute apart, ending two hours before the clock.
type retentionEnv struct {
	ctx   context.Context
	store *mem.Store
	clock *testClock
	m     *Manager
	l     *plog.Log
	p     *Partition
	g     *batchGen
}

func newRetentionEnv(t *testing.T, seed uint64, batches int) *retentionEnv {
	t.Helper()
	now := time.Now().Truncate(time.Millisecond)
	e := &retentionEnv{ctx: context.Background(), store: mem.New(), clock: newTestClock(now)}
	e.m = newTestManager(t, e.store, Config{Now: e.clock.Now, GracePeriod: 10 * time.Minute})
	e.l = openTestLog(t, vfs.NewCrashFS(), "/p")
	start := now.Add(-100 * time.Hour).UnixMilli()
	e.g = newBatchGen(seed, func(off int64) int64 { return start + off*60_000 })
	e.g.appendTo(t, 1, batches, e.l)
	if last := e.g.ts[len(e.g.ts)-1]; now.UnixMilli()-last < 2*3600_000 {
		t.Fatalf("setup: %d records reach too close to now", len(e.g.ts))
	}
	var err error
	if e.p, err = e.m.OpenPartition(e.ctx, testTopic, testPartition, 1, e.l); err != nil {
		t.Fatal(err)
	}
	return e
}

func segmentBases(segs []plog.SegmentInfo) []int64 {
	var out []int64
	for _, s := range segs {
		out = append(out, s.Base)
	}
	return out
}

// TestLocalRetentionDeletesOnlyUploaded: local retention (by time and by
// size) deletes local segments only once they are in the bucket, oldest
// first, never the active segment, and moves neither the log start nor the
// manifest.
func TestLocalRetentionDeletesOnlyUploaded(t *testing.T) {
	e := newRetentionEnv(t, 11, 130)
	segs := e.l.Segments()
	if len(segs) < 10 {
		t.Fatalf("setup: %d segments", len(segs))
	}
	if n, err := e.p.Upload(e.ctx, segs[3].Next); err != nil || n != 4 {
		t.Fatalf("Upload = %d, %v", n, err)
	}
	end := e.p.RemoteEndOffset()
	mid := e.p.Manifest().ID()
	above, _ := localBytes(t, e.l, end, e.l.EndOffset())

	// Every segment is past local retention by time and by size, but only
	// the four uploaded ones may go.
	all := Retention{RetentionMs: -1, RetentionBytes: -1, LocalRetentionMs: 0, LocalRetentionBytes: 0}
	for round := range 2 {
		local, remote, err := e.p.ApplyRetention(e.ctx, all)
		wantLocal := 4
		if round == 1 {
			wantLocal = 0
		}
		if err != nil || local != wantLocal || remote != 0 {
			t.Fatalf("round %d: ApplyRetention = %d local, %d remote, %v; want %d local", round, local, remote, err, wantLocal)
		}
		if got, want := segmentBases(e.l.Segments()), segmentBases(segs[4:]); !slices.Equal(got, want) {
			t.Fatalf("round %d: local segments %v, want %v", round, got, want)
		}
	}
	if e.l.StartOffset() != 0 || e.l.LocalStartOffset() != end || e.p.Manifest().ID() != mid || newestManifest(t, e.store).ID() != mid {
		t.Fatalf("log start %d, local start %d (remote end %d), manifest %s (was %s)", e.l.StartOffset(), e.l.LocalStartOffset(), end, e.p.Manifest().ID(), mid)
	}
	if got, _ := localBytes(t, e.l, end, e.l.EndOffset()); !bytes.Equal(got, above) {
		t.Fatal("local data above the remote end changed")
	}

	// Upload everything; local retention by time keeps the segments whose
	// newest record is not older than the limit.
	if _, err := e.p.Upload(e.ctx, e.l.DurableOffset()); err != nil {
		t.Fatal(err)
	}
	segs = e.l.Segments()
	keepFrom := 3
	byTime := keepAll
	byTime.LocalRetentionMs = e.clock.Now().UnixMilli() - segs[keepFrom].MaxTimestamp // segs[3] is exactly at the limit
	if local, remote, err := e.p.ApplyRetention(e.ctx, byTime); err != nil || local != keepFrom || remote != 0 {
		t.Fatalf("local retention by time = %d local, %d remote, %v; want %d", local, remote, err, keepFrom)
	}
	if got, want := segmentBases(e.l.Segments()), segmentBases(segs[keepFrom:]); !slices.Equal(got, want) {
		t.Fatalf("after retention by time: %v, want %v", got, want)
	}

	// By size: keep the newest segments (the active one included) that
	// hold at least the limit.
	segs = e.l.Segments()
	keepFrom = 2
	bySize := keepAll
	bySize.LocalRetentionBytes = 0
	for _, s := range segs[keepFrom:] {
		bySize.LocalRetentionBytes += s.Size
	}
	if local, _, err := e.p.ApplyRetention(e.ctx, bySize); err != nil || local != keepFrom {
		t.Fatalf("local retention by size = %d, %v; want %d", local, err, keepFrom)
	}
	if got, want := segmentBases(e.l.Segments()), segmentBases(segs[keepFrom:]); !slices.Equal(got, want) {
		t.Fatalf("after retention by size: %v, want %v", got, want)
	}

	// Everything uploaded and past retention: all but the active segment.
	e.g.appendTo(t, 1, 3, e.l)
	act := e.l.Segments()[len(e.l.Segments())-1]
	if _, _, err := e.p.ApplyRetention(e.ctx, all); err != nil {
		t.Fatal(err)
	}
	if segs := e.l.Segments(); len(segs) != 1 || segs[0].Base != act.Base || segs[0].Next != e.l.EndOffset() {
		t.Fatalf("after full local retention: %+v, active was %+v", segs, act)
	}
	if e.l.StartOffset() != 0 {
		t.Fatalf("local retention moved the log start to %d", e.l.StartOffset())
	}
}

// checkDropped checks the state after total retention dropped the first
// drop entries of old: the manifest (in the partition and in the bucket)
// starts at the next entry, the dropped objects wait in Deleted (still in
// the bucket), the log start moved with it locally too, and offsets below
// it are gone on both tiers.
func (e *retentionEnv) checkDropped(t *testing.T, old *manifest.Manifest, drop int) {
	t.Helper()
	cur := e.p.Manifest()
	lso := old.Entries[drop].BaseOffset
	if cur.LogStartOffset != lso || len(cur.Entries) != len(old.Entries)-drop || cur.Entries[0].Key != old.Entries[drop].Key {
		t.Fatalf("after dropping %d: log start %d (want %d), %d entries (want %d)", drop, cur.LogStartOffset, lso, len(cur.Entries), len(old.Entries)-drop)
	}
	if got := newestManifest(t, e.store); got.ID() != cur.ID() {
		t.Fatalf("bucket's newest manifest %s, partition's %s", got.ID(), cur.ID())
	}
	var wantDeleted []manifest.Deleted
	for _, en := range old.Entries[:drop] {
		wantDeleted = append(wantDeleted, manifest.Deleted{Key: en.Key, Size: en.StoredSize, RemovedMs: e.clock.Now().UnixMilli()})
	}
	if !slices.Equal(cur.Deleted, wantDeleted) {
		t.Fatalf("Deleted = %+v, want %+v", cur.Deleted, wantDeleted)
	}
	for _, d := range cur.Deleted {
		if !objectExists(t, e.store, d.Key) {
			t.Fatalf("%s was deleted before garbage collection", d.Key)
		}
	}
	if e.l.StartOffset() != lso || e.l.Segments()[0].Base != lso {
		t.Fatalf("log start %d, first local segment %d; want %d", e.l.StartOffset(), e.l.Segments()[0].Base, lso)
	}
	if _, err := e.p.Read(e.ctx, lso-1, 1); !errors.Is(err, plog.ErrOffsetOutOfRange) {
		t.Fatalf("remote read below the log start: %v", err)
	}
	if _, err := e.l.Read(lso-1, 1, e.l.EndOffset()); !errors.Is(err, plog.ErrOffsetOutOfRange) || errors.Is(err, plog.ErrBelowLocalStart) {
		t.Fatalf("local read below the log start: %v", err)
	}
	if b, err := e.p.Read(e.ctx, lso, 1); err != nil || len(b) == 0 {
		t.Fatalf("remote read at the log start: %v", err)
	}
	// Nothing else to drop: no new manifest.
	id := cur.ID()
	if _, remote, err := e.p.ApplyRetention(e.ctx, keepAll); err != nil || remote != 0 || e.p.Manifest().ID() != id {
		t.Fatalf("second pass: %d dropped, %v, manifest %s (was %s)", remote, err, e.p.Manifest().ID(), id)
	}
}

// TestTotalRetentionByTime drops the whole remote segments whose newest
// record is older than retention.ms, and no other.
func TestTotalRetentionByTime(t *testing.T) {
	e := newRetentionEnv(t, 12, 90)
	uploadAll(t, e.p, e.l)
	old := e.p.Manifest()
	const drop = 3
	r := keepAll
	r.RetentionMs = e.clock.Now().UnixMilli() - old.Entries[drop].MaxTimestamp // entry 3 is exactly at the limit
	local, remote, err := e.p.ApplyRetention(e.ctx, r)
	if err != nil || remote != drop || local != 0 {
		t.Fatalf("ApplyRetention = %d local, %d remote, %v; want %d remote", local, remote, err, drop)
	}
	e.checkDropped(t, old, drop)
}

// TestTotalRetentionByBytes drops the oldest remote segments while the
// whole log (remote segments and local data above them) still holds at
// least retention.bytes without them.
func TestTotalRetentionByBytes(t *testing.T) {
	e := newRetentionEnv(t, 13, 90)
	uploadAll(t, e.p, e.l)
	e.g.appendTo(t, 1, 3, e.l) // local-only data counts too
	old := e.p.Manifest()
	const drop = 4
	r := keepAll
	r.RetentionBytes = 0
	for _, s := range e.l.Segments() {
		if s.Next > old.EndOffset() {
			r.RetentionBytes += s.Size
		}
	}
	if r.RetentionBytes == 0 {
		t.Fatal("setup: no local data above the remote end")
	}
	for _, en := range old.Entries[drop:] {
		r.RetentionBytes += en.RawSize
	}
	local, remote, err := e.p.ApplyRetention(e.ctx, r)
	if err != nil || remote != drop || local != 0 {
		t.Fatalf("ApplyRetention = %d local, %d remote, %v; want %d remote", local, remote, err, drop)
	}
	e.checkDropped(t, old, drop)
}

// TestGC: garbage collection deletes orphaned uploads and the objects of
// expired Deleted entries only after the grace period, never an object the
// newest manifest names, never a newer leader's upload, never a key it does
// not understand.
func TestGC(t *testing.T) {
	e := newRetentionEnv(t, 14, 80)
	grace := 10 * time.Minute
	start := e.clock.Now()
	uploadAll(t, e.p, e.l)
	old := e.p.Manifest()
	const drop = 2
	r := keepAll
	r.RetentionMs = start.UnixMilli() - old.Entries[drop].MaxTimestamp
	if _, remote, err := e.p.ApplyRetention(e.ctx, r); err != nil || remote != drop {
		t.Fatalf("retention dropped %d, %v", remote, err)
	}
	end := e.p.RemoteEndOffset()

	// An upload that never got published, one by a newer leader, and a key
	// garbage collection does not understand, all under the partition.
	obj, err := e.store.GetRange(e.ctx, old.Entries[0].Key, 0, old.Entries[0].StoredSize)
	if err != nil {
		t.Fatal(err)
	}
	put := func(key string) string {
		if err := e.store.Put(e.ctx, key, bytes.NewReader(obj), int64(len(obj))); err != nil {
			t.Fatal(err)
		}
		return key
	}
	orphan := put(manifest.SegmentName{Topic: testTopic, Partition: testPartition, BaseOffset: end, Epoch: 1, UploadID: manifest.NewUploadID()}.Key())
	newer := put(manifest.SegmentName{Topic: testTopic, Partition: testPartition, BaseOffset: end, Epoch: 9, UploadID: manifest.NewUploadID()}.Key())
	foreign := put(manifest.SegmentPrefix(testTopic, testPartition) + "notes.txt")

	named := func() []string {
		var keys []string
		for _, en := range newestManifest(t, e.store).Entries {
			keys = append(keys, en.Key)
		}
		return keys
	}
	checkNamed := func() {
		t.Helper()
		for _, k := range named() {
			if !objectExists(t, e.store, k) {
				t.Fatalf("GC deleted %s, named by the newest manifest", k)
			}
		}
		readAllRemote(t, e.p, e.p.Manifest().LogStartOffset, e.p.RemoteEndOffset())
	}

	// Within the grace period nothing goes.
	manifestsBefore := listKeys(t, e.store, manifest.ManifestPrefix(testTopic, testPartition))
	for _, at := range []time.Duration{0, time.Minute, grace - time.Second} {
		e.clock.Set(start.Add(at))
		n, err := e.p.GC(e.ctx)
		if err != nil || n != 0 {
			t.Fatalf("GC at +%v deleted %d, %v", at, n, err)
		}
		for _, d := range old.Entries[:drop] {
			if !objectExists(t, e.store, d.Key) {
				t.Fatalf("GC at +%v deleted %s within the grace period", at, d.Key)
			}
		}
		if !objectExists(t, e.store, orphan) {
			t.Fatalf("GC at +%v deleted a young orphan", at)
		}
		checkNamed()
	}

	// After it: the orphan, the dropped segments and superseded manifests.
	e.clock.Set(start.Add(grace + time.Minute))
	n, err := e.p.GC(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if objectExists(t, e.store, orphan) {
		t.Fatal("orphan survived the grace period")
	}
	for _, d := range old.Entries[:drop] {
		if objectExists(t, e.store, d.Key) {
			t.Fatalf("expired %s survived the grace period", d.Key)
		}
	}
	if !objectExists(t, e.store, newer) || !objectExists(t, e.store, foreign) {
		t.Fatal("GC deleted a newer leader's upload or a key it does not understand")
	}
	cur := newestManifest(t, e.store)
	if len(cur.Deleted) != 0 || cur.ID() != e.p.Manifest().ID() {
		t.Fatalf("newest manifest %s still lists deleted %v (partition has %s)", cur.ID(), cur.Deleted, e.p.Manifest().ID())
	}
	manifestsAfter := listKeys(t, e.store, manifest.ManifestPrefix(testTopic, testPartition))
	if !slices.Contains(manifestsAfter, manifestsBefore[len(manifestsBefore)-1]) {
		t.Fatal("GC deleted the newest manifest it planned with")
	}
	goneManifests := 0
	for _, k := range manifestsBefore {
		if !slices.Contains(manifestsAfter, k) {
			goneManifests++
		}
	}
	if n != 1+drop+goneManifests {
		t.Fatalf("GC reported %d deletions: want 1 orphan, %d expired, %d manifests", n, drop, goneManifests)
	}
	checkNamed()

	// Much later, with nothing else to collect: still never a named object.
	e.clock.Set(start.Add(1000 * time.Hour))
	if _, err := e.p.GC(e.ctx); err != nil {
		t.Fatal(err)
	}
	checkNamed()
	left := listKeys(t, e.store, manifest.SegmentPrefix(testTopic, testPartition))
	want := append(named(), newer, foreign)
	slices.Sort(want)
	if !slices.Equal(left, want) {
		t.Fatalf("segment objects left %v, want %v", left, want)
	}
}

// TestPlanRetentionMatchesApply: the dry run (PlanRetention) names exactly
// what ApplyRetention then does: the objects that leave the manifest, the
// new log start, and the local segments deleted (by the log start and by
// local retention). cleanup.policy=compact alone drops nothing remote.
func TestPlanRetentionMatchesApply(t *testing.T) {
	e := newRetentionEnv(t, 15, 120)
	segs := e.l.Segments()
	if _, err := e.p.Upload(e.ctx, segs[len(segs)-4].Next); err != nil {
		t.Fatal(err)
	}
	old := e.p.Manifest()
	r := keepAll
	r.RetentionMs = e.clock.Now().UnixMilli() - old.Entries[2].MaxTimestamp // entries 0 and 1 go
	r.LocalRetentionBytes = 0                                               // every uploaded local segment goes

	compact := r
	compact.CleanupPolicy = compactor.Compact
	if plan := e.p.PlanRetention(compact); len(plan.Remote) != 0 || plan.Publish {
		t.Fatalf("compact alone drops remote data:\n%s", plan)
	}

	plan := e.p.PlanRetention(r)
	if len(plan.Remote) != 2 || !plan.Publish || len(plan.Local) == 0 {
		t.Fatalf("setup: plan\n%s", plan)
	}
	t.Logf("plan:\n%s", plan)
	var wantLocal int
	for _, d := range plan.Local {
		if d.Reason != compactor.ReasonLogStart {
			wantLocal++
		}
	}
	before := e.l.Segments()
	local, remote, err := e.p.ApplyRetention(e.ctx, r)
	if err != nil || local != wantLocal || remote != len(plan.Remote) {
		t.Fatalf("ApplyRetention = %d local, %d remote, %v; plan said %d, %d", local, remote, err, wantLocal, len(plan.Remote))
	}
	cur := e.p.Manifest()
	var planned, deleted []string
	for _, d := range plan.Remote {
		planned = append(planned, d.Key)
	}
	for _, d := range cur.Deleted {
		deleted = append(deleted, d.Key)
	}
	if !slices.Equal(planned, deleted) || cur.LogStartOffset != plan.LogStart || e.l.StartOffset() != plan.LogStart {
		t.Fatalf("deleted %v, log start %d (local %d); plan %v, %d", deleted, cur.LogStartOffset, e.l.StartOffset(), planned, plan.LogStart)
	}
	gone := map[int64]bool{}
	for _, d := range plan.Local {
		gone[d.Base] = true
	}
	var want []int64
	for _, s := range before {
		if !gone[s.Base] {
			want = append(want, s.Base)
		}
	}
	if got := segmentBases(e.l.Segments()); !slices.Equal(got, want) {
		t.Fatalf("local segments %v, plan leaves %v", got, want)
	}
	if again := e.p.PlanRetention(r); len(again.Remote)+len(again.Local) != 0 || again.Publish {
		t.Fatalf("second plan is not empty:\n%s", again)
	}
}

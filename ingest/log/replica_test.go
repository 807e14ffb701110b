package log

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/strata-io/strata/ingest/batch"
	"github.com/strata-io/strata/ingest/log/vfs"
	"github.com/strata-io/strata/ingest/producer"
)

// batchAt is a batch read back from a log, at its base offset.
type batchAt struct {
	base int64
	b    []byte
}

// logBatches reads the whole log from its start, allowing offset gaps, and
// checks each batch's CRC and that offsets increase.
func logBatches(t testing.TB, l *Log) []batchAt {
	t.Helper()
	var out []batchAt
	for _, b := range readBatches(t, l) {
		h, err := batch.ParseHeader(b)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, batchAt{h.BaseOffset, slices.Clone(b)})
	}
	return out
}

func sameBatches(a, b []batchAt) bool {
	return slices.EqualFunc(a, b, func(x, y batchAt) bool { return x.base == y.base && bytes.Equal(x.b, y.b) })
}

func checkBatches(t testing.TB, what string, got, want []batchAt) {
	t.Helper()
	if sameBatches(got, want) {
		return
	}
	bases := func(bs []batchAt) []int64 {
		var out []int64
		for _, b := range bs {
			out = append(out, b.base)
		}
		return out
	}
	t.Fatalf("%s: batches at %v, want %v (or the bytes differ)", what, bases(got), bases(want))
}

// replicate copies the leader's records from the follower's end with
// AppendReplica, in reads of about maxBytes (several batches at a time).
func replicate(t testing.TB, leader, follower *Log, maxBytes int) {
	t.Helper()
	for off := follower.EndOffset(); off < leader.EndOffset(); {
		b, err := leader.Read(off, maxBytes, leader.EndOffset())
		if err != nil || len(b) == 0 {
			t.Fatalf("leader Read(%d): %d bytes, %v", off, len(b), err)
		}
		res, err := follower.AppendReplica(b)
		if err != nil {
			t.Fatalf("AppendReplica at %d: %v", off, err)
		}
		off = res.LastOffset + 1
	}
}

// leaderSpec is one batch appended to a test leader.
type leaderSpec struct {
	epoch   int32
	records int
	pid     bool // producer 7, epoch 2, sequences counted from 0
}

// leaderBatches is the history of the test leaders: several leader epochs,
// idempotent batches of producer 7 mixed with plain ones.
func leaderBatches(n int) []leaderSpec {
	var out []leaderSpec
	for i := range n {
		out = append(out, leaderSpec{epoch: int32(1 + i/7*2), records: 1 + i%4, pid: i%3 != 1})
	}
	return out
}

// fillLeader appends specs to l and returns the results; seq is producer
// 7's next sequence, updated.
func fillLeader(t testing.TB, l *Log, specs []leaderSpec, seq *int32) []AppendResult {
	t.Helper()
	var out []AppendResult
	for i, sp := range specs {
		out = append(out, appendSpec(t, l, sp, i, seq))
	}
	waitDurable(t, l, l.EndOffset()-1)
	return out
}

func specBatch(sp leaderSpec, i int, seq int32) []byte {
	bs := batchSpec{records: sp.records, valSize: 30 + i%50, ts: 1000 + int64(i), pid: -1, seq: -1, fill: byte(i)}
	if sp.pid {
		bs.pid, bs.pepoch, bs.seq = 7, 2, seq
	}
	return makeBatch(bs)
}

func appendSpec(t testing.TB, l *Log, sp leaderSpec, i int, seq *int32) AppendResult {
	t.Helper()
	res, err := l.Append(specBatch(sp, i, *seq), AppendInfo{LeaderEpoch: sp.epoch})
	if err != nil || res.Duplicate {
		t.Fatalf("Append %d: %+v, %v", i, res, err)
	}
	if sp.pid {
		*seq += int32(sp.records)
	}
	return res
}

func checkEpochs(t testing.TB, what string, got, want *Log) {
	t.Helper()
	for e := int32(-1); e < 20; e++ {
		ge, gotEnd := got.EndOffsetForEpoch(e)
		we, wantEnd := want.EndOffsetForEpoch(e)
		if ge != we || gotEnd != wantEnd {
			t.Fatalf("%s: EndOffsetForEpoch(%d) = (%d, %d), want (%d, %d)", what, e, ge, gotEnd, we, wantEnd)
		}
	}
}

// producerBatch is producer 7's batch at sequence seq, one record.
func producerBatch(seq int32) []byte {
	return makeBatch(batchSpec{records: 1, valSize: 5, ts: 5000, pid: 7, pepoch: 2, seq: seq, fill: 'p'})
}

func TestAppendReplicaCopiesLeader(t *testing.T) {
	fsys := vfs.NewCrashFS()
	leader := mustOpen(t, fsys, "/leader", Config{SegmentBytes: 2048, IndexIntervalBytes: 256}, Options{})
	defer leader.Close()
	var seq int32
	specs := leaderBatches(60)
	results := fillLeader(t, leader, specs, &seq)

	fcfg := Config{SegmentBytes: 1500, IndexIntervalBytes: 200}
	follower := mustOpen(t, fsys, "/follower", fcfg, Options{})
	replicate(t, leader, follower, 700)
	want := logBatches(t, leader)
	checkBatches(t, "follower", logBatches(t, follower), want)
	if follower.EndOffset() != leader.EndOffset() {
		t.Fatalf("follower end %d, leader end %d", follower.EndOffset(), leader.EndOffset())
	}
	if n := len(follower.Segments()); n < 4 {
		t.Fatalf("follower has %d segments: no rolls", n)
	}
	checkEpochs(t, "follower", follower, leader)
	waitDurable(t, follower, follower.EndOffset()-1)

	// Producer state came along: the leader's last batch of producer 7 is a
	// duplicate on the follower (as on a new leader), with its offsets.
	last := len(specs) - 1
	for !specs[last].pid {
		last--
	}
	var lastSeq int32
	for _, sp := range specs[:last] {
		if sp.pid {
			lastSeq += int32(sp.records)
		}
	}
	checkProducer := func(what string, l *Log) {
		t.Helper()
		res, err := l.Append(specBatch(specs[last], last, lastSeq), AppendInfo{LeaderEpoch: 99})
		if err != nil || !res.Duplicate || res.BaseOffset != results[last].BaseOffset {
			t.Fatalf("%s: resent batch: %+v, %v; want a duplicate at %d", what, res, err, results[last].BaseOffset)
		}
		if _, err := l.Append(producerBatch(seq+3), AppendInfo{LeaderEpoch: 99}); !errors.Is(err, producer.ErrOutOfOrderSequence) {
			t.Fatalf("%s: sequence gap: %v", what, err)
		}
	}
	checkProducer("follower", follower)

	// Reopen: the same log, and a power loss keeps what was durable.
	if err := follower.Close(); err != nil {
		t.Fatal(err)
	}
	for _, fs := range []vfs.FS{fsys, fsys.CrashClone(rand.New(rand.NewPCG(1, 2)))} {
		r := mustOpen(t, fs, "/follower", fcfg, Options{})
		checkBatches(t, "reopened follower", logBatches(t, r), want)
		checkEpochs(t, "reopened follower", r, leader)
		checkProducer("reopened follower", r)
		r.Close()
	}
}

// offsetBatch is a batch of n records at base with the given leader epoch,
// as a leader would send it.
func offsetBatch(base int64, n int, epoch int32, fill byte) []byte {
	b := makeBatch(batchSpec{records: n, valSize: 20, ts: 1000 + base, pid: -1, seq: -1, fill: fill})
	batch.SetBaseOffset(b, base)
	batch.SetLeaderEpoch(b, epoch)
	return b
}

func TestAppendReplicaGaps(t *testing.T) {
	fsys := vfs.NewCrashFS()
	cfg := Config{IndexIntervalBytes: 64}
	l := mustOpen(t, fsys, "/f", cfg, Options{})
	var want []batchAt
	app := func(bs ...[]byte) AppendResult {
		t.Helper()
		res, err := l.AppendReplica(bytes.Join(bs, nil))
		if err != nil {
			t.Fatalf("AppendReplica: %v", err)
		}
		for _, b := range bs {
			h, _ := batch.ParseHeader(b)
			want = append(want, batchAt{h.BaseOffset, b})
		}
		return res
	}
	// A gap into the empty first segment, then contiguous, then gaps
	// between and inside requests.
	if res := app(offsetBatch(5, 1, 1, 'a')); res.BaseOffset != 5 || res.LastOffset != 5 {
		t.Fatalf("first append: %+v", res)
	}
	app(offsetBatch(6, 2, 1, 'b'))
	if res := app(offsetBatch(10, 3, 2, 'c'), offsetBatch(20, 1, 2, 'd')); res.BaseOffset != 10 || res.LastOffset != 20 {
		t.Fatalf("gapped append: %+v", res)
	}
	app(offsetBatch(30, 2, 4, 'e'))
	if l.EndOffset() != 32 {
		t.Fatalf("end %d, want 32", l.EndOffset())
	}
	checkBatches(t, "after gapped appends", logBatches(t, l), want)
	for off, base := range map[int64]int64{0: 5, 8: 10, 14: 20, 21: 30} {
		b, err := l.Read(off, 1, 1<<62)
		if h, _ := batch.ParseHeader(b); err != nil || h.BaseOffset != base {
			t.Fatalf("Read(%d): batch at %d, %v; want the batch at %d", off, h.BaseOffset, err, base)
		}
	}
	for _, c := range []struct {
		epoch int32
		end   int64
	}{{0, 5}, {1, 10}, {2, 30}, {3, 30}, {4, 32}} {
		if e, end := l.EndOffsetForEpoch(c.epoch); end != c.end {
			t.Fatalf("EndOffsetForEpoch(%d) = (%d, %d), want end %d", c.epoch, e, end, c.end)
		}
	}
	// A gap after a contiguous segment rolls to a segment that allows gaps,
	// based at the old end.
	l2 := mustOpen(t, fsys, "/g", cfg, Options{})
	if _, err := l2.AppendReplica(offsetBatch(0, 3, 1, 'x')); err != nil {
		t.Fatal(err)
	}
	if _, err := l2.AppendReplica(offsetBatch(7, 2, 1, 'y')); err != nil {
		t.Fatal(err)
	}
	if b := segmentBases(l2); !slices.Equal(b, []int64{0, 3}) {
		t.Fatalf("segments %v, want [0 3]", b)
	}
	if _, err := l2.Roll(); err != nil {
		t.Fatal(err)
	}
	if _, err := l2.AppendReplica(offsetBatch(12, 1, 1, 'z')); err != nil {
		t.Fatal(err)
	}
	want2 := logBatches(t, l2)
	waitDurable(t, l2, l2.EndOffset()-1)
	waitDurable(t, l, l.EndOffset()-1)
	l.Close()
	l2.Close()

	// Recovery accepts the gaps: from the indexes, by a scan of the
	// segments (indexes removed), and after a power loss.
	for _, name := range []string{fileName(3, indexSuffix), fileName(3, timeIndexSuffix)} {
		if err := fsys.Remove(filepath.Join("/g", name)); err != nil {
			t.Fatal(err)
		}
	}
	for _, fs := range []vfs.FS{fsys, fsys.CrashClone(nil)} {
		r := mustOpen(t, fs, "/f", cfg, Options{})
		checkBatches(t, "reopened", logBatches(t, r), want)
		if r.EndOffset() != 32 {
			t.Fatalf("reopened end %d", r.EndOffset())
		}
		if _, end := r.EndOffsetForEpoch(2); end != 30 {
			t.Fatalf("reopened: epoch 2 ends at %d", end)
		}
		r.Close()
		r = mustOpen(t, fs, "/g", cfg, Options{})
		checkBatches(t, "reopened, rolled", logBatches(t, r), want2)
		if b := segmentBases(r); !slices.Equal(b, []int64{0, 3, 9}) {
			t.Fatalf("reopened segments %v, want [0 3 9]", b)
		}
		r.Close()
	}
}

func TestAppendReplicaRefuses(t *testing.T) {
	fsys := vfs.NewCrashFS()
	l := mustOpen(t, fsys, "/f", Config{}, Options{})
	if _, err := l.AppendReplica(bytes.Join([][]byte{offsetBatch(0, 2, 1, 'a'), offsetBatch(2, 2, 1, 'b')}, nil)); err != nil {
		t.Fatal(err)
	}
	before := logBatches(t, l)
	size := l.Size()
	corrupt := offsetBatch(4, 2, 1, 'c')
	corrupt[len(corrupt)-3] ^= 0xff
	overlap := bytes.Join([][]byte{offsetBatch(4, 2, 1, 'd'), offsetBatch(5, 1, 1, 'e')}, nil)
	for _, c := range []struct {
		name string
		b    []byte
		want error
	}{
		{"below the end", offsetBatch(3, 1, 1, 'f'), ErrOffsetOutOfRange},
		{"overlapping the end", offsetBatch(2, 3, 1, 'f'), ErrOffsetOutOfRange},
		{"corrupt", corrupt, batch.ErrCorrupt},
		{"corrupt second batch", bytes.Join([][]byte{offsetBatch(4, 1, 1, 'g'), corrupt[:len(corrupt):len(corrupt)]}, nil), batch.ErrCorrupt},
		{"out of order", overlap, batch.ErrInvalidRecord},
		{"truncated", offsetBatch(4, 1, 1, 'h')[:40], nil},
		{"empty", nil, nil},
	} {
		_, err := l.AppendReplica(c.b)
		if err == nil || (c.want != nil && !errors.Is(err, c.want)) {
			t.Fatalf("%s: %v, want %v", c.name, err, c.want)
		}
		if l.EndOffset() != 4 || l.Size() != size {
			t.Fatalf("%s: appended something: end %d, size %d (was %d)", c.name, l.EndOffset(), l.Size(), size)
		}
	}
	checkBatches(t, "after refusals", logBatches(t, l), before)
	l.Close()
	if _, err := l.AppendReplica(offsetBatch(4, 1, 1, 'i')); !errors.Is(err, ErrClosed) {
		t.Fatalf("closed: %v", err)
	}
}

// truncLog is a test log of leaderBatches for TruncateTo.
type truncLog struct {
	l       *Log
	fsys    *vfs.CrashFS
	specs   []leaderSpec
	results []AppendResult
	batches []batchAt
}

const truncDir = "/t"

var truncCfg = Config{SegmentBytes: 1500, IndexIntervalBytes: 200, SegmentMs: 1 << 50}

func newTruncLog(t testing.TB, fsys *vfs.CrashFS, n int) *truncLog {
	t.Helper()
	tl := &truncLog{fsys: fsys, specs: leaderBatches(n)}
	tl.l = mustOpen(t, fsys, truncDir, truncCfg, Options{})
	var seq int32
	tl.results = fillLeader(t, tl.l, tl.specs, &seq)
	tl.batches = logBatches(t, tl.l)
	return tl
}

// expect is the log truncated at offset: the kept batches, the new end and
// a reference log built from the kept batches only.
func (tl *truncLog) expect(t testing.TB, offset int64) (kept []batchAt, end int64, ref *Log) {
	t.Helper()
	n := 0
	for n < len(tl.results) && tl.results[n].LastOffset < offset {
		n++
	}
	ref = mustOpen(t, vfs.NewCrashFS(), "/ref", truncCfg, Options{})
	var seq int32
	for i, sp := range tl.specs[:n] {
		appendSpec(t, ref, sp, i, &seq)
	}
	return tl.batches[:n], ref.EndOffset(), ref
}

// seqAfter is producer 7's next sequence after the batches below end.
func (tl *truncLog) seqAfter(end int64) int32 {
	var seq int32
	for i, sp := range tl.specs {
		if sp.pid && tl.results[i].BaseOffset < end {
			seq += int32(sp.records)
		}
	}
	return seq
}

// checkTruncated checks that l is the log truncated to newEnd (kept and ref
// from expect), with producer state rolled back, and that it takes appends
// at newEnd. It appends to l.
func (tl *truncLog) checkTruncated(t testing.TB, what string, l *Log, kept []batchAt, newEnd int64, ref *Log) {
	t.Helper()
	if l.EndOffset() != newEnd {
		t.Fatalf("%s: end %d, want %d", what, l.EndOffset(), newEnd)
	}
	checkBatches(t, what, logBatches(t, l), kept)
	checkEpochs(t, what, l, ref)
	if newEnd < tl.results[len(tl.results)-1].LastOffset {
		if _, err := l.Read(newEnd+1, 100, 1<<62); !errors.Is(err, ErrOffsetOutOfRange) {
			t.Fatalf("%s: Read past the new end: %v", what, err)
		}
	}
	// Producer 7 re-sends from its sequence after the cut: accepted at the
	// new end, not a duplicate or out of order.
	seq := tl.seqAfter(newEnd)
	res, err := l.Append(producerBatch(seq), AppendInfo{LeaderEpoch: 50})
	if err != nil || res.Duplicate || res.BaseOffset != newEnd {
		t.Fatalf("%s: append of sequence %d: %+v, %v; want it at %d", what, seq, res, err, newEnd)
	}
	if _, err := l.Append(producerBatch(seq+5), AppendInfo{LeaderEpoch: 50}); !errors.Is(err, producer.ErrOutOfOrderSequence) {
		t.Fatalf("%s: sequence gap after truncation: %v", what, err)
	}
	waitDurable(t, l, res.LastOffset)
}

// findBatch returns the index of a batch (with several records if multi)
// inside the offsets (lo, hi): not at lo, not ending at hi-1. -1 if none.
func findBatch(results []AppendResult, lo, hi int64, multi bool) int {
	for i, r := range results {
		if r.BaseOffset > lo && r.LastOffset < hi-1 && (!multi || r.LastOffset > r.BaseOffset) {
			return i
		}
	}
	return -1
}

func TestTruncateTo(t *testing.T) {
	// Enough batches for at least three in the active segment, one of them
	// with several records.
	var probe *truncLog
	var segs []SegmentInfo
	n := 60
	for ; ; n++ {
		probe = newTruncLog(t, vfs.NewCrashFS(), n)
		segs = probe.l.Segments()
		a := segs[len(segs)-1]
		if findBatch(probe.results, a.Base, a.Next, false) >= 0 && findBatch(probe.results, a.Base, a.Next, true) >= 0 {
			break
		}
		probe.l.Close()
	}
	if len(segs) < 5 {
		t.Fatalf("only %d segments", len(segs))
	}
	act := segs[len(segs)-1]
	mid := func(i int) int64 { return probe.results[i].BaseOffset + 1 } // inside batch i (it has >= 2 records)
	batchIn := func(lo, hi int64, multi bool) int {
		i := findBatch(probe.results, lo, hi, multi)
		if i < 0 {
			t.Fatalf("no batch in (%d, %d)", lo, hi)
		}
		return i
	}
	ia := batchIn(act.Base, act.Next, false)
	ib := batchIn(act.Base, act.Next, true)
	is := batchIn(segs[1].Base, segs[1].Next, false)
	im := batchIn(segs[2].Base, segs[2].Next, true)
	probe.l.Close()
	cases := []struct {
		name   string
		offset int64
	}{
		{"active, batch boundary", probe.results[ia].BaseOffset},
		{"active, inside a batch", mid(ib)},
		{"active base", act.Base},
		{"sealed, batch boundary", probe.results[is].BaseOffset},
		{"sealed, inside a batch", mid(im)},
		{"sealed segment base", segs[2].Base},
		{"first segment, inside", mid(batchIn(segs[0].Base, segs[0].Next, true))},
		{"to the start", 0},
		{"last offset", act.Next - 1},
		{"sealed, last offset", segs[1].Next - 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fsys := vfs.NewCrashFS()
			tl := newTruncLog(t, fsys, n)
			kept, wantEnd, ref := tl.expect(t, c.offset)
			defer ref.Close()
			newEnd, err := tl.l.TruncateTo(c.offset)
			if err != nil || newEnd != wantEnd {
				t.Fatalf("TruncateTo(%d) = %d, %v; want %d", c.offset, newEnd, err, wantEnd)
			}
			if tl.l.DurableOffset() != newEnd {
				t.Fatalf("durable %d after truncation to %d", tl.l.DurableOffset(), newEnd)
			}
			segsAfter := tl.l.Segments()
			if a := segsAfter[len(segsAfter)-1]; a.Base > newEnd || a.Next != newEnd {
				t.Fatalf("active segment [%d, %d), want it to end at %d", a.Base, a.Next, newEnd)
			}
			// Snapshots of cut segments are gone; the kept sealed ones are there.
			for _, s := range segsAfter[:len(segsAfter)-1] {
				if _, err := tl.l.ProducerSnapshotAt(s.Next); err != nil {
					t.Fatalf("snapshot at %d: %v", s.Next, err)
				}
			}
			names, _ := fsys.ReadDir(truncDir)
			for _, n := range names {
				if off, ok := parseFileName(n, snapshotSuffix); ok && off > newEnd {
					t.Fatalf("snapshot %s past the new end %d left", n, newEnd)
				}
				if off, ok := parseFileName(n, logSuffix); ok && off > newEnd {
					t.Fatalf("segment %s past the new end %d left", n, newEnd)
				}
			}
			tl.checkTruncated(t, "after TruncateTo", tl.l, kept, newEnd, ref)
			withAppend := logBatches(t, tl.l)
			tl.l.Close()

			// Reopen, and a power loss: the truncated log plus the append.
			for _, fs := range []vfs.FS{fsys, fsys.CrashClone(rand.New(rand.NewPCG(3, 4)))} {
				r := mustOpen(t, fs, truncDir, truncCfg, Options{})
				checkBatches(t, "reopened", logBatches(t, r), withAppend)
				r.Close()
			}
		})
	}
}

func TestTruncateToBounds(t *testing.T) {
	tl := newTruncLog(t, vfs.NewCrashFS(), 30)
	defer tl.l.Close()
	end := tl.l.EndOffset()
	for _, off := range []int64{end, end + 10} {
		if got, err := tl.l.TruncateTo(off); err != nil || got != end {
			t.Fatalf("TruncateTo(%d) = %d, %v; want a no-op at %d", off, got, err, end)
		}
	}
	checkBatches(t, "after no-ops", logBatches(t, tl.l), tl.batches)

	// The start inside a batch (DeleteRecords): truncating to it leaves an
	// empty log at the start.
	inside := tl.results[5].BaseOffset + 1
	if tl.results[5].LastOffset == tl.results[5].BaseOffset {
		inside = tl.results[6].BaseOffset + 1
	}
	if err := tl.l.SetStartOffset(inside); err != nil {
		t.Fatal(err)
	}
	if _, err := tl.l.TruncateTo(inside - 1); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Fatalf("TruncateTo below the start: %v", err)
	}
	if tl.l.EndOffset() != end {
		t.Fatalf("refused truncation changed the end to %d", tl.l.EndOffset())
	}
	got, err := tl.l.TruncateTo(inside)
	if err != nil || got != inside || tl.l.EndOffset() != inside || tl.l.StartOffset() != inside {
		t.Fatalf("TruncateTo(start %d) = %d, %v; start %d, end %d", inside, got, err, tl.l.StartOffset(), tl.l.EndOffset())
	}
	if b := logBatches(t, tl.l); len(b) != 0 {
		t.Fatalf("%d batches after truncating to the start", len(b))
	}
	res := mustAppend(t, tl.l, simpleBatch(2, 10, 1))
	if res.BaseOffset != inside {
		t.Fatalf("append after truncation to the start at %d, want %d", res.BaseOffset, inside)
	}
	waitDurable(t, tl.l, res.LastOffset)
	want := logBatches(t, tl.l)
	tl.l.Close()
	r := mustOpen(t, tl.fsys, truncDir, truncCfg, Options{})
	defer r.Close()
	if r.StartOffset() != inside || r.EndOffset() != res.LastOffset+1 {
		t.Fatalf("reopened: [%d, %d)", r.StartOffset(), r.EndOffset())
	}
	checkBatches(t, "reopened", logBatches(t, r), want)
}

// TestTruncateToCrashAtEveryStep stops the machine before each mutating
// operation of TruncateTo and reopens what a process kill and a power loss
// leave: the log is either the old one or the truncated one, whole, with
// matching leader epochs and producer state.
func TestTruncateToCrashAtEveryStep(t *testing.T) {
	probe := newTruncLog(t, vfs.NewCrashFS(), 60)
	segs := probe.l.Segments()
	// A cut past the last index entry of a sealed segment: its index files
	// would still look right for the truncated file.
	var pastIndex int64 = -1
	probe.l.mu.Lock()
	for _, s := range probe.l.mu.segments[:len(probe.l.mu.segments)-1] {
		e, ok := s.offIdx.Lookup(s.next - 1)
		for _, r := range probe.results {
			if ok && r.LastOffset == s.next-1 && r.BaseOffset > s.base+int64(e.RelOffset) {
				pastIndex = r.BaseOffset
			}
		}
		if pastIndex >= 0 {
			break
		}
	}
	probe.l.mu.Unlock()
	probe.l.Close()
	if pastIndex < 0 {
		t.Fatal("no sealed segment ends past its last index entry")
	}
	for _, offset := range []int64{segs[1].Base + 2, pastIndex, segs[len(segs)-1].Base + 3, segs[len(segs)-1].Base} {
		t.Run(fmt.Sprint(offset), func(t *testing.T) {
			tl := newTruncLog(t, vfs.NewCrashFS(), 60)
			kept, newEnd, newRef := tl.expect(t, offset)
			defer newRef.Close()
			_, _, oldRef := tl.expect(t, 1<<40)
			defer oldRef.Close()
			done := crashAfter(tl.fsys, 1<<30)
			if _, err := tl.l.TruncateTo(offset); err != nil {
				t.Fatal(err)
			}
			steps := done()
			tl.l.Close()
			t.Logf("%d mutating steps", steps)

			rng := rand.New(rand.NewPCG(uint64(offset), 9))
			var sawOld, sawNew int
			for k := 0; k <= steps; k++ {
				tl := newTruncLog(t, vfs.NewCrashFS(), 60)
				done := crashAfter(tl.fsys, k)
				_, err := tl.l.TruncateTo(offset)
				if ran := done(); k < steps && (err == nil || ran <= k) {
					t.Fatalf("step %d: went on past the failure: %v after %d steps", k, err, ran)
				}
				killed, lost := tl.fsys.KillClone(), tl.fsys.CrashClone(rng)
				tl.l.Close()
				for _, cl := range []struct {
					name string
					fsys *vfs.CrashFS
				}{{"kill", killed}, {"power loss", lost}} {
					what := fmt.Sprintf("step %d, %s", k, cl.name)
					r, err := Open(truncDir, truncCfg, Options{FS: cl.fsys, Logger: quietLogger()})
					if err != nil {
						t.Fatalf("%s: Open: %v", what, err)
					}
					if got := logBatches(t, r); sameBatches(got, tl.batches) {
						sawOld++
						checkEpochs(t, what+" (old)", r, oldRef)
						seq := tl.seqAfter(1 << 40)
						if res, err := r.Append(producerBatch(seq), AppendInfo{LeaderEpoch: 50}); err != nil || res.Duplicate {
							t.Fatalf("%s (old): next sequence: %+v, %v", what, res, err)
						}
					} else {
						sawNew++
						tl.checkTruncated(t, what, r, kept, newEnd, newRef)
					}
					r.Close()
				}
			}
			if sawOld == 0 || sawNew == 0 {
				t.Fatalf("states seen: %d old, %d new", sawOld, sawNew)
			}
		})
	}
}

// TestTruncateToStartCrash crashes a truncation to a log start inside a
// batch (which restarts the log empty at the start) at each mutating step:
// Open gives the old log or the empty one at the start.
func TestTruncateToStartCrash(t *testing.T) {
	setup := func() (*truncLog, int64, []batchAt) {
		tl := newTruncLog(t, vfs.NewCrashFS(), 60)
		segs := tl.l.Segments()
		i := findBatch(tl.results, segs[1].Base, segs[1].Next, true)
		start := tl.results[i].BaseOffset + 1
		if err := tl.l.SetStartOffset(start); err != nil {
			t.Fatal(err)
		}
		return tl, start, logBatches(t, tl.l)
	}
	tl, start, _ := setup()
	done := crashAfter(tl.fsys, 1<<30)
	if end, err := tl.l.TruncateTo(start); err != nil || end != start {
		t.Fatalf("TruncateTo(%d) = %d, %v", start, end, err)
	}
	steps := done()
	tl.l.Close()
	rng := rand.New(rand.NewPCG(5, 6))
	var sawOld, sawNew int
	for k := 0; k <= steps; k++ {
		tl, start, old := setup()
		done := crashAfter(tl.fsys, k)
		_, err := tl.l.TruncateTo(start)
		if ran := done(); k < steps && (err == nil || ran <= k) {
			t.Fatalf("step %d: went on past the failure: %v after %d steps", k, err, ran)
		}
		killed, lost := tl.fsys.KillClone(), tl.fsys.CrashClone(rng)
		tl.l.Close()
		for _, fs := range []*vfs.CrashFS{killed, lost} {
			r, err := Open(truncDir, truncCfg, Options{FS: fs, Logger: quietLogger()})
			if err != nil {
				t.Fatalf("step %d: Open: %v", k, err)
			}
			if r.StartOffset() != start {
				t.Fatalf("step %d: start %d, want %d", k, r.StartOffset(), start)
			}
			got := logBatches(t, r)
			switch {
			case sameBatches(got, old):
				sawOld++
			case len(got) == 0 && r.EndOffset() == start:
				sawNew++
			default:
				t.Fatalf("step %d: %d batches, end %d: neither the old log nor the empty one at %d", k, len(got), r.EndOffset(), start)
			}
			res := mustAppend(t, r, simpleBatch(1, 5, 1))
			if res.BaseOffset != r.EndOffset()-1 || res.BaseOffset < start {
				t.Fatalf("step %d: append at %d", k, res.BaseOffset)
			}
			r.Close()
		}
	}
	if sawOld == 0 || sawNew == 0 {
		t.Fatalf("states seen: %d old, %d new", sawOld, sawNew)
	}
}

// TestTruncateToConcurrent truncates while readers read and an appender
// appends: readers see batches of the old or the new log or offset errors,
// appends fail only while the truncation runs, and the result is right.
func TestTruncateToConcurrent(t *testing.T) {
	tl := newTruncLog(t, vfs.NewCrashFS(), 80)
	defer tl.l.Close()
	oldEnd := tl.l.EndOffset()
	byBase := map[int64][]byte{}
	for _, b := range tl.batches {
		byBase[b.base] = b.b
	}
	cutSeg := tl.l.Segments()[2]
	offset := cutSeg.Base + 1
	kept, newEnd, ref := tl.expect(t, offset)
	defer ref.Close()
	// Readers pile up inside their reads of the cut segment while the
	// truncation stalls: they resume on the truncated file.
	tl.fsys.InjectError(func(op vfs.Op, _ string) error {
		if op == vfs.OpTruncate {
			time.Sleep(20 * time.Millisecond)
		}
		return nil
	})
	defer tl.fsys.InjectError(nil)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for r := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(r), 1))
			lo, hi := int64(0), oldEnd
			if r >= 2 {
				lo, hi = newEnd, cutSeg.Next
			}
			for {
				select {
				case <-stop:
					return
				default:
				}
				off := lo + rng.Int64N(hi-lo)
				b, err := tl.l.Read(off, 300, 1<<62)
				if err != nil {
					if !errors.Is(err, ErrOffsetOutOfRange) {
						t.Errorf("Read(%d): %v", off, err)
						return
					}
					continue
				}
				if len(b) == 0 {
					continue
				}
				h, err := batch.ParseHeader(b)
				if err != nil || (off < newEnd && !bytes.Equal(b[:h.Size()], byBase[h.BaseOffset])) {
					t.Errorf("Read(%d): batch at %d differs from the original (%v)", off, h.BaseOffset, err)
					return
				}
			}
		}()
	}
	time.Sleep(5 * time.Millisecond)
	got, err := tl.l.TruncateTo(offset)
	close(stop)
	wg.Wait()
	if err != nil || got != newEnd {
		t.Fatalf("TruncateTo = %d, %v; want %d", got, err, newEnd)
	}
	tl.checkTruncated(t, "after concurrent truncation", tl.l, kept, newEnd, ref)
}

// TestTruncateToStopsCleanerPass truncates while a cleaner pass runs: the
// pass must not commit. A cleaner point past the new end comes down to it.
func TestTruncateToStopsCleanerPass(t *testing.T) {
	c := fillCleanLog(t, vfs.NewCrashFS(), 150, 30, 21)
	defer c.l.Close()
	segs := c.l.Segments()
	if len(segs) < 5 {
		t.Fatalf("only %d segments", len(segs))
	}
	cut := segs[len(segs)-2].Base // the last sealed segment goes
	var newEnd int64
	c.l.cleanSleep = func(context.Context, time.Duration) error {
		if newEnd == 0 {
			var err error
			if newEnd, err = c.l.TruncateTo(cut); err != nil {
				t.Error(err)
			}
		}
		return nil
	}
	// A pass over segments below the cut only: its groups are still there,
	// but what it read may not be.
	if _, err := c.l.Clean(CleanOptions{From: 0, To: segs[2].Next, RateLimit: 10_000}); !errors.Is(err, ErrCleanRaced) {
		t.Fatalf("pass during a truncation: %v, want ErrCleanRaced", err)
	}
	if newEnd != cut || c.l.CleanerPoint() != 0 {
		t.Fatalf("new end %d, cleaner point %d; want %d, 0", newEnd, c.l.CleanerPoint(), cut)
	}
	if f := cleanedFiles(t, c.fsys, cleanDir); len(f) > 0 {
		t.Fatalf("leftover files %v", f)
	}
	c.l.cleanSleep = nil

	// A clean log truncated below its cleaner point.
	to := activeBase(c.l)
	if _, err := c.l.Clean(CleanOptions{From: 0, To: to}); err != nil {
		t.Fatal(err)
	}
	if c.l.CleanerPoint() != to {
		t.Fatalf("cleaner point %d, want %d", c.l.CleanerPoint(), to)
	}
	segs = c.l.Segments()
	cut = segs[len(segs)-2].Base
	if got, err := c.l.TruncateTo(cut); err != nil || got != cut {
		t.Fatalf("TruncateTo(%d) = %d, %v", cut, got, err)
	}
	mustAppend(t, c.l, simpleBatch(3, 10, 1))
	if c.l.CleanerPoint() != cut || c.l.cleanPoint.Load() != cut {
		t.Fatalf("cleaner point %d (stored %d), want %d", c.l.CleanerPoint(), c.l.cleanPoint.Load(), cut)
	}
	waitDurable(t, c.l, c.l.EndOffset()-1)
	c.l.Close()
	r := mustOpen(t, c.fsys, cleanDir, cleanCfg, Options{})
	defer r.Close()
	if r.CleanerPoint() != cut || r.EndOffset() != cut+3 {
		t.Fatalf("reopened: cleaner point %d, end %d; want %d, %d", r.CleanerPoint(), r.EndOffset(), cut, cut+3)
	}
}

// TestAssignEpochBeforeAppend: a new leader records its epoch at the log end
// before appending, so a follower asking for the end of its older epoch
// gets the log end (not "unknown", which would make it drop its log).
func TestAssignEpochBeforeAppend(t *testing.T) {
	fsys := vfs.NewCrashFS()
	dir := "/p"
	l := mustOpen(t, fsys, dir, Config{SegmentBytes: 1 << 20}, testOptions(fsys))
	for i := 0; i < 3; i++ {
		if _, err := l.Append(simpleBatch(2, 10, 'a'), AppendInfo{LeaderEpoch: 5}); err != nil {
			t.Fatal(err)
		}
	}
	waitDurable(t, l, l.EndOffset()-1)
	if e, o := l.EndOffsetForEpoch(6); e != -1 || o != -1 {
		t.Fatalf("before AssignEpoch, epoch 6: %d %d", e, o)
	}
	l.AssignEpoch(7)
	if e, o := l.EndOffsetForEpoch(6); e != 5 || o != 6 {
		t.Fatalf("after AssignEpoch(7), epoch 6: (%d, %d), want (5, 6)", e, o)
	}
	if got := l.LatestEpoch(); got != 7 {
		t.Fatalf("latest epoch %d", got)
	}
	l.AssignEpoch(4) // older: ignored
	if got := l.LatestEpoch(); got != 7 {
		t.Fatalf("latest epoch %d after an older assign", got)
	}
	l.Close()
}
